"""TensorFlow start-up, in one place: a quiet import and process-wide settings.

Everything that must happen before TensorFlow creates its runtime (log level, threads)
happens here; commands call start() before they import modules that use TensorFlow.
"""

import contextlib
import importlib.abc
import os
import platform
import sys

# Keras imports these at start-up for features cnnclf never uses (pandas DataFrames as inputs,
# the scikit-learn wrapper, image galleries; TensorFlow's legacy tf.keras takes scipy): 125 MB
# resident for the whole run. cnnclf imports what it needs of them itself, after training.
OPTIONAL_AT_IMPORT = ("matplotlib", "pandas", "scipy", "sklearn")


def start(debug: bool = False, train=None, lean: bool = True):
    """Import TensorFlow (its native start-up chatter, e.g. CUDA probing on machines without
    a GPU, is discarded unless `debug`) and apply the process-wide settings of `train`
    (a TrainConfig): threads and deterministic ops. `lean`: without the optional imports
    above (the tutorials' own code, measured as written, passes False). Returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")
    with contextlib.nullcontext() if debug else _native_stderr_discarded(), \
            _hidden(OPTIONAL_AT_IMPORT) if lean else contextlib.nullcontext():
        import keras  # noqa: F401  (Keras 3 makes its optional imports here)
        import tensorflow as tf
    if not debug:
        tf.get_logger().setLevel("ERROR")  # deprecation notices from inside TensorFlow's own modules
    if train is not None:
        cpus = tf.config.list_physical_devices("CPU")
        if train.cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()]
                                                       * train.cpu_replicas)
        if train.threads != "auto":
            tf.config.threading.set_intra_op_parallelism_threads(train.threads)
        if train.deterministic:
            tf.config.experimental.enable_op_determinism()
    return tf


def compute_settings(train, distributed: bool = False) -> dict:
    """The compute levers with `auto` resolved for this device, as measured (BENCHMARKS.md):
    on CPUs without native bfloat16, float32 (mixed_bfloat16 ran 7.6x, mixed_float16 2.3x and
    XLA 3.1x slower on the 2-core AMD EPYC); 32 steps per execution (2-25% more images/s than 1), but 1
    under a tf.distribute strategy (`distributed`), where Keras 3.15 supports no more.
    NVIDIA GPUs from compute capability 7.0 (tensor cores) get mixed_float16. Convolution gradients
    as forward convolutions: 1.3x the images/s of cifar10_bn on the EPYC; on GPUs cuDNN's own are kept
    (not measured)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    precision = train.mixed_precision
    if precision == "auto":
        capable = gpus and all(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))
                               >= (7, 0) for g in gpus)
        precision = "mixed_float16" if capable else "float32"
    spe = train.steps_per_execution
    if spe == "auto":
        spe = 1 if distributed else 32  # Keras 3.15's multi-step loop fails under tf.distribute
    conv_gradients = train.conv_gradients
    if conv_gradients == "auto":
        conv_gradients = "tensorflow" if gpus else "forward"
    return {
        "steps_per_execution": spe,
        "jit_compile": train.jit_compile,  # auto is Keras's own rule: XLA on GPUs, not on CPUs or distributed
        "mixed_precision": precision,
        "conv_gradients": conv_gradients,
    }


@contextlib.contextmanager
def _hidden(packages: tuple[str, ...]):
    """Within the block, importing `packages` fails as if they were not installed; modules that
    import them optionally go without. Where one is loaded already there is nothing to save."""
    if any(name in sys.modules for name in packages):
        yield
        return

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in packages:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    finder = Hide()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


@contextlib.contextmanager
def _native_stderr_discarded():
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program, in MiB. Linux's VmHWM,
    not getrusage: that keeps the high-water mark of the process before exec, which for a child
    of a large process (the benchmark holds TensorFlow) is the parent's size."""
    try:
        with open("/proc/self/status") as f:
            return round(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024, 1)
    except (OSError, StopIteration):
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def release_memory() -> None:
    """Hand memory freed since the last call back to the OS (glibc keeps it resident)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def describe_device() -> dict:
    """What the run trains on: the CPU model and core count, and any GPUs TensorFlow sees."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "gpus": gpus}


def environment(config, compute: dict, data_fingerprint: dict) -> dict:
    """env.json: versions, device, seed, compute settings, command line, git commit, data fingerprints."""
    import subprocess

    import keras
    import numpy as np
    import tensorflow as tf

    from cnnclf import __version__

    try:
        git = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = git.stdout.strip() if git.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cnnclf": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": describe_device(),
        "seed": config.seed,
        "compute": compute,
        "command": sys.argv,
        "git_commit": commit or None,
        "data": data_fingerprint,
    }

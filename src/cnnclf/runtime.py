"""TensorFlow start-up, in one place: a quiet import and process-wide settings.

Everything that must happen before TensorFlow creates its runtime (log level, threads)
happens here; commands call start() before they import modules that use TensorFlow.
"""

import contextlib
import os
import platform


def start(debug: bool = False, deterministic: bool = False):
    """Import TensorFlow (its native start-up chatter, e.g. CUDA probing on machines without
    a GPU, is discarded unless `debug`) and apply process-wide settings. Returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")
    with contextlib.nullcontext() if debug else _native_stderr_discarded():
        import tensorflow as tf
    if not debug:
        tf.get_logger().setLevel("ERROR")  # deprecation notices from inside TensorFlow's own modules
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return tf


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

"""TensorFlow start-up, in one place: a quiet import and the process-wide settings.

Everything that must happen before TensorFlow creates its runtime (log level, threads, logical
devices, deterministic ops) happens here; commands call start() before they import modules that
use TensorFlow.
"""

import contextlib
import logging
import os

from cnnclf import compat

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
    with (
        contextlib.nullcontext() if debug else _native_stderr_discarded(),
        compat.hidden_imports(OPTIONAL_AT_IMPORT) if lean else contextlib.nullcontext(),
    ):
        import keras  # noqa: F401  (Keras 3 makes its optional imports here)
        import tensorflow as tf
    if not debug:
        tf.get_logger().setLevel("ERROR")  # deprecation notices from inside TensorFlow's own modules
    if train is not None:
        try:
            cpus = tf.config.list_physical_devices("CPU")
            if train.cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
                tf.config.set_logical_device_configuration(
                    cpus[0], [tf.config.LogicalDeviceConfiguration()] * train.cpu_replicas
                )
            if train.threads != "auto":
                tf.config.threading.set_intra_op_parallelism_threads(train.threads)
        except RuntimeError:  # a second run in one process (the Python API): TensorFlow has started already
            logging.getLogger("cnnclf").warning(
                "warning: train.threads and train.cpu_replicas take effect only in the first run of a process; "
                "this one keeps the first run's"
            )
        if train.deterministic:
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

"""Every Keras and TensorFlow internal cnnclf touches, in one place (as Ludwig's version-named compat
modules do), each behind a feature check that fails loudly when Keras changes: an error of one
line where the feature cannot work without it, or a warning and the plain path where it can.

Written against Keras 3.15 and TensorFlow 2.21 (constraints.txt); each was seen unchanged from
Keras 3.3. Nothing else in cnnclf imports keras.src or tensorflow.python, or patches Keras.

    public_names           the names keras.<module> exports, read from its generated __init__.py
                           without importing Keras (config checks stay fast)
    hidden_imports         an import hook: Keras's optional imports at start-up made to fail
    downloads_failing_as   keras.src.utils.file_utils.get_file wrapped: a failed download is our error
    set_convolution_op     Conv2D.convolution_op replaced per layer (train.conv_gradients)
    scale_learning_rate    an optimizer's update_step wrapped per instance (train.norm_bias_lr_multiplier)
    callback_state_fields  the EarlyStopping and ModelCheckpoint attributes resume restores
    multi_worker_fixes     two Keras internals replaced for MultiWorkerMirroredStrategy
    frozen_graph           a concrete function with its variables as constants (FLOP counting)
"""

import ast
import contextlib
import functools
import importlib.abc
import importlib.util
import logging
import sys
import types
from pathlib import Path

from cnnclf.errors import ConfigError, RunError

log = logging.getLogger("cnnclf")

WRITTEN_FOR = "Keras 3.15 and TensorFlow 2.21"


def _missing(what: str, feature: str) -> str:
    import keras

    return (
        f"{feature} relies on {what}, which Keras {keras.__version__} does not have (cnnclf was written for "
        f"{WRITTEN_FOR}); install the versions in constraints.txt (pip install -c constraints.txt -e .)"
    )


@functools.cache
def public_names(module: str) -> tuple[str, ...]:
    """Public names of `keras.<module>`, e.g. public_names("layers") -> ("Activation", ...), read from
    the module's generated __init__.py (a list of imports) without importing Keras; where that file
    is not such a list, from the imported module itself, with a warning (slower)."""
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        return ()
    init = Path(spec.submodule_search_locations[0]) / module / "__init__.py"
    try:
        tree = ast.parse(init.read_text())
    except (OSError, SyntaxError):
        tree = ast.Module(body=[], type_ignores=[])
    names = {
        alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    if not names:
        log.warning(f"warning: keras/{module}/__init__.py lists no imports; reading keras.{module} itself")
        import keras

        names = set(dir(getattr(keras, module)))
    return tuple(sorted(n for n in names if not n.startswith("_")))


@contextlib.contextmanager
def hidden_imports(packages: tuple[str, ...]):
    """Within the block, importing `packages` fails as if they were not installed; modules that
    import them optionally go without. Those loaded already are left alone: nothing to save there."""
    packages = tuple(name for name in packages if name not in sys.modules)

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
def downloads_failing_as(make_error):
    """Within the block, a download through Keras's cache (keras.applications' weights) that fails
    raises make_error(file name, origin, cache folder, error) instead of Keras's own error. Without
    Keras's get_file, a warning, and Keras's own errors."""
    try:
        from keras.src.utils import file_utils
    except ImportError:
        file_utils = None
    if file_utils is None or not hasattr(file_utils, "get_file"):
        log.warning(f"warning: {_missing('keras.src.utils.file_utils.get_file', 'naming a failed download')}")
        yield
        return
    real = file_utils.get_file

    def get_file(fname=None, origin=None, *args, **kwargs):
        import os

        try:
            return real(fname, origin, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - urllib, HTTP and cache errors alike mean: not available here
            cache = os.path.join(
                os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), kwargs.get("cache_subdir", "models")
            )
            raise make_error(fname or "", origin, cache, e) from None

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = real


def set_convolution_op(layer, op) -> bool:
    """Make `layer` (a keras.layers.Conv2D) compute its convolution with op(inputs, kernel); False,
    with a warning once, where Keras's Conv2D has no convolution_op to replace (TensorFlow's
    gradients are used then)."""
    import keras

    if not hasattr(keras.layers.Conv2D, "convolution_op"):
        _warn_once(
            f"warning: {_missing('Conv2D.convolution_op', 'train.conv_gradients: forward')}; "
            f"TensorFlow's convolution gradients are used"
        )
        return False
    layer.convolution_op = op
    return True


def scale_learning_rate(optimizer, variables: list, multiplier: float) -> None:
    """Make `optimizer` (this instance: its class, hence the saved model, stays Keras's own) step
    `variables` at `multiplier` times its learning rate. Keras 3 optimizers update each variable in
    update_step(gradient, variable, learning_rate), the method a Keras custom optimizer overrides,
    and find a variable's place with _get_variable_index, which is not documented; the weight decay
    (decoupled: learning rate x weight_decay x weight) is applied elsewhere, so it stays the others'."""
    if not hasattr(optimizer, "_get_variable_index"):
        raise RunError(_missing("Optimizer._get_variable_index", "train.norm_bias_lr_multiplier"))
    paths = {variable.path for variable in variables}
    update_step = optimizer.update_step

    def scaled(gradient, variable, learning_rate):
        if optimizer._trainable_variables[optimizer._get_variable_index(variable)].path in paths:
            learning_rate = learning_rate * multiplier
        return update_step(gradient, variable, learning_rate)

    optimizer.update_step = scaled


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


EARLY_STOPPING_FIELDS = ("wait", "best", "best_epoch", "stopped_epoch")


def callback_state_fields(early_stopping, checkpoint) -> None:
    """Keras's EarlyStopping and ModelCheckpoint reset their state in on_train_begin and keep it in
    attributes Keras does not document (Keras issue 17012); a resumed run puts them back. Refuse,
    in one line, a Keras that renamed them."""
    missing = [
        f"EarlyStopping.{f}"
        for f in (*EARLY_STOPPING_FIELDS, "best_weights")  # best_weights: saved apart, as arrays
        if early_stopping is not None and not hasattr(early_stopping, f)
    ]
    if checkpoint is not None and not hasattr(checkpoint, "best"):
        missing.append("ModelCheckpoint.best")
    if missing:
        raise RunError(_missing(", ".join(missing), "resume"))


def multi_worker_fixes() -> None:
    """Keras 3.15 reduces each step's logs with strategy.reduce(MEAN, axis=0), which fails for the
    scalar metrics under MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388). The values
    are synchronized metric results, so a mean without an axis is the right reduction. Refuses
    multi_worker, in one line, on a Keras without the internals replaced here."""
    import keras

    try:
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer
    except ImportError:
        raise ConfigError(_missing("keras.src.backend.tensorflow.trainer", "train.distribute: multi_worker")) from None
    needed = {
        "keras.src.backend.tensorflow.trainer.reduce_per_replica": hasattr(trainer, "reduce_per_replica"),
        "keras.src.backend.tensorflow.trainer._collective_all_reduce_multi_worker": hasattr(
            trainer, "_collective_all_reduce_multi_worker"
        ),
        "keras.Model._maybe_symbolic_build": hasattr(keras.Model, "_maybe_symbolic_build"),
    }
    missing = [name for name, present in needed.items() if not present]
    if missing:
        raise ConfigError(_missing(missing[0], "train.distribute: multi_worker"))
    if getattr(trainer.reduce_per_replica, "cnnclf", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.cnnclf = True  # type: ignore[attr-defined]
    trainer.reduce_per_replica = reduce_per_replica


def peek_one_replica(model, strategy) -> None:
    """Keras 3.15 peeks a batch before fit and reduces it across replicas to learn its shapes; under
    MultiWorkerMirroredStrategy that reduce fails (tensorflow/tensorflow#72388). One replica's part
    of the batch has the same shapes. (multi_worker_fixes has checked that the method exists.)"""
    from keras.src import tree

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(lambda v: strategy.experimental_local_results(v)[0], next(batches))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)


def frozen_graph(concrete):
    """The graph of a concrete function with its variables as constants (for TensorFlow's FLOP
    profiler); None, with a warning, where TensorFlow no longer has the converter."""
    try:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    except ImportError:
        log.warning(
            "warning: tensorflow.python.framework.convert_to_constants is gone; no FLOP count (cnnclf was "
            f"written for {WRITTEN_FOR})"
        )
        return None
    return convert_variables_to_constants_v2(concrete).graph


def float_operations(graph) -> int | None:
    """The floating-point operations of a frozen graph, by TensorFlow's v1 profiler (the only FLOP
    counter it has); None where this TensorFlow has no v1 profiler."""
    import tensorflow as tf

    profiler = getattr(getattr(tf, "compat", None), "v1", None)
    if profiler is None or not hasattr(profiler, "profiler"):
        _warn_once(f"warning: {_missing('tf.compat.v1.profiler', 'the FLOP count')}")
        return None
    options = (
        profiler.profiler.ProfileOptionBuilder(profiler.profiler.ProfileOptionBuilder.float_operation())
        .with_empty_output()
        .build()
    )
    return profiler.profiler.profile(
        graph=graph, run_meta=profiler.RunMetadata(), cmd="op", options=options
    ).total_float_ops

"""Names that Keras exports, read from its API files without importing Keras.

Importing Keras imports TensorFlow (seconds); config validation must stay fast, so the
valid layer, optimizer and metric names are read from Keras's generated `__init__.py` files.
"""

import ast
import functools
import importlib.util
from pathlib import Path


@functools.cache
def public_names(module: str) -> tuple[str, ...]:
    """Public names of `keras.<module>`, e.g. public_names("layers") -> ("Activation", ...)."""
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        return ()
    init = Path(spec.submodule_search_locations[0]) / module / "__init__.py"
    tree = ast.parse(init.read_text())
    names = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    return tuple(sorted(n for n in names if not n.startswith("_")))


def layer_names() -> tuple[str, ...]:
    return tuple(n for n in public_names("layers") if n[0].isupper() and n != "Layer")


def optimizer_names() -> tuple[str, ...]:
    """Lower-case names accepted by keras.optimizers.get(), e.g. 'adam', 'rmsprop'."""
    skip = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer", "OptimizerMap"}
    return tuple(n.lower() for n in public_names("optimizers") if n[0].isupper() and n not in skip)


def metric_names() -> tuple[str, ...]:
    """Names accepted by compile(metrics=[...]): metric functions and classes."""
    skip = {"get", "serialize", "deserialize", "Metric"}
    return ("accuracy", "acc") + tuple(n for n in public_names("metrics") if n not in skip)

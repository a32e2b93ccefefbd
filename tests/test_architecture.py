"""The tree's rules, checked on the source: imports run downhill between the stages, only compat.py
touches Keras's and TensorFlow's internals, and evaluation and serving never load the trainer."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SOURCE = ROOT / "src" / "cnnclf"
BASE = {"errors", "atomic", "device", "measures", "reading", "redaction", "signals", "progress", "compat", "startup", "__init__", "__version__"}  # any stage may use them
# package -> the packages its modules may import (besides their own and BASE)
ALLOWED = {
    "config": {"data", "model"},  # the registries: sources, presets, Keras names
    "data": set(),
    "model": set(),
    "rundir": {"config"},
    "inference": {"config", "data", "model", "rundir"},  # inference and reporting share measures.py, not
    "reporting": {"config", "data", "rundir"},  # each other
    "training": {"config", "data", "model", "rundir"},  # it fits; pipeline.py evaluates and draws
    "tools": {"config", "data", "model", "rundir", "inference", "reporting", "training", "pipeline"},
    "cli": {"config", "data", "model", "rundir", "inference", "reporting", "training", "tools", "pipeline"},
}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, at any depth (functions import lazily)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            if node.module == "cnnclf":
                found += [(node.lineno, f"cnnclf.{alias.name}") for alias in node.names]
    return found


def modules() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*.py"))


def test_every_package_imports_only_downhill():
    broken = []
    for path in modules():
        parts = path.relative_to(SOURCE).with_suffix("").parts
        if len(parts) == 1:
            continue  # the shared base modules
        package = parts[0]
        for line, name in imports(path):
            if not name.startswith("cnnclf."):
                continue
            target = name.split(".")[1]
            if target not in BASE and target != package and target not in ALLOWED[package]:
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not broken, "\n".join(broken)


def test_only_compat_touches_keras_and_tensorflow_internals():
    touching = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules() if path.name != "compat.py"
        for line, name in imports(path) if name.startswith(("keras.src", "tensorflow.python"))
    ]
    assert not touching, "\n".join(touching)


def test_every_module_stays_under_300_lines():
    assert [p.name for p in modules() if len(p.read_text().splitlines()) > 300] == []


def test_evaluation_and_serving_never_import_training():
    code = ("import sys, cnnclf.inference.evaluate, cnnclf.inference.predict, cnnclf.inference.export, "
            "cnnclf.inference.server, cnnclf.inference.serve, cnnclf.cli.inference; "
            "loaded = [m for m in sys.modules if m.startswith('cnnclf.training')]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)

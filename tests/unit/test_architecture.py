"""The tree's rules, checked on the source: imports run downhill between the stages, only compat.py
touches Keras's and TensorFlow's internals, and evaluation and serving never load the trainer."""

import ast
import re
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

SOURCE = ROOT / "src" / "cnnclf"
BASE = {"errors", "atomic", "device", "measures", "reading", "redaction", "signals", "progress", "compat", "startup", "__init__", "__version__"}  # any stage may use them
# package -> the packages its modules may import (besides their own and BASE)
ALLOWED = {  # in the order of the top-level map
    "data": set(),
    "model": set(),
    "config": {"data", "model"},  # the registries: sources, presets, Keras names
    "rundir": {"config"},
    "inference": {"config", "data", "model", "rundir"},  # inference and reporting share measures.py, not
    "reporting": {"config", "data", "rundir"},  # each other
    "training": {"config", "data", "model", "rundir"},  # it fits; pipeline.py evaluates and draws
    "pipeline": {"config", "data", "model", "rundir", "training", "inference", "reporting"},
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


def map_of(init: Path) -> str:
    return ast.get_docstring(ast.parse(init.read_text())) or ""


def test_every_module_is_named_in_its_packages_map():
    unnamed = [
        str(path.relative_to(SOURCE))
        for package in sorted(p for p in SOURCE.iterdir() if (p / "__init__.py").is_file())
        for path in sorted(package.glob("*.py"))
        if path.name != "__init__.py" and path.name not in map_of(package / "__init__.py")
    ]
    top = map_of(SOURCE / "__init__.py")
    unnamed += [path.name for path in sorted(SOURCE.glob("*.py")) if path.name not in ("__init__.py", "__main__.py")
                and path.name not in top]
    unnamed += [f"{p.name}/" for p in sorted(SOURCE.iterdir()) if (p / "__init__.py").is_file() and f"{p.name}/" not in top]
    assert not unnamed, unnamed


def stages_in_map_order() -> list[str]:
    """The stages as the top-level map lists them (packages, and the modules that are stages)."""
    listed = re.findall(r"^    (\w+)(?:/|\.py)\s", map_of(SOURCE / "__init__.py"), re.M)
    return [name for name in listed if name not in BASE]


def test_the_maps_order_is_the_import_order():
    """Each stage imports only stages the top-level map lists before it (ALLOWED, in that order)."""
    order = stages_in_map_order()
    assert set(order) == set(ALLOWED) | {"api"}, order
    late = [f"{package} imports {target}" for package, targets in ALLOWED.items() for target in targets
            if order.index(target) > order.index(package)]
    assert not late, late


def test_the_base_modules_import_no_stage():
    broken = [
        f"{path.name}:{line} imports {name}"
        for path in sorted(SOURCE.glob("*.py")) if path.stem in BASE and path.name != "__init__.py"  # the front door
        for line, name in imports(path)
        if name.startswith("cnnclf.") and name.split(".")[1] not in BASE
    ]
    assert not broken, broken


def test_only_compat_reaches_into_other_objects_private_members():
    """`x._member` outside compat.py is an internal of someone else's (Keras's, TensorFlow's): only self,
    cls and os._exit are exempt."""
    reached = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        for path in modules() if path.name != "compat.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
        and ast.unparse(node.value) not in ("self", "cls") and ast.unparse(node) != "os._exit"
    ]
    assert not reached, reached

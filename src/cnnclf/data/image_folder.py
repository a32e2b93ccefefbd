"""A folder of image files, one folder per class, on disk or in a zip:

    photos/<class>/*.jpg                                   no test part: one is carved out (data.test_split)
    photos/train/<class>/*.jpg + photos/test/<class>/*.jpg  the data's own test part
    photos/train/ + val/ (or valid/, validation/) + test/   the data's own validation part too (Ultralytics,
                                                           Keras's tutorials, Kaggle; valid/: Roboflow)

Where train/ is and test/ is not, the test part is carved out of train/ (data.test_split); where no
validation folder is, validation is carved out of train/ (data.validation_split). split.py says
where each part came from.

Class names are the folder names, sorted; files below a class folder at any depth belong to it.
A zip may hold the tree inside one wrapping folder. Files whose suffix is not an image's
(README.txt, Thumbs.db) are ignored with a warning; hidden files and folders are ignored.
data.test_path: the test part's class folders elsewhere (a folder or a zip).
"""

import logging
import os
from pathlib import Path, PurePosixPath

import numpy as np

from cnnclf.data.files import ImageFiles, ZipReader, checked_name, open_tree, suffix_is_image
from cnnclf.errors import DataError, listing, plural

log = logging.getLogger("cnnclf")

TEST_PREFIX = "[test_path]/"  # names of files read from data.test_path
VALIDATION_FOLDERS = ("val", "valid", "validation")  # beside train/, the first found is the validation part


def list_files(cfg) -> ImageFiles:
    path = Path(cfg.path)
    if not path.exists():
        raise DataError(
            f"{path}: no such folder or zip; data.path must hold <class>/<images> (or train/<class>/ and test/<class>/)"
        )
    reader = open_tree(path)
    tree = _Tree(reader, path)
    if cfg.test_path is not None:
        test_path = Path(cfg.test_path)
        if not test_path.exists():
            raise DataError(f"{test_path}: no such folder or zip (data.test_path); it must hold <class>/<images>")
        test = _Tree(open_tree(test_path), test_path)
        train_part = tree.part("train") if tree.split else tree.classes("", str(path))
        parts = {"train": train_part, "test": test.classes("", str(test_path), prefix=TEST_PREFIX)}
        reader = _Joined(reader, tree.wrapper, test.reader, test.wrapper)
    elif tree.split:
        parts = {"train": tree.part("train")}
        origins = {"train": "train/"}
        for part, folder in (("validation", tree.validation), ("test", "test" if "test" in tree.dirs else None)):
            if folder is not None:
                parts[part], origins[part] = tree.part(folder), f"{folder}/"
        reader = _Joined(reader, tree.wrapper)
    else:
        parts = {"": tree.classes("", str(path))}
        reader = _Joined(reader, tree.wrapper)
    if cfg.test_path is not None:
        origins = {"train": "train/" if tree.split else str(path), "test": f"data.test_path ({test_path})"}
    elif not tree.split:
        origins = {"train": "the class folders"}
    class_names = sorted(parts.get("train", parts.get("", {})))
    for part in ("validation", "test"):
        if part in parts and sorted(parts[part]) != class_names:
            missing = sorted(set(class_names) - set(parts[part]))
            extra = sorted(set(parts[part]) - set(class_names))
            raise DataError(
                f"{path}: {part} classes differ from train classes (missing in {part}: "
                f"{listing(missing) or 'none'}; only in {part}: {listing(extra) or 'none'})"
            )
    names, labels, split = [], [], []
    for part, classes in parts.items():
        for label, name in enumerate(class_names):
            names += classes[name]
            labels += [label] * len(classes[name])
            split += [part] * len(classes[name])
    for name in names:
        reader.check(name)
    if tree.ignored:
        log.warning(
            f"ignored {plural(tree.ignored, 'file')} in {path} whose suffix is not an image's "
            f"(the first: {tree.first_ignored})"
        )
    return ImageFiles(str(path), reader, names, np.asarray(labels, np.int64), np.asarray(split), class_names, origins)


class _Tree:
    """The files under a folder or zip, relative to it (a zip's single wrapping folder removed)."""

    def __init__(self, reader, path: Path):
        self.reader, self.path = reader, path
        names = _all_files(reader, path)
        self.dirs = _all_dirs(reader, path, names)
        self.wrapper = _wrapper(names, self.dirs)
        cut = len(self.wrapper)
        self.files = [n[cut:] for n in names if n.startswith(self.wrapper)]
        self.dirs = {d[cut:] for d in self.dirs if d.startswith(self.wrapper) and len(d) > cut}
        self.ignored, self.first_ignored = 0, ""
        train_files = [n for n in self.files if n.startswith("train/")]
        holds_classes = any(d.startswith("train/") for d in self.dirs)
        holds_images = any(n.count("/") == 1 and suffix_is_image(n) for n in train_files)
        self.split = "train" in self.dirs and (holds_classes or not holds_images)
        self.validation = next((v for v in VALIDATION_FOLDERS if v in self.dirs), None) if self.split else None

    def part(self, name: str) -> dict[str, list[str]]:
        if name not in self.dirs:
            raise DataError(f"{self.path}: no {name} folder; expected {name}/<class>/<images> beside train/")
        return self.classes(f"{name}/", f"{self.path} ({name}/)")

    def classes(self, under: str, where: str, prefix: str = "") -> dict[str, list[str]]:
        """{class: [file names]} of the class folders directly under `under`."""
        found: dict[str, list[str]] = {
            d[len(under) :]: [] for d in self.dirs if d.startswith(under) and "/" not in d[len(under) :]
        }
        for name in sorted(self.files):
            if not name.startswith(under) or "/" not in name[len(under) :]:
                continue
            cls = name[len(under) :].split("/", 1)[0]
            if suffix_is_image(name):
                found.setdefault(cls, []).append(prefix + name)
            else:
                self.ignored += 1
                self.first_ignored = self.first_ignored or self.reader.describe(self.wrapper + name)
        if not found:
            raise DataError(f"{where}: no class folders; expected {under or './'}<class>/<image files>")
        for cls, files in sorted(found.items()):
            if not files:
                raise DataError(f"{where}: class folder {cls!r} has no images; add some or remove the folder")
        if len(found) < 2:
            raise DataError(
                f"{where}: only one class folder ({listing(found)}); a classifier needs at least two "
                f"classes, each a folder of its images"
            )
        return found


def _all_files(reader, path: Path) -> list[str]:
    """Every file's path relative to the tree, hidden ones left out, each checked to be UTF-8."""
    if isinstance(reader, ZipReader):
        names = [n for n in reader.infos if not _hidden(n)]
    else:
        names = []
        for folder, _, files in _walk(path):
            base = Path(folder).relative_to(path)
            names += [str(PurePosixPath(base / f)) for f in sorted(files) if not f.startswith(".")]
    return [checked_name(n, str(path)) for n in names]


def _all_dirs(reader, path: Path, names: list[str]) -> set[str]:
    """Every folder (as 'a/b'): the parents of files, and empty folders too."""
    dirs = {str(parent) for n in names for parent in PurePosixPath(n).parents if str(parent) != "."}
    if isinstance(reader, ZipReader):
        dirs |= {n.rstrip("/") for n in reader.infos_dirs if not _hidden(n)}
    else:
        for folder, subdirs, _ in _walk(path):
            dirs |= {str(PurePosixPath(Path(folder).relative_to(path) / d)) for d in subdirs}
    return dirs


def _walk(path: Path):
    """os.walk over the tree, hidden folders left out, following symbolic links to folders (a class
    folder may be one) but never into a folder already walked (a link back up would loop)."""
    seen = {os.path.realpath(path)}
    for folder, dirs, files in os.walk(path, followlinks=True):
        kept = []
        for d in sorted(dirs):
            real = os.path.realpath(os.path.join(folder, d))
            if not d.startswith(".") and real not in seen:
                seen.add(real)
                kept.append(d)
        dirs[:] = kept
        yield folder, dirs, files


def _wrapper(names: list[str], dirs: set[str]) -> str:
    """'photos/' when every file lies inside one folder that is neither a class folder (it holds
    folders, not images) nor train/: zips of a folder usually have one."""
    prefix = ""
    while True:
        tops = {n[len(prefix) :].split("/", 1)[0] for n in names}
        if len(tops) != 1 or any(n[len(prefix) :].count("/") < 2 for n in names):
            return prefix
        top = tops.pop()
        if top in ("train", "test", *VALIDATION_FOLDERS):
            return prefix
        prefix += top + "/"


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


class _Joined:
    """Reads the tree's names through its reader (behind any wrapping folder), and the names of
    data.test_path's files through theirs."""

    def __init__(self, reader, wrapper: str, test_reader=None, test_wrapper: str = ""):
        self.parts = [(TEST_PREFIX, test_reader, test_wrapper), ("", reader, wrapper)]

    def _locate(self, name: str):
        for prefix, reader, wrapper in self.parts:
            if reader is not None and name.startswith(prefix):
                return reader, wrapper + name[len(prefix) :]
        raise KeyError(name)

    def read(self, name: str) -> bytes:
        reader, inner = self._locate(name)
        return reader.read(inner)

    def describe(self, name: str) -> str:
        reader, inner = self._locate(name)
        return reader.describe(inner)

    def open(self, name: str):
        reader, inner = self._locate(name)
        return reader.open(inner)

    def stamp(self, name: str) -> str:
        reader, inner = self._locate(name)
        return reader.stamp(inner)

    def check(self, name: str) -> None:
        reader, inner = self._locate(name)
        reader.check(inner)

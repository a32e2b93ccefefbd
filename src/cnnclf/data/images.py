"""Images: a whole dataset held once in memory as uint8, and the checks every source gets."""

import hashlib
import importlib
from dataclasses import dataclass, field

import numpy as np

from cnnclf.data.datasets import KNOWN
from cnnclf.data.sources import SOURCES
from cnnclf.errors import DataError, listing


@dataclass
class Images:
    x_train: np.ndarray  # uint8, (N, height, width, channels)
    y_train: np.ndarray  # int64 class indices, (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None = None  # None: the dataset's names, or "0".."K-1"
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of what was read
    skipped: list[str] = field(default_factory=list)  # unreadable files skipped on request

    @property
    def shape(self) -> tuple[int, int, int]:
        height, width, channels = self.x_train.shape[1:]
        return height, width, channels

    @property
    def num_classes(self) -> int:
        return len(self.class_names or [])

    def fingerprint(self) -> dict:
        """sha256 of the pixels and labels (the same data gives the same hash whatever the
        file format), and of each file read."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).data)
        return {"data_sha256": digest.hexdigest(), "files": self.files}


IMBALANCED = 3.0  # the largest class over the smallest beyond which classes count as imbalanced
SAMPLES_PER_CLASS = 8  # training images of each class the data grid shows


def first_of_each_class(labels: np.ndarray, num_classes: int, per_class: int = SAMPLES_PER_CLASS) -> np.ndarray:
    """Indices of the first `per_class` images of each class, class by class (the data grid's)."""
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)])


def load_images(data_config) -> Images:
    """Read the dataset the config names and check that it is usable for classification."""
    module = importlib.import_module(f"cnnclf.data.{SOURCES[data_config.source].module}")
    images = module.load(data_config)
    _check(images, data_config)
    return images


def _check(images: Images, cfg) -> None:
    where = cfg.path or f"the {cfg.source} {cfg.dataset} dataset"
    for part in ("train", "test"):
        x, y = getattr(images, f"x_{part}"), getattr(images, f"y_{part}")
        if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.dtype != np.uint8:
            raise DataError(
                f"{where}: {part} images have shape {x.shape} and dtype {x.dtype}; "
                f"expected uint8 (N, height, width, 1 or 3)"
            )
        if len(x) != len(y):
            raise DataError(f"{where}: {len(x)} {part} images but {len(y)} labels; they must match one to one")
        if len(x) == 0:
            raise DataError(f"{where}: the {part} set is empty")
    if images.x_train.shape[1:] != images.x_test.shape[1:]:
        raise DataError(
            f"{where}: train images are {_shape(images.x_train)} but test images are "
            f"{_shape(images.x_test)}; both sets must have the same image shape"
        )
    known = KNOWN.get(cfg.dataset)
    if known and images.shape != known.shape:
        raise DataError(
            f"{where}: images are {_shape(images.x_train)}, but {cfg.dataset} images are "
            f"{'x'.join(map(str, known.shape))}; set data.dataset: custom or fix data.path"
        )
    images.class_names = check_classes(images.class_names, images.y_train, images.y_test, cfg, where)


def check_classes(class_names: list[str] | None, y_train: np.ndarray, y_test: np.ndarray, cfg, where: str) -> list[str]:
    """The class names of labels y (class indices), checked: names from the data, else the dataset's
    own, else '0'..'K-1'; every label within range, every class in training, at least two classes.
    A label far beyond the others (a typo such as 2000000 among 0-9) is named, not turned into
    millions of classes."""
    known = KNOWN.get(cfg.dataset)
    if class_names is None:
        labels = np.concatenate([y_train, y_test])
        distinct = np.unique(labels)
        count = len(known.class_names) if known else int(labels.max(initial=0)) + 1
        if not known and count > 2 * len(distinct) + 8:
            top = distinct[-3:][::-1].tolist()
            raise DataError(
                f"{where}: labels run up to {top[0]} but only {len(distinct)} distinct values appear "
                f"(the largest: {listing(top)}); labels are class indices 0 to K-1, so fix the "
                f"mistyped ones"
            )
        class_names = list(known.class_names) if known else [str(i) for i in range(count)]
    elif known and class_names != list(known.class_names):
        # Folder names must be the dataset's classes (or 0..K-1), so label i means class i.
        if class_names != [str(i) for i in range(len(known.class_names))]:
            raise DataError(
                f"{where}: classes {listing(class_names)} are not the {cfg.dataset} classes "
                f"({', '.join(known.class_names)}, or 0-{len(known.class_names) - 1}); "
                f"rename them or set data.dataset: custom"
            )
        class_names = list(known.class_names)
    k = len(class_names)
    for part, y in (("train", y_train), ("test", y_test)):
        bad = (y < 0) | (y >= k)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{where}: {part} label {int(y[i])} (item {i}) is outside the class range 0-{k - 1}; "
                f"fix the labels or set data.dataset: custom"
            )
    missing = sorted(set(range(k)) - set(np.unique(y_train).tolist()))
    if missing:
        raise DataError(
            f"{where}: classes missing from the training set: "
            f"{listing([class_names[i] for i in missing])}; every class needs training images"
        )
    if k < 2:
        raise DataError(f"{where}: only one class ({class_names[0]}); a classifier needs at least two classes")
    return class_names


def _shape(x: np.ndarray) -> str:
    return "x".join(map(str, x.shape[1:]))


def hash_files(paths) -> dict[str, str]:
    """{path: sha256} of each file, for the run's record of exactly what it read."""
    hashes = {}
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        hashes[str(path)] = digest.hexdigest()
    return hashes


def with_channels(x: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, H, W, 1); images that already have channels pass through."""
    return x[..., None] if x.ndim == 3 else x

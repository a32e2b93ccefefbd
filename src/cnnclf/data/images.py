"""Images: a whole dataset held once in memory as uint8, and the checks every source gets."""

import hashlib
import importlib
from dataclasses import dataclass, field

import numpy as np

from cnnclf.data.datasets import KNOWN
from cnnclf.errors import DataError

SOURCE_MODULES = {
    "keras": "keras_download",
    "sklearn": "sklearn_digits",
    "idx": "idx",
    "csv": "csv_files",
    "npz": "npz",
    "cifar": "cifar_pickles",
    "folder": "image_folder",
}


class Sized:
    """The image shape and class count of a dataclass holding x_train and class_names."""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class Images(Sized):
    x_train: np.ndarray  # uint8, (N, height, width, channels)
    y_train: np.ndarray  # int64 class indices, (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None = None  # None: the dataset's names, or "0".."K-1"
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of what was read
    skipped: list[str] = field(default_factory=list)  # unreadable files skipped on request

    def fingerprint(self) -> dict:
        """sha256 of the pixels and labels (the same data gives the same hash whatever the
        file format), and of each file read."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).data)
        return {"data_sha256": digest.hexdigest(), "files": self.files}


def load_images(data_config) -> Images:
    """Read the dataset the config names and check that it is usable for classification."""
    module = importlib.import_module(f"cnnclf.data.{SOURCE_MODULES[data_config.source]}")
    images = module.load(data_config)
    _check(images, data_config)
    return images


def _check(images: Images, cfg) -> None:
    where = cfg.path or f"the {cfg.source} {cfg.dataset} dataset"
    for part in ("train", "test"):
        x, y = getattr(images, f"x_{part}"), getattr(images, f"y_{part}")
        if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.dtype != np.uint8:
            raise DataError(f"{where}: {part} images have shape {x.shape} and dtype {x.dtype}; "
                            f"expected uint8 (N, height, width, 1 or 3)")
        if len(x) != len(y):
            raise DataError(f"{where}: {len(x)} {part} images but {len(y)} labels; they must match one to one")
        if len(x) == 0:
            raise DataError(f"{where}: the {part} set is empty")
    if images.x_train.shape[1:] != images.x_test.shape[1:]:
        raise DataError(f"{where}: train images are {_shape(images.x_train)} but test images are "
                        f"{_shape(images.x_test)}; both sets must have the same image shape")
    known = KNOWN.get(cfg.dataset)
    if known and images.shape != known.shape:
        raise DataError(f"{where}: images are {_shape(images.x_train)}, but {cfg.dataset} images are "
                        f"{'x'.join(map(str, known.shape))}; set data.dataset: custom or fix data.path")
    if images.class_names is None:
        count = len(known.class_names) if known else int(images.y_train.max()) + 1
        images.class_names = list(known.class_names) if known else [str(i) for i in range(count)]
    elif known and images.class_names != list(known.class_names):
        # Folder names must be the dataset's classes (or 0..K-1), so label i means class i.
        if images.class_names != [str(i) for i in range(len(known.class_names))]:
            raise DataError(f"{where}: classes {', '.join(images.class_names)} are not the {cfg.dataset} classes "
                            f"({', '.join(known.class_names)}, or 0-{len(known.class_names) - 1}); "
                            f"rename them or set data.dataset: custom")
        images.class_names = list(known.class_names)
    k = images.num_classes
    for part in ("train", "test"):
        y = getattr(images, f"y_{part}")
        bad = (y < 0) | (y >= k)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: {part} label {int(y[i])} (item {i}) is outside the class range 0-{k - 1}; "
                            f"fix the labels or set data.dataset: custom")
    missing = sorted(set(range(k)) - set(np.unique(images.y_train).tolist()))
    if missing:
        names = ", ".join(images.class_names[i] for i in missing)
        raise DataError(f"{where}: classes missing from the training set: {names}; "
                        f"every class needs training images")


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

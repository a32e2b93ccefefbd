"""Image folders: train/<class>/<image> and test/<class>/<image>, on disk or in a zip.

Class names are the folder names, sorted. Grayscale or RGB and the image size come from
data.image_shape (images are converted and resized to it) or from the first image.
Large sets are read and decoded by a pool of processes, one share of the files each
(threads would serialize on the GIL: small images are mostly Python work to decode).
The workers are forked: they run only Pillow, zipfile and hashlib, never TensorFlow, so
forking a process that has started TensorFlow's threads is safe here (PyTorch's DataLoader
workers rely on the same). Where fork is unavailable, decoding stays in-process.
"""

import hashlib
import io
import multiprocessing
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from cnnclf.data.images import Images
from cnnclf.errors import DataError

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
PARALLEL_FROM = 4000  # images; below this, starting worker processes costs more than it saves


def load(cfg) -> Images:
    path = Path(cfg.path)
    if not path.exists():
        raise DataError(f"{path}: no such folder or zip; data.path must hold train/<class>/ and test/<class>/")
    train = _Tree(path, "train")
    test = _Tree(Path(cfg.test_path), None) if cfg.test_path is not None else _Tree(path, "test")
    class_names = sorted(train.classes)
    if sorted(test.classes) != class_names:
        missing, extra = sorted(set(class_names) - set(test.classes)), sorted(set(test.classes) - set(class_names))
        raise DataError(f"{path}: test classes differ from train classes (missing in test: "
                        f"{', '.join(missing) or 'none'}; only in test: {', '.join(extra) or 'none'})")
    shape = tuple(cfg.image_shape) if cfg.image_shape else train.first_shape(class_names)
    skipped: list[str] = []
    x_train, y_train, train_sha = train.decode(class_names, shape, bool(cfg.image_shape), cfg.skip_bad_images, skipped)
    x_test, y_test, test_sha = test.decode(class_names, shape, bool(cfg.image_shape), cfg.skip_bad_images, skipped)
    return Images(x_train, y_train, x_test, y_test, class_names=class_names,
                  files={f"{train.where} ({len(y_train)} images)": train_sha,
                         f"{test.where} ({len(y_test)} images)": test_sha},
                  skipped=skipped)


class _Tree:
    """The image files of one part (train or test) of a folder or zip, by class."""

    def __init__(self, path: Path, part: str | None):
        self.path = path
        self.archive = path if path.is_file() and zipfile.is_zipfile(path) else None
        self.where = f"{path}" + (f" ({part}/)" if part else "")
        self.classes = self._zip_classes(part) if self.archive else self._dir_classes(part)
        if not self.classes:
            raise DataError(f"{self.where}: no class folders; expected {part or '.'}/<class>/<image files>")
        for name, files in self.classes.items():
            if not files:
                raise DataError(f"{self.where}: class folder {name!r} has no images; add some or remove the folder")

    def _dir_classes(self, part) -> dict[str, list[str]]:
        root = self.path / part if part else self.path
        if not root.is_dir():
            raise DataError(f"{self.path}: no {part or 'test'} folder; expected {part or 'test'}/<class>/<images>")
        return {d.name: sorted(str(f) for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
                for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}

    def _zip_classes(self, part) -> dict[str, list[str]]:
        with zipfile.ZipFile(self.archive) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
        marker = f"{part}/"
        prefix = next((n[: n.index(marker)] for n in names if n.startswith(marker) or f"/{marker}" in n), None)
        if prefix is None:
            raise DataError(f"{self.path}: no {part}/ folder in the zip; expected {part}/<class>/<images>")
        classes: dict[str, list[str]] = {}
        for name in sorted(names):
            rest = name[len(prefix) + len(marker):].split("/") if name.startswith(prefix + marker) else []
            if len(rest) == 2 and not rest[0].startswith(".") and not rest[1].startswith("."):
                classes.setdefault(rest[0], []).append(name)
        return classes

    def first_shape(self, class_names) -> tuple[int, int, int]:
        first = self.classes[class_names[0]][0]
        try:
            with Image.open(io.BytesIO(_read(self.archive, [first])[0])) as image:
                return image.height, image.width, 1 if image.mode in GRAY_MODES else 3
        except DECODE_ERRORS as e:
            raise DataError(f"{self._name(first)}: not a readable image ({e}); the first image decides the image "
                            f"shape, so set data.image_shape or remove the file") from None

    def decode(self, class_names, shape, resize, skip_bad, skipped) -> tuple[np.ndarray, np.ndarray, str]:
        """All images as uint8 (N, *shape), their labels, and a sha256 of the files read."""
        files = [(name, label) for label, c in enumerate(class_names) for name in self.classes[c]]
        names = [name for name, _ in files]
        parallel = len(files) >= PARALLEL_FROM and "fork" in multiprocessing.get_all_start_methods()
        workers = min(os.cpu_count() or 1, 8) if parallel else 1
        shares = [(self.archive, names[i::workers], shape, resize) for i in range(workers)]
        if workers == 1:
            done = [_decode_share(*shares[0])]
        else:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                done = list(pool.map(_decode_share, *zip(*shares)))
        decoded, digests = [None] * len(files), [None] * len(files)
        for i, (pixels, hashes) in enumerate(done):
            decoded[i::workers], digests[i::workers] = pixels, hashes
        images, labels = [], []
        for (name, label), pixels in zip(files, decoded):
            if isinstance(pixels, str):
                if not skip_bad:
                    raise DataError(f"{self._name(name)}: not a readable image ({pixels}); remove it or set "
                                    f"data.skip_bad_images: true to skip and count such files")
                skipped.append(self._name(name))
                continue
            if pixels.shape != shape:
                raise DataError(f"{self._name(name)}: image is {_size(pixels.shape)} but the first image is "
                                f"{_size(shape)}; set data.image_shape: [height, width, channels] to resize them all")
            images.append(pixels)
            labels.append(label)
        if not images:
            raise DataError(f"{self.where}: no readable images")
        return np.stack(images), np.asarray(labels, np.int64), hashlib.sha256(b"".join(digests)).hexdigest()

    def _name(self, name: str) -> str:
        return f"{self.archive}:{name}" if self.archive else name


def _read(archive, names: list[str]) -> list[bytes]:
    if archive is None:
        return [Path(name).read_bytes() for name in names]
    with zipfile.ZipFile(archive) as z:
        return [z.read(name) for name in names]


def _decode_share(archive, names, shape, resize):
    """Read and decode some files (in a worker process): pixels or an error text, and sha256s."""
    pixels, hashes = [], []
    for name, data in zip(names, _read(archive, names)):
        hashes.append(hashlib.sha256(name.encode() + data).digest())
        try:
            pixels.append(decode_image(data, shape, resize))
        except DECODE_ERRORS as e:
            pixels.append(f"{e.__class__.__name__}: {e}")
    return pixels, hashes


def decode_image(data: bytes, shape: tuple[int, int, int], resize: bool = True) -> np.ndarray:
    """Encoded image bytes -> uint8 (height, width, channels), converted to the shape's
    channels and, when `resize`, to its size. Raises one of DECODE_ERRORS."""
    height, width, channels = shape
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        if resize and image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


def _size(shape) -> str:
    return "x".join(map(str, shape))

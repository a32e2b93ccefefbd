"""Image folders: train/<class>/<image> and test/<class>/<image>, on disk or in a zip.

Class names are the folder names, sorted. Grayscale or RGB and the image size come from
data.image_shape (images are converted and resized to it) or from the first image.
Files are decoded in parallel threads (Pillow releases the GIL while decoding).
"""

import hashlib
import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from cnnclf.data.images import Images
from cnnclf.errors import DataError

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def load(cfg) -> Images:
    path = Path(cfg.path)
    if not path.exists():
        raise DataError(f"{path}: no such folder or zip; data.path must hold train/<class>/ and test/<class>/")
    digest = hashlib.sha256()
    train = _read_tree(path, "train", digest)
    if cfg.test_path is not None:
        test = _read_tree(Path(cfg.test_path), None, digest)
    else:
        test = _read_tree(path, "test", digest)
    class_names = sorted(train)
    if sorted(test) != class_names:
        missing, extra = sorted(set(class_names) - set(test)), sorted(set(test) - set(class_names))
        raise DataError(f"{path}: test classes differ from train classes (missing in test: "
                        f"{', '.join(missing) or 'none'}; only in test: {', '.join(extra) or 'none'})")
    decoder = _Decoder(cfg.image_shape, cfg.skip_bad_images)
    x_train, y_train = decoder.decode(train, class_names)
    x_test, y_test = decoder.decode(test, class_names)
    return Images(x_train, y_train, x_test, y_test, class_names=class_names,
                  files={str(path) + ("" if cfg.test_path is None else f" + {cfg.test_path}"): digest.hexdigest()},
                  skipped=decoder.skipped)


def _read_tree(path: Path, part: str | None, digest) -> dict[str, list[tuple[str, bytes]]]:
    """{class: [(display name, file bytes), ...]} for one part (train/test) of a folder or zip."""
    if path.is_file() and zipfile.is_zipfile(path):
        files = _zip_members(path, part)
    else:
        root = path / part if part else path
        if not root.is_dir():
            raise DataError(f"{path}: no {part or 'test'} folder; expected {part or 'test'}/<class>/<images>")
        files = {d.name: [(str(f), f.read_bytes()) for f in sorted(d.iterdir()) if f.is_file()
                          and not f.name.startswith(".")]
                 for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    where = f"{path}" + (f" ({part}/)" if part else "")
    if not files:
        raise DataError(f"{where}: no class folders; expected {part or '.'}/<class>/<image files>")
    for name, members in files.items():
        if not members:
            raise DataError(f"{where}: class folder {name!r} has no images; add some or remove the folder")
        for display, data in members:
            digest.update(display.encode() + data)
    return files


def _zip_members(path: Path, part: str | None) -> dict[str, list[tuple[str, bytes]]]:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        parts = [PurePosixPath(n).parts for n in names]
        if part is not None:  # the tree may sit under a top folder: find where <part>/ starts
            depth = next((p.index(part) for p in parts if part in p[:-2]), None)
            if depth is None:
                raise DataError(f"{path}: no {part}/ folder in the zip; expected {part}/<class>/<images>")
            chosen = [(n, p[depth + 1:]) for n, p in zip(names, parts) if p[depth:depth + 1] == (part,)]
        else:
            chosen = [(n, p[-2:]) for n, p in zip(names, parts)]
        files: dict[str, list[tuple[str, bytes]]] = {}
        for name, rest in sorted(chosen):
            if len(rest) == 2 and not rest[1].startswith(".") and not rest[0].startswith("."):
                files.setdefault(rest[0], []).append((f"{path}:{name}", archive.read(name)))
        return files


class _Decoder:
    def __init__(self, image_shape, skip_bad: bool):
        self.shape = tuple(image_shape) if image_shape else None
        self.resize = image_shape is not None  # else every image must have the first one's size
        self.skip_bad = skip_bad
        self.skipped: list[str] = []

    def decode(self, files: dict, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        items = [(display, data, label) for label, name in enumerate(class_names) for display, data in files[name]]
        if self.shape is None:
            self.shape = _shape_of(items[0][1], items[0][0])
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            decoded = list(pool.map(self._one, items, chunksize=256))
        images, labels = [], []
        for (display, _, label), pixels in zip(items, decoded):
            if isinstance(pixels, str):
                if not self.skip_bad:
                    raise DataError(f"{display}: not a readable image ({pixels}); remove it or set "
                                    f"data.skip_bad_images: true to skip and count such files")
                self.skipped.append(display)
                continue
            if pixels.shape != self.shape:
                raise DataError(f"{display}: image is {_size(pixels.shape)} but the first image is "
                                f"{_size(self.shape)}; set data.image_shape: [height, width, channels] "
                                f"to resize them all")
            images.append(pixels)
            labels.append(label)
        if not images:
            raise DataError(f"{items[0][0]}: no readable images in this set")
        return np.stack(images), np.asarray(labels, np.int64)

    def _one(self, item) -> np.ndarray | str:
        try:
            return decode_image(item[1], self.shape, self.resize)
        except DECODE_ERRORS as e:
            return f"{e.__class__.__name__}: {e}"


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


def _shape_of(data: bytes, display: str) -> tuple[int, int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.height, image.width, 1 if image.mode in GRAY_MODES else 3
    except DECODE_ERRORS as e:
        raise DataError(f"{display}: not a readable image ({e}); the first image decides the image shape, "
                        f"so set data.image_shape or remove the file") from None


def _size(shape) -> str:
    return "x".join(map(str, shape))

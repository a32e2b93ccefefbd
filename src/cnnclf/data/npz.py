"""A numpy .npz file with x_train, y_train, x_test, y_test arrays (read without pickle)."""

import zipfile
from pathlib import Path

import numpy as np

from cnnclf.data.files import check_zip_entry
from cnnclf.data.images import Images, hash_files, with_channels
from cnnclf.data.memory import machine_memory_mb
from cnnclf.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load(cfg) -> Images:
    path = Path(cfg.path)
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file; check data.path")
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():  # before np.load inflates any of them
                check_zip_entry(info, f"{path}:{info.filename}", machine_memory_mb() * 2**20 // 2)
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in KEYS if k not in arrays.files]
            if missing:
                raise DataError(
                    f"{path}: no {', '.join(missing)} array; an npz dataset holds "
                    f"{', '.join(KEYS)} (it has {', '.join(arrays.files) or 'nothing'})"
                )
            x_train, y_train, x_test, y_test = (arrays[k] for k in KEYS)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file of plain arrays ({e})") from None
    return Images(
        x_train=_pixels(path, "x_train", x_train),
        y_train=_labels(path, "y_train", y_train),
        x_test=_pixels(path, "x_test", x_test),
        y_test=_labels(path, "y_test", y_test),
        files=hash_files([path]),
    )


def _pixels(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype != np.uint8:
        if x.size and (
            not np.issubdtype(x.dtype, np.number) or x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x))
        ):
            raise DataError(
                f"{path}: {key} must hold whole pixel values 0-255 (dtype {x.dtype}, "
                f"range {x.min()}-{x.max()}); store the images as uint8"
            )
        x = x.astype(np.uint8)
    return with_channels(x)


def _labels(path: Path, key: str, y: np.ndarray) -> np.ndarray:
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: {key} must be a 1-D array of integer class indices, got shape {y.shape} and dtype {y.dtype}"
        )
    return y.astype(np.int64)

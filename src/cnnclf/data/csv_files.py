"""Kaggle-style CSV files: a header row, one label column and one column per pixel.

Pixels are in row-major (height, width, channels) order. 784 columns mean 28x28x1 and
3072 mean 32x32x3 unless data.image_shape says otherwise.
"""

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from cnnclf.data.images import Images, hash_files
from cnnclf.errors import DataError

INFERRED_SHAPES = {784: (28, 28, 1), 3072: (32, 32, 3)}


def load(cfg) -> Images:
    x_train, y_train = read_csv(Path(cfg.path), cfg.label_column, cfg.image_shape)
    x_test, y_test = read_csv(Path(cfg.test_path), cfg.label_column, cfg.image_shape)
    return Images(x_train, y_train, x_test, y_test, files=hash_files([cfg.path, cfg.test_path]))


def read_csv(path: Path, label_column: str, image_shape) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: no such CSV file; check data.path and data.test_path")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel starts UTF-8 files with a BOM
            header = next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable CSV file ({e.__class__.__name__}); save it as UTF-8 CSV") from None
    if label_column not in header:
        raise DataError(
            f"{path}: no label column {label_column!r} in the header (it starts "
            f"{', '.join(header[:3])}, ...); set data.label_column"
        )
    pixels = [c for c in header if c != label_column]
    shape = _shape(path, len(pixels), image_shape, _not_a_pixel(pixels))
    dtypes = {c: np.uint8 for c in pixels} | {label_column: np.int64}
    try:
        # Explicit uint8 columns: pandas parses straight into small arrays and refuses
        # (rather than wraps) anything that is not a whole number in 0-255.
        frame = pd.read_csv(path, dtype=dtypes, engine="c", encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError) as e:
        raise _diagnose(path, header, label_column) or DataError(f"{path}: cannot parse the CSV ({e})") from None
    labels = frame.pop(label_column).to_numpy()
    images = frame.to_numpy(dtype=np.uint8).reshape(-1, *shape)
    return images, labels


def _shape(path: Path, columns: int, image_shape, extra: str | None = None) -> tuple:
    if image_shape is not None:
        if int(np.prod(image_shape)) != columns:
            raise DataError(
                f"{path}: {columns} pixel columns do not fit data.image_shape "
                f"{list(image_shape)} ({int(np.prod(image_shape))} pixels)"
            )
        return tuple(image_shape)
    if columns not in INFERRED_SHAPES:
        if columns - 1 in INFERRED_SHAPES and extra is not None:
            raise DataError(
                f"{path}: column {extra!r} is not a pixel ({columns} columns besides the label, one more "
                f"than {columns - 1} pixels); remove that column"
            )
        raise DataError(f"{path}: {columns} pixel columns; set data.image_shape: [height, width, channels]")
    return INFERRED_SHAPES[columns]


def _not_a_pixel(columns: list[str]) -> str | None:
    """The one column that is not named like the others (pixel1.. or 1..): a saved row index, say."""

    def kind(name: str) -> str:
        return "".join("9" if c.isdigit() else c for c in name.strip().lower()).rstrip("9")

    kinds = [kind(c) for c in columns]
    common = max(set(kinds), key=kinds.count)
    odd = [c for c, k in zip(columns, kinds) if k != common]
    return odd[0] if len(odd) == 1 else None


def _diagnose(path: Path, header: list[str], label_column: str) -> DataError | None:
    """Find the first bad row (slowly, only after the fast parser failed) and say what is wrong."""
    with open(path, newline="") as f:
        rows = csv.reader(f)
        next(rows)
        for line, row in enumerate(rows, start=2):
            if len(row) != len(header):
                return DataError(row_length(path, line, row, header))
            for column, value in zip(header, row):
                try:
                    number = int(value)
                except ValueError:
                    return DataError(f"{path}:{line}: column {column} holds {value!r}, not a whole number")
                if column != label_column and not 0 <= number <= 255:
                    return DataError(f"{path}:{line}: column {column} holds {number}, outside the pixel range 0-255")
    return None


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray, label_column: str = "label") -> None:
    """Write images as a Kaggle-style CSV: label, pixel1, pixel2, ... (row-major H, W, C)."""
    flat = images.reshape(len(images), -1)
    header = ",".join([label_column] + [f"pixel{i + 1}" for i in range(flat.shape[1])])
    table = np.column_stack([labels, flat]).astype(np.int64)
    np.savetxt(path, table, fmt="%d", delimiter=",", header=header, comments="")


def row_length(path, line: int, row: list, header: list) -> str:
    """The message for a CSV row whose values do not match its header (pixel CSVs and manifests)."""
    return f"{path}:{line}: row has {len(row)} values, the header has {len(header)}; fix or remove that row"

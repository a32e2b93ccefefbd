"""A manifest: a CSV file listing image files and their labels.

    path,label,split
    cats/001.jpg,cat,train
    dogs/042.png,dog,test
    dogs/007.png,dog,val

Paths are relative to the CSV's folder (absolute ones are taken as they are); labels are class
names (strings) or class indices; the split column (train, val|valid|validation or test, as the
folder layout names them) is optional: without it a test set is carved out (data.test_split), and
without validation rows validation is carved out of the training rows (data.validation_split).
Column names: data.path_column, data.label_column, data.split_column. Read with the csv module:
pandas, imported before TensorFlow, would stay resident for the whole run.
"""

import csv
import os
from pathlib import Path, PurePosixPath

import numpy as np

from cnnclf.data.csv_files import row_length
from cnnclf.data.files import FolderReader, ImageFiles, checked_name
from cnnclf.data.image_folder import VALIDATION_FOLDERS
from cnnclf.errors import DataError, listing

SPLITS = {"train": "train", "test": "test", **dict.fromkeys(VALIDATION_FOLDERS, "validation")}  # as folders


def list_files(cfg) -> ImageFiles:
    path = Path(cfg.path)
    if not path.is_file():
        raise DataError(
            f"{path}: no such manifest file; data.path must be a CSV with {cfg.path_column} and "
            f"{cfg.label_column} columns"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(
            f"{path}: not a readable CSV file ({e.__class__.__name__}: {e}); save it as UTF-8 CSV"
        ) from None
    if not rows:
        raise DataError(f"{path}: the manifest is empty; it needs a header row ({cfg.path_column},{cfg.label_column})")
    header = [h.strip() for h in rows[0]]
    columns = {}
    for key, name in (("path_column", cfg.path_column), ("label_column", cfg.label_column)):
        if name not in header:
            raise DataError(f"{path}: no {name!r} column in the header ({listing(header, 6)}); set data.{key}")
        columns[key] = header.index(name)
    split_at = header.index(cfg.split_column) if cfg.split_column in header else None
    if split_at is not None and cfg.test_split is not None:
        raise DataError(
            f"{path}: the manifest has a {cfg.split_column!r} column, which says the test set; remove "
            f"data.test_split (or the column)"
        )
    root = path.parent
    names: list[str] = []
    labels: list[str] = []
    parts: list[str] = []
    lines: dict[str, list[tuple[int, str]]] = {}  # each file (its real path) -> (line, name as written)
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(row_length(path, line, row, header))
        name = checked_name(_normalized(row[columns["path_column"]].strip(), root), f"{path}:{line}")
        label = row[columns["label_column"]].strip()
        if not name or name == "." or not label:
            raise DataError(
                f"{path}:{line}: the row has no {'path' if not name or name == '.' else 'label'}; "
                f"fill it in or remove the row"
            )
        lines.setdefault(os.path.realpath(root / name), []).append((line, name))
        written = row[split_at] if split_at is not None else None
        part = "" if written is None else SPLITS.get(written.strip().lower())
        if part is None:
            raise DataError(f"{path}:{line}: split {written!r} is not train, val or test")
        names.append(name)
        labels.append(label)
        parts.append(part)
    repeated = min((found for found in lines.values() if len(found) > 1), key=lambda f: f[1][0], default=None)
    if repeated:
        (first, _), (again, name) = repeated[:2]
        raise DataError(
            f"{path}:{again}: {name} is listed again (first on line {first}, {len(repeated)} rows in all); "
            f"list each file once"
        )
    if not names:
        raise DataError(f"{path}: the manifest lists no files")
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataError(
            f"{path}: {len(missing):,} of {len(names):,} listed files are missing (relative to "
            f"{root}): {listing(missing, 3)}; fix the paths or remove the rows"
        )
    class_names, indices = _classes(labels)
    origins = {part: f"the manifest's {cfg.split_column} column" for part in set(parts) if part}
    return ImageFiles(str(path), FolderReader(root), names, indices, np.asarray(parts), class_names, origins)


def _normalized(name: str, root: Path) -> str:
    """A listed path written one way: relative to the manifest's folder where it lies inside it, with
    '..' and '.' resolved (img/../img/x.jpg and /data/img/x.jpg are img/x.jpg beside /data/m.csv)."""
    if not name:
        return name
    full = os.path.normpath(root / name)
    inside = os.path.relpath(full, root)
    return PurePosixPath(full if inside.startswith("..") else inside).as_posix()


def _classes(labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Class names and each row's class index: whole-number labels are indices (0..K-1, names '0'..),
    any other labels are names, sorted."""
    if all(label.isdigit() for label in labels):
        values = np.asarray([int(label) for label in labels], np.int64)
        return [str(i) for i in range(int(values.max()) + 1)], values
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    return names, np.asarray([index[label] for label in labels], np.int64)

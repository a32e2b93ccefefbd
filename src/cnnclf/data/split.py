"""Which image is in which split (train, validation, test), seeded, and the Splits training uses.

Whole arrays (idx, csv, npz, ...) are split by index: data.limit_* take stratified subsets and
validation_split holds out a stratified part of train (scikit-learn, imported only here: loaded,
it holds 124 MB for the whole run).

Image files are split by a seeded hash of each file's name: a file lands in the test set when its
hash falls below data.test_split (where the data has no test part), in validation when a second
hash falls below validation_split. Each file's split depends on nothing but its own name and the
seed, so adding images later leaves every earlier image where it was, and every class is split in
the same proportion (stratified in expectation). The assignment is saved in the run directory
(split.csv) and reused by evaluate, resume and `train --from`.
"""

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnclf.data.files import ImageFiles
from cnnclf.data.images import Images
from cnnclf.data.parts import InMemory, Part
from cnnclf.errors import ConfigError, DataError, listing

PARTS = ("train", "validation", "test")
DEFAULT_TEST_SPLIT = 0.2


@dataclass
class Splits:
    train: Part
    validation: Part  # the test part itself when data.validation is test
    test: Part
    class_names: list[str]
    fingerprint: str  # sha256 of the assignment (of the parts loaded): the same split gives the same hash
    table: list[tuple[str, str, str]] | None = None  # image files: (file, class, split) rows of split.csv

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.train.shape

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


# --- whole arrays -----------------------------------------------------------------------------


def split_arrays(
    images: Images, cfg, seed: int, limits: tuple[int | None, int | None], need: tuple[str, ...] = PARTS
) -> Splits:
    """Apply the limits (train, test) and hold out the validation set, as `cfg` (DataConfig) says.
    `need`: without train and validation (evaluate), those parts are left empty, which spares
    importing scikit-learn (2.5 s)."""
    training = "train" in need or "validation" in need
    train = _subset(images.y_train, limits[0], seed, "data.limit_train") if training else np.array([], np.int64)
    test = _subset(images.y_test, limits[1], seed, "data.limit_test")
    val = np.array([], np.int64)
    if cfg.validation == "split" and training:
        from sklearn.model_selection import train_test_split

        try:
            train, val = train_test_split(
                train, test_size=cfg.validation_split, random_state=seed, stratify=images.y_train[train]
            )
        except ValueError as e:
            raise DataError(
                f"cannot hold out a stratified validation set of {cfg.validation_split:g} from "
                f"{len(train)} training images in {images.num_classes} classes ({e}); raise "
                f"data.validation_split or data.limit_train, or set data.validation: test"
            ) from None
        train, val = np.sort(train), np.sort(val)
    digest = hashlib.sha256()
    for indices in (train, val, test):
        digest.update(np.asarray(indices, np.int64).tobytes())
    test_part = InMemory(images.x_test[test], images.y_test[test])
    validation = InMemory(images.x_train[val], images.y_train[val]) if cfg.validation == "split" else test_part
    return Splits(
        InMemory(images.x_train[train], images.y_train[train]),
        validation,
        test_part,
        list(images.class_names or []),
        digest.hexdigest(),
    )


def _subset(labels: np.ndarray, limit: int | None, seed: int, key: str) -> np.ndarray:
    """Indices of a stratified subset of `limit` items (all of them when limit is None or larger)."""
    everything = np.arange(len(labels))
    if limit is None or limit >= len(labels):
        return everything
    classes = len(np.unique(labels))
    if limit < classes:
        raise ConfigError(
            f"{key}: {limit} is smaller than the number of classes ({classes}); "
            f"a stratified subset needs at least one image per class"
        )
    from sklearn.model_selection import train_test_split

    chosen, _ = train_test_split(everything, train_size=limit, random_state=seed, stratify=labels)
    return np.sort(chosen)


# --- image files ------------------------------------------------------------------------------


def assign_files(files: ImageFiles, cfg, seed: int, limits: tuple[int | None, int | None]) -> np.ndarray:
    """Each file's split: 'train', 'validation', 'test', or '' (left out by a limit). A part the data
    holds (test/, val/, a split column) is taken as it is; a part it does not is carved out of the
    training files by a seeded hash of their names. Says where each part came from."""
    parts = files.parts.astype(object)
    if files.has_part("test"):
        if cfg.test_split is not None:
            raise DataError(
                f"{files.where}: the data has its own test part (test/ or a split column); remove data.test_split"
            )
    else:
        share = cfg.test_split or DEFAULT_TEST_SPLIT
        pool = parts != "validation"
        parts[pool] = np.where(_unit_hash(files.names, seed, "test")[pool] < share, "test", "train")
    for label in range(len(files.class_names)):
        if not np.any((parts == "train") & (files.labels == label)):
            raise DataError(
                f"{files.where}: class {files.class_names[label]} has no training images once the test "
                f"set is set aside; add images of it"
            )
    own_validation = files.has_part("validation")
    if own_validation and cfg.validation == "test":
        raise DataError(
            f"{files.where}: the data has its own validation part ({files.origins['validation']}); remove "
            f"data.validation: test"
        )
    if cfg.validation == "split" and not own_validation:
        held = _unit_hash(files.names, seed, "validation")
        parts[(parts == "train") & (held < cfg.validation_split)] = "validation"
        for label in range(len(files.class_names)):  # a class keeps at least one training image
            members = np.flatnonzero(np.isin(parts, ("train", "validation")) & (files.labels == label))
            if not np.any(parts[members] == "train"):
                parts[members[np.argmax(held[members])]] = "train"
    order = _unit_hash(files.names, seed, "limit")
    pools = (("train", "validation") if not own_validation else ("train",), ("test",))
    for limit, pool, key in zip(limits, pools, ("data.limit_train", "data.limit_test")):
        if limit is not None:
            _limit(parts, files.labels, order, pool, limit, key)
    for part in ("train", "test"):
        if not np.any(parts == part):
            raise DataError(f"{files.where}: the {part} set is empty; add images or change data.test_split")
    return parts.astype(str)


def origins(files: ImageFiles, parts: np.ndarray, cfg) -> str:
    """Where each part came from, in one line: 'splits: train 120 (train/), validation 30 (val/), test 30
    (carved by file name: data.test_split 0.2 of train/)'."""
    source = files.origins.get("train", "the files")
    carved = {
        "test": f"data.test_split {cfg.test_split or DEFAULT_TEST_SPLIT:g} of {source}",
        "validation": f"data.validation_split {cfg.validation_split:g} of {source}",
    }
    said = []
    for part in PARTS:
        if part == "validation" and cfg.validation == "test":
            said.append("validation: the test set (data.validation: test)")
            continue
        where = files.origins.get(part) or (f"carved by file name: {carved[part]}" if part in carved else "the data")
        said.append(f"{part} {int(np.sum(parts == part)):,} ({where})")
    return "splits: " + ", ".join(said)


def _unit_hash(names: list[str], seed: int, purpose: str) -> np.ndarray:
    """A number in [0, 1) for each name, fixed by the name, the seed and the purpose."""
    values = [
        int.from_bytes(hashlib.sha256(f"{seed}\0{purpose}\0{name}".encode()).digest()[:8], "big") for name in names
    ]
    return np.asarray(values, np.float64) / 2.0**64


def _limit(parts: np.ndarray, labels: np.ndarray, order: np.ndarray, pool: tuple, limit: int, key: str) -> None:
    """Keep `limit` files of `pool`, the same share of each class (largest remainders), lowest hash first."""
    inside = np.isin(parts, pool)
    total = int(inside.sum())
    if limit >= total:
        return
    classes = len(np.unique(labels[inside]))
    if limit < classes:
        raise ConfigError(
            f"{key}: {limit} is smaller than the number of classes ({classes}); "
            f"a stratified subset needs at least one image per class"
        )
    counts = np.bincount(labels[inside], minlength=labels.max() + 1)
    quota = counts * limit / total
    keep = np.floor(quota).astype(int)
    keep[np.argsort(-(quota - keep), kind="stable")[: limit - keep.sum()]] += 1
    for label, count in enumerate(keep):
        members = np.flatnonzero(inside & (labels == label))
        parts[members[np.argsort(order[members], kind="stable")][count:]] = ""


def split_table(files: ImageFiles, parts: np.ndarray) -> list[tuple[str, str, str]]:
    return [(files.names[i], files.class_names[files.labels[i]], str(parts[i])) for i in range(len(files)) if parts[i]]


def write_split(table: list[tuple[str, str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "class", "split"])
    writer.writerows(table)
    return out.getvalue()


def read_split(path: Path, files: ImageFiles) -> np.ndarray:
    """The parts a run's split.csv gave each file; a file it lists that is gone or has changed class is an error."""
    index = {name: i for i, name in enumerate(files.names)}
    parts = np.full(len(files), "", object)
    gone, moved = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            i = index.get(row["file"])
            if i is None:
                gone.append(row["file"])
            elif files.class_names[files.labels[i]] != row["class"]:
                moved.append(row["file"])
            elif row["split"] in PARTS:
                parts[i] = row["split"]
    if gone or moved:
        what = (
            f"{len(gone):,} {'is' if len(gone) == 1 else 'are'} gone ({listing(gone, 3)})"
            if gone
            else f"{len(moved):,} changed class ({listing(moved, 3)})"
        )
        raise DataError(
            f"{path}: of the files the run was split into, {what} in {files.where}; restore them, or train a new run"
        )
    return parts.astype(str)

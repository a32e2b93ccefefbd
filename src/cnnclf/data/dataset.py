"""load(cfg, seed): the data a config names, read, checked, split and stored, ready for tf.data."""

import hashlib
import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnclf.data.cache import cached
from cnnclf.data.datasets import KNOWN
from cnnclf.data.decoding import DECODE_ERRORS, GRAY_MODES, image_header
from cnnclf.data.files import ImageFiles
from cnnclf.data.images import check_classes, load_images
from cnnclf.data.parts import InMemory, Part, Streamed, check_all, decode_all
from cnnclf.data.sources import SOURCES
from cnnclf.data.split import PARTS, Splits, assign_files, origins, read_split, split_arrays, split_table
from cnnclf.errors import DataError, plural
from cnnclf.reading import kind_of

log = logging.getLogger("cnnclf")

SMOKE_PER_CLASS = {"train": 20, "test": 10}  # images per class for --smoke


@dataclass
class Dataset:
    splits: Splits
    fingerprint: dict  # what env.json records of the data
    skipped: list[str] = field(default_factory=list)  # unreadable files skipped (data.skip_bad_images)
    limits: tuple[int | None, int | None] = (None, None)  # the (train, test) limits applied
    origins: str = ""  # image files: where each split came from (split.origins), for the log


def load(
    cfg, seed: int, smoke: bool = False, saved_split: Path | None = None, need: tuple[str, ...] = PARTS
) -> Dataset:
    """Read and check the data `cfg` (a DataConfig) names and split it (as `saved_split`, a run's
    split.csv, says, where given). `smoke`: a few images per class, picked before any is decoded.
    `need`: the parts to decode (image files) or to split off (arrays); the others stay empty."""
    source = SOURCES[cfg.source]
    check_kinds(cfg)
    check_cache(cfg)
    if not source.image_files:
        images = load_images(cfg)
        limits = _limits(cfg, images.num_classes, smoke)
        splits = split_arrays(images, cfg, seed, limits, need)
        fingerprint = {**images.fingerprint(), "skipped_files": images.skipped}
        return _done(Dataset(splits, fingerprint, images.skipped, limits))
    files, parts, limits = list_and_split(cfg, seed, smoke, saved_split)
    used = np.flatnonzero(parts != "")
    shape = tuple(cfg.image_shape) if cfg.image_shape else _first_shape(files, used)
    known = KNOWN.get(cfg.dataset)
    if known and shape != known.shape:
        raise DataError(
            f"{files.where}: images are {_size(shape)}, but {cfg.dataset} images are "
            f"{_size(known.shape)}; set data.dataset: custom or fix data.path"
        )
    storage = _storage(cfg, len(used) * int(np.prod(shape)))
    resize = cfg.image_shape is not None
    stored: dict[str, Part] = {}
    skipped: list[str] = []
    for part in PARTS:
        positions = np.flatnonzero(parts == part)
        if part == "validation" and cfg.validation == "test":
            continue
        if part not in need or not len(positions):
            stored[part] = InMemory(np.zeros((0, *shape), np.uint8), files.labels[:0])
            continue
        if storage == "memory":
            x, kept, missed = decode_all(files, positions, shape, cfg.resize, resize, cfg.skip_bad_images)
            stored[part] = InMemory(x, files.labels[kept])
        elif cfg.cache:
            stored[part], kept, missed = cached(
                files, positions, shape, cfg.resize, resize, cfg.skip_bad_images, Path(cfg.cache)
            )
        else:  # decoded during training: every file is decoded once now, so that none fails then
            kept, missed = check_all(files, positions, shape, cfg.resize, resize, cfg.skip_bad_images)
            stored[part] = Streamed(files, kept, shape, cfg.resize, resize)
        parts[np.setdiff1d(positions, kept)] = ""  # a skipped file is in no part, nor in split.csv
        skipped += missed
    if skipped and cfg.skip_bad_images:
        log.warning(
            f"skipped {plural(len(skipped), 'unreadable image file')} (data.skip_bad_images), the first: {skipped[0]}"
        )
    splits = Splits(
        stored["train"],
        stored.get("validation", stored["test"]),
        stored["test"],
        files.class_names,
        _hash_parts(files, parts),
        split_table(files, parts),
    )
    fingerprint = {
        "files_sha256": files.fingerprint(used),
        "files": {files.where: f"{len(used)} images"},
        "skipped_files": skipped,
        "storage": "cache" if storage == "stream" and cfg.cache else storage,
    }
    return _done(Dataset(splits, fingerprint, skipped, limits, origins(files, parts, cfg)))


def check_paths(cfg) -> None:
    """The files the config names exist, and data.cache can hold the cache (a quick check, before
    anything is read)."""
    check_kinds(cfg)
    for key, value in _paths(cfg):
        if not Path(value).exists():
            raise DataError(f"{value}: no such file or folder (data.{key}); check the path")
    check_cache(cfg)


def check_kinds(cfg) -> None:
    """The paths the config names are files or folders, not a FIFO (reading it would wait forever) or a
    device (a link to /dev/zero never ends); a relative one that is missing is said to be relative to
    the working folder, which is named (the config's own folder is not where it is looked for)."""
    for key, value in _paths(cfg):
        kind = kind_of(Path(value))
        if kind is not None:
            raise DataError(f"{value}: {kind}, not a file or folder (data.{key}); name the data's file or folder")
        if not Path(value).is_absolute() and not Path(value).exists():
            raise DataError(
                f"{value}: no such file or folder (data.{key}), relative to the working folder {Path.cwd()}; run "
                f"cnnclf from the folder it is relative to, or give the path from there or in full"
            )


def _paths(cfg) -> list[tuple[str, str]]:
    return [
        (key, getattr(cfg, key))
        for key in ("path", "test_path")
        if key in SOURCES[cfg.source].reads and getattr(cfg, key) is not None
    ]


def check_cache(cfg) -> None:
    """data.cache, where set, is a folder cnnclf may write into (or can become one)."""
    if cfg.cache is not None:
        cache = Path(cfg.cache)
        if cache.exists() and not cache.is_dir():
            raise DataError(f"{cache}: not a folder (data.cache); name a folder for the decoded pixels")
        existing = next(p for p in (cache, *cache.parents) if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise DataError(f"{existing}: cannot be written (data.cache: {cache}); name a folder you may write into")


def list_and_split(cfg, seed: int, smoke: bool = False, saved_split: Path | None = None):
    """Image files: their listing, checked, each file's split, and the limits applied."""
    files: ImageFiles = importlib.import_module(f"cnnclf.data.{SOURCES[cfg.source].module}").list_files(cfg)
    files.class_names = check_classes(files.class_names, files.labels, files.labels[:0], cfg, files.where)
    limits = _limits(cfg, len(files.class_names), smoke)
    parts = read_split(saved_split, files) if saved_split else assign_files(files, cfg, seed, limits)
    return files, parts, limits


def _done(dataset: Dataset) -> Dataset:
    dataset.fingerprint.update(split_sha256=dataset.splits.fingerprint, sizes=dataset.splits.sizes())
    return dataset


def _limits(cfg, num_classes: int, smoke: bool) -> tuple[int | None, int | None]:
    if smoke:
        return SMOKE_PER_CLASS["train"] * num_classes, SMOKE_PER_CLASS["test"] * num_classes
    return cfg.limit_train, cfg.limit_test


def _storage(cfg, pixel_bytes: int) -> str:
    if cfg.storage != "auto":
        return cfg.storage
    from cnnclf.data.memory import machine_memory_mb

    budget = machine_memory_mb() // 4 if cfg.memory_budget_mb == "auto" else cfg.memory_budget_mb
    chosen = "memory" if pixel_bytes <= budget * 2**20 else "stream"
    if chosen == "stream":
        log.info(
            f"data.storage auto: stream ({pixel_bytes / 2**20:,.0f} MB of decoded pixels > the "
            f"{budget:,} MB budget){'' if cfg.cache else '; data.cache: FOLDER decodes each file once'}"
        )
    return chosen


def _first_shape(files: ImageFiles, used: np.ndarray) -> tuple[int, int, int]:
    """The first file's size and colour, which every image must share when data.image_shape is not set."""
    first = int(used[0])
    try:
        with files.reader.open(files.names[first]) as stream:
            height, width, mode = image_header(stream)
    except DECODE_ERRORS as e:
        raise DataError(
            f"{files.describe(first)}: not a readable image ({e.__class__.__name__}); the first image "
            f"decides the image shape, so set data.image_shape or remove the file"
        ) from None
    return height, width, 1 if mode in GRAY_MODES else 3


def _hash_parts(files: ImageFiles, parts: np.ndarray) -> str:
    return hashlib.sha256("\n".join(f"{n}\0{p}" for n, p in zip(files.names, parts)).encode()).hexdigest()


def _size(shape) -> str:
    return "x".join(map(str, shape))

"""cnnclf data inspect: look at a dataset before training on it, and the grid of its images."""

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from cnnclf.data.dataset import list_and_split, load
from cnnclf.data.decoding import DECODE_ERRORS, GRAY_MODES, decode_image, image_header
from cnnclf.data.images import IMBALANCED, first_of_each_class
from cnnclf.data.sources import SOURCES
from cnnclf.errors import DataError
from cnnclf.reporting.figures import picture_path


def inspect(config, grid: Path) -> dict:
    """Class balance per split (with a warning above 3:1), image sizes, aspect ratios and colour
    modes, train/test duplicates, unreadable files, and a grid of training images per class (at
    `grid`: grid_path's)."""
    if SOURCES[config.data.source].image_files:
        found = _inspect_files(config, grid)
    else:
        found = _inspect_arrays(config, grid)
    counts = [c["train"] for c in found["class_balance"].values()]
    found["warnings"] = []
    if min(counts) and max(counts) / min(counts) > IMBALANCED:
        names = list(found["class_balance"])
        big, small = names[int(np.argmax(counts))], names[int(np.argmin(counts))]
        found["warnings"].append(
            f"classes are imbalanced: {big} has {max(counts) / min(counts):.1f} times the "
            f"training images of {small} ({max(counts)} against {min(counts)})"
            + ("" if config.train.class_weight == "balanced" else "; consider train.class_weight: balanced")
        )
    return found


def _inspect_arrays(config, path: Path) -> dict:
    splits = load(config.data, config.seed).splits
    parts = _parts(config, splits)
    train_hashes = {
        hashlib.sha256(image.tobytes()).digest() for image in splits.train.gather(np.arange(len(splits.train)))
    }
    test = splits.test.gather(np.arange(len(splits.test)))
    duplicates = [i for i, image in enumerate(test) if hashlib.sha256(image.tobytes()).digest() in train_hashes]
    grid = _grid(splits.train, splits.class_names, path)
    return {
        "image_shape": list(splits.shape),
        "value_range": {
            name: [int(p.gather(np.arange(len(p))).min(initial=255)), int(p.gather(np.arange(len(p))).max(initial=0))]
            for name, p in parts.items()
        },
        "sizes": {name: len(p) for name, p in parts.items()},
        "class_balance": _balance(parts, splits.class_names),
        "test_images_also_in_train": len(duplicates),
        "duplicate_test_indices": duplicates[:20],
        "unreadable_files": [],
        "grid": str(grid),
    }


def _inspect_files(config, path: Path) -> dict:
    files, assigned, _ = list_and_split(config.data, config.seed)
    sizes: Counter[str] = Counter()
    aspects: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    unreadable, digests = [], {}
    for i in np.flatnonzero(assigned != ""):
        name = files.names[i]
        try:
            data = files.reader.read(name)
            with files.reader.open(name) as stream:
                height, width, mode = image_header(stream)
            decode_image(data, (height, width, 1 if mode in GRAY_MODES else 3), resize=False)
        except DECODE_ERRORS:
            unreadable.append(files.describe(i))
            assigned[i] = ""
            continue
        sizes[f"{width}x{height}"] += 1
        aspects[f"{width / height:.2f}"] += 1
        modes[mode] += 1
        digests[i] = hashlib.sha256(data).digest()
    if not digests:
        raise DataError(f"{files.where}: no readable images")
    parts = {p: np.flatnonzero(assigned == p) for p in ("train", "validation", "test") if np.any(assigned == p)}
    train_hashes = {digests[i] for i in parts.get("train", []) if i in digests}
    duplicates = [files.names[i] for i in parts.get("test", []) if digests.get(i) in train_hashes]
    common = sizes.most_common(1)[0][0].split("x")
    shape = (
        list(config.data.image_shape)
        if config.data.image_shape
        else [int(common[1]), int(common[0]), 1 if all(m in GRAY_MODES for m in modes) else 3]
    )
    chosen = parts["train"][first_of_each_class(files.labels[parts["train"]], len(files.class_names))]
    size = (int(shape[0]), int(shape[1]), int(shape[2]))
    images = np.stack([decode_image(files.reader.read(files.names[i]), size, config.data.resize) for i in chosen])
    from cnnclf.data.parts import InMemory

    grid = _grid(InMemory(images, files.labels[chosen]), files.class_names, path)
    return {
        "image_shape": shape,
        "image_sizes": dict(sizes.most_common()),
        "aspect_ratios": dict(aspects.most_common()),
        "colour_modes": dict(modes.most_common()),
        "sizes": {name: len(p) for name, p in parts.items()},
        "class_balance": {
            name: {p: int(np.sum(files.labels[idx] == c)) for p, idx in parts.items()}
            for c, name in enumerate(files.class_names)
        },
        "test_images_also_in_train": len(duplicates),
        "duplicate_test_files": duplicates[:20],
        "unreadable_files": unreadable,
        "grid": str(grid),
    }


def _parts(config, splits) -> dict:
    if config.data.validation == "split":
        return {"train": splits.train, "validation": splits.validation, "test": splits.test}
    return {"train": splits.train, "test": splits.test}


def _balance(parts: dict, class_names: list[str]) -> dict:
    return {name: {p: int(np.sum(part.labels == c)) for p, part in parts.items()} for c, name in enumerate(class_names)}


def grid_path(config, out: Path | None = None) -> Path:
    """Where the grid of training images goes: `out`, or <config name>-data.png in the working folder;
    a file there that cnnclf did not draw is never replaced (checked before anything is read)."""
    return picture_path(Path(out or f"{config.name}-data.png"))


def sample_grid(config, path: Path) -> Path:
    """A grid of training images per class, at `path` (grid_path's)."""
    if SOURCES[config.data.source].image_files:
        return Path(_inspect_files(config, path)["grid"])
    splits = load(config.data, config.seed).splits
    return _grid(splits.train, splits.class_names, path)


def _grid(train, class_names, path: Path) -> Path:
    from cnnclf.reporting.image_grids import data_grid

    chosen = first_of_each_class(train.labels, len(class_names))
    return data_grid(train.gather(chosen), train.labels[chosen], class_names, path)


def describe(found: dict) -> str:
    from cnnclf.reporting.tables import aligned

    parts = list(found["sizes"])
    balance = aligned(
        ["class", *parts],
        [[name, *(counts.get(p, 0) for p in parts)] for name, counts in found["class_balance"].items()]
        + [["total", *(found["sizes"][p] for p in parts)]],
    )
    lines = [balance, "", f"image shape {found['image_shape']}"]
    if "value_range" in found:
        lines.append("pixel values " + ", ".join(f"{p} {lo}-{hi}" for p, (lo, hi) in found["value_range"].items()))
    for key, label in (
        ("image_sizes", "image sizes (width x height)"),
        ("aspect_ratios", "aspect ratios (w/h)"),
        ("colour_modes", "colour modes"),
    ):
        if key in found:
            shown = list(found[key].items())
            lines.append(
                f"{label}: "
                + ", ".join(f"{k} ({v})" for k, v in shown[:6])
                + (f" and {len(shown) - 6} more" if len(shown) > 6 else "")
            )
    lines.append(f"test images also in train (identical): {found['test_images_also_in_train']}")
    lines.append(
        f"unreadable files: {len(found['unreadable_files'])}"
        + "".join(f"\n  {f}" for f in found["unreadable_files"][:10])
    )
    lines += [f"warning: {w}" for w in found["warnings"]]
    lines.append(found["grid"])
    return "\n".join(lines)

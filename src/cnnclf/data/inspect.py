"""cnnclf data inspect: look at a dataset before training on it."""

import hashlib
from pathlib import Path

import numpy as np

from cnnclf.data.images import load_images
from cnnclf.data.split import split


def inspect(config) -> dict:
    """Class balance per split, image shape and value range, train/test duplicates, unreadable
    files, and a grid of training images per class (in output.runs_dir)."""
    data = config.data
    if data.source == "folder":  # list unreadable files rather than stop at the first
        config = config.with_overrides({"data.skip_bad_images": True})
    images = load_images(config.data)
    splits = split(images, config.data, config.seed)
    parts = {"train": splits.y_train, "test": splits.y_test}
    if config.data.validation == "split":
        parts = {"train": splits.y_train, "validation": splits.y_val, "test": splits.y_test}
    balance = {name: {part: int(np.sum(labels == c)) for part, labels in parts.items()}
               for c, name in enumerate(splits.class_names)}
    train_hashes = {hashlib.sha256(image.tobytes()).digest() for image in images.x_train}
    duplicates = [i for i, image in enumerate(images.x_test) if hashlib.sha256(image.tobytes()).digest() in train_hashes]
    grid = _grid(config, splits)
    return {
        "image_shape": list(splits.shape),
        "value_range": {part: [int(x.min()), int(x.max())] for part, x in
                        (("train", images.x_train), ("test", images.x_test))},
        "sizes": {part: int(len(labels)) for part, labels in parts.items()},
        "class_balance": balance,
        "test_images_also_in_train": len(duplicates),
        "duplicate_test_indices": duplicates[:20],
        "unreadable_files": images.skipped,
        "grid": str(grid),
    }


def sample_grid(config) -> Path:
    """A grid of training images per class, written to <output.runs_dir>/data-<name>.png."""
    return _grid(config, split(load_images(config.data), config.data, config.seed))


def _grid(config, splits) -> Path:
    from cnnclf.plots import data_grid

    path = Path(config.output.runs_dir) / f"data-{config.name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    chosen = np.concatenate([np.flatnonzero(splits.y_train == c)[:8] for c in range(splits.num_classes)])
    return data_grid(splits.x_train[chosen], splits.y_train[chosen], splits.class_names, path)


def describe(found: dict) -> str:
    from cnnclf.tables import aligned

    parts = list(found["sizes"])
    balance = aligned(["class", *parts], [[name, *(counts[p] for p in parts)]
                                         for name, counts in found["class_balance"].items()]
                      + [["total", *(found["sizes"][p] for p in parts)]])
    ranges = ", ".join(f"{p} {lo}-{hi}" for p, (lo, hi) in found["value_range"].items())
    unreadable = "".join(f"\n  {f}" for f in found["unreadable_files"][:10])
    return (f"{balance}\n\nimage shape {found['image_shape']}; pixel values {ranges}\n"
            f"test images also in train (identical pixels): {found['test_images_also_in_train']}\n"
            f"unreadable files: {len(found['unreadable_files'])}{unreadable}\n{found['grid']}")

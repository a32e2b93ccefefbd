"""Limit (stratified subsets) and split (train / validation / test), seeded.

scikit-learn is imported only where a split needs it: loaded, it holds 124 MB for the whole run.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

from cnnclf.data.images import Images, Sized
from cnnclf.errors import ConfigError, DataError


@dataclass
class Splits(Sized):
    x_train: np.ndarray  # uint8 (N, H, W, C): the only copy of the pixels training uses
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    fingerprint: str  # sha256 of the chosen indices: the same split gives the same hash


def split(images: Images, cfg, seed: int) -> Splits:
    """Apply data.limit_train/limit_test and hold out the validation set, as `cfg` (DataConfig) says."""
    train = _subset(images.y_train, cfg.limit_train, seed, "data.limit_train")
    test = _subset(images.y_test, cfg.limit_test, seed, "data.limit_test")
    if cfg.validation == "split":
        from sklearn.model_selection import train_test_split

        try:
            train, val = train_test_split(train, test_size=cfg.validation_split, random_state=seed,
                                          stratify=images.y_train[train])
        except ValueError as e:
            raise DataError(f"cannot hold out a stratified validation set of {cfg.validation_split:g} from "
                            f"{len(train)} training images in {images.num_classes} classes ({e}); raise "
                            f"data.validation_split or data.limit_train, or set data.validation: test") from None
        train, val = np.sort(train), np.sort(val)
        x_val, y_val = images.x_train[val], images.y_train[val]
    else:
        val = np.array([], np.int64)
    digest = hashlib.sha256()
    for indices in (train, val, test):
        digest.update(np.asarray(indices, np.int64).tobytes())
    x_test, y_test = images.x_test[test], images.y_test[test]
    if cfg.validation == "test":
        x_val, y_val = x_test, y_test
    return Splits(images.x_train[train], images.y_train[train], x_val, y_val, x_test, y_test,
                  list(images.class_names), digest.hexdigest())


def _subset(labels: np.ndarray, limit: int | None, seed: int, key: str) -> np.ndarray:
    """Indices of a stratified subset of `limit` items (all of them when limit is None or larger)."""
    everything = np.arange(len(labels))
    if limit is None or limit >= len(labels):
        return everything
    classes = len(np.unique(labels))
    if limit < classes:
        raise ConfigError(f"{key}: {limit} is smaller than the number of classes ({classes}); "
                          f"a stratified subset needs at least one image per class")
    from sklearn.model_selection import train_test_split

    chosen, _ = train_test_split(everything, train_size=limit, random_state=seed, stratify=labels)
    return np.sort(chosen)

"""The CIFAR-10 python folder (cifar-10-batches-py): data_batch_N, test_batch, batches.meta.

These are pickles. Unpickling can run code, so a restricted unpickler admits only what
plain numpy arrays are made of and refuses everything else, before it can execute.
"""

import pickle
import re
from pathlib import Path

import numpy as np

from cnnclf.data.images import Images, hash_files
from cnnclf.errors import DataError
from cnnclf.reading import NotReadable, open_regular

MAX_BATCH_BYTES = 4 * 2**30  # a batch file (CIFAR-10's are 31 MB)
PLAIN_DATA = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2: data in, data out
}


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module.replace("numpy._core", "numpy.core"), name) in PLAIN_DATA:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def load(cfg) -> Images:
    folder = Path(cfg.path)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; data.path must be the cifar-10-batches-py folder")
    batches = sorted(folder.glob("data_batch_*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    test, meta = folder / "test_batch", folder / "batches.meta"
    for needed in (batches[:1] or [folder / "data_batch_1"]) + [test]:
        if not needed.is_file():
            raise DataError(
                f"{folder}: no {needed.name}; a CIFAR folder holds data_batch_1..N, test_batch and batches.meta"
            )
    x_train, y_train = zip(*(_read_batch(p) for p in batches))
    x_test, y_test = _read_batch(test)
    names = _label_names(meta) if meta.is_file() else None
    return Images(
        np.concatenate(x_train),
        np.concatenate(y_train),
        x_test,
        y_test,
        class_names=names,
        files=hash_files([*batches, test] + ([meta] if meta.is_file() else [])),
    )


def _label_names(meta: Path) -> list[str] | None:
    """The class names in batches.meta; None (the dataset's own names) where it has none."""
    names = _unpickle(meta).get(b"label_names")
    if names is None:
        return None
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except (UnicodeDecodeError, TypeError) as e:
        raise DataError(
            f"{meta}: label_names are not UTF-8 text ({e.__class__.__name__}); write the class names as UTF-8"
        ) from None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
        if not np.issubdtype(data.dtype, np.number) or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"data of dtype {data.dtype} and labels of dtype {labels.dtype}")
        if data.size and (data.min() < 0 or data.max() > 255):
            raise DataError(
                f"{path}: pixel values run {data.min()}-{data.max()}, outside 0-255; is this a CIFAR batch?"
            )
        images = data.astype(np.uint8).reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(
            f"{path}: not a CIFAR batch (a dict with b'data' of N x 3072 uint8 and b'labels'): {str(e)[:200]}"
        ) from None
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _unpickle(path: Path) -> dict:
    try:
        with open_regular(path, MAX_BATCH_BYTES) as f:
            result = _PlainDataUnpickler(f, encoding="bytes").load()
    except NotReadable as e:
        raise DataError(f"{path}: {e}; use the official cifar-10-batches-py files") from None
    except pickle.UnpicklingError as e:
        raise DataError(
            f"{path}: {e}: CIFAR pickles may hold only plain data, so this file was "
            f"not loaded; use the official cifar-10-batches-py files"
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{path}: not a readable CIFAR pickle ({e.__class__.__name__}: {e})") from None
    if not isinstance(result, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(result).__name__}")
    return result

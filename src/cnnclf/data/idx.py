"""IDX files (the MNIST format): a folder holding train/t10k images and labels, gzipped or not."""

import gzip
import zlib
from pathlib import Path

import numpy as np

from cnnclf.data.images import Images, hash_files, with_channels
from cnnclf.errors import DataError

MAGIC = {"images": 2051, "labels": 2049}
PARTS = {"train": ("train",), "test": ("t10k", "test")}


def load(cfg) -> Images:
    folder = Path(cfg.path)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; data.path must be the folder holding the four IDX files")
    arrays, files = {}, []
    for part, prefixes in PARTS.items():
        for kind in ("images", "labels"):
            path = _find(folder, prefixes, kind)
            files.append(path)
            arrays[f"{part}_{kind}"] = read_idx(path, kind)
    return Images(
        x_train=with_channels(arrays["train_images"]),
        y_train=arrays["train_labels"].astype(np.int64),
        x_test=with_channels(arrays["test_images"]),
        y_test=arrays["test_labels"].astype(np.int64),
        files=hash_files(files),
    )


def _find(folder: Path, prefixes: tuple[str, ...], kind: str) -> Path:
    for prefix in prefixes:
        found = sorted(folder.glob(f"{prefix}-{kind}*"))
        if found:
            return found[0]
    expected = f"{prefixes[0]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte[.gz]"
    raise DataError(f"{folder}: no {expected} file; an IDX folder holds train-images, train-labels, "
                    f"t10k-images and t10k-labels files")


def read_idx(path: Path, kind: str) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: the gzip stream is damaged ({e}); download the file again") from None
    magic = int.from_bytes(raw[:4], "big")
    if magic != MAGIC[kind]:
        raise DataError(f"{path}: bad IDX magic number {magic}, expected {MAGIC[kind]} for {kind}; "
                        f"is this an IDX {kind} file?")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DataError(f"{path}: truncated IDX payload: the header promises {size} bytes "
                        f"({' x '.join(map(str, dims))}) but {max(len(raw) - header, 0)} follow; "
                        f"download the file again")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray, kind: str) -> None:
    """Write a uint8 array as a gzipped IDX file (used to ship samples and by tests)."""
    header = MAGIC[kind].to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), mtime=0))

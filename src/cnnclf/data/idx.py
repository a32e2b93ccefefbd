"""IDX files (the MNIST format): a folder holding train/t10k images and labels, gzipped or not."""

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from cnnclf.data.images import Images, hash_files, with_channels
from cnnclf.errors import DataError
from cnnclf.reading import NotReadable, read_regular

MAGIC = {"images": 2051, "labels": 2049}
PARTS = {"train": ("train",), "test": ("t10k", "test")}
MAX_BYTES = 16 * 2**30  # an IDX file of more pixels than this is not one cnnclf can train on


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
    raise DataError(
        f"{folder}: no {expected} file; an IDX folder holds train-images, train-labels, "
        f"t10k-images and t10k-labels files"
    )


def read_idx(path: Path, kind: str) -> np.ndarray:
    """An IDX file's array. A gzipped file is inflated only as far as its header says the data goes,
    so a small file that inflates to gigabytes is refused, not expanded."""
    try:
        raw = read_regular(path, MAX_BYTES)
    except NotReadable as e:
        raise DataError(f"{path}: {e}; an IDX folder holds the four IDX files") from None
    gzipped = raw[:2] == b"\x1f\x8b"
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    head = _inflate(path, inflate, raw, 4) if inflate else raw[:4]
    magic = int.from_bytes(head[:4], "big")
    if magic != MAGIC[kind]:
        raise DataError(
            f"{path}: bad IDX magic number {magic}, expected {MAGIC[kind]} for {kind}; is this an IDX {kind} file?"
        )
    ndim = head[3]
    header = 4 + 4 * ndim
    head += _inflate(path, inflate, b"", header - 4) if inflate else raw[4:header]
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = math.prod(dims)
    if size > MAX_BYTES:
        raise DataError(
            f"{path}: the IDX header promises {' x '.join(map(str, dims))} = {size:,} bytes, more "
            f"than any dataset cnnclf reads ({MAX_BYTES:,}); is this an IDX {kind} file?"
        )
    payload = _inflate(path, inflate, b"", size + 1) if inflate else raw[header:]
    if len(payload) != size:
        raise DataError(
            f"{path}: {'truncated' if len(payload) < size else 'overlong'} IDX payload: the header "
            f"promises {size} bytes ({' x '.join(map(str, dims))}) but "
            f"{f'{len(payload)}' if len(payload) <= size else 'more'} follow; download the file again"
        )
    return np.frombuffer(payload, np.uint8).reshape(dims)


def _inflate(path: Path, inflate, data: bytes, wanted: int) -> bytes:
    """Up to `wanted` more bytes of a gzip stream (the compressed bytes go in the first call)."""
    try:
        out = inflate.decompress(data or inflate.unconsumed_tail, wanted) if data or inflate.unconsumed_tail else b""
        while len(out) < wanted and inflate.unconsumed_tail:
            out += inflate.decompress(inflate.unconsumed_tail, wanted - len(out))
    except zlib.error as e:
        raise DataError(f"{path}: the gzip stream is damaged ({e}); download the file again") from None
    return out


def write_idx(path: Path, array: np.ndarray, kind: str) -> None:
    """Write a uint8 array as a gzipped IDX file (used to ship samples and by tests)."""
    header = MAGIC[kind].to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), mtime=0))

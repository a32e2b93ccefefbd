"""data.cache: a file of decoded pixels that the first run fills and later epochs and runs read
(by pread, so the resident memory stays flat); keyed by a hash of the files, the shape and the
resize policy, so a changed file makes a new entry. A damaged entry is built again; the space is
taken before it is filled (a full disk is DiskFull, not a SIGBUS in the memory map); what a killed
process left half-filled is removed by the next one.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from cnnclf.atomic import is_disk_full, write_json
from cnnclf.data.files import ImageFiles
from cnnclf.data.parts import Part, decode_all
from cnnclf.errors import DataError, DiskFull
from cnnclf.signals import alive

log = logging.getLogger("cnnclf")

CACHE_VERSION = 1  # bump when the cache's layout or decoding changes


class Cached(Part):
    """Decoded pixels in a cache file, read by pread."""

    def __init__(self, path: Path, labels: np.ndarray, shape):
        self.path, self.labels, self.shape = path, labels, tuple(shape)
        self.row = int(np.prod(shape))
        self.parallel = max(2, os.cpu_count() or 2)
        self._fd, self._pid = -1, -1

    def gather(self, indices) -> np.ndarray:
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        out = np.empty((len(indices), self.row), np.uint8)
        for row, i in enumerate(indices):
            view = memoryview(out[row])
            got = os.preadv(self._fd, [view], int(i) * self.row)
            if got != self.row:
                raise DataError(f"{self.path}: the cache file is truncated; delete it and it is rebuilt")
        return out.reshape(len(indices), *self.shape)


def cached(
    files: ImageFiles, positions: np.ndarray, shape, policy: str, resize: bool, skip_bad: bool, folder: Path
) -> tuple[Cached, np.ndarray, list[str]]:
    """A Cached part of files[positions], from `folder`, built first when missing or stale; the
    positions it holds, and the descriptions of the files skipped. The entry's
    name is a hash of the files (names, classes, sizes and times), the shape and the resize policy."""
    key = hashlib.sha256(
        json.dumps([CACHE_VERSION, files.fingerprint(positions), list(shape), policy, resize, skip_bad]).encode()
    ).hexdigest()[:32]
    pixels, meta = folder / f"{key}.pixels", folder / f"{key}.json"
    found = False
    try:
        saved = json.loads(meta.read_text())
        kept, skipped = np.asarray(saved["positions"], np.int64), list(saved["skipped"])
        found = pixels.stat().st_size == len(kept) * int(np.prod(shape))
    except (OSError, ValueError, KeyError, TypeError):  # none, or damaged: built again
        pass
    if found:
        log.info(f"decoded pixels from the cache: {pixels}")
        return Cached(pixels, files.labels[kept], shape), kept, skipped
    folder.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(folder, key)
    tmp = folder / f".{key}.{os.getpid()}.pixels"
    size = len(positions) * int(np.prod(shape))
    log.info(f"filling the cache {pixels} ({size / 2**20:,.0f} MB)")
    try:
        with open(tmp, "wb") as f:
            if size:  # the space taken now: a full disk is an error here, not a SIGBUS when the map is written
                os.posix_fallocate(f.fileno(), 0, size)
        out = (
            np.memmap(tmp, np.uint8, "r+", shape=(len(positions), *shape)) if size else np.zeros((0, *shape), np.uint8)
        )
        _, kept, skipped = decode_all(files, positions, shape, policy, resize, skip_bad, out)
        if isinstance(out, np.memmap):
            out.flush()
            del out
        os.truncate(tmp, len(kept) * int(np.prod(shape)))
        os.replace(tmp, pixels)
        write_json(meta, {"positions": kept.tolist(), "skipped": skipped, "shape": list(shape)})
    except OSError as e:
        if is_disk_full(e):
            raise DiskFull(pixels) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    return Cached(pixels, files.labels[kept], shape), kept, skipped


def _remove_abandoned(folder: Path, key: str) -> None:
    """Remove what processes that died while filling this cache entry left (kill -9, a crash)."""
    for partial in folder.glob(f".{key}.*.pixels"):
        pid = partial.name.split(".")[2]
        if pid.isdigit() and not alive(int(pid)):
            partial.unlink(missing_ok=True)

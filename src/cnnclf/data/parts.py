"""One split's images and labels (a Part), and how image files become one (data.storage):

- memory: every file decoded once, straight into one preallocated uint8 array (no list of
  arrays and stacked copy: the pixels' size, not twice it). Large sets are decoded by forked
  worker processes writing into shared memory, one range of files each (threads would serialize
  on the GIL: small images are mostly Python work to decode). The workers run only Pillow,
  zipfile and numpy, never TensorFlow, so forking a process that has started TensorFlow's
  threads is safe here (PyTorch's DataLoader workers rely on the same).
- stream: nothing held; each batch's files are read and decoded when tf.data asks for it, on
  several threads (Pillow releases the GIL while it decodes), or, with data.cache, read from a
  file of decoded pixels that the first run fills and later epochs and runs reuse (cache.py).
"""

import logging
import mmap
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from cnnclf.data.decoding import DECODE_ERRORS, decode_image, reason
from cnnclf.data.files import ImageFiles
from cnnclf.errors import DataError

log = logging.getLogger("cnnclf")

PARALLEL_FROM = 4000  # files; below this, starting worker processes costs more than it saves
CHUNK = 256  # files per task handed to a worker


class Part:
    """Images and their labels; gather(indices) returns uint8 (n, height, width, channels)."""

    labels: np.ndarray
    shape: tuple[int, int, int]
    parallel = 2  # gathers tf.data runs at once

    def __len__(self) -> int:
        return len(self.labels)

    def gather(self, indices) -> np.ndarray:
        raise NotImplementedError


class InMemory(Part):
    def __init__(self, x: np.ndarray, labels: np.ndarray):
        self.x, self.labels, self.shape = x, np.asarray(labels, np.int64), tuple(x.shape[1:])

    def gather(self, indices) -> np.ndarray:
        return self.x[indices]


class Streamed(Part):
    """Files decoded batch by batch."""

    def __init__(self, files: ImageFiles, positions: np.ndarray, shape, policy: str, resize: bool):
        self.files, self.positions, self.shape = files, positions, tuple(shape)
        self.policy, self.resize = policy, resize
        self.labels = files.labels[positions]
        self.parallel = max(2, os.cpu_count() or 2)

    def gather(self, indices) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), np.uint8)
        for row, i in enumerate(indices):
            out[row] = _decode(self.files, int(self.positions[i]), self.shape, self.policy, self.resize)
        return out


def _decode(files: ImageFiles, position: int, shape, policy: str, resize: bool) -> np.ndarray:
    """A streamed file, which was decoded once when the data was checked."""
    try:
        pixels = decode_image(files.reader.read(files.names[position]), shape, policy, resize)
        if pixels.shape != tuple(shape):
            raise ValueError(f"it is {_size(pixels.shape)} now, not {_size(shape)}")
    except DECODE_ERRORS as e:
        raise DataError(
            f"{files.describe(position)}: not readable during training ({reason(e)}), though it was when the "
            f"data was checked; restore the file, then resume the run"
        ) from None
    return pixels


# --- decoding many files into one array ------------------------------------------------------

_JOB: dict = {}  # what forked workers decode: set before the pool starts, inherited by fork


def decode_all(
    files: ImageFiles,
    positions: np.ndarray,
    shape,
    policy: str,
    resize: bool,
    skip_bad: bool,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode files[positions] into `out` (or a new shared array): the pixels of the readable ones,
    in order, their positions, and the descriptions of those skipped (data.skip_bad_images)."""
    if out is None:
        out = _shared_array((len(positions), *shape))
    failures = _decode_many(files, positions, shape, policy, resize, skip_bad, out)
    kept = np.array([row for row in range(len(positions)) if row not in failures], np.int64)
    if failures:  # close the gaps in place: the array keeps its memory, a view of the first rows is used
        for new, old in enumerate(kept):
            if new != old:
                out[new] = out[old]
    return out[: len(kept)], positions[kept], [files.describe(int(positions[row])) for row in sorted(failures)]


def check_all(
    files: ImageFiles, positions: np.ndarray, shape, policy: str, resize: bool, skip_bad: bool
) -> tuple[np.ndarray, list[str]]:
    """Decode files[positions] as decode_all does, keeping nothing: the positions of the readable ones
    and the descriptions of those skipped. Streamed files are checked so before training, so that a
    stream run skips and counts exactly the files an in-memory run does."""
    failures = _decode_many(files, positions, shape, policy, resize, skip_bad, None)
    kept = np.array([row for row in range(len(positions)) if row not in failures], np.int64)
    return positions[kept], [files.describe(int(positions[row])) for row in sorted(failures)]


def _decode_many(files, positions, shape, policy, resize, skip_bad, out) -> dict[int, str]:
    """Decode files[positions] (into `out` where given), in forked workers for large sets; the rows
    that failed, each with its reason. A file of another size, or an unreadable one where skip_bad
    is off, is an error naming the file."""
    n = len(positions)
    workers = (
        min(os.cpu_count() or 1, 8) if n >= PARALLEL_FROM and "fork" in multiprocessing.get_all_start_methods() else 1
    )
    _JOB.update(files=files, positions=positions, shape=tuple(shape), policy=policy, resize=resize, out=out)
    chunks = [(start, min(start + CHUNK, n)) for start in range(0, n, CHUNK)]
    failures: dict[int, str] = {}
    progress = _Progress(n)
    try:
        if workers == 1:
            for start, stop in chunks:
                failures.update(_decode_chunk(start, stop))
                progress.done(stop - start)
        else:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for (start, stop), failed in zip(chunks, pool.map(_decode_chunk, *zip(*chunks))):
                    failures.update(failed)
                    progress.done(stop - start)
    finally:
        _JOB.clear()
    progress.finish()
    for row in sorted(failures):
        message = failures[row]
        where = files.describe(int(positions[row]))
        if message.startswith("shape:"):
            raise DataError(
                f"{where}: image is {message[6:]} but the first image is {_size(shape)}; set "
                f"data.image_shape: [height, width, channels] to resize them all"
            )
        if not skip_bad:
            raise DataError(
                f"{where}: not a readable image ({message}); remove it or set data.skip_bad_images: "
                f"true to skip and count such files"
            )
    return failures


def _decode_chunk(start: int, stop: int) -> dict[int, str]:
    """Decode rows start..stop of the job into its output array (in a worker, or in-process)."""
    job, failures = _JOB, {}
    files, positions, out = job["files"], job["positions"], job["out"]
    for row in range(start, stop):
        try:
            pixels = decode_image(
                files.reader.read(files.names[int(positions[row])]), job["shape"], job["policy"], job["resize"]
            )
        except DECODE_ERRORS as e:
            failures[row] = reason(e)
            continue
        if pixels.shape != job["shape"]:
            failures[row] = f"shape:{_size(pixels.shape)}"
            continue
        if out is not None:
            out[row] = pixels
    if isinstance(out, np.memmap):
        out.flush()
    return failures


def _shared_array(shape) -> np.ndarray:
    """A zeroed uint8 array in anonymous shared memory, which forked workers write into directly."""
    size = int(np.prod(shape))
    if size == 0:
        return np.zeros(shape, np.uint8)
    return np.frombuffer(mmap.mmap(-1, size), np.uint8).reshape(shape)


class _Progress:
    """Decoding progress on stderr, every few seconds, for sets that take that long."""

    def __init__(self, total: int):
        self.total, self.count, self.started, self.last = total, 0, time.time(), time.time()

    def done(self, count: int) -> None:
        self.count += count
        if time.time() - self.last >= 3:
            self.last = time.time()
            rate = self.count / (self.last - self.started)
            log.info(f"decoding images: {self.count:,}/{self.total:,} ({rate:,.0f} files/s)")

    def finish(self) -> None:
        seconds = time.time() - self.started
        if seconds >= 3:
            log.info(f"decoded {self.total:,} images in {seconds:.1f} s ({self.total / seconds:,.0f} files/s)")


def _size(shape) -> str:
    return "x".join(map(str, shape))

"""Image files: a listing of them (ImageFiles) and reading their bytes from a folder or a zip
(decoding them is decoding.py's).

Limits, each refused with one line naming the file:
- a file on disk: a regular file (not a FIFO, which would block, nor a device such as /dev/zero,
  which never ends) of at most MAX_FILE_BYTES, checked when it is opened (reading.py).
- zip entries: declared size at most MAX_ENTRY_BYTES and compression at most MAX_RATIO to one
  (above 16 MiB), checked from the zip's directory before reading, so a zip bomb is never expanded.
"""

import hashlib
import io
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from cnnclf.errors import DataError
from cnnclf.reading import open_regular, read_regular

MAX_FILE_BYTES = 512 * 2**20  # an image file (64 megapixels of 16-bit RGB, uncompressed, is 384 MB)
MAX_ENTRY_BYTES = 256 * 2**20
MAX_RATIO = 200
ZIP_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


# --- where files are read from --------------------------------------------------------------


class FileReader(Protocol):
    """Reads files by their names (paths relative to the data, or zip member names)."""

    def read(self, name: str) -> bytes: ...

    def open(self, name: str) -> BinaryIO: ...

    def describe(self, name: str) -> str: ...

    def stamp(self, name: str) -> str: ...

    def check(self, name: str) -> None: ...


class FolderReader:
    """Files under a folder, by path relative to it."""

    def __init__(self, root: Path):
        self.root = root

    def read(self, name: str) -> bytes:
        return read_regular(self.root / name, MAX_FILE_BYTES)

    def open(self, name: str):
        return open_regular(self.root / name, MAX_FILE_BYTES)

    def describe(self, name: str) -> str:
        return str(self.root / name)

    def check(self, name: str) -> None:
        pass

    def stamp(self, name: str) -> str:
        """What changes when the file changes: its size and modification time."""
        info = (self.root / name).stat()
        return f"{info.st_size}:{info.st_mtime_ns}"


class ZipReader:
    """Members of a zip file, by name. Each process opens the zip once (its directory of 60,000 entries
    takes 0.4 s to read) and its threads take turns reading from it; decoding, the slow part, runs
    outside the lock."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._handle: tuple[int, zipfile.ZipFile] | None = None
        try:
            with zipfile.ZipFile(path) as archive:
                self.infos = {i.filename: i for i in archive.infolist() if not i.is_dir()}
                self.infos_dirs = [i.filename for i in archive.infolist() if i.is_dir()]
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable zip file ({e}); zip the folder again") from None

    def check(self, name: str) -> None:
        check_zip_entry(self.infos[name], self.describe(name), MAX_ENTRY_BYTES)

    def _archive(self) -> zipfile.ZipFile:
        if self._handle is None or self._handle[0] != os.getpid():  # a forked worker opens its own
            self._handle = (os.getpid(), zipfile.ZipFile(self.path))
        return self._handle[1]

    def read(self, name: str) -> bytes:
        with self._lock:
            return self._archive().read(name)

    def open(self, name: str):
        with self._lock:
            return io.BytesIO(self._archive().read(name))

    def describe(self, name: str) -> str:
        return f"{self.path}:{name}"

    def stamp(self, name: str) -> str:
        info = self.infos[name]
        return f"{info.file_size}:{info.CRC}"


def check_zip_entry(info: zipfile.ZipInfo, where: str, max_bytes: int) -> None:
    """Refuse a zip entry before reading it: one that would expand past `max_bytes` or by more than
    MAX_RATIO to one (a zip bomb), an unsupported compression, encryption."""
    if info.flag_bits & 0x1:
        raise DataError(f"{where}: the entry is encrypted; zip the files without a password")
    if info.compress_type not in ZIP_METHODS:
        raise DataError(
            f"{where}: compression method {info.compress_type} cannot be read; zip the files "
            f"again with {', '.join(ZIP_METHODS.values())}"
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > max_bytes or (info.file_size > 16 * 2**20 and ratio > MAX_RATIO):
        raise DataError(
            f"{where}: the entry expands to {info.file_size:,} bytes ({ratio:,.0f} times its "
            f"compressed size), more than cnnclf reads (at most {max_bytes:,} bytes, {MAX_RATIO} "
            f"times); remove it"
        )


def open_tree(path: Path):
    """A reader for a folder, or for a zip file of one."""
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise DataError(
                f"{path}: not a folder or a zip file; data.path must be a folder of class folders or a zip of one"
            )
        return ZipReader(path)
    return FolderReader(path)


def checked_name(name: str, where: str) -> str:
    """A file name as text; one that is not valid UTF-8 (Python keeps its bytes as surrogates) is refused."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise DataError(f"{where}: the file name {shown!r} is not valid UTF-8; rename it") from None
    return name


# --- the listing ------------------------------------------------------------------------------


@dataclass
class ImageFiles:
    """Image files and their classes, before anything is decoded."""

    where: str  # the data's path, for messages
    reader: FileReader
    names: list[str]  # each file's path relative to the data (or its zip member name): its identity
    labels: np.ndarray  # int64 class indices
    parts: np.ndarray  # per file "train", "validation", "test", or "" where the data says nothing
    class_names: list[str]
    origins: dict[str, str] = field(default_factory=dict)  # part -> where the data holds it ("val/")

    def __len__(self) -> int:
        return len(self.names)

    def has_part(self, part: str) -> bool:
        return bool(np.any(self.parts == part))

    def describe(self, i: int) -> str:
        return self.reader.describe(self.names[i])

    def fingerprint(self, indices=None) -> str:
        """sha256 of the files' names, classes and stamps (size and time, or zip CRC): it changes when
        a file is added, removed, relabelled or rewritten."""
        digest = hashlib.sha256()
        for i in range(len(self)) if indices is None else indices:
            name = self.names[i]
            digest.update(f"{name}\0{self.labels[i]}\0{self.reader.stamp(name)}\n".encode())
        return digest.hexdigest()


def suffix_is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES

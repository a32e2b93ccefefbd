"""Reading files a user named, bounded: only a regular file is read, and only up to a size.

A FIFO in a class folder would block the reader forever, and a link to /dev/zero (or any device)
would be read until memory runs out; both are refused as soon as they are opened, naming what
they are, as is a file larger than what its reader takes. Every image, config and data file
cnnclf reads by a path goes through open_regular.
"""

import os
import stat
from pathlib import Path
from typing import BinaryIO

KINDS = {  # what a path is, for the message, where it is not a regular file
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


class NotReadable(ValueError):
    """A path that names no regular file, or one larger than its reader takes; the message says which."""


def open_regular(path, max_bytes: int) -> BinaryIO:
    """`path` opened for binary reading, once it is known to be a regular file (after following links)
    of at most `max_bytes`. Opening does not block on a FIFO (no writer is awaited) and reads nothing."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotReadable(f"not a regular file ({KINDS.get(stat.S_IFMT(info.st_mode), 'a special file')})")
        if info.st_size > max_bytes:
            raise NotReadable(f"{info.st_size:,} bytes, more than cnnclf reads of such a file ({max_bytes:,})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (open_regular's checks); a file that grew
    past the bound while it was read is refused too."""
    with open_regular(path, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NotReadable(f"more than {max_bytes:,} bytes, more than cnnclf reads of such a file")
    return data


def kind_of(path: Path) -> str | None:
    """What an existing path that is not a regular file or folder is ('a FIFO'), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return KINDS.get(stat.S_IFMT(mode), "a special file")

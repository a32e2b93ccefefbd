"""Writing files so that nothing half-written is ever seen.

Every file cnnclf writes goes through atomic_path: a temporary file beside the target, renamed
over it once complete (readers see the old file or the new one), with SIGINT and SIGTERM held
meanwhile (signals.py). A full disk is DiskFull, naming the file.
"""

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

from cnnclf.errors import DiskFull
from cnnclf.signals import deferred_interrupts

UMASK = os.umask(0)
os.umask(UMASK)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, value) -> None:
    write_text(path, json.dumps(value, indent=2) + "\n")


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically: readers see the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; rename it over `path` once the block succeeds.
    A full disk is reported as DiskFull naming `path`; the old file is kept."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        os.close(fd)
    except OSError as e:
        raise DiskFull(path) if is_disk_full(e) else e from None
    try:
        with deferred_interrupts():
            yield Path(tmp)
            os.chmod(tmp, 0o666 & ~UMASK)  # as an ordinary new file would be, not mkstemp's 0600
            os.replace(tmp, path)
    except OSError as e:
        if is_disk_full(e):
            raise DiskFull(path) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def is_disk_full(error: BaseException) -> bool:
    """Whether an error (an OSError, or h5py's wrapping of one) came from a full disk or quota."""
    return getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(error)

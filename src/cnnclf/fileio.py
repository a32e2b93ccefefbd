"""Writing files so that nothing half-written is ever seen, and signals held while that happens.

Every file cnnclf writes goes through atomic_path: a temporary file beside the target, renamed
over it once complete (readers see the old file or the new one). SIGINT and SIGTERM raise
Interrupted inside interrupts_raised(), except within deferred_interrupts(), which holds them
until the state being saved is whole.
"""

import contextlib
import errno
import json
import os
import signal
import tempfile
import threading
from pathlib import Path

from cnnclf.errors import DiskFull, Interrupted

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


_deferring = 0
_pending: list[int] = []


def _on_signal(signum, frame):
    if _deferring:
        _pending.append(signum)
    else:
        raise Interrupted(f"stopped by {signal.Signals(signum).name}", signum)


@contextlib.contextmanager
def interrupts_raised():
    """Within the block, SIGINT (Ctrl-C) and SIGTERM raise Interrupted (outside deferred blocks)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred_interrupts():
    """Hold SIGINT/SIGTERM until the block ends, so state being saved is never half-saved."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending:
            signum = _pending.pop()
            _pending.clear()
            raise Interrupted(f"stopped by {signal.Signals(signum).name}", signum)

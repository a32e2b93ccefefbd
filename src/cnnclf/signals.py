"""SIGINT (Ctrl-C) and SIGTERM while cnnclf trains: inside interrupts_raised() they raise
Interrupted, except within deferred_interrupts(), which holds them until the state being saved is
whole (an epoch's backup, any file atomic.py writes) and raises then."""

import contextlib
import os
import signal
import threading

from cnnclf.errors import Interrupted

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


def alive(pid) -> bool:
    """Whether process `pid` exists (signal 0 probes it without disturbing it)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True

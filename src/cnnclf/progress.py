"""Saying what is happening when a step is slow, so a long run never sits silent for long."""

import contextlib
import logging
import shutil
import sys
import threading
import time

log = logging.getLogger("cnnclf")

SILENCE = 2.0  # seconds a step may take before it is named


@contextlib.contextmanager
def step(what: str):
    """Within the block, if it lasts more than SILENCE seconds: '<what> ...' on stderr when it gets
    there, and '<what>: done in N s' at the end. Quick steps say nothing."""
    started = time.time()
    said = threading.Event()

    def say():
        said.set()
        log.info(f"{what} ...")

    timer = threading.Timer(SILENCE, say)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if said.is_set():
            log.info(f"{what}: done in {time.time() - started:.1f} s")


def bar(what: str, done: int, total: int, seconds: float, batch_size: int) -> str:
    """'<what> [#####.....] 12/36 steps  150 images/s  ~8 s left' (during an epoch; `seconds` so far)."""
    width = 20
    filled = round(width * done / max(total, 1))
    shown = f"{what} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} steps"
    if done >= total:
        return f"{shown}  validating ..."
    if not done:
        return f"{shown}  starting ..."  # the first step of a run includes building its graph
    left = (total - done) * seconds / done
    return f"{shown}  {done * batch_size / seconds:,.0f} images/s  ~{left:.0f} s left"


class StderrHandler(logging.Handler):
    """Log lines to whatever sys.stderr is now (click's test runner swaps it). A transient record (a
    progress bar) is drawn over the line before on a terminal; elsewhere (a log file, a CI job) one
    in every QUIET_SECONDS becomes a line of its own, so that a long epoch is never silent for long."""

    QUIET_SECONDS = 10.0
    pending = False  # a transient line is on the screen
    last_transient = 0.0  # when one was last written off a terminal

    def emit(self, record):
        stream = sys.stderr
        if getattr(record, "transient", False):
            if stream.isatty():
                stream.write("\r\033[K" + self.format(record)[: shutil.get_terminal_size().columns - 1])
                stream.flush()
                self.pending = True
            elif record.created - self.last_transient >= self.QUIET_SECONDS:
                self.last_transient = record.created
                stream.write(self.format(record) + "\n")
                stream.flush()
            return
        if self.pending:
            stream.write("\r\033[K")
            self.pending = False
        stream.write(self.format(record) + "\n")

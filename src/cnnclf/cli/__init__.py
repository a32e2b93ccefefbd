"""The command line. Each command parses, calls library functions, and prints; only this package
talks to the terminal.

    options.py      the group, error handling (one line on stderr, its exit code) and the shared options
    preparation.py  before training: config show/validate/presets, init, data inspect
    training.py     train, resume, tune, bench
    inference.py    a run's model at work: evaluate, predict, export, serve
    reporting.py    runs looked at: plot, runs, compare

TensorFlow is imported only by commands that need it, so --help and config checks stay fast.
"""

import logging
import os
import shutil
import sys
import tempfile
import time

from cnnclf.cli import inference, preparation, reporting, training  # noqa: F401  (each registers its commands)
from cnnclf.cli.options import cli

__all__ = ["cli", "main"]


def main():
    """The console entry point. Once the command is done, the process ends without Python's
    shutdown, which takes 1.5 s with TensorFlow loaded (and where h5py can crash closing a file a
    full disk left half-written): every file cnnclf writes is complete and closed by then. The
    process's temporary files go into a folder of its own, removed as it ends: TensorFlow's
    autograph leaves a module file there for each function it converts, which it would remove
    only at Python's shutdown."""
    obj = {"started": time.time(), "console": True}
    scratch = tempfile.mkdtemp(prefix="cnnclf-")
    tempfile.tempdir = scratch
    try:
        cli(prog_name="cnnclf", obj=obj)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        shutil.rmtree(scratch, ignore_errors=True)
        if "tensorflow" in sys.modules or obj.get("disk_full"):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise

"""The command line. Each command parses, calls library functions, and prints; only this package
talks to the terminal.

    options.py   the group, error handling (one line on stderr, its exit code) and the shared options
    training.py  train, resume, tune, bench
    runs.py      evaluate, plot, predict, runs, compare, export, serve
    setup.py     config show/validate/presets, init, data inspect

TensorFlow is imported only by commands that need it, so --help and config checks stay fast.
"""

import os
import sys
import time

from cnnclf.cli import runs, setup, training  # noqa: F401  (each registers its commands)
from cnnclf.cli.options import cli

__all__ = ["cli", "main"]


def main():
    obj = {"started": time.time(), "console": True}
    try:
        cli(prog_name="cnnclf", obj=obj)
    except SystemExit as e:
        if obj.get("disk_full"):  # h5py, closing a file it could not write, can crash the interpreter's
            sys.stdout.flush()  # shutdown: the error is printed and every file cnnclf keeps is whole,
            sys.stderr.flush()  # so leave without it
            os._exit(e.code if isinstance(e.code, int) else 1)
        raise

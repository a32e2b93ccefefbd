"""cnnclf: train Keras convolutional image classifiers from one YAML file.

A run goes through the packages in this order, each importing only those before it:

    data/       files or arrays -> checked images -> train / validation / test -> tf.data
    model/      presets, backbones, the builder, Keras name allow-lists, the loss, whitening, Grad-CAM
    config/     the YAML file: schema, defaults, overrides, rules across keys (it reads the registries
                of data/ and model/: sources, presets, Keras names)
    rundir/     the run directory: its files, status and lock; provenance (env.json)
    training/   compute levers, compiling, fitting phases, per-epoch backup, resume, tracking
    inference/  safe loading into one inference graph: evaluate, predict, export, serve
    reporting/  plots, report.html, runs, compare, data inspect
    pipeline.py the sequence of a run: prepare -> fit -> evaluate -> record -> draw, for all below
    tools/      tune (Optuna), init (starter configs), bench
    api.py      the Python API: cnnclf.train(...), cnnclf.Run(...): predict, evaluate, export
    cli/        click commands: parse, call one library function, print

training never imports inference or reporting, and those two never import each other
(tests/test_architecture.py checks the order, and every module's place in its package's map).

Beside them, modules any stage may use:

    errors.py     CnnclfError and its kinds, each with its exit code
    atomic.py     files written whole
    reading.py    files read only when regular, and bounded
    redaction.py  no password or token in what is written or printed
    measures.py   numpy measures: evaluation computes them, the plots read them
    device.py     what the machine is: every `auto` asks it
    signals.py    Ctrl-C and SIGTERM held while state is saved
    progress.py   saying what is slow; the log on stderr
    startup.py    TensorFlow's quiet start
    compat.py     every Keras and TensorFlow internal cnnclf touches, each behind a feature check
"""

import logging

from cnnclf.errors import CnnclfError, ConfigError, DataError, Interrupted, NotARunError, RunError
from cnnclf.redaction import LogFilter

__version__ = "0.1.0"
__all__ = ["train", "Run", "CnnclfError", "ConfigError", "DataError", "RunError", "NotARunError", "Interrupted"]

logging.getLogger("cnnclf").addFilter(LogFilter())  # no log line holds a password (redaction.py)
logging.getLogger("cnnclf").addHandler(logging.NullHandler())  # silent unless a handler is added (the CLI's)


def __getattr__(name: str):
    """cnnclf.train and cnnclf.Run (api.py), imported when first used: `import cnnclf` stays light."""
    if name in ("train", "Run"):
        from cnnclf import api

        return getattr(api, name)
    raise AttributeError(f"module 'cnnclf' has no attribute {name!r}")

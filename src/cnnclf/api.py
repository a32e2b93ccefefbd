"""The Python API: what the command line does, from a notebook or a script.

    import cnnclf
    run = cnnclf.train("configs/quickstart.yaml", overrides={"train.epochs": 1})  # blocks until done
    run.path, run.status, run.config, run.metrics, run.history
    run = cnnclf.Run("runs/<id>")
    run.predict(["a.png", "photos/"], top_k=3)      # a pandas DataFrame
    run.predict(images)                             # uint8 numpy images (n, height, width, channels)
    run.evaluate()                                  # a dict, as metrics.json
    run.export("onnx")                              # the export's path

Every function is the one the command line calls (pipeline.py, inference/); a failure raises
cnnclf.CnnclfError (ConfigError, DataError, RunError, ...), never exits the interpreter, and nothing
is printed unless `verbose` asks for the log on stderr.
"""

import contextlib
import logging
import time
from pathlib import Path

from cnnclf import progress
from cnnclf.errors import ConfigError
from cnnclf.rundir.directory import RunDir

log = logging.getLogger("cnnclf")


def train(
    config,
    overrides: dict | None = None,
    *,
    runs_dir=None,
    name: str | None = None,
    smoke: bool = False,
    verbose: bool = False,
) -> "Run":
    """Train as the config file `config` says, with `overrides` ({"train.epochs": 1}, keys as --set
    spells them) on top; the completed run. `runs_dir`, `name`: as --runs-dir and --name; `smoke`: as
    --smoke; `verbose`: the training log on stderr."""
    from cnnclf import pipeline
    from cnnclf.config import load_config

    started = time.time()
    values = {**(overrides or {})}
    values.update({k: v for k, v in (("output.runs_dir", runs_dir), ("name", name)) if v is not None})
    with _logging(verbose):
        loaded = load_config(Path(config), values={k: _plain(v) for k, v in values.items()})
        prepared, data = pipeline.prepare(loaded, smoke)
        run = pipeline.train(prepared, data, started=started, smoke=smoke)
    if run is None:
        raise ConfigError("this process is a worker of a multi-worker run: the chief has the run directory")
    return Run(run.path)


class Run:
    """A run directory: what it holds, and its model at work."""

    def __init__(self, path):
        self._run = RunDir.open(Path(path).absolute())  # a notebook may change its working folder later
        self.path = self._run.path

    def __repr__(self) -> str:
        return f"cnnclf.Run({str(self.path)!r})"

    @property
    def status(self) -> dict:
        """run.json: status (running, completed, failed, interrupted, pruned), epochs, timings, warnings."""
        return self._run.status()

    @property
    def config(self) -> dict:
        """The run's resolved config (config.yaml), every default filled in."""
        return self._run.read_config().model_dump(mode="json")

    @property
    def metrics(self) -> dict:
        """metrics.json (empty before the run is evaluated)."""
        return self._run.read_metrics() or {}

    @property
    def history(self):
        """history.csv as a pandas DataFrame: one row per epoch."""
        import pandas as pd

        return pd.DataFrame(self._run.read_history())

    def predict(self, images, top_k: int = 3, min_confidence: float | None = None, verbose: bool = False):
        """Classify image files and folders (a path or a list of them), or uint8 images (n, height, width,
        channels) in a numpy array; a pandas DataFrame with a row per image: file (None for arrays),
        class, probability (calibrated), unknown (below the run's threshold, or `min_confidence`), and the
        top-k classes and their probabilities (top1_class, top1_probability, ...). Files that are not
        readable images are skipped (and said with `verbose`)."""
        import numpy as np
        import pandas as pd

        RunDir.open(self.path, need_model=True)
        with _logging(verbose), _tensorflow():
            from cnnclf.inference import predict as prediction

            if isinstance(images, np.ndarray):
                rows = prediction.predict_arrays(self._run, images, top_k, min_confidence)
            else:
                paths = [images] if isinstance(images, (str, Path)) else list(images)
                rows = prediction.predict(self._run, [str(p) for p in paths], top_k, min_confidence=min_confidence)
        return pd.DataFrame([prediction.flat(row) for row in rows])

    def evaluate(self, verbose: bool = False) -> dict:
        """Evaluate the best model on the run's test split again (as `cnnclf evaluate`); metrics.json's dict."""
        from cnnclf.pipeline import evaluate_run  # imports TensorFlow only when called

        run = RunDir.open(self.path, need_model=True)
        with _logging(verbose), _tensorflow():
            return evaluate_run(run)[0]

    def export(self, fmt: str, out=None, verbose: bool = False) -> Path:
        """Export the best model as savedmodel, tflite or onnx (as `cnnclf export`); the export's path."""
        run = RunDir.open(self.path, need_model=True)
        with _logging(verbose), _tensorflow():
            from cnnclf.inference.export import FORMATS, export

            if fmt not in FORMATS:
                raise ConfigError(f"format {fmt!r}: not one cnnclf exports; use {', '.join(FORMATS)}")
            return export(run, fmt, None if out is None else Path(out))


def _plain(value):
    """A Path given as an override, as the text a config holds."""
    return str(value) if isinstance(value, Path) else value


@contextlib.contextmanager
def _tensorflow():
    from cnnclf import pipeline

    pipeline.start_tensorflow()
    yield


@contextlib.contextmanager
def _logging(verbose: bool):
    """The cnnclf log on stderr for the block, where `verbose` asks for it."""
    if not verbose:
        yield
        return
    handler = progress.StderrHandler()  # the CLI's: a progress bar on a terminal, a line every 10 s elsewhere
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)

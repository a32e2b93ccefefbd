"""The run directory: everything one training run produced, and its status.

runs/<UTC time>-<name>/
  run.json        status (running | completed | failed | interrupted), error, timings
  config.yaml     the fully resolved config: evaluate, plot and resume need nothing else
  model.keras     the best model (by train.checkpoint.monitor)
  history.csv     one row per epoch
  metrics.json    test metrics, per-class report, confusion matrix
  predictions.npz test labels and probabilities, and the sample images the plots show
  data_samples.npz a few training images per class
  summary.txt     the model summary
  env.json        versions, device, command line, data fingerprints
  train.log       what was printed
  plots/          learning curves, confusion matrix, samples, per-class accuracy, calibration
  report.html     everything above on one self-contained page
  backup/         training state while training (BackupAndRestore), for `cnnclf resume`
"""

import contextlib
import csv
import datetime
import json
import os
import signal
import socket
import tempfile
import threading
from pathlib import Path

from cnnclf.errors import Interrupted, NotARunError

STATUSES = ("running", "completed", "failed", "interrupted")
_UMASK = os.umask(0)
os.umask(_UMASK)


class RunDir:
    def __init__(self, path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    model = property(lambda self: self.path / "model.keras")
    history = property(lambda self: self.path / "history.csv")
    metrics = property(lambda self: self.path / "metrics.json")
    predictions = property(lambda self: self.path / "predictions.npz")
    data_samples = property(lambda self: self.path / "data_samples.npz")
    report = property(lambda self: self.path / "report.html")
    summary = property(lambda self: self.path / "summary.txt")
    env = property(lambda self: self.path / "env.json")
    log = property(lambda self: self.path / "train.log")
    plots = property(lambda self: self.path / "plots")
    backup = property(lambda self: self.path / "backup")
    _status = property(lambda self: self.path / "run.json")

    @classmethod
    def create(cls, runs_dir, name: str) -> "RunDir":
        """A new, empty run directory; never an existing one, even for runs started in the same second."""
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}-{name}"
        for attempt in range(1, 1000):
            path = runs_dir / (stem if attempt == 1 else f"{stem}-{attempt}")
            try:
                path.mkdir()  # atomic: exactly one process gets each name
            except FileExistsError:
                continue
            return cls(path)
        raise FileExistsError(f"{runs_dir}: too many runs named {stem}")

    @classmethod
    def open(cls, path, need_model: bool = False) -> "RunDir":
        """An existing run directory, or NotARunError saying why not."""
        run = cls(path)
        if not run.path.is_dir():
            raise NotARunError(f"{run.path}: no such run directory; `cnnclf runs` lists the runs")
        if not run._status.is_file() or not run.config.is_file():
            raise NotARunError(f"{run.path}: not a cnnclf run directory (no run.json and config.yaml); "
                               f"pass a folder that `cnnclf train` made, like runs/<id>")
        if need_model and not run.model.is_file():
            state = run.status()
            raise NotARunError(f"{run.path}: this run has no model yet (status {state['status']}); "
                               f"`cnnclf resume {run.path}` continues its training")
        return run

    def status(self) -> dict:
        return json.loads(self._status.read_text())

    def set_status(self, status: str, **fields) -> None:
        assert status in STATUSES
        state = self.status() if self._status.exists() else {}
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        state.update(fields, status=status, updated_at=now, host=socket.gethostname(), pid=os.getpid())
        state.setdefault("started_at", now)
        if status != "failed":
            state.pop("error", None)
        write_json(self._status, state)

    def is_alive(self) -> bool:
        """Whether a process on this machine is still training this run."""
        state = self.status()
        if state["status"] != "running" or state.get("host") != socket.gethostname():
            return False
        try:
            os.kill(state["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return state["pid"] != os.getpid()


def read_history(path) -> list[dict]:
    """The rows of a history.csv: epoch as int, every other column as float."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if k != "epoch" else int(v) for k, v in row.items()} for row in csv.DictReader(f)]


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
    """Yield a temporary path beside `path`; rename it over `path` once the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        with deferred_interrupts():
            yield Path(tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)  # as an ordinary new file would be, not mkstemp's 0600
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --- interruptions ----------------------------------------------------------------------

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


# --- many runs --------------------------------------------------------------------------

RUN_COLUMNS = ("id", "dataset", "model", "parameters", "epochs", "best_val_accuracy", "test_accuracy",
               "wall_seconds", "status")


def summarize(run: RunDir) -> dict:
    """One row of `cnnclf runs`: what the run trained and how it did."""
    import yaml

    state, config = run.status(), yaml.safe_load(run.config.read_text())
    model = config["model"]
    metrics = json.loads(run.metrics.read_text()) if run.metrics.exists() else {}
    validation = [row["val_accuracy"] for row in read_history(run.history) if "val_accuracy" in row]
    status = state["status"]
    if status == "running" and not run.is_alive():
        status = "running (no process)"  # the machine or process was lost: resume it
    return {
        "id": run.path.name,
        "dataset": config["data"]["dataset"],
        "model": model.get("preset") or f"{len(model['layers'])} layers",
        "parameters": state.get("parameters"),
        "epochs": state.get("epochs_done"),
        "best_val_accuracy": round(max(validation), 4) if validation else None,
        "test_accuracy": round(metrics["test_accuracy"], 4) if metrics else None,
        "wall_seconds": state.get("wall_seconds"),
        "status": status,
    }


def list_runs(runs_dir, sort: str = "id") -> list[dict]:
    """Every run directory under runs_dir, summarized and sorted (numbers: best first)."""
    from cnnclf.errors import ConfigError

    if sort not in RUN_COLUMNS:
        raise ConfigError(f"--sort {sort}: not a column; one of {', '.join(RUN_COLUMNS)}")
    rows = [summarize(RunDir(p)) for p in sorted(Path(runs_dir).iterdir())
            if (p / "run.json").is_file() and (p / "config.yaml").is_file()] if Path(runs_dir).is_dir() else []
    numeric = sort not in ("id", "dataset", "model", "status")
    return sorted(rows, key=lambda r: (r[sort] is None, -r[sort] if numeric and r[sort] is not None else r[sort]))

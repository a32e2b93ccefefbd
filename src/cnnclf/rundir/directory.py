"""The run directory: everything one training run produced, and its status. RunDir is the only
reader and writer of these files.

runs/<UTC time>-<name>/
  run.json        status (running | completed | failed | interrupted), error, timings
  run.lock        held (an OS file lock) by the process training the run
  config.yaml     the fully resolved config: evaluate, plot and resume need nothing else
  split.csv       image files: which file is in which split (train, validation, test)
  model.keras     the best model (by train.checkpoint.monitor)
  history.csv     one row per epoch
  metrics.json    test metrics, per-class report, confusion matrix, calibration before and after
  calibration.json the temperature and the threshold for unknown answers, fitted on validation
  predictions.npz test labels and probabilities, and the sample images the plots show
  data_samples.npz a few training images per class
  summary.txt     the model summary
  env.json        versions, device, command line, data fingerprints
  train.log       what was printed
  plots/          learning curves, confusion matrix, samples, per-class accuracy, calibration
  report.html     everything above on one self-contained page
  backup/         training state while training (state.py), for `cnnclf resume`
"""

import contextlib
import csv
import datetime
import fcntl
import hashlib
import json
import os
import socket
import sys
from pathlib import Path

from cnnclf.atomic import UMASK, write_json
from cnnclf.errors import NotARunError, plural
from cnnclf.redaction import masked_argv

STATUSES = ("running", "completed", "failed", "interrupted", "pruned")  # pruned: stopped by `cnnclf tune`


class RunDir:
    def __init__(self, path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    split = property(lambda self: self.path / "split.csv")
    model = property(lambda self: self.path / "model.keras")
    history = property(lambda self: self.path / "history.csv")
    metrics = property(lambda self: self.path / "metrics.json")
    calibration = property(lambda self: self.path / "calibration.json")
    predictions = property(lambda self: self.path / "predictions.npz")
    data_samples = property(lambda self: self.path / "data_samples.npz")
    report = property(lambda self: self.path / "report.html")
    summary = property(lambda self: self.path / "summary.txt")
    env = property(lambda self: self.path / "env.json")
    log = property(lambda self: self.path / "train.log")
    plots = property(lambda self: self.path / "plots")
    backup = property(lambda self: self.path / "backup")
    status_file = property(lambda self: self.path / "run.json")
    _lock = property(lambda self: self.path / "run.lock")

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
        if not run.status_file.is_file() or not run.config.is_file():
            raise NotARunError(
                f"{run.path}: not a cnnclf run directory (no run.json and config.yaml); "
                f"pass a folder that `cnnclf train` made, like runs/<id>"
            )
        state = run.status()  # a damaged run.json is found here, whatever the command
        if need_model and not run.model.is_file():
            then = (
                "it is training now: try again once its first epoch is done"
                if state["status"] == "running" and run.is_alive()
                else f"`cnnclf resume {run.path}` continues its training"
            )
            raise NotARunError(f"{run.path}: this run has no model yet (status {state['status']}); {then}")
        return run

    # --- what the run's files say ----------------------------------------------------------

    def read_config(self):
        """The run's resolved config, validated as any config is."""
        from cnnclf.config import load_config

        return load_config(self.config)

    def status(self) -> dict:
        return self._read_json(self.status_file, "status")

    def read_metrics(self) -> dict | None:
        return self._read_json(self.metrics, "metrics") if self.metrics.exists() else None

    def read_history(self) -> list[dict]:
        return read_history(self.history)

    def saved_split(self) -> Path | None:
        """split.csv, where the run has one, once it is checked to be the split the run trained on:
        env.json holds its sha256, so a split.csv edited since (rows moved between parts, deleted or
        misspelt) is refused rather than evaluated or trained on."""
        if not self.split.exists():
            return None
        recorded = (self._read_json(self.env, "environment") if self.env.exists() else {}).get("data", {})
        expected = recorded.get("split_csv_sha256") if isinstance(recorded, dict) else None
        if expected and hashlib.sha256(self.split.read_bytes()).hexdigest() != expected:
            raise NotARunError(
                f"{self.split}: not the split this run trained on (it changed since: its sha256 differs from "
                f"env.json's); restore the file, or train a new run"
            )
        return self.split

    def class_names(self) -> list[str]:
        names = self.status().get("class_names")
        if not isinstance(names, list) or not names:
            raise NotARunError(f"{self.status_file}: names no classes; the run never started training")
        return [str(n) for n in names]

    def _read_json(self, path: Path, what: str) -> dict:
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise NotARunError(
                f"{path}: the run's {what} file is damaged ({e.__class__.__name__}); the run cannot be used as it is"
            ) from None
        if not isinstance(value, dict) or (path == self.status_file and value.get("status") not in STATUSES):
            raise NotARunError(f"{path}: the run's {what} file is damaged (not a cnnclf {what} record)")
        return value

    def set_status(self, status: str, **fields) -> None:
        assert status in STATUSES
        state = self.status() if self.status_file.exists() else {}
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        state.update(fields, status=status, updated_at=now, host=socket.gethostname(), **process_identity())
        state.setdefault("started_at", now)
        if status != "failed":
            state.pop("error", None)
        write_json(self.status_file, state)

    # --- who is training it ------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self):
        """Hold the run's lock for the block: an OS file lock, released when the process ends however
        it ends. A second process gets NotARunError naming the holder."""
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT, 0o666 & ~UMASK)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._taken(_read_holder(fd)) from None
            os.ftruncate(fd, 0)
            now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            os.pwrite(
                fd, json.dumps({**process_identity(), "since": now, "command": masked_argv(sys.argv)}).encode(), 0
            )
            yield
        finally:
            os.close(fd)  # releases the lock

    def check_free(self) -> None:
        """NotARunError naming the process that trains the run now, if one does (before TensorFlow starts
        for a `resume` that the lock would refuse anyway)."""
        if self.is_alive():
            fd = os.open(self._lock, os.O_RDONLY)
            try:
                raise self._taken(_read_holder(fd))
            finally:
                os.close(fd)

    def _taken(self, holder: dict) -> NotARunError:
        return NotARunError(
            f"{self.path}: this run is being trained by process {holder.get('pid', '?')} "
            f"({' '.join(holder.get('command', []))[:100] or 'cnnclf'}, since "
            f"{holder.get('since', '?')}); wait for it or stop it first"
        )

    def in_training(self) -> str | None:
        """Where a process is training the run now: what the model file holds meanwhile (its best epoch so
        far), in words; None for a run that is not being trained."""
        state = self.status()
        if state["status"] != "running" or not self.is_alive():
            return None
        kept = kept_epoch(self, self.read_history())
        best = f"its best epoch so far, {kept}" if kept else "no finished epoch yet"
        done = plural(state.get("epochs_done", 0), "epoch")
        return f"{self.path.name} is still training ({done} done): its model is {best}"

    def is_alive(self) -> bool:
        """Whether a process on this machine is training this run (it holds the run's lock)."""
        if not self._lock.exists():
            return False
        fd = os.open(self._lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd).get("pid") != os.getpid()
        finally:
            os.close(fd)
        return False


def process_identity(pid: int | None = None) -> dict:
    """A process as the OS knows it: its id and when it started (clock ticks after boot), and
    the boot, so that a reused PID is not mistaken for the process that wrote a record."""
    pid = pid or os.getpid()
    identity: dict = {"pid": pid}
    try:
        with open(f"/proc/{pid}/stat") as f:
            identity["process_start"] = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/sys/kernel/random/boot_id") as f:
            identity["boot_id"] = f.read().strip()
    except (OSError, IndexError, ValueError):
        pass
    return identity


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 65536, 0) or b"{}")
    except ValueError:
        return {}


def read_history(path) -> list[dict]:
    """The rows of a history.csv: epoch as int, phase as text, every other column as float."""
    if not os.path.exists(path):
        return []
    try:
        with open(path, newline="") as f:
            return [
                {k: v if k == "phase" else int(v) if k == "epoch" else float(v) for k, v in row.items()}
                for row in csv.DictReader(f)
            ]
    except (ValueError, TypeError, csv.Error, UnicodeDecodeError) as e:
        raise NotARunError(
            f"{path}: the run's history file is damaged ({e.__class__.__name__}); `cnnclf resume` "
            f"writes it again from the saved training state"
        ) from None


def kept_epoch(run: RunDir, rows: list[dict]) -> int | None:
    """The epoch whose model is model.keras: the best by the checkpoint's monitor, else the last."""
    if not rows:
        return None
    checkpoint = run.read_config().train.checkpoint
    if checkpoint is None or checkpoint.monitor not in rows[0]:
        return rows[-1]["epoch"]
    higher = checkpoint.mode == "max" or (checkpoint.mode == "auto" and "acc" in checkpoint.monitor)
    values = [r[checkpoint.monitor] for r in rows]
    best = max(values) if higher else min(values)
    return rows[values.index(best)]["epoch"]


def kept_description(run: RunDir) -> str:
    """Which epoch's model model.keras is, in words: "epoch 7's model (the best val_loss)", or
    "the last epoch's model (epoch 8)" where no checkpoint chooses one."""
    rows = run.read_history()
    kept = kept_epoch(run, rows)
    checkpoint = run.read_config().train.checkpoint
    if kept is None:
        return "the model"
    if checkpoint is None or not rows or checkpoint.monitor not in rows[0]:
        return f"the last epoch's model (epoch {kept})"
    return f"epoch {kept}'s model (the best {checkpoint.monitor})"

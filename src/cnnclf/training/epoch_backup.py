"""Training state between epochs: what `cnnclf resume` continues from.

After each epoch the whole state is written into a new directory, backup/.partial-NNNN, and only
when it is complete renamed to backup/epoch-NNNN. That directory is the one source of truth for
the last finished epoch: a process killed at any instant (kill -9 included) leaves either the
previous epoch's directory or the new one, each whole, and the previous one is removed only once
the new one exists. It holds:
  weights.weights.h5   the model's weights and the optimizer's state (its step counter too, hence
                       the position in the learning-rate schedule and the data order)
  state.json           the epoch, the history rows so far, the phase (train, or fine_tune from which
                       epoch), early stopping's wait count and best value, the checkpoint's best value,
                       and whether the phase has finished
  random_state.npz     the random-generator states of dropout and augmentation layers
  early_stopping.npz   early stopping's best weights, when it keeps them
  best.keras           the best model so far (a hard link to the previous epoch's when unchanged)
history.csv and model.keras in the run directory are published from it, after it is complete.
"""

import csv
import io
import json
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from cnnclf import compat
from cnnclf.atomic import is_disk_full, write_bytes, write_json, write_text
from cnnclf.errors import DiskFull, RunError, first_line
from cnnclf.rundir.directory import RunDir
from cnnclf.signals import deferred_interrupts

EARLY_STOPPING_FIELDS = compat.EARLY_STOPPING_FIELDS  # early stopping's state, which Keras keeps nowhere else


class TrainingState(keras.callbacks.Callback):
    """Saves the state after every epoch and restores it for a resumed run. Put it last in the
    callback list, so that the callbacks whose state it saves have finished their epoch."""

    def __init__(self, run: RunDir, early_stopping=None, checkpoint=None, phases: bool = False):
        super().__init__()
        self.run, self.early_stopping, self.checkpoint = run, early_stopping, checkpoint
        self.phases = phases  # history rows name their phase (a run that fine-tunes)
        self.candidate = run.backup / "best-candidate.keras"  # where the checkpoint writes a new best
        self.latest = latest_state(run.backup)
        self.saved = json.loads((self.latest / "state.json").read_text()) if self.latest else {}
        self.rows: list[dict] = list(self.saved.get("history", []))
        self.phase, self.phase_start = self.saved.get("phase", "train"), self.saved.get("phase_start", 0)

    def first_epoch(self) -> int:
        return self.saved.get("epoch", 0)

    def finished(self) -> bool:
        """Whether the current phase has finished (its last epoch, or early stopping, is behind it)."""
        return self.saved.get("finished", False) and self.saved.get("phase", "train") == self.phase

    def begin_phase(self, phase: str) -> None:
        """The next phase starts at the epoch reached; early stopping starts afresh in it."""
        self.phase, self.phase_start = phase, self.first_epoch()

    def restore_weights(self, model: keras.Model) -> None:
        """Load the saved weights and optimizer state into the compiled model, before fit, and
        publish the run directory's files from the saved state again."""
        if self.latest is None:
            return
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(self.latest / "weights.weights.h5")
        except (OSError, ValueError) as e:
            raise RunError(
                f"{self.latest}: the saved training state does not load ({first_line(e)}); the run "
                f"cannot be resumed, `cnnclf train --from {self.run.path}` starts it again"
            ) from None
        with np.load(self.latest / "random_state.npz") as f:
            for i, variable in enumerate(_random_state(model)):
                variable.assign(f[f"arr_{i}"])
        self._publish(self.latest)

    def on_train_begin(self, logs=None):
        compat.callback_state_fields(self.early_stopping, self.checkpoint)  # as their own on_train_begin left them
        if not self.saved:
            return
        es, latest = self.early_stopping, self.latest
        if (
            es is not None
            and latest is not None
            and "early_stopping" in self.saved
            and self.saved.get("phase", "train") == self.phase
        ):
            for field in EARLY_STOPPING_FIELDS:
                setattr(es, field, self.saved["early_stopping"][field])
            weights = latest / "early_stopping.npz"
            if weights.exists():
                with np.load(weights) as f:
                    es.best_weights = [f[f"arr_{i}"] for i in range(len(f.files))]
        if self.checkpoint is not None:
            self.checkpoint.best = self.saved.get("checkpoint_best")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        self.rows.append(
            {
                "epoch": epoch + 1,
                **({"phase": self.phase} if self.phases else {}),
                **{k: float(v) for k, v in (logs or {}).items()},
                "seconds": round(now - self.epoch_started, 3),
                "time": round(now, 3),
            }
        )  # time: Unix
        with deferred_interrupts():
            self._commit(f"epoch-{epoch + 1:04d}", self._state(epoch + 1, finished=False))
        self.run.set_status("running", epochs_done=epoch + 1)  # `cnnclf runs` follows the run epoch by epoch

    def on_train_end(self, logs=None):
        """The phase is over: its state again, as early stopping may have restored its best weights."""
        with deferred_interrupts():
            self._commit(f"epoch-{self.first_epoch():04d}-end", self._state(self.first_epoch(), finished=True))

    def _state(self, epoch: int, finished: bool) -> dict:
        state = {
            "epoch": epoch,
            "phase": self.phase,
            "phase_start": self.phase_start,
            "finished": finished,
            "history": self.rows,
        }
        es = self.early_stopping
        if es is not None:
            state["early_stopping"] = {f: _plain(getattr(es, f)) for f in EARLY_STOPPING_FIELDS}
        if self.checkpoint is not None:
            state["checkpoint_best"] = _plain(self.checkpoint.best)
        return state

    def _commit(self, name: str, state: dict) -> None:
        partial = self.run.backup / f".partial-{name.removeprefix('epoch-')}"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            partial.mkdir(parents=True)
            self._check_space(partial)
            self.model.save_weights(partial / "weights.weights.h5")
            _write_arrays(partial / "random_state.npz", [v.numpy() for v in _random_state(self.model)])
            es = self.early_stopping
            if es is not None and es.best_weights is not None:
                if (
                    es.best_epoch == state["epoch"] - 1
                    or self.latest is None
                    or not (self.latest / "early_stopping.npz").exists()
                ):
                    _write_arrays(partial / "early_stopping.npz", es.best_weights)
                else:
                    _link_or_copy(self.latest / "early_stopping.npz", partial / "early_stopping.npz")
            if self.candidate.exists():
                os.replace(self.candidate, partial / "best.keras")
            elif self.latest is not None and (self.latest / "best.keras").exists():
                _link_or_copy(self.latest / "best.keras", partial / "best.keras")
            write_json(partial / "state.json", state)
            done = self.run.backup / name
            os.rename(partial, done)  # the epoch is saved: everything it vouches for is in place
        except (OSError, RuntimeError) as e:
            if is_disk_full(e) or _no_space(self.run.backup):
                shutil.rmtree(partial, ignore_errors=True)  # what was written of it: room for the next try
                raise DiskFull(getattr(e, "path", None) or partial) from None
            raise
        previous, self.latest, self.saved = self.latest, done, state
        self._publish(done)
        if previous is not None and previous != done:
            shutil.rmtree(previous, ignore_errors=True)

    def _check_space(self, partial: Path) -> None:
        """Refuse to start saving what would not fit: h5py, failing half-way through a file, can take the
        process down when it later closes it. The estimate: the last state's size, or for the first one
        the model's variables (weights and optimizer slots) three times over, with room to spare."""
        needed = _size(self.latest) if self.latest else 3 * 4 * sum(int(np.prod(v.shape)) for v in self.model.variables)
        if shutil.disk_usage(partial).free < 1.5 * needed + (1 << 20):
            raise DiskFull(partial)

    def _publish(self, saved: Path) -> None:
        """history.csv and model.keras in the run directory, as the saved state has them."""
        rows = json.loads((saved / "state.json").read_text())["history"]
        if rows:
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=list(rows[-1]), extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            write_text(self.run.history, out.getvalue())
        if (saved / "best.keras").exists():
            publish_model(saved / "best.keras", self.run.model)


def latest_state(backup: Path) -> Path | None:
    """The last complete epoch's state directory, if any; partial ones are left for _commit to replace."""
    done = sorted(backup.glob("epoch-[0-9][0-9][0-9][0-9]*")) if backup.is_dir() else []
    return done[-1] if done else None


def publish_model(source: Path, target: Path) -> None:
    """Put `source` at `target` atomically (a hard link where the filesystem allows it)."""
    if target.exists() and os.path.samefile(source, target):
        return  # published already (and rename(2) of two links to one file would do nothing)
    tmp = target.with_name(f".{target.name}.publish")
    if tmp.exists():
        tmp.unlink()
    _link_or_copy(source, tmp)
    os.replace(tmp, target)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _random_state(model) -> list:
    """Seed-generator states (dropout, augmentation): variables that are not weights."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _write_arrays(path, arrays) -> None:
    out = io.BytesIO()
    np.savez(out, *arrays)
    write_bytes(path, out.getvalue())


def _plain(value):
    """A callback's number (a Python, numpy or backend float, or an int) as JSON can hold it."""
    if value is None or isinstance(value, int):
        return value
    return float(value)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _no_space(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False

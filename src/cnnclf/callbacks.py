"""Keras callbacks that keep a run directory complete and resumable."""

import csv
import io
import json
import logging
import math
import os
import time

import keras
import numpy as np

from cnnclf.errors import NonFiniteLoss
from cnnclf.runs import RunDir, deferred_interrupts, read_history, write_bytes, write_json, write_text

log = logging.getLogger("cnnclf")


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that raises NonFiniteLoss naming the epoch and batch. Raising (rather
    than stopping) leaves the bad epoch unsaved: the backup and model.keras keep the last
    good state."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            # Keras reports every steps_per_execution steps: the loss went bad in that group.
            first = max(batch + 1 - self.model.steps_per_execution + 1, 1)
            raise NonFiniteLoss(self.epoch + 1, first, batch + 1, float(loss))


class Progress(keras.callbacks.Callback):
    """One line per epoch on stderr (and in train.log); times the start of the first training step."""

    def __init__(self, epochs: int, started: float):
        super().__init__()
        self.epochs, self.started = epochs, started
        self.time_to_first_step = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_train_batch_begin(self, batch, logs=None):
        if self.time_to_first_step is None:  # start-up: imports, data, model; not the step's tracing
            self.time_to_first_step = time.time() - self.started

    def on_epoch_end(self, epoch, logs=None):
        values = "  ".join(f"{k} {float(v):.4g}" for k, v in (logs or {}).items() if k != "learning_rate")
        log.info(f"epoch {epoch + 1}/{self.epochs}  {values}  ({time.time() - self.epoch_started:.1f} s)")


class HistoryFile(keras.callbacks.Callback):
    """history.csv, one row per epoch, rewritten atomically when TrainingState saves the epoch, so
    that a signal cannot fall between the two. On resume the rows of epochs the backup does not
    cover are dropped, so no epoch appears twice."""

    def __init__(self, path, first_epoch: int):
        super().__init__()
        self.path, self.first_epoch = path, first_epoch

    def on_train_begin(self, logs=None):
        self.rows = read_history(self.path)[: self.first_epoch]

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
               "seconds": round(now - self.epoch_started, 3), "time": round(now, 3)}  # time: Unix, epoch end
        self.rows.append(row)

    def write(self):
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(self.rows[-1]), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, out.getvalue())


class TrainingState(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore (weights, optimizer state and its step, hence the position in
    the learning-rate schedule, and the epoch), plus what it leaves out:
    - the early-stopping wait count, best value and best weights,
    - the checkpoint's best value (Keras loses it on restore: keras issue 17012),
    - the random-generator state of dropout and augmentation layers,
    - whether training already finished (so a run interrupted while evaluating is not retrained).
    It also promotes the checkpoint's new best model to model.keras by an atomic rename, and
    writes history.csv (its `history` callback), with interrupts held until the epoch is saved whole.
    Put it last in the callback list, after `history`, so the callbacks it saves have finished their epoch.
    """

    def __init__(self, run: RunDir, early_stopping=None, checkpoint=None):
        super().__init__(backup_dir=str(run.backup), delete_checkpoint=False)
        self.run, self.early_stopping, self.checkpoint = run, early_stopping, checkpoint
        self.state_file = run.backup / "callbacks.json"
        self.history = HistoryFile(run.history, self.first_epoch())

    def saved(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def first_epoch(self) -> int:
        return self.saved().get("epoch", 0)

    def finished(self) -> bool:
        return self.saved().get("finished", False)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state = self.saved()
        if not state:
            return
        es = self.early_stopping
        if es is not None:
            es.wait, es.best, es.best_epoch, es.stopped_epoch = (state["early_stopping"][k] for k in
                                                                 ("wait", "best", "best_epoch", "stopped_epoch"))
            weights = self.run.backup / "early_stopping_best.npz"
            if weights.exists():
                with np.load(weights) as f:
                    es.best_weights = [f[f"arr_{i}"] for i in range(len(f.files))]
        if self.checkpoint is not None:
            self.checkpoint.best = state["checkpoint_best"]
        with np.load(self.run.backup / "random_state.npz") as f:
            for i, variable in enumerate(_random_state(self.model)):
                variable.assign(f[f"arr_{i}"])

    def on_epoch_end(self, epoch, logs=None):
        with deferred_interrupts():
            candidate = self.run.backup / "best.keras"
            if candidate.exists():
                os.replace(candidate, self.run.model)
            super().on_epoch_end(epoch, logs)
            self.history.write()
            es = self.early_stopping
            if es is not None and es.best_weights is not None and es.best_epoch == epoch:
                _write_arrays(self.run.backup / "early_stopping_best.npz", es.best_weights)
            _write_arrays(self.run.backup / "random_state.npz", [v.numpy() for v in _random_state(self.model)])
            state = {"epoch": epoch + 1, "finished": False}
            if es is not None:
                state["early_stopping"] = {"wait": es.wait, "best": _plain(es.best), "best_epoch": es.best_epoch,
                                           "stopped_epoch": es.stopped_epoch}
            if self.checkpoint is not None:
                state["checkpoint_best"] = _plain(self.checkpoint.best)
            write_json(self.state_file, state)

    def on_train_end(self, logs=None):
        write_json(self.state_file, {**self.saved(), "finished": True})


def _random_state(model) -> list:
    """Seed-generator states (dropout, augmentation): variables that are not weights."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _write_arrays(path, arrays) -> None:
    out = io.BytesIO()
    np.savez(out, *arrays)
    write_bytes(path, out.getvalue())


def _plain(value):
    return None if value is None else float(value)

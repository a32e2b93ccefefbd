"""Keras callbacks for training: a NaN loss or NaN weights stop it, and each epoch prints one line."""

import logging
import math
import time

import keras
import numpy as np

from cnnclf.errors import NonFiniteLoss, NonFiniteWeights

log = logging.getLogger("cnnclf")


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that raises NonFiniteLoss naming the epoch and batch, and NonFiniteWeights when
    an epoch ends with a weight that is not finite: a NaN kernel does not always make the loss NaN
    (on CPUs, TensorFlow's max-pool and oneDNN's fused ReLU turn NaN into numbers, so such a run
    would finish at chance). Raising (rather than stopping) leaves the bad epoch unsaved: the backup
    and model.keras keep the last good state; this callback comes before the ones that save."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            # Keras reports every steps_per_execution steps: the loss went bad in that group.
            first = max(batch + 1 - self.model.steps_per_execution + 1, 1)
            raise NonFiniteLoss(self.epoch + 1, first, batch + 1, float(loss))

    def on_epoch_end(self, epoch, logs=None):
        for weight in self.model.weights:  # batch norm's moving statistics too
            if not np.isfinite(keras.ops.convert_to_numpy(weight.value)).all():
                raise NonFiniteWeights(epoch + 1, weight.path)


class EpochLines(keras.callbacks.Callback):
    """One line per epoch on stderr (and in train.log); times the start of the first training step."""

    def __init__(self, epochs: int, started: float):
        super().__init__()
        self.epochs, self.started = epochs, started  # epochs: of all phases
        self.phase = ""  # named where a run has two: "head" (the backbone frozen), then "fine-tuning"
        self.time_to_first_step: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_train_batch_begin(self, batch, logs=None):
        if self.time_to_first_step is None:  # start-up: imports, data, model; not the step's tracing
            self.time_to_first_step = time.time() - self.started

    def on_epoch_end(self, epoch, logs=None):
        values = "  ".join(f"{k} {float(v):.4g}" for k, v in (logs or {}).items() if k != "learning_rate")
        phase = f" ({self.phase})" if self.phase else ""
        log.info(f"epoch {epoch + 1}/{self.epochs}{phase}  {values}  ({time.time() - self.epoch_started:.1f} s)")

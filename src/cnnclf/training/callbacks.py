"""Keras callbacks for training: a NaN loss or NaN weights stop it, lookahead moves the weights, and
each epoch prints one line."""

import logging
import math
import threading
import time

import keras
import numpy as np

from cnnclf import progress
from cnnclf.errors import NonFiniteLoss, NonFiniteWeights

log = logging.getLogger("cnnclf")

TICK = 1.0  # seconds between progress bars within an epoch


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


class LearningRate(keras.callbacks.Callback):
    """The learning rate at each epoch's end, in its logs (history.csv's learning_rate column): where the
    schedule is, warm-up, cosine or a time budget's, epoch by epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class Lookahead(keras.callbacks.Callback):
    """train.lookahead, airbench's: every `every_steps` steps and at each epoch's last step, the
    weights (batch normalization's statistics too) become share x their value at the previous move
    + (1 - share) x their value now, and that is the next move's start; share = decay x (step /
    total steps)^3, so the average matters only late in training. An epoch ends on a move, so its
    saved weights are the whole state: a resumed run moves as an uninterrupted one. Keras calls
    back once per steps_per_execution steps; its `auto` is every_steps with lookahead."""

    def __init__(self, every_steps: int, decay: float, steps_per_epoch: int, total_steps: int):
        super().__init__()
        self.every, self.decay, self.steps, self.total = every_steps, decay, steps_per_epoch, total_steps

    def on_epoch_begin(self, epoch, logs=None):
        self.weights = [w for w in self.model.weights if keras.backend.is_float_dtype(w.dtype)]
        self.start = [keras.ops.convert_to_numpy(w.value) for w in self.weights]
        self.done = 0

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) // self.every > self.done // self.every or batch + 1 >= self.steps:
            share = self.decay * min(int(self.model.optimizer.iterations) / self.total, 1.0) ** 3
            for weight, start in zip(self.weights, self.start):
                start *= share
                start += (1 - share) * keras.ops.convert_to_numpy(weight.value)
                weight.assign(start)
        self.done = batch + 1


class EpochLines(keras.callbacks.Callback):
    """One line per epoch on stderr (and in train.log); times the start of the first training step.
    An epoch that takes longer than progress.SILENCE also shows how far it has got (transient lines:
    a bar on a terminal, never in train.log), read every second from the optimizer's step counter,
    since Keras calls back only once per steps_per_execution steps."""

    def __init__(self, epochs: int, started: float):
        super().__init__()
        self.epochs, self.started = epochs, started  # epochs: of all phases
        self.phase = ""  # named where a run has two: "head" (the backbone frozen), then "fine-tuning"
        self.steps, self.batch_size = 0, 0  # per epoch of the phase, set with the phase
        self.time_to_first_step: float | None = None
        self._ticker: threading.Event | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()
        self._ticker = threading.Event()
        counter = self.model.optimizer.iterations
        threading.Thread(target=self._tick, args=(epoch, counter, _count(counter), self._ticker), daemon=True).start()

    def on_train_batch_begin(self, batch, logs=None):
        if self.time_to_first_step is None:  # start-up: imports, data, model; not the step's tracing
            self.time_to_first_step = time.time() - self.started

    def on_epoch_end(self, epoch, logs=None):
        if self._ticker is not None:
            self._ticker.set()
        values = "  ".join(f"{k} {float(v):.4g}" for k, v in (logs or {}).items() if k != "learning_rate")
        phase = f" ({self.phase})" if self.phase else ""
        log.info(f"epoch {epoch + 1}/{self.epochs}{phase}  {values}  ({time.time() - self.epoch_started:.1f} s)")

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        """Stop the progress bar: at the end of training, and where training ends by an exception
        (which Keras does not follow with on_train_end)."""
        if self._ticker is not None:
            self._ticker.set()

    def _tick(self, epoch: int, counter, first: int | None, stop: threading.Event) -> None:
        while not stop.wait(TICK) and stop is self._ticker:
            elapsed = time.time() - self.epoch_started
            if elapsed < progress.SILENCE or not self.steps:
                continue
            now = _count(counter)
            if now is None or first is None or now < first:
                return  # the counter cannot be read here (a distributed variable, say): no bar
            done = now - first
            log.info(
                progress.bar(
                    f"epoch {epoch + 1}/{self.epochs}", min(done, self.steps), self.steps, elapsed, self.batch_size
                ),
                extra={"transient": True},
            )


def _count(counter) -> int | None:
    try:
        return int(keras.ops.convert_to_numpy(counter))
    except Exception:  # noqa: BLE001 - a step counter that cannot be read from another thread
        return None

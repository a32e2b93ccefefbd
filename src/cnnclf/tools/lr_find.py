"""`cnnclf lr-find`: the learning-rate range test (Smith; fastai's lr_find, Lightning's Tuner.lr_find).

The config's model, compiled with its optimizer at a constant rate, trains one step at a time while
the rate grows exponentially from `low` to `high` over `steps` steps; each step's loss (the batch's
own, recovered from Keras's running mean) is smoothed, and the sweep stops once the smoothed loss
passes DIVERGED times its best. The suggested rate is where the smoothed loss falls fastest (the
steepest descent against the log of the rate), before its minimum. Nothing is kept but the plot:
no run directory, no model.
"""

import logging
import math

import keras
import numpy as np

from cnnclf.config import Config, override

log = logging.getLogger("cnnclf")

DIVERGED = 4.0  # the sweep stops where the smoothed loss passes this many times its best
SMOOTHING = 0.9  # of the exponential moving average of the loss (bias-corrected)


class _Sweep(keras.callbacks.Callback):
    def __init__(self, low: float, high: float, steps: int):
        super().__init__()
        self.rates = np.geomspace(low, high, steps)
        self.seen: list[tuple[float, float]] = []  # (rate, the batch's loss)
        self.mean, self.average, self.best = 0.0, 0.0, math.inf

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = float(self.rates[batch])

    def on_train_batch_end(self, batch, logs=None):
        mean = float((logs or {})["loss"])  # Keras's running mean over the epoch so far
        loss = (batch + 1) * mean - batch * self.mean
        self.mean = mean
        if not math.isfinite(loss):
            self.model.stop_training = True
            return
        self.average = SMOOTHING * self.average + (1 - SMOOTHING) * loss
        smoothed = self.average / (1 - SMOOTHING ** (batch + 1))
        self.seen.append((float(self.rates[batch]), smoothed))
        self.best = min(self.best, smoothed)
        if smoothed > DIVERGED * self.best:
            self.model.stop_training = True


def sweep(config: Config, data, steps: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """The rates tried and the smoothed loss at each."""
    from cnnclf.data.pipeline import training_batches
    from cnnclf.training.train import prepare

    constant = override(
        config,
        {
            "train.lr_schedule": "constant",
            "train.warmup_epochs": 0,
            "train.lookahead": None,
            "train.ema": None,
            "train.steps_per_execution": 1,  # the rate moves every step
            "train.time_budget": None,
            "train.optimizer.learning_rate": low,
        },
    )
    session = prepare(constant, data)
    splits, model = data.splits, session.model
    batches, per_epoch = training_batches(
        splits.train,
        session.compute.batch_size,
        config.seed,
        model.optimizer.iterations,
        splits.num_classes,
        config.data.labels == "onehot",
    )
    recorder = _Sweep(low, high, steps)
    model.fit(batches.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[recorder], shuffle=False, verbose=0)
    rates, losses = (np.array(v) for v in zip(*recorder.seen)) if recorder.seen else (np.zeros(0), np.zeros(0))
    log.info(f"swept {len(rates)} steps ({len(rates) / per_epoch:.1f} epochs) from {low:g} to {rates[-1]:.3g}")
    return rates, losses


def suggest(rates: np.ndarray, losses: np.ndarray) -> float:
    """Where the smoothed loss falls fastest against log(rate), before its lowest point."""
    lowest = int(np.argmin(losses))
    if lowest < 2:
        return float(rates[lowest] / 10)
    slopes = np.gradient(losses[: lowest + 1], np.log(rates[: lowest + 1]))
    return float(rates[int(np.argmin(slopes))])

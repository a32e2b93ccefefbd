"""The train: section of the config: optimizer, schedule, loss and metrics, epochs and batches,
early stopping and checkpoints, fine-tuning, class weights, compute levers, distribution, tracking."""

import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_serializer,
    field_validator,
    model_validator,
)

from cnnclf.config.base import Section, on_off
from cnnclf.errors import did_you_mean, listing
from cnnclf.model import keras_names


class OptimizerConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # other keyword arguments go to the Keras optimizer

    name: str = "adam"
    learning_rate: PositiveFloat | None = None  # null: the optimizer's own default

    @field_validator("name")
    @classmethod
    def _known(cls, name):
        valid = keras_names.optimizer_names()
        if name.lower() not in valid:
            raise ValueError(
                f"{name!r} is not a Keras optimizer{did_you_mean(name.lower(), valid)}; valid: {', '.join(valid)}"
            )
        return name.lower()

    @model_validator(mode="after")
    def _plain_extras(self):
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, (bool, int, float, str)) and value is not None:
                raise ValueError(f"{key}: optimizer arguments are numbers, strings or booleans, got {value!r}")
        return self


class EarlyStoppingConfig(Section):
    monitor: str = "val_loss"
    patience: NonNegativeInt = 2  # epochs without improvement before stopping
    min_delta: NonNegativeFloat = 0.0  # smallest change that counts as an improvement
    restore_best_weights: bool = True
    mode: Literal["auto", "min", "max"] = "auto"


class CheckpointConfig(Section):
    monitor: str = "val_loss"  # the best model by this value is kept as model.keras
    mode: Literal["auto", "min", "max"] = "auto"


class MlflowConfig(Section):
    tracking_uri: str  # e.g. http://mlflow.example:5000, sqlite:///mlflow.db, file:///path/mlruns
    experiment: str = "cnnclf"


class FineTuneConfig(Section):
    """A second phase in the same run: the backbone unfrozen, at a small learning rate."""

    epochs: PositiveInt = 5
    learning_rate: PositiveFloat = 1.0e-5
    unfreeze: Literal["all"] | PositiveInt = "all"  # all, or the backbone's last N layers
    # (batch normalization stays in inference mode either way, as Keras's transfer-learning guide says)


class EmaConfig(Section):
    """An exponential moving average of the weights, which validation, checkpoints and the final model use."""

    decay: float = Field(0.99, gt=0, lt=1)  # per step: the average forgets the past by this factor
    every_steps: PositiveInt | None = None  # the model takes the average every this many steps (null: each epoch)


class LookaheadConfig(Section):
    """Lookahead (airbench's): every few steps the weights move to an average of themselves and the
    weights of the last such move, an average that counts for more as training ends."""

    every_steps: PositiveInt = 5  # steps between moves (and at each epoch's last step)
    decay: float = Field(0.95**5, ge=0, lt=1)  # the old weights' share at the end; it grows as (step/steps)^3


class TrainConfig(Section):
    optimizer: OptimizerConfig = OptimizerConfig()  # a name, or {name: rmsprop, learning_rate: 0.001}
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 by the last epoch
    warmup_epochs: float = Field(0.0, ge=0, le=100_000)  # linear warm-up from 0, before the schedule
    loss: str = "auto"  # auto: (sparse_)categorical_crossentropy, following data.labels
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # needs data.labels: onehot
    metrics: list[str] = ["accuracy"]
    epochs: int = Field(10, gt=0, le=100_000)
    time_budget: float | None = None  # seconds of fitting ("90s", "5m", "1h"): the epochs (replacing `epochs`)
    # and the schedule are planned from the speed measured on this machine before training (budget.py)
    steps_per_epoch: PositiveInt | None = None  # epochs of this many steps, fewer than the training images
    # make (each epoch other images); a time budget sets it to end where the budget does (null: them all)
    batch_size: PositiveInt = 32  # images per training step
    eval_batch_size: Literal["auto"] | PositiveInt = "auto"  # images per validation/test step; auto: as
    # many as fit in 64 MB of activations (at least batch_size, at most 1024)
    early_stopping: EarlyStoppingConfig | None = EarlyStoppingConfig()  # or false
    checkpoint: CheckpointConfig | None = CheckpointConfig()  # or false: keep the last epoch's model
    deterministic: bool = False  # TensorFlow's deterministic ops: same config and seed, same metrics
    # Compute levers; auto picks what the benchmark measured fastest on the device (BENCHMARKS.md).
    steps_per_execution: Literal["auto"] | PositiveInt = "auto"  # training steps per call into TF
    jit_compile: Literal["auto"] | bool = "auto"  # XLA; auto: on GPUs, off on CPUs
    mixed_precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    threads: Literal["auto"] | PositiveInt = "auto"  # TensorFlow's intra-op threads; auto: all cores
    conv_gradients: Literal["auto", "tensorflow", "forward"] = "auto"  # of stride-1 Conv2D layers: TensorFlow's
    # kernels, or forward convolutions (conv_gradients.py); auto: forward on CPUs, TensorFlow's on GPUs
    distribute: Literal["none", "auto", "mirrored", "multi_worker"] = "none"  # auto: mirrored on 2+ GPUs
    batch_size_per_replica: bool = False  # true: batch_size per replica, false: per step across all replicas
    scale_learning_rate: bool = False  # times the replicas, with batch_size_per_replica (linear scaling)
    cpu_replicas: PositiveInt = 1  # mirrored without GPUs: split the CPU into this many devices
    ema: EmaConfig | None = None  # averaged weights (Keras's optimizer EMA); or false
    lookahead: LookaheadConfig | None = None  # true, or {every_steps, decay}; or false
    norm_bias_lr_multiplier: PositiveFloat = 1.0  # batch normalization's offsets (beta) learn at this many
    # times the learning rate (airbench: 64); their weight decay stays the others'
    fine_tune: FineTuneConfig | None = None  # with model.backbone: a second phase, the backbone unfrozen
    class_weight: Literal["none", "balanced"] | dict[str, PositiveFloat] = "none"  # balanced: each class
    # weighs images / (classes x its images) in the loss; or {class name: weight}, others 1
    tensorboard: bool = False  # TensorBoard logs in <run>/tensorboard
    mlflow: MlflowConfig | None = None  # log params, metrics, artifacts and the model to MLflow

    @field_validator("time_budget", mode="before")
    @classmethod
    def _seconds(cls, value):
        """'90s', '5m', '1.5h' or a number of seconds -> seconds (at least 1, at most a week)."""
        if isinstance(value, str):
            found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*", value)
            if not found:
                raise ValueError("a time budget is seconds, or a number with s, m or h: 90s, 5m, 1h")
            value = float(found[1]) * {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[found[2]]
        if value is not None and not (isinstance(value, (int, float)) and 1 <= value <= 7 * 24 * 3600):
            raise ValueError("a time budget is 1 second to a week: 90s, 5m, 1h")
        return value

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @field_validator("early_stopping", "checkpoint", "fine_tune", "ema", "lookahead", mode="before")
    @classmethod
    def _switch(cls, value):
        return on_off(value)

    @field_serializer("early_stopping", "checkpoint", "fine_tune", "ema", "lookahead")
    def _off_is_false(self, value):
        return False if value is None else value.model_dump()

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics):
        valid = keras_names.metric_names()
        for name in metrics:
            if name not in valid:
                raise ValueError(
                    f"{name!r} is not a Keras metric{did_you_mean(name, valid)}; valid: {listing(valid, 12)}"
                )
        return metrics

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, loss):
        valid = keras_names.loss_names()
        if loss != "auto" and loss not in valid:
            raise ValueError(
                f"{loss!r} is not a Keras loss{did_you_mean(loss, valid)}; use auto, or a name such "
                f"as categorical_crossentropy"
            )
        return loss

    def monitors(self) -> list[str]:
        """Values that early stopping and the checkpoint can watch."""
        names = ["loss", *self.metrics]
        return names + [f"val_{n}" for n in names]

"""Compiling a model: optimizer and learning-rate schedule, loss and metrics, and the compute levers;
and the second training phase, fine-tuning, which unfreezes a backbone and compiles again."""

import inspect

import keras

from cnnclf import compat
from cnnclf.model import backbones
from cnnclf.model.build import all_layers, construct
from cnnclf.model.loss import make_loss
from cnnclf.training.compute import Compute
from cnnclf.training.conv_gradients import use_forward_convolutions


def compile_model(model: keras.Model, train, labels: str, steps_per_epoch: int, compute: Compute) -> None:
    """Optimizer (with its learning-rate schedule), loss and metrics, as `train` (TrainConfig) says,
    with the compute levers resolved in `compute`."""
    if compute.conv_gradients == "forward":
        use_forward_convolutions(model)
    optimizer = make_optimizer(train, steps_per_epoch, compute.learning_rate_scale)
    if train.norm_bias_lr_multiplier != 1:
        norms = [layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
        offsets = [layer.beta for layer in norms if layer.beta is not None]
        compat.scale_learning_rate(optimizer, offsets, train.norm_bias_lr_multiplier)
    model.compile(
        optimizer=optimizer,
        loss=make_loss(train, labels),
        metrics=list(train.metrics),
        steps_per_execution=compute.steps_per_execution,
        jit_compile=compute.jit_compile,
    )


def make_optimizer(train, steps_per_epoch: int, scale: float = 1.0) -> keras.optimizers.Optimizer:
    options = train.optimizer
    cls = {n.lower(): getattr(keras.optimizers, n) for n in dir(keras.optimizers) if n[:1].isupper()}[options.name]
    kwargs = dict(options.model_extra or {})
    rate = scale * (options.learning_rate or inspect.signature(cls).parameters["learning_rate"].default)
    warmup = round(train.warmup_epochs * steps_per_epoch)
    if train.lr_schedule == "cosine" or warmup:
        total = train.epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else rate,
            decay_steps=max(total - warmup, 1),
            alpha=1.0 if train.lr_schedule == "constant" else 0.0,  # alpha 1: stay at the peak
            warmup_target=rate if warmup else None,
            warmup_steps=warmup,
        )
    if train.ema is not None:  # Keras's own: averaged every step, copied into the model every_steps steps
        kwargs.update(
            use_ema=True, ema_momentum=train.ema.decay, ema_overwrite_frequency=train.ema.every_steps or steps_per_epoch
        )
    return construct(cls, {**kwargs, "learning_rate": rate}, "train.optimizer")


def fine_tune_settings(train):
    """The TrainConfig of the fine-tuning phase: the same optimizer and schedule kind, at the
    fine-tuning learning rate, over its epochs, without warm-up."""
    tune = train.fine_tune
    return train.model_copy(
        update={
            "optimizer": train.optimizer.model_copy(update={"learning_rate": tune.learning_rate}),
            "epochs": tune.epochs,
            "warmup_epochs": 0.0,
        }
    )


def start_fine_tuning(model: keras.Model, config, steps_per_epoch: int, compute: Compute) -> None:
    """Unfreeze the backbone (all of it, or its last N layers) and compile again at the fine-tuning rate."""
    train = config.train
    backbones.unfreeze(backbones.find(model), train.fine_tune.unfreeze, config.model.backbone.weights is not None)
    compile_model(model, fine_tune_settings(train), config.data.labels, steps_per_epoch, compute)

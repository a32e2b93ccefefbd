"""The compute levers of a run, `auto` resolved for this device in one place (BENCHMARKS.md,
"Compute levers", has the measurements behind each rule)."""

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Compute:
    steps_per_execution: int
    jit_compile: bool | str  # "auto" until the model is compiled: Keras's own rule (XLA on GPUs only)
    mixed_precision: str
    precision_reason: str  # why: what auto found on this machine, or the config's choice
    conv_gradients: str  # "forward" or "tensorflow"
    replicas: int
    batch_size: int  # images per training step, across all replicas
    learning_rate_scale: int
    eval_batch_size: int | None = None  # known once the model is built
    steps_per_epoch: int = 0  # training steps an epoch, known once the data is (with_data)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve(train, strategy) -> Compute:
    """train (a TrainConfig) with `auto` resolved for this device and strategy: precision and convolution
    gradients as device.py says for this machine (mixed_float16 on GPUs with tensor cores,
    mixed_bfloat16 on CPUs with AMX, float32 elsewhere: on the 2-core AMD EPYC mixed_bfloat16 ran 7.6x,
    mixed_float16 2.3x and XLA 3.1x slower; AVX-512 BF16 without AMX was not measured, so float32
    there); 32 steps per execution (2-25% more images/s than 1), but 1 under a tf.distribute
    strategy, where Keras 3.15 supports no more."""
    from cnnclf import device
    from cnnclf.training import distribute

    precision, why = train.mixed_precision, "the config sets it"
    if precision == "auto":
        precision, why = device.auto_precision()
    spe = train.steps_per_execution
    if spe == "auto":
        spe = 1 if distribute.is_distributed(strategy) else 32  # Keras 3.15's multi-step loop fails distributed
        if train.lookahead is not None:  # Keras calls back, and lookahead moves, once per execution
            spe = min(spe, train.lookahead.every_steps)
    conv_gradients = device.auto_conv_gradients() if train.conv_gradients == "auto" else train.conv_gradients
    replicas = strategy.num_replicas_in_sync
    return Compute(
        steps_per_execution=spe,
        jit_compile=train.jit_compile,
        mixed_precision=precision,
        precision_reason=why,
        conv_gradients=conv_gradients,
        replicas=replicas,
        batch_size=train.batch_size * (replicas if train.batch_size_per_replica else 1),
        learning_rate_scale=replicas if train.scale_learning_rate else 1,
    )


def with_model(compute: Compute, model, train) -> Compute:
    """The levers that depend on the compiled model: XLA as Keras resolved auto, the eval batch."""
    from cnnclf.model.build import eval_batch_size

    return dataclasses.replace(
        compute, jit_compile=bool(model.jit_compile), eval_batch_size=eval_batch_size(model, train)
    )


def with_data(compute: Compute, training_images: int, train) -> Compute:
    """The levers that depend on the data: the training steps an epoch (the schedule, lookahead and the
    progress bar count by it): the data pipeline's own count (data/pipeline.py), or fewer where
    train.steps_per_epoch says (a time budget shorter than an epoch)."""
    from cnnclf.data.pipeline import steps_per_epoch

    steps = steps_per_epoch(training_images, compute.batch_size)
    return dataclasses.replace(compute, steps_per_epoch=min(steps, train.steps_per_epoch or steps))

"""The compute levers of a run, `auto` resolved for this device in one place (BENCHMARKS.md,
"Compute levers", has the measurements behind each rule)."""

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Compute:
    steps_per_execution: int
    jit_compile: bool | str  # "auto" until the model is compiled: Keras's own rule (XLA on GPUs only)
    mixed_precision: str
    conv_gradients: str  # "forward" or "tensorflow"
    replicas: int
    batch_size: int  # images per training step, across all replicas
    learning_rate_scale: int
    eval_batch_size: int | None = None  # known once the model is built

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve(train, strategy) -> Compute:
    """train (a TrainConfig) with `auto` resolved for this device and strategy. Precision: on CPUs
    with AMX, mixed_bfloat16 (its matrix tiles did 4-5x float32's arithmetic and halved an epoch of
    CIFAR-10 on a 2-core Xeon); on CPUs without native bfloat16, float32 (mixed_bfloat16 ran 7.6x,
    mixed_float16 2.3x and XLA 3.1x slower on the 2-core AMD EPYC); AVX-512 BF16 without AMX was
    not measured, so float32 there. NVIDIA GPUs from compute capability 7.0 (tensor cores) get
    mixed_float16. 32 steps per execution (2-25% more images/s than 1), but 1 under a
    tf.distribute strategy, where Keras 3.15 supports no more. Convolution gradients as forward
    convolutions on CPUs without AVX-512 (1.3x the images/s of cifar10_bn on the AMD EPYC); on CPUs
    with it (the Intel Xeon with AMX) TensorFlow's own kernels were 1.3-2.6x faster for every preset
    measured but cifar10_bn in bfloat16, and on GPUs cuDNN's own."""
    import tensorflow as tf

    from cnnclf.rundir.provenance import cpu_class, native_bfloat16
    from cnnclf.training import distribute

    gpus = tf.config.list_physical_devices("GPU")
    precision = train.mixed_precision
    if precision == "auto":
        capable = gpus and all(
            tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) >= (7, 0) for g in gpus
        )
        precision = "mixed_float16" if capable else "float32"
        if not gpus and native_bfloat16():
            precision = "mixed_bfloat16"
    spe = train.steps_per_execution
    if spe == "auto":
        spe = 1 if distribute.is_distributed(strategy) else 32  # Keras 3.15's multi-step loop fails distributed
        if train.lookahead is not None:  # Keras calls back, and lookahead moves, once per execution
            spe = min(spe, train.lookahead.every_steps)
    conv_gradients = train.conv_gradients
    if conv_gradients == "auto":
        cpu = cpu_class()
        conv_gradients = "tensorflow" if gpus or cpu.startswith(("AMX", "AVX-512")) else "forward"
    replicas = strategy.num_replicas_in_sync
    return Compute(
        steps_per_execution=spe,
        jit_compile=train.jit_compile,
        mixed_precision=precision,
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

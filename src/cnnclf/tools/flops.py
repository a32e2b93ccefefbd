"""What the machine and a model compute: the machine's peak in float32 and bfloat16, and a model's
floating-point operations per training image (the benchmark's % of peak)."""

import time

from cnnclf.rundir.directory import RunDir


def measure_peak_gflops(precision: str = "float32", n: int = 2048, repeats: int = 10) -> float:
    """The machine's peak in float32 or bfloat16 as TensorFlow reaches it: a large matmul on all cores
    (2048 is the fastest size on the 2-core machine: 4096 falls out of cache). bfloat16 is 4-5x
    float32 on AMX, and slower than float32 where it is emulated."""
    import tensorflow as tf

    a, b = (tf.cast(tf.random.normal((n, n)), precision) for _ in range(2))
    matmul = tf.function(lambda a, b: tf.matmul(a, b))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def training_gflops_per_image(run: RunDir) -> float:
    """Forward FLOPs of one image (TensorFlow's profiler on the frozen graph), times 3 for a
    training step (the backward pass costs about twice the forward)."""
    import tensorflow as tf

    from cnnclf import compat
    from cnnclf.inference.loading import load_model

    model = load_model(run)
    forward = tf.function(lambda x: model(x, training=False))
    concrete = forward.get_concrete_function(tf.TensorSpec([1, *model.input_shape[1:]], tf.float32))
    graph = compat.frozen_graph(concrete)
    flops = None if graph is None else compat.float_operations(graph)
    return float("nan") if flops is None else 3 * flops / 1e9

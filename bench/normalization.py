"""What batch normalization costs a training step on the CPU (BENCHMARKS.md, "One normalization"):
training images/s of mnist_bn and fashion_bn as they are (one normalization, after the first
pooling) against the same networks normalized after every convolution (as they were) and not at all,
built from the presets' own layer specs, each trained as configs/mnist.yaml trains (Adam with
averaged weights, label smoothing, batch 128, 32 steps per execution) on 8,192 random 28x28 images:

    python bench/normalization.py                  # in the precision `auto` picks on this CPU
    python bench/normalization.py --precision float32

Images/s is of two epochs after a first one (which traces the step).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cnnclf.model.presets import FLATTEN, POOL, PRESETS, conv, conv_bn  # noqa: E402
from cnnclf.rundir.provenance import native_bfloat16  # noqa: E402


def plain(filters, pool=False):
    return [conv(filters, padding="same"), *([POOL] if pool else [])]


NETWORKS = {
    "mnist_bn": PRESETS["mnist_bn"],
    "mnist_bn, normalized after every convolution (as it was)": [
        *conv_bn(32, pool=True),
        *conv_bn(64, pool=True),
        *conv_bn(128),
        FLATTEN,
    ],
    "mnist_bn, not normalized": [*plain(32, pool=True), *plain(64, pool=True), *plain(128), FLATTEN],
    "fashion_bn": PRESETS["fashion_bn"],
    "fashion_bn, normalized after every convolution (as it was)": [
        *conv_bn(32),
        *conv_bn(32, pool=True),
        *conv_bn(64),
        *conv_bn(64, pool=True),
        *conv_bn(128),
        FLATTEN,
    ],
}


def images_per_second(specs, x, y) -> float:
    layers = [getattr(keras.layers, name)(**kwargs) for spec in specs for name, kwargs in spec.items()]
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            *layers,
            keras.layers.Dense(10, activation="softmax"),
            keras.layers.Activation("linear", dtype="float32"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(3e-3, use_ema=True),
        keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
        steps_per_execution=32,
    )
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=128, epochs=2, verbose=0)
    return 2 * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["mixed_bfloat16", "float32"], default=None)
    precision = parser.parse_args().precision or ("mixed_bfloat16" if native_bfloat16() else "float32")
    keras.mixed_precision.set_global_policy(precision)
    rng = np.random.default_rng(0)
    x = rng.random((8192, 28, 28, 1), dtype="float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, len(x)), 10)
    print(f"| network ({precision}) | training images/s |\n|---|--:|")
    for name, specs in NETWORKS.items():
        print(f"| {name} | {images_per_second(specs, x, y):,.0f} |", flush=True)


if __name__ == "__main__":
    main()

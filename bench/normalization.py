"""What batch normalization costs a training step on the CPU (BENCHMARKS.md, "One normalization"):
training images/s of mnist_bn and fashion_bn as they are (one normalization, after the first
pooling) against the same networks normalized after every convolution (as they were) and not at all.
Each is configs/mnist.yaml with its model.layers swapped, built, compiled and resolved by cnnclf's own
code (augmentation, Adam with averaged weights, label smoothing, batch and steps per execution as a
run has them), trained on 16,384 random 28x28 images:

    python bench/normalization.py                  # in the precision `auto` picks on this CPU
    python bench/normalization.py --precision float32

Images/s is of two epochs after a first one (which traces the step), after one throwaway
measurement for the process; the median of 3 rounds over all networks (one pass moved a network's
figure by up to 2x on the shared 2-core machine).
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnnclf.config import load_config  # noqa: E402
from cnnclf.model.build import build_model  # noqa: E402
from cnnclf.model.presets import FLATTEN, PRESETS, conv_bn, conv_relu  # noqa: E402
from cnnclf.training.compute import resolve  # noqa: E402
from cnnclf.training.optimization import compile_model  # noqa: E402

ROUNDS = 3
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mnist.yaml"
NETWORKS = {
    "mnist_bn": PRESETS["mnist_bn"],
    "mnist_bn, normalized after every convolution (as it was)": [
        *conv_bn(32, pool=True),
        *conv_bn(64, pool=True),
        *conv_bn(128),
        FLATTEN,
    ],
    "mnist_bn, not normalized": [*conv_relu(32, pool=True), *conv_relu(64, pool=True), *conv_relu(128), FLATTEN],
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


def images_per_second(specs, precision: str, x, y) -> tuple[float, str]:
    """(training images/s, the precision it resolved to)."""
    config = load_config(
        CONFIG, values={"model.preset": None, "model.layers": specs, "train.mixed_precision": precision}
    )
    compute = resolve(config.train, tf.distribute.get_strategy())
    model = build_model(config, x.shape[1:], y.shape[1], compute.mixed_precision)
    compile_model(model, config.train, "onehot", steps_per_epoch=len(x) // compute.batch_size, compute=compute)
    model.fit(x, y, batch_size=compute.batch_size, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=compute.batch_size, epochs=2, verbose=0)
    return 2 * len(x) / (time.perf_counter() - start), compute.mixed_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["auto", "mixed_bfloat16", "float32"], default="auto")
    precision = parser.parse_args().precision
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16_384, 28, 28, 1), dtype=np.uint8)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(x))]
    images_per_second(PRESETS["mnist_bn"], precision, x, y)  # the process's first model ran a third slower, whichever
    speeds: dict[str, list[float]] = {name: [] for name in NETWORKS}
    for _ in range(ROUNDS):  # round after round, so that the machine's slow minutes fall on every network
        for name, specs in NETWORKS.items():
            speed, resolved = images_per_second(specs, precision, x, y)
            speeds[name].append(speed)
    print(f"| network | precision | training images/s (median of {ROUNDS}) | all |\n|---|---|--:|---|")
    for name, measured in speeds.items():
        print(f"| {name} | {resolved} | {np.median(measured):,.0f} | {', '.join(f'{v:,.0f}' for v in measured)} |")


if __name__ == "__main__":
    main()

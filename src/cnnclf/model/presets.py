"""Built-in architectures, written exactly as a config's model.layers would be.

The tutorial presets reproduce the seed tutorials layer for layer; their parameter counts
(for 10 classes) are pinned in tests. The classifier, Dense(num_classes, softmax), is
added by build_model, so every preset works for any number of classes.
"""

POOL: dict = {"MaxPooling2D": {"pool_size": 2}}
GAP: dict = {"GlobalAveragePooling2D": {}}
FLATTEN: dict = {"Flatten": {}}
HE = {"kernel_initializer": "he_uniform"}
BN = {"BatchNormalization": {"momentum": 0.9, "moving_variance_initializer": "zeros"}}


def conv(filters, kernel_size=3, **kwargs):
    return {"Conv2D": {"filters": filters, "kernel_size": kernel_size, "activation": "relu", **kwargs}}


def dense(units, **kwargs):
    return {"Dense": {"units": units, "activation": "relu", **kwargs}}


def conv_bn(filters, pool=False):
    """3x3 convolution, 2x2 max pooling if `pool`, batch normalization, ReLU: the block of the stronger
    presets. Pooling comes first, so normalization and ReLU run on a quarter of the values; at inference
    the result is the same as pooling after them (both increase per channel while the normalization's
    scale is positive). The statistics used at inference keep up within a short training: momentum 0.9,
    not Keras' 0.99, and the moving variance starts at 0, not 1, so that what is left of its start is a
    fraction of the true variance (0.9^40 of it after 40 steps), however small that is (~0.005 after
    the first convolution of a one-channel image)."""
    return [
        {"Conv2D": {"filters": filters, "kernel_size": 3, "padding": "same", "use_bias": False}},
        *([POOL] if pool else []),
        BN,
        {"ReLU": {}},
    ]


def conv_relu(filters, pool=False):
    """3x3 convolution with its bias and ReLU (which oneDNN fuses into it), then 2x2 max pooling if
    `pool`: the block of the stronger presets after their one normalization."""
    return [conv(filters, padding="same"), *([POOL] if pool else [])]


def conv_group(filters):
    """airbench's block: 3x3 convolution, 2x2 max pooling, batch normalization, activation, 3x3
    convolution, batch normalization, activation. Its batch normalization learns no scale (a fixed 1:
    airbench found a learnt one only slows training) and keeps its statistics up quickly (momentum
    0.6). ReLU where airbench has GELU: on the 2-core Xeon, GELU's erf cost a third of the training
    throughput (517 against 773 images/s in bfloat16) and half the inference's, and tested no better
    (89.95% against 89.96% in 10 epochs, BENCHMARKS.md)."""
    bn = {"BatchNormalization": {"momentum": 0.6, "scale": False}}
    conv = {"Conv2D": {"filters": filters, "kernel_size": 3, "padding": "same", "use_bias": False}}
    return [conv, POOL, bn, {"ReLU": {}}, conv, bn, {"ReLU": {}}]


PRESETS = {
    # Fashion-MNIST from Kaggle CSVs; 93,322 parameters.
    "s000_fashion_csv": [conv(32), POOL, conv(64), POOL, conv(64), FLATTEN, dense(64)],
    # MNIST with he_uniform init and dropout; 628,630 parameters.
    "s002_mnist": [conv(32, padding="same", **HE), POOL, FLATTEN, dense(100, **HE), {"Dropout": {"rate": 0.2}}],
    # CIFAR-10, the same family; 430,102 parameters.
    "s002_cifar10": [
        conv(32, padding="same", **HE),
        POOL,
        conv(64, padding="same", **HE),
        POOL,
        FLATTEN,
        dense(100, **HE),
        {"Dropout": {"rate": 0.2}},
    ],
    # Fashion-MNIST, the Keras basic tutorial's CNN; 121,930 parameters.
    "s003_fashion": [conv(32), POOL, conv(64), POOL, FLATTEN, dense(64)],
    # MNIST without pooling; 183,242 parameters.
    "s004_mnist": [conv(64), conv(32), conv(32), FLATTEN],
    # Stronger, sized for 2 CPU cores (BENCHMARKS.md). The 28x28 ones end in Flatten, which keeps where
    # each feature is: over global average pooling, MNIST 99.58% against 99.37% (6 epochs),
    # Fashion-MNIST 93.75% against 93.10% (4 epochs), for no measurable time. They normalize once,
    # after the first pooling: on the CPU a batch normalization costs about what a convolution does
    # in bfloat16, so mnist_bn trains 1.4x faster with one than with three (float32: the same, within
    # noise), fashion_bn 2.6x (float32: 1.7x) with one than with five, and lost no accuracy (MNIST
    # 99.49% both, 4 epochs); the other convolutions are conv_relu blocks.
    "mnist_bn": [*conv_bn(32, pool=True), *conv_relu(64, pool=True), *conv_relu(128), FLATTEN],
    "fashion_bn": [
        *conv_relu(32),
        *conv_bn(32, pool=True),
        *conv_relu(64),
        *conv_relu(64, pool=True),
        *conv_relu(128),
        FLATTEN,
    ],
    "cifar10_bn": [
        *conv_bn(32, pool=True),
        *conv_bn(64),
        *conv_bn(64, pool=True),
        *conv_bn(128),
        *conv_bn(128, pool=True),
        *conv_bn(256),
        GAP,
    ],
    # airbench94's network (Keller Jordan, 2024) for 32x32 images, made to follow model.whiten (whose
    # 24 channels the first ReLU takes): three groups of 64, 256 and 256 channels, then a 3x3 max
    # pooling to one vector, scaled by 1/9 before the classifier (airbench's: the classifier then
    # learns 81x slower than the rest, which lets the rest learn at a high rate: 78.1% without it,
    # 89.0% with it, BENCHMARKS.md); 1.97M parameters, 0.24 GFLOP per image forward.
    "airbench": [
        {"ReLU": {}},
        *conv_group(64),
        *conv_group(256),
        *conv_group(256),
        {"MaxPooling2D": {"pool_size": 3}},
        FLATTEN,
        {"Rescaling": {"scale": 1 / 9}},
    ],
}

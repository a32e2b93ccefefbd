"""Built-in architectures, written exactly as a config's model.layers would be.

The tutorial presets reproduce the seed tutorials layer for layer; their parameter counts
(for 10 classes) are pinned in tests. The classifier, Dense(num_classes, softmax), is
added by build_model, so every preset works for any number of classes.
"""


def conv(filters, kernel_size=3, **kwargs):
    return {"Conv2D": {"filters": filters, "kernel_size": kernel_size, "activation": "relu", **kwargs}}


def dense(units, **kwargs):
    return {"Dense": {"units": units, "activation": "relu", **kwargs}}


def conv_bn(filters, kernel_size=3):
    """Convolution, batch normalization, ReLU: the block of the stronger presets. Momentum 0.9, not
    Keras' 0.99, so that the statistics used at inference keep up within a short training."""
    return [{"Conv2D": {"filters": filters, "kernel_size": kernel_size, "padding": "same", "use_bias": False}},
            {"BatchNormalization": {"momentum": 0.9}}, {"ReLU": {}}]


POOL = {"MaxPooling2D": {"pool_size": 2}}
GAP = {"GlobalAveragePooling2D": {}}
FLATTEN = {"Flatten": {}}
HE = {"kernel_initializer": "he_uniform"}

PRESETS = {
    # Fashion-MNIST from Kaggle CSVs; 93,322 parameters.
    "s000_fashion_csv": [conv(32), POOL, conv(64), POOL, conv(64), FLATTEN, dense(64)],
    # MNIST with he_uniform init and dropout; 628,630 parameters.
    "s002_mnist": [conv(32, padding="same", **HE), POOL, FLATTEN, dense(100, **HE), {"Dropout": {"rate": 0.2}}],
    # CIFAR-10, the same family; 430,102 parameters.
    "s002_cifar10": [conv(32, padding="same", **HE), POOL, conv(64, padding="same", **HE), POOL, FLATTEN,
                     dense(100, **HE), {"Dropout": {"rate": 0.2}}],
    # Fashion-MNIST, the Keras basic tutorial's CNN; 121,930 parameters.
    "s003_fashion": [conv(32), POOL, conv(64), POOL, FLATTEN, dense(64)],
    # MNIST without pooling; 183,242 parameters.
    "s004_mnist": [conv(64), conv(32), conv(32), FLATTEN],
    # Stronger: batch-normalized, global average pooling, sized for 2 CPU cores (BENCHMARKS.md).
    "mnist_bn": [*conv_bn(32, 5), POOL, *conv_bn(64), POOL, *conv_bn(128), GAP],
    "fashion_bn": [*conv_bn(32), *conv_bn(32), POOL, *conv_bn(64), *conv_bn(64), POOL, *conv_bn(128), GAP],
    "cifar10_bn": [*conv_bn(32), POOL, *conv_bn(64), *conv_bn(64), POOL, *conv_bn(128), *conv_bn(128), POOL,
                   *conv_bn(256), GAP],
}

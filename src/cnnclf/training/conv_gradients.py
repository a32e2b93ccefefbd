"""Convolution gradients computed as forward convolutions: the compute lever train.conv_gradients.

TensorFlow's CPU kernels for a convolution's two gradients ran up to 4.4x slower than a forward
convolution doing the same arithmetic, on the 2-core AMD EPYC (BENCHMARKS.md; e.g. 3x3 from 128 to
256 channels at 4x4, batch 128: the input gradient 46 ms, as a forward convolution 10 ms). For a
stride-1 convolution both gradients are forward convolutions:
- input: the output's gradient convolved with the kernel mirrored in space, its input and output
  channels swapped, padded by (kernel size - 1 - the forward padding) on each side;
- kernel: the padded input, with its channels taken as images and its images as channels,
  convolved with the output's gradient as the kernel: dw[a, b, i, o] = sum over n, h, w of
  x[n, h + a, w + b, i] * dy[n, h, w, o].
The layers stay keras.layers.Conv2D (only the instance's convolution_op changes), so model.keras
holds a plain Keras model and inference is untouched.
"""

import keras
import tensorflow as tf

from cnnclf import compat
from cnnclf.model.build import all_layers


def use_forward_convolutions(model: keras.Model) -> None:
    """Route the gradients of every stride-1, undilated, ungrouped channels-last Conv2D of `model` (and
    of a backbone inside it) through forward convolutions; the other layers keep TensorFlow's kernels."""
    for layer in all_layers(model):
        if (
            isinstance(layer, keras.layers.Conv2D)
            and layer.strides == (1, 1)
            and layer.dilation_rate == (1, 1)
            and layer.groups == 1
            and layer.data_format == "channels_last"
        ):
            compat.set_convolution_op(layer, _convolution(layer.kernel_size, layer.padding))


def _convolution(kernel_size: tuple[int, int], padding: str):
    """conv2d(x, w) with stride 1 and `padding` ("same" or "valid"), whose gradients are forward convolutions."""
    if padding == "same":  # TensorFlow's split: the odd pixel of an even kernel goes after
        forward = [((k - 1) // 2, k // 2) for k in kernel_size]
    else:
        forward = [(0, 0), (0, 0)]
    padded = [[0, 0], *forward, [0, 0]]
    full = [[0, 0], *[(k - 1 - before, k - 1 - after) for k, (before, after) in zip(kernel_size, forward)], [0, 0]]

    @tf.custom_gradient
    def conv(x, w):
        def gradients(dy):
            dx = tf.nn.conv2d(dy, tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2]), 1, full)
            channels_as_images = tf.transpose(tf.pad(x, padded), [3, 1, 2, 0])
            dw = tf.nn.conv2d(channels_as_images, tf.transpose(dy, [1, 2, 0, 3]), 1, "VALID")
            return dx, tf.transpose(dw, [1, 2, 0, 3])

        return tf.nn.conv2d(x, w, 1, padded), gradients

    return lambda inputs, kernel: conv(inputs, tf.convert_to_tensor(kernel))  # a tensor: the tape sees the read

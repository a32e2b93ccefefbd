"""Grad-CAM (Selvaraju et al., 2017): where in an image the model found the class it chose.

The class's score is differentiated with respect to a convolutional feature map; each channel is
weighted by its mean gradient, the weighted channels summed, negatives dropped, and the map scaled
to the image and to 0-1. The feature map is, by default, the last one the model computes (a layer
list's last convolution block, or a backbone's output); `layer` names another, a backbone's own
layers included.
"""

import keras
import numpy as np
import tensorflow as tf

from cnnclf.errors import ConfigError, did_you_mean


def target(model: keras.Model, layer: str | None = None) -> tuple[int, str | None]:
    """(index among the model's layers, name inside it when that layer is a backbone, or None)."""
    layers = model.layers
    if layer is None:  # the last feature map the model computes (after the first layer with weights)
        learned = next((i for i, item in enumerate(layers) if item.weights), len(layers))
        last = [i for i, item in enumerate(layers) if i >= learned and len(item.output.shape) == 4]
        if not last:
            raise ConfigError("the model has no convolutional feature map to explain")
        return last[-1], None
    for i, item in enumerate(layers):
        if item.name == layer:
            if len(item.output.shape) != 4:
                raise ConfigError(
                    f"--layer {layer}: its output has shape {item.output.shape}; Grad-CAM needs a "
                    f"feature map (height, width, channels), such as a convolution's"
                )
            return i, None
        if isinstance(item, keras.Model) and layer in [inner.name for inner in item.layers]:
            return i, layer
    names = _feature_maps(model)
    raise ConfigError(
        f"--layer {layer}: no such layer{did_you_mean(layer, names)}; feature maps: {', '.join(names[-6:])}"
    )


def heatmaps(model: keras.Model, images: np.ndarray, classes: np.ndarray, layer: str | None = None) -> np.ndarray:
    """float32 (N, height, width) in 0-1: each image's Grad-CAM for its class in `classes`."""
    index, inner = target(model, layer)
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        h = x
        for i, item in enumerate(model.layers):
            if i == index and inner is not None:
                maps, h = keras.Model(item.inputs, [item.get_layer(inner).output, item.output])(h, training=False)
            else:
                h = item(h, training=False)
                if i == index:
                    maps = h
                    tape.watch(maps)  # what follows it is recorded, weights or not
        scores = tf.gather(tf.cast(h, tf.float32), tf.constant(classes, tf.int32), axis=1, batch_dims=1)
    gradients = tape.gradient(scores, maps)
    weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(maps, tf.float32), axis=-1))
    cam = tf.image.resize(cam[..., None], images.shape[1:3], method="bilinear")[..., 0].numpy()
    top = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(cam, top, out=np.zeros_like(cam), where=top > 0).astype(np.float32)


def _feature_maps(model: keras.Model) -> list[str]:
    names = []
    for item in model.layers:
        if isinstance(item, keras.Model):
            names += [inner.name for inner in item.layers if len(inner.output.shape) == 4]
        elif len(item.output.shape) == 4:
            names.append(item.name)
    return names

"""model.whiten: a first convolution that whitens the image's patches (airbench's), frozen.

Its kernels are the eigenvectors of the covariance of the training images' patch x patch patches
(as the model sees them: scaled to 0-1), each divided by the square root of its eigenvalue plus
epsilon, and their negatives (so that the activation after it loses nothing), with the bias that
centres them: the first layer starts where training would take long to get, decorrelated
features of unit variance, and nothing of it needs learning. On CIFAR-10: BENCHMARKS.md.
"""

import keras
import numpy as np

CHUNK = 256  # images per step of the covariance


def whitening_weights(images: np.ndarray, patch: int, epsilon: float, scale: float) -> list[np.ndarray]:
    """[kernel (patch, patch, channels, 2 * patch * patch * channels), bias] from uint8 images
    (n, height, width, channels), their pixels multiplied by `scale` as the model's input is."""
    channels = images.shape[-1]
    size = patch * patch * channels
    total, outer, count = np.zeros(size), np.zeros((size, size)), 0
    for start in range(0, len(images), CHUNK):
        x = images[start : start + CHUNK].astype(np.float64) * scale
        windows = np.lib.stride_tricks.sliding_window_view(x, (patch, patch), axis=(1, 2))  # n, h', w', c, p, p
        flat = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size)  # (row, column, channel): Conv2D's order
        total += flat.sum(axis=0)
        outer += flat.T @ flat
        count += len(flat)
    mean = total / count
    covariance = outer / count - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(covariance)
    filters = vectors / np.sqrt(np.maximum(values, 0) + epsilon)  # columns: one whitened direction each
    filters = np.concatenate([filters, -filters], axis=1)
    kernel = filters.reshape(patch, patch, channels, 2 * size)
    return [kernel.astype(np.float32), (-mean @ filters).astype(np.float32)]


def whitening_layer(channels: int, patch: int) -> keras.layers.Conv2D:
    """The layer the weights go into: patch x patch, no padding, never trained."""
    return keras.layers.Conv2D(2 * patch * patch * channels, patch, name="whiten", trainable=False)

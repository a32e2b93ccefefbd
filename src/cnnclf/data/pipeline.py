"""tf.data pipelines over the uint8 arrays: batches are gathered by index, labels made
one-hot on the fly; pixels stay uint8 until the model casts and scales them."""

import math

import numpy as np
import tensorflow as tf


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int,
                     epochs: int, num_classes: int, onehot: bool) -> tuple[tf.data.Dataset, int]:
    """Batches for epochs first_epoch..epochs-1 in one stream, and the steps per epoch.

    Each epoch's order is a pure function of (seed, epoch), so a resumed run sees exactly
    the batches an uninterrupted one would have seen.
    """
    n = len(x)
    images, labels = tf.constant(x), tf.constant(y)

    def epoch_order(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_order)
    return _gather(batches, images, labels, num_classes, onehot), math.ceil(n / batch_size)


def evaluation_batches(x: np.ndarray, y: np.ndarray, batch_size: int, num_classes: int,
                       onehot: bool) -> tf.data.Dataset:
    """The set in order, in large batches."""
    n = len(x)
    batches = tf.data.Dataset.range(0, n, batch_size).map(lambda start: tf.range(start, tf.minimum(start + batch_size, n)))
    return _gather(batches, tf.constant(x), tf.constant(y), num_classes, onehot)


def _gather(batches, images, labels, num_classes, onehot):
    def lookup(indices):
        y = tf.gather(labels, indices)
        return tf.gather(images, indices), tf.one_hot(y, num_classes) if onehot else y

    return batches.map(lookup, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

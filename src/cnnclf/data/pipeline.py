"""tf.data pipelines over the uint8 arrays: batches are gathered by index, labels made
one-hot on the fly; pixels stay uint8 until the model casts and scales them.

Batches are gathered from the numpy arrays themselves (tf.numpy_function): turning them into
tensors would copy the whole dataset, and capturing such tensors in a dataset function
copies it again while the pipeline is built (+90 MB peak for MNIST, +300 MB for CIFAR-10).

tf.data's autotuning is off, and two batches are gathered at a time and kept ready: gathering is
a memory copy, far quicker than a training step. With autotuning on (TensorFlow 2.21), about
one epoch in ten took twice as long: the training process stopped using the CPU for seconds
at a time while the iterator of the epoch before was destroyed, waiting for autotuning's
background thread (BENCHMARKS.md).
"""

import math

import numpy as np
import tensorflow as tf


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, step_counter,
                     num_classes: int, onehot: bool) -> tuple[tf.data.Dataset, int]:
    """One epoch of shuffled batches (Keras iterates it once per epoch), and its length in steps.

    Each epoch's order is a pure function of (seed, epoch), the epoch read from the
    optimizer's step counter when the epoch's iteration starts: a resumed run (its counter
    restored from the backup) sees exactly the batches an uninterrupted one would have,
    and steps_per_execution cannot shift batches across epochs.
    """
    n = len(x)
    steps = math.ceil(n / batch_size)

    def epoch_order(_):
        epoch = tf.cast(tf.convert_to_tensor(step_counter.value), tf.int64) // steps
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    batches = tf.data.Dataset.from_tensors(0).flat_map(epoch_order)
    batches = batches.apply(tf.data.experimental.assert_cardinality(steps))
    return _gather(batches, x, y, num_classes, onehot), steps


def evaluation_batches(x: np.ndarray, y: np.ndarray, batch_size: int, num_classes: int,
                       onehot: bool) -> tf.data.Dataset:
    """The set in order, in large batches."""
    n = len(x)
    batches = tf.data.Dataset.range(0, n, batch_size).map(lambda start: tf.range(start, tf.minimum(start + batch_size, n)))
    return _gather(batches, x, y, num_classes, onehot)


def _gather(batches, x: np.ndarray, y: np.ndarray, num_classes: int, onehot: bool):
    def lookup(indices):
        images, labels = tf.numpy_function(lambda i: (x[i], y[i]), [indices], (tf.uint8, tf.int64), stateful=False)
        images.set_shape((None, *x.shape[1:]))
        labels.set_shape((None,))
        return images, tf.one_hot(labels, num_classes) if onehot else labels

    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.map(lookup, num_parallel_calls=2).prefetch(2).with_options(options)

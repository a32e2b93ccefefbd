"""tf.data pipelines over a Part: batches are gathered by index (from memory, a cache file, or
decoded from image files), labels made one-hot on the fly; pixels stay uint8 until the model
casts and scales them.

Batches are gathered by the Part itself (tf.numpy_function): turning in-memory arrays into
tensors would copy the whole dataset, and capturing such tensors in a dataset function copies it
again while the pipeline is built (+90 MB peak for MNIST, +300 MB for CIFAR-10).

tf.data's autotuning is off, and a fixed number of batches (the Part's parallelism) are gathered
at a time and kept ready. With autotuning on (TensorFlow 2.21), about one epoch in ten took twice
as long: the training process stopped using the CPU for seconds at a time while the iterator of
the epoch before was destroyed, waiting for autotuning's background thread (BENCHMARKS.md).
"""

import contextlib
import math

import numpy as np
import tensorflow as tf

from cnnclf.data.parts import Part
from cnnclf.errors import CnnclfError

_RAISED: list[CnnclfError] = []  # what gather raised: tf.data hands Keras only its text, cut short


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Training steps in an epoch: the last batch may be short. The learning-rate schedule and the data
    order both count epochs by it."""
    return math.ceil(images / batch_size)


def training_batches(
    part: Part,
    batch_size: int,
    seed: int,
    step_counter,
    num_classes: int,
    onehot: bool,
    first_epoch: int = 0,
    shard: tuple[int, int] = (0, 1),
    alternate_flips: bool = False,
    mix: tuple[float, float] | None = None,
    steps: int | None = None,
) -> tuple[tf.data.Dataset, int]:
    """One epoch of shuffled batches (Keras iterates it once per epoch), and its length in steps.

    Each epoch's order is a pure function of (seed, epoch), the epoch read from the optimizer's
    step counter when the epoch's iteration starts (plus `first_epoch`, where the counter started
    again: a second training phase): a resumed run (its counter restored from the backup) sees
    exactly the batches an uninterrupted one would have, and steps_per_execution cannot shift
    batches across epochs. `shard` (index, count): this worker's slice of every batch, so that
    workers of a multi-worker run read and decode only their own images. `alternate_flips`: image i
    is mirrored left to right in the epochs where i + epoch is odd, so it is seen both ways equally
    often (airbench); such an index travels as -(i + 1) to the gather, which mirrors it. `mix`
    (MixUp's alpha, CutMix's alpha; one-hot labels): each batch mixed with itself reversed (mixed).
    `steps`: an epoch of this many steps, fewer than the images make (a time budget's): each epoch the
    first batches of its own order, so the epochs see different images.
    """
    n = len(part)
    steps = min(steps or steps_per_epoch(n, batch_size), steps_per_epoch(n, batch_size))

    def epoch_order(_):
        epoch = tf.cast(tf.convert_to_tensor(step_counter.value), tf.int64) // steps + first_epoch
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        if alternate_flips:
            order = tf.where((order + epoch) % 2 == 1, -order - 1, order)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size).take(steps)

    batches = tf.data.Dataset.from_tensors(0).flat_map(epoch_order)
    batches = batches.apply(tf.data.experimental.assert_cardinality(steps))
    gathered = _gather(_sliced(batches, shard), part, num_classes, onehot)
    if mix is not None and any(mix):
        gathered = gathered.map(lambda x, y: mixed(x, y, seed, *mix), num_parallel_calls=part.parallel)
    return gathered, steps


def mixed(images, labels, seed: int, mixup: float, cutmix: float):
    """A batch blended with itself reversed (MixUp, alpha `mixup`) or with a box of the reversed batch
    pasted in (CutMix, alpha `cutmix`; with both, one of the two, at even odds), the one-hot labels
    mixed in the same proportion (timm's). The draw is a pure function of the seed and the batch's
    own images, so a resumed run mixes as an uninterrupted one did (Keras's layers draw from a
    state of their own, which the data pipeline cannot save)."""
    total = tf.reduce_sum(tf.cast(images, tf.int64)) + tf.reduce_sum(tf.cast(tf.argmax(labels, -1), tf.int64))
    key = tf.stack([tf.cast(seed, tf.int32), tf.cast(total % 2_147_483_647, tf.int32)])
    x, y = tf.cast(images, tf.float32), tf.cast(labels, tf.float32)
    other_x, other_y = tf.reverse(x, [0]), tf.reverse(y, [0])

    def beta(alpha: float, salt: int):
        a = tf.random.stateless_gamma([], key + salt, alpha)
        b = tf.random.stateless_gamma([], key + salt + 1, alpha)
        return a / (a + b)

    def blend():
        share = beta(mixup, 10)
        return share * x + (1 - share) * other_x, share * y + (1 - share) * other_y

    def paste():
        share = beta(cutmix, 20)
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        side = tf.sqrt(1.0 - share)
        box_h = tf.cast(side * tf.cast(height, tf.float32), tf.int32)
        box_w = tf.cast(side * tf.cast(width, tf.float32), tf.int32)
        centre = tf.random.stateless_uniform([2], key + 30, 0.0, 1.0)
        top = tf.clip_by_value(tf.cast(centre[0] * tf.cast(height, tf.float32), tf.int32) - box_h // 2, 0, height)
        left = tf.clip_by_value(tf.cast(centre[1] * tf.cast(width, tf.float32), tf.int32) - box_w // 2, 0, width)
        bottom, right = tf.minimum(top + box_h, height), tf.minimum(left + box_w, width)
        rows = tf.logical_and(tf.range(height) >= top, tf.range(height) < bottom)
        columns = tf.logical_and(tf.range(width) >= left, tf.range(width) < right)
        box = tf.cast(tf.logical_and(rows[:, None], columns[None, :]), tf.float32)[None, :, :, None]
        kept = 1.0 - tf.cast((bottom - top) * (right - left), tf.float32) / tf.cast(height * width, tf.float32)
        return x * (1 - box) + other_x * box, kept * y + (1 - kept) * other_y

    if mixup and cutmix:
        return tf.cond(tf.random.stateless_uniform([], key + 40) < 0.5, blend, paste)
    return blend() if mixup else paste()


def evaluation_batches(
    part: Part, batch_size: int, num_classes: int, onehot: bool, shard: tuple[int, int] = (0, 1)
) -> tf.data.Dataset:
    """The set in order, in large batches."""
    n = len(part)
    batches = tf.data.Dataset.range(0, n, batch_size).map(
        lambda start: tf.range(start, tf.minimum(start + batch_size, n))
    )
    return _gather(_sliced(batches, shard), part, num_classes, onehot)


def _sliced(batches: tf.data.Dataset, shard: tuple[int, int]) -> tf.data.Dataset:
    """Each batch of indices cut into `count` contiguous slices; the `index`-th is kept."""
    index, count = shard
    if count == 1:
        return batches

    def slice_of(indices):
        size = tf.shape(indices, out_type=tf.int64)[0]
        return indices[size * index // count : size * (index + 1) // count]

    return batches.map(slice_of)


def _gather(batches, part: Part, num_classes: int, onehot: bool):
    labels_of = part.labels

    def gather(indices: np.ndarray):
        mirrored = indices < 0
        indices = np.where(mirrored, -indices - 1, indices)
        try:
            images = part.gather(indices)
        except CnnclfError as e:
            _RAISED.append(e)
            raise
        if mirrored.any():
            images[mirrored] = images[mirrored][:, :, ::-1]
        return images, labels_of[indices]

    def lookup(indices):
        images, labels = tf.numpy_function(gather, [indices], (tf.uint8, tf.int64), stateful=False)
        images.set_shape((None, *part.shape))
        labels.set_shape((None,))
        return images, tf.one_hot(labels, num_classes) if onehot else labels

    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.map(lookup, num_parallel_calls=part.parallel).prefetch(part.parallel).with_options(options)


@contextlib.contextmanager
def errors_unwrapped():
    """Iterate batches inside this: an error of cnnclf's raised while a batch was gathered (a streamed
    file gone or damaged since it was checked) reaches the caller as itself, not as TensorFlow's
    UnknownError with a traceback for a message."""
    _RAISED.clear()
    try:
        yield
    except Exception:
        if _RAISED:
            raise _RAISED[-1] from None
        raise

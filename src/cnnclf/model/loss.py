"""The loss a config names: training compiles it and evaluation scores the test set with it."""

import keras


def make_loss(train, labels: str):
    """The loss train (a TrainConfig) names, for labels sparse or onehot."""
    if train.loss != "auto":
        return keras.losses.get(train.loss)  # a name the config checked against the labels
    if labels == "onehot":
        return keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()

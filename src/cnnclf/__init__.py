"""cnnclf: train Keras convolutional image classifiers from one YAML file."""

__version__ = "0.1.0"

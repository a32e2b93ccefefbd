"""Pretrained backbones: keras.applications models as feature extractors, built with their own
preprocessing as layers (so evaluation, predict, exports and the server take 0-255 pixels, and
model.keras loads in safe mode: no Lambda layers), frozen or not, and unfrozen for fine-tuning.

Each backbone's preprocessing, as keras.applications.<family>.preprocess_input does it:
  builtin  inside the model already (ConvNeXt, EfficientNet(V2), MobileNetV3, include_preprocessing)
  tf       x / 127.5 - 1                         -> Rescaling
  torch    x / 255, then ImageNet mean and std    -> Rescaling, Normalization
  caffe    RGB to BGR, ImageNet mean subtracted   -> a fixed 1x1 convolution
Grayscale images are repeated to three channels (a fixed 1x1 convolution) for every backbone.
"""

import warnings

import keras
import numpy as np

from cnnclf import compat
from cnnclf.errors import ConfigError, first_line
from cnnclf.model.keras_names import BACKBONES, too_small
from cnnclf.model.presets import BN

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])  # of 0-1 RGB pixels
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])  # of 0-255 pixels


def check_input(name: str, input_shape: tuple[int, int, int]) -> None:
    problem = too_small(name, input_shape)
    if problem:
        raise ConfigError(f"model.backbone: {problem}")


def input_layers(name: str, channels: int) -> list[tuple[keras.layers.Layer, list | None]]:
    """Layers that turn 0-255 pixels of 1 or 3 channels into what the backbone expects, each with the
    weights to set once it is built (None: its own)."""
    mode = BACKBONES[name].preprocessing
    layers: list = []
    if channels == 1:
        layers.append(_fixed_conv(np.ones((1, 3)), np.zeros(3), "gray_to_rgb"))
    if mode == "tf":
        layers.append((keras.layers.Rescaling(1 / 127.5, offset=-1, name="backbone_scale"), None))
    elif mode == "torch":
        layers += [
            (keras.layers.Rescaling(1 / 255, name="backbone_scale"), None),
            (
                keras.layers.Normalization(
                    mean=IMAGENET_MEAN.tolist(), variance=(IMAGENET_STD**2).tolist(), name="backbone_normalize"
                ),
                None,
            ),
        ]
    elif mode == "caffe":
        layers.append(_fixed_conv(np.eye(3)[::-1], -CAFFE_MEAN_BGR, "backbone_bgr_centre"))
    return layers


def _fixed_conv(matrix: np.ndarray, bias: np.ndarray, name: str) -> tuple[keras.layers.Layer, list]:
    """A 1x1 convolution that mixes channels by `matrix` (in x out) and adds `bias`, never trained."""
    layer = keras.layers.Conv2D(matrix.shape[1], 1, name=name, trainable=False)
    return layer, [matrix.reshape(1, 1, *matrix.shape).astype("float32"), bias.astype("float32")]


def build(config, input_shape: tuple[int, int, int]) -> keras.Model:
    """The backbone without its classification top, weights loaded as model.backbone.weights says,
    frozen unless trainable."""
    settings = config.model.backbone
    check_input(settings.name, input_shape)
    factory = getattr(keras.applications, settings.name)
    kwargs = {"include_top": False, "weights": settings.weights, "input_shape": (*input_shape[:2], 3)}
    if BACKBONES[settings.name].preprocessing == "builtin" and "include_preprocessing" in _arguments(factory):
        kwargs["include_preprocessing"] = True
    with compat.downloads_failing_as(_download_failed(settings.name)), warnings.catch_warnings():
        # the applications say that their ImageNet weights are for 224-pixel inputs: they fit any size
        # the minimum sides allow (the weights are convolutions), and the user chose the size
        warnings.filterwarnings("ignore", message=r".*Weights for input shape \(224, 224\) will be loaded")
        # loading another backbone's file warns once per layer it skips (160 lines), then fails: the failure says it
        warnings.filterwarnings("ignore", message=r".*Skipping (nested container|loading).*")
        try:
            backbone = factory(**kwargs)
        except ValueError as e:
            first = first_line(e)
            if settings.weights not in (None, "imagenet"):
                raise ConfigError(
                    f"model.backbone.weights: {settings.weights} does not fit {settings.name} "
                    f"({first}); give the weights file of this backbone"
                ) from None
            raise ConfigError(
                f"model.backbone: {settings.name} cannot be built for input {list(input_shape)} ({first})"
            ) from None
    backbone.trainable = settings.trainable
    if settings.weights is None:
        quick_batch_norm_statistics(backbone)
    elif settings.trainable:
        keep_batch_norm_frozen(backbone)
    return backbone


def unfreeze(backbone: keras.Model, unfreeze, pretrained: bool) -> None:
    """For fine-tuning: every layer (unfreeze: all) or the last N train; a pretrained backbone's batch
    normalization stays frozen, so in inference mode with the statistics it learnt, as in Keras's
    transfer-learning guide (a randomly initialized one has no statistics worth keeping)."""
    backbone.trainable = True
    if unfreeze != "all":
        for layer in backbone.layers[: max(len(backbone.layers) - unfreeze, 0)]:
            layer.trainable = False
    if pretrained:
        keep_batch_norm_frozen(backbone)


def quick_batch_norm_statistics(backbone: keras.Model) -> None:
    """A randomly initialized backbone's batch normalization: statistics for inference that keep up
    within a short training, the momentum of the presets' blocks (presets.conv_bn). The
    applications' own 0.99-0.999 leave 10-80% of the starting statistics after 3 epochs of 78 steps:
    MobileNetV3Small from scratch reached 36% training accuracy while it validated at chance."""
    for layer in _batch_norm_layers(backbone):
        layer.momentum = BN["BatchNormalization"]["momentum"]


def keep_batch_norm_frozen(backbone: keras.Model) -> None:
    for layer in _batch_norm_layers(backbone):
        layer.trainable = False


def _batch_norm_layers(backbone: keras.Model) -> list:
    return [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]


def find(model: keras.Model) -> keras.Model | None:
    """The backbone inside a built model, if it has one."""
    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


def _download_failed(name: str):
    """weights: imagenet goes through Keras's own download cache. When the download fails (offline, say),
    say which file to fetch and where to put it, and the weights-file alternative."""

    def error(fname: str, origin, cache: str, e: Exception) -> ConfigError:
        cause = e.__cause__ or e.__context__ or e  # Keras wraps the network's error in a bare Exception
        return ConfigError(
            f"model.backbone: the ImageNet weights of {name} cannot be downloaded "
            f"({cause.__class__.__name__}: {first_line(cause, 120)}); fetch {origin} into {cache}/{fname}, or set "
            f"model.backbone.weights to a weights file (.weights.h5 or .h5)"
        )

    return error


def _arguments(factory) -> set[str]:
    import inspect

    return set(inspect.signature(factory).parameters)

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

import contextlib
import os
from dataclasses import dataclass

import keras
import numpy as np

from cnnclf.errors import ConfigError


@dataclass(frozen=True)
class Backbone:
    preprocessing: str  # builtin | tf | torch | caffe
    min_side: int  # the smallest input side keras.applications accepts
    parameters: int  # without the classification top, at 224x224 (331 for NASNetLarge)


BACKBONES = {
    "ConvNeXtTiny": Backbone("builtin", 32, 27_820_128),
    "ConvNeXtSmall": Backbone("builtin", 32, 49_454_688),
    "ConvNeXtBase": Backbone("builtin", 32, 87_566_464),
    "ConvNeXtLarge": Backbone("builtin", 32, 196_230_336),
    "ConvNeXtXLarge": Backbone("builtin", 32, 348_147_968),
    "DenseNet121": Backbone("torch", 32, 7_037_504),
    "DenseNet169": Backbone("torch", 32, 12_642_880),
    "DenseNet201": Backbone("torch", 32, 18_321_984),
    "EfficientNetB0": Backbone("builtin", 32, 4_049_571),
    "EfficientNetB1": Backbone("builtin", 32, 6_575_239),
    "EfficientNetB2": Backbone("builtin", 32, 7_768_569),
    "EfficientNetB3": Backbone("builtin", 32, 10_783_535),
    "EfficientNetB4": Backbone("builtin", 32, 17_673_823),
    "EfficientNetB5": Backbone("builtin", 32, 28_513_527),
    "EfficientNetB6": Backbone("builtin", 32, 40_960_143),
    "EfficientNetB7": Backbone("builtin", 32, 64_097_687),
    "EfficientNetV2B0": Backbone("builtin", 32, 5_919_312),
    "EfficientNetV2B1": Backbone("builtin", 32, 6_931_124),
    "EfficientNetV2B2": Backbone("builtin", 32, 8_769_374),
    "EfficientNetV2B3": Backbone("builtin", 32, 12_930_622),
    "EfficientNetV2S": Backbone("builtin", 32, 20_331_360),
    "EfficientNetV2M": Backbone("builtin", 32, 53_150_388),
    "EfficientNetV2L": Backbone("builtin", 32, 117_746_848),
    "InceptionResNetV2": Backbone("tf", 75, 54_336_736),
    "InceptionV3": Backbone("tf", 75, 21_802_784),
    "MobileNet": Backbone("tf", 32, 3_228_864),
    "MobileNetV2": Backbone("tf", 32, 2_257_984),
    "MobileNetV3Small": Backbone("builtin", 32, 939_120),
    "MobileNetV3Large": Backbone("builtin", 32, 2_996_352),
    "NASNetMobile": Backbone("tf", 32, 4_269_716),
    "NASNetLarge": Backbone("tf", 32, 84_916_818),
    "ResNet50": Backbone("caffe", 32, 23_587_712),
    "ResNet101": Backbone("caffe", 32, 42_658_176),
    "ResNet152": Backbone("caffe", 32, 58_370_944),
    "ResNet50V2": Backbone("tf", 32, 23_564_800),
    "ResNet101V2": Backbone("tf", 32, 42_626_560),
    "ResNet152V2": Backbone("tf", 32, 58_331_648),
    "VGG16": Backbone("caffe", 32, 14_714_688),
    "VGG19": Backbone("caffe", 32, 20_024_384),
    "Xception": Backbone("tf", 71, 20_861_480),
}

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])  # of 0-1 RGB pixels
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])  # of 0-255 pixels


def check_input(name: str, input_shape: tuple[int, int, int]) -> None:
    side = BACKBONES[name].min_side
    if min(input_shape[:2]) < side:
        raise ConfigError(f"model.backbone: {name} takes images of at least {side}x{side} pixels, the data has "
                          f"{input_shape[0]}x{input_shape[1]}; set data.image_shape to [{side}, {side}, 3] or more")


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
        layers += [(keras.layers.Rescaling(1 / 255, name="backbone_scale"), None),
                   (keras.layers.Normalization(mean=IMAGENET_MEAN.tolist(), variance=(IMAGENET_STD**2).tolist(),
                                               name="backbone_normalize"), None)]
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
    with _download_named(settings.name):
        try:
            backbone = factory(**kwargs)
        except ValueError as e:
            first = (str(e).strip().splitlines() or ["ValueError"])[0][:200]
            if settings.weights not in (None, "imagenet"):
                raise ConfigError(f"model.backbone.weights: {settings.weights} does not fit {settings.name} "
                                  f"({first}); give the weights file of this backbone") from None
            raise ConfigError(f"model.backbone: {settings.name} cannot be built for input "
                              f"{list(input_shape)} ({first})") from None
    backbone.trainable = settings.trainable
    if settings.trainable:
        keep_batch_norm_frozen(backbone)
    return backbone


def unfreeze(backbone: keras.Model, unfreeze) -> None:
    """For fine-tuning: every layer (unfreeze: all) or the last N train; batch normalization stays
    frozen, so in inference mode, as in Keras's transfer-learning guide."""
    backbone.trainable = True
    if unfreeze != "all":
        for layer in backbone.layers[: max(len(backbone.layers) - unfreeze, 0)]:
            layer.trainable = False
    keep_batch_norm_frozen(backbone)


def keep_batch_norm_frozen(backbone: keras.Model) -> None:
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def find(model: keras.Model) -> keras.Model | None:
    """The backbone inside a built model, if it has one."""
    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


@contextlib.contextmanager
def _download_named(name: str):
    """weights: imagenet goes through Keras's own download cache. When the download fails (offline, say),
    say which file to fetch and where to put it, and the weights-file alternative."""
    from keras.src.utils import file_utils

    real = file_utils.get_file

    def get_file(fname=None, origin=None, *args, **kwargs):
        try:
            return real(fname, origin, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - urllib, HTTP and cache errors alike mean: not available here
            cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                                 kwargs.get("cache_subdir", "models"))
            raise ConfigError(f"model.backbone: the ImageNet weights of {name} cannot be downloaded "
                              f"({e.__class__.__name__}); fetch {origin} into {cache}/{fname or ''}, or set "
                              f"model.backbone.weights to a weights file (.weights.h5 or .h5)") from None

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = real


def _arguments(factory) -> set[str]:
    import inspect

    return set(inspect.signature(factory).parameters)

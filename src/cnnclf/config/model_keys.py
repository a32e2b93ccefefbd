"""The model: section of the config: a preset, a layer list, or a pretrained backbone with a head."""

from typing import Annotated, Any

from pydantic import AfterValidator, PositiveFloat, PositiveInt, field_serializer, field_validator

from cnnclf.config.base import Section, local_path, on_off
from cnnclf.errors import did_you_mean, listing
from cnnclf.model import keras_names


def _plain(value: Any, where: str) -> None:
    """Layer arguments are numbers, strings, booleans and lists of them: a mapping would be
    deserialized by Keras into an object of any registered class."""
    if isinstance(value, dict):
        raise ValueError(
            f"{where} is a mapping; layer arguments are plain values (numbers, strings, lists), "
            f"and objects such as initializers are named by string, like he_uniform"
        )
    if isinstance(value, (list, tuple)):
        for item in value:
            _plain(item, where)


def _check_layer(item: Any) -> dict:
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError("each layer is a one-key mapping, like {Conv2D: {filters: 32, kernel_size: 3}}")
    ((name, kwargs),) = item.items()
    if name in keras_names.refused_layer_names():
        raise ValueError(
            f"{name} is refused: a config may name only layers that compute on their input, not "
            f"ones that load files, models or code (see COMPUTE_LAYERS in cnnclf/keras_names.py)"
        )
    valid = keras_names.layer_names()
    if name not in valid:
        raise ValueError(f"{name!r} is not a Keras layer{did_you_mean(name, valid)}; valid: {listing(valid, 12)}")
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, dict):
        raise ValueError(f"the arguments of {name} must be a mapping like {{units: 10}}, got {kwargs!r}")
    for key, value in kwargs.items():
        _plain(value, f"{name}.{key}")
    return {name: kwargs}


LayerSpec = Annotated[Any, AfterValidator(_check_layer)]


class BackboneConfig(Section):
    """A keras.applications model as the feature extractor; its own preprocessing is part of the model."""

    name: str  # e.g. MobileNetV3Small, EfficientNetB0, ResNet50 (`cnnclf config presets` lists them)
    weights: str | None = "imagenet"  # imagenet (Keras's download cache) | null (random) | a weights file
    trainable: bool = False  # false: frozen (batch normalization in inference mode); true: every layer trains

    @field_validator("name")
    @classmethod
    def _known(cls, name):
        valid = [n for n in keras_names.application_names() if n in keras_names.BACKBONES]
        if name not in valid:
            raise ValueError(
                f"{name!r} is not a keras.applications model{did_you_mean(name, valid)}; "
                f"`cnnclf config presets` lists them"
            )
        return name

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights):
        return weights if weights in (None, "imagenet") else local_path(weights)


class WhitenConfig(Section):
    """A frozen first convolution that whitens patches, from the training images' statistics (airbench)."""

    patch: PositiveInt = 2  # pixels on a side: its kernels are patch x patch, 2 x patch x patch x channels of them
    epsilon: PositiveFloat = 5e-4  # added to each eigenvalue: how far the weakest directions are amplified
    images: PositiveInt = 5000  # training images the patch statistics are taken from (the first, in order)


class ModelConfig(Section):
    preset: str | None = None  # a built-in architecture by name (`cnnclf config presets`), or:
    backbone: BackboneConfig | None = None  # a pretrained feature extractor, with layers as its head, or:
    layers: list[LayerSpec] | None = None  # [{KerasLayerName: {kwargs}}, ...]; the classifier may be left out
    whiten: WhitenConfig | None = None  # true or {patch, epsilon, images}: before the layers (model/whitening.py)
    dirac: bool = False  # true: each 3x3 (odd-sized) convolution starts as the identity on its first input
    # channels, its other filters random (airbench's initialization)

    @field_validator("whiten", mode="before")
    @classmethod
    def _switch(cls, value):
        return on_off(value)

    @field_serializer("whiten")
    def _off_is_false(self, value):
        return False if value is None else value.model_dump()

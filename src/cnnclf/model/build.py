"""Build a Keras model from the config: a declarative layer list, a preset, or a pretrained backbone
with a head. Compiling is in optimization.py; the views evaluation averages over, in inference.py."""

import inspect
import math
import os

import keras

from cnnclf.errors import ConfigError, did_you_mean, first_line
from cnnclf.model import backbones
from cnnclf.model.presets import PRESETS
from cnnclf.model.whitening import whitening_layer

EVAL_ACTIVATION_BUDGET = 64 * 2**20  # bytes of activations per evaluation batch
MAX_TENSOR = 2**31 - 1  # values in one weight tensor, at most (TensorFlow's kernels index them with int32)
REDUCING = ("Flatten", "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPooling2D", "GlobalMaxPool2D")


def layer_specs(model_config) -> tuple[list[dict], str]:
    """The layer list (a backbone's head), and how to name it in messages."""
    if model_config.preset is not None:
        return PRESETS[model_config.preset], f"preset {model_config.preset}"
    specs = list(model_config.layers or [])
    if model_config.backbone is not None and not any(next(iter(s)) in REDUCING for s in specs):
        specs.insert(0, {"GlobalAveragePooling2D": {}})  # the backbone's feature map to one vector per image
    return specs, "model.layers"


def build_model(
    config, input_shape: tuple[int, int, int], num_classes: int, precision: str = "float32", whitening=None
) -> keras.Model:
    """Input (uint8 pixels, cast by Keras) -> augmentation -> x/255 (-> the whitening convolution, with
    `whitening`, its weights, where model.whiten asks for it), or a backbone's own preprocessing and
    the backbone -> the layers -> softmax classifier. Under a mixed precision policy the output is
    cast back to float32, for a stable loss. The policy is Keras's global one while the layers are
    made, and the one before afterwards."""
    keras.utils.set_random_seed(config.seed)
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = _build(config, input_shape, num_classes, precision, whitening)
    finally:
        keras.mixed_precision.set_global_policy(before)
    if config.model.dirac:
        start_as_identity(model)
    return model


def all_layers(model: keras.Model) -> list:
    """The model's layers, and those of the models inside it (a backbone)."""
    return [
        inner for layer in model.layers for inner in (all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    ]


def start_as_identity(model: keras.Model) -> None:
    """model.dirac: each trainable convolution with an odd square kernel passes its first input
    channels through unchanged at the start (filter i is 1 at the centre of input channel i, 0
    elsewhere), its other filters keeping their random start: airbench's initialization, which
    starts a deep stack of convolutions near the identity, so the features below reach the top."""
    for layer in model.layers:
        if not (isinstance(layer, keras.layers.Conv2D) and layer.trainable and layer.groups == 1):
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel.value).copy()
        height, width, inputs, outputs = kernel.shape
        if height != width or height % 2 == 0:
            continue
        channels = range(min(inputs, outputs))
        kernel[..., channels] = 0
        kernel[height // 2, width // 2, channels, channels] = 1
        layer.kernel.assign(kernel)


def _build(config, input_shape: tuple[int, int, int], num_classes: int, precision: str, whitening) -> keras.Model:
    specs, where = layer_specs(config.model)
    model = keras.Sequential(name="cnnclf")  # not the run's name, which may hold characters Keras refuses
    model.add(keras.Input(shape=input_shape))
    check_test_shift(config.data.augment, input_shape)
    for layer in augmentation(config.data.augment, config.seed):
        model.add(layer)
    if config.model.backbone is not None:
        for layer, weights in backbones.input_layers(config.model.backbone.name, input_shape[-1]):
            model.add(layer)
            if weights is not None:
                layer.set_weights(weights)
        model.add(backbones.build(config, input_shape))
    elif config.data.normalize == "scale":
        model.add(keras.layers.Rescaling(1 / 255, name="scale"))
    if config.model.whiten is not None:
        layer = whitening_layer(input_shape[-1], config.model.whiten.patch)
        model.add(layer)
        if whitening is not None:
            layer.set_weights(whitening)
    counted = 0  # weights of the layers so far
    for i, spec in enumerate(specs):
        ((name, kwargs),) = spec.items()
        label = f"{where}[{i}].{name}"
        layer = construct(getattr(keras.layers, name), kwargs, label)
        before = model.output_shape if model.layers else (None, *input_shape)
        counted += check_weights(layer, before, label, counted)
        try:
            model.add(layer)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{label}: cannot take input of shape {before}: {first_line(e, 300)}") from None
    last = model.layers[-1]
    if not _is_classifier(last):
        classifier = keras.layers.Dense(num_classes, activation="softmax", name="classifier")
        check_weights(classifier, model.output_shape, f"{where}: the classifier cnnclf adds, Dense", counted)
        model.add(classifier)
    elif model.output_shape[-1] != num_classes:
        raise ConfigError(
            f"{where}[{len(specs) - 1}]: the last layer gives {model.output_shape[-1]} outputs but "
            f"the data has {num_classes} classes; set units: {num_classes}, or leave the "
            f"classifier out and cnnclf adds Dense({num_classes}, softmax)"
        )
    if model.output_shape != (None, num_classes):
        raise ConfigError(
            f"{where}: the model's output has shape {model.output_shape}, expected "
            f"(None, {num_classes}); add Flatten or GlobalAveragePooling2D before the classifier"
        )
    if precision != "float32":
        model.add(keras.layers.Activation("linear", dtype="float32", name="float32_output"))
    return model


def augmentation(augment, seed: int) -> list:
    """Keras preprocessing layers for data.augment; nearest-pixel sampling, which costs almost
    nothing (bilinear halved training speed on MNIST on 2 CPU cores)."""
    common = {"fill_mode": augment.fill, "interpolation": "nearest", "seed": seed}
    layers = []
    if augment.flip and not augment.alternate_flips:  # alternating flips are the pipeline's (data/pipeline.py)
        layers.append(keras.layers.RandomFlip(augment.flip, seed=seed, name="flip"))
    if augment.translate:
        layers.append(keras.layers.RandomTranslation(augment.translate, augment.translate, name="translate", **common))
    if augment.rotate:
        layers.append(keras.layers.RandomRotation(augment.rotate, name="rotate", **common))
    if augment.zoom:
        layers.append(keras.layers.RandomZoom(augment.zoom, name="zoom", **common))
    if augment.randaugment:  # Keras's own: 2 of its ops per image, at this magnitude, on 0-255 pixels
        layers.append(keras.layers.RandAugment((0, 255), factor=augment.randaugment, seed=seed, name="randaugment"))
    if augment.erasing:  # Keras's own: a random box erased (noise) in this share of the images
        layers.append(
            keras.layers.RandomErasing(factor=augment.erasing, value_range=(0, 255), seed=seed, name="erasing")
        )
    return layers


def check_test_shift(augment, input_shape) -> None:
    """Refuse test-time shifts further than training's translations reach: before training starts, and
    before a run whose config was edited is evaluated, predicted with or exported."""
    side = min(input_shape[:2])
    reach = augment.translate * side
    if augment.test_shift > reach:
        raise ConfigError(
            f"data.augment.test_shift: {augment.test_shift} pixels is further than training's "
            f"translations reach ({augment.translate:g} of {side} pixels); "
            f"set it to at most {math.floor(reach)} or raise data.augment.translate"
        )


def check_weights(layer, before: tuple, label: str, so_far: int) -> int:
    """The weights a Dense layer or a convolution would make on input of shape `before`, counted before
    Keras makes any: a layer larger than a tensor can be (MAX_TENSOR values), or one that would take
    the model past what this machine's memory can train (4 copies of float32 weights: the weights,
    their gradients and Adam's two moments), is refused with its size, not left to fail in TensorFlow."""
    channels = int(before[-1] or 0)
    if hasattr(layer, "units"):
        made, what = channels * int(layer.units) + int(layer.units), f"{layer.units:,} units on {channels:,} inputs"
    elif hasattr(layer, "filters") and hasattr(layer, "kernel_size"):
        kernel = math.prod(layer.kernel_size)
        made = kernel * channels * int(layer.filters) // int(getattr(layer, "groups", 1) or 1) + int(layer.filters)
        what = f"{layer.filters:,} filters of {'x'.join(map(str, layer.kernel_size))} on {channels:,} channels"
    else:
        return 0
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if made > MAX_TENSOR or 16 * (so_far + made) > memory:
        limit = (
            f"a tensor can hold ({MAX_TENSOR:,} values)"
            if made > MAX_TENSOR
            else f"this machine's {memory / 1e9:,.0f} GB of memory can train"
        )
        raise ConfigError(
            f"{label}: {what} make {made:,} weights ({4 * made / 1e9:,.1f} GB in float32; training holds 4 "
            f"times that), more than {limit}; make the layer smaller"
        )
    return made


def construct(cls, kwargs: dict, label: str):
    """cls(**kwargs), with a misspelled argument named and its nearest valid spelling suggested."""
    accepted = _arguments(cls)
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(
                f"{label}: unknown argument {key!r}{did_you_mean(key, accepted)}; "
                f"{cls.__name__} takes {', '.join(sorted(accepted))}"
            )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{label}: {first_line(e, 300)}") from None


def _arguments(cls) -> set[str]:
    """Keyword arguments a Keras class accepts: the named ones of every __init__ up its bases
    (each passes **kwargs on to the next, which checks them)."""
    names = set()
    for klass in cls.__mro__[:-1]:
        if "__init__" in vars(klass):
            parameters = inspect.signature(klass.__init__).parameters.values()
            names |= {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    names.discard("self")
    return names | {"input_shape", "input_dim"} if issubclass(cls, keras.layers.Layer) else names


def _is_classifier(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return isinstance(layer, keras.layers.Softmax) or getattr(activation, "__name__", "") == "softmax"


def eval_batch_size(model, train) -> int:
    """train.eval_batch_size, with auto resolved: evaluation needs no gradients, so batches larger
    than training's are free in time, but not in memory (1,024 images of s004_mnist, which keeps
    full resolution, held 400 MB of activations)."""
    if train.eval_batch_size != "auto":
        return train.eval_batch_size
    per_image = 4 * sum(math.prod(_shape(layer.output)[1:]) for layer in all_layers(model))
    return max(train.batch_size, min(1024, EVAL_ACTIVATION_BUDGET // max(per_image, 1)))


def _shape(output) -> tuple:
    shape = output[0].shape if isinstance(output, (list, tuple)) else output.shape
    return tuple(d or 1 for d in shape)

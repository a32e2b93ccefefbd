"""Build and compile a Keras model from the config: a declarative layer list or a preset."""

import inspect
import math

import keras

from cnnclf.compute import Compute
from cnnclf.conv_gradients import use_forward_convolutions
from cnnclf.errors import ConfigError, did_you_mean
from cnnclf.presets import PRESETS


def layer_specs(model_config) -> tuple[list[dict], str]:
    """The layer list, and how to name it in messages."""
    if model_config.preset is not None:
        return PRESETS[model_config.preset], f"preset {model_config.preset}"
    return model_config.layers, "model.layers"


def build_model(config, input_shape: tuple[int, int, int], num_classes: int,
                precision: str = "float32") -> keras.Model:
    """Input (uint8 pixels, cast by Keras) -> optional x/255 -> the layers -> softmax classifier.
    Under a mixed precision policy the output is cast back to float32, for a stable loss."""
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(precision)
    specs, where = layer_specs(config.model)
    model = keras.Sequential(name="cnnclf")  # not the run's name, which may hold characters Keras refuses
    model.add(keras.Input(shape=input_shape))
    check_test_shift(config.data.augment, input_shape)
    for layer in augmentation(config.data.augment, config.seed):
        model.add(layer)
    if config.data.normalize == "scale":
        model.add(keras.layers.Rescaling(1 / 255, name="scale"))
    for i, spec in enumerate(specs):
        ((name, kwargs),) = spec.items()
        label = f"{where}[{i}].{name}"
        layer = construct(getattr(keras.layers, name), kwargs, label)
        before = model.output_shape if model.layers else (None, *input_shape)
        try:
            model.add(layer)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{label}: cannot take input of shape {before}: {_first_line(e)}") from None
    last = model.layers[-1]
    if not _is_classifier(last):
        model.add(keras.layers.Dense(num_classes, activation="softmax", name="classifier"))
    elif model.output_shape[-1] != num_classes:
        raise ConfigError(f"{where}[{len(specs) - 1}]: the last layer gives {model.output_shape[-1]} outputs but "
                          f"the data has {num_classes} classes; set units: {num_classes}, or leave the "
                          f"classifier out and cnnclf adds Dense({num_classes}, softmax)")
    if model.output_shape != (None, num_classes):
        raise ConfigError(f"{where}: the model's output has shape {model.output_shape}, expected "
                          f"(None, {num_classes}); add Flatten or GlobalAveragePooling2D before the classifier")
    if precision != "float32":
        model.add(keras.layers.Activation("linear", dtype="float32", name="float32_output"))
    return model


def augmentation(augment, seed: int) -> list:
    """Keras preprocessing layers for data.augment; nearest-pixel sampling, which costs almost
    nothing (bilinear halved training speed on MNIST on 2 CPU cores)."""
    common = {"fill_mode": augment.fill, "interpolation": "nearest", "seed": seed}
    layers = []
    if augment.flip:
        layers.append(keras.layers.RandomFlip(augment.flip, seed=seed, name="flip"))
    if augment.translate:
        layers.append(keras.layers.RandomTranslation(augment.translate, augment.translate, name="translate", **common))
    if augment.rotate:
        layers.append(keras.layers.RandomRotation(augment.rotate, name="rotate", **common))
    if augment.zoom:
        layers.append(keras.layers.RandomZoom(augment.zoom, name="zoom", **common))
    return layers


def check_test_shift(augment, input_shape) -> None:
    """Refuse test-time shifts further than training's translations reach: before training starts, and
    before a run whose config was edited is evaluated, predicted with or exported."""
    side = min(input_shape[:2])
    reach = augment.translate * side
    if augment.test_shift > reach:
        raise ConfigError(f"data.augment.test_shift: {augment.test_shift} pixels is further than training's "
                          f"translations reach ({augment.translate:g} of {side} pixels); "
                          f"set it to at most {math.floor(reach)} or raise data.augment.translate")


FLIP_AXES = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (1, 2)}  # of (N, H, W, C)


def inference_model(model: keras.Model, config) -> keras.Model:
    """The model evaluate, predict and export use. With test-time augmentation, each image's class
    probabilities are averaged over its views: the image, with data.augment.test_shift also the image
    shifted that many pixels down-right and up-left (edges reflected), and with data.augment.test_flip
    the flips of each. On CIFAR-10, flips took 85.11% to 86.06% for twice the inference time, and
    1-pixel shifts 87.02% to 87.59% for 3x more (BENCHMARKS.md)."""
    augment = config.data.augment
    if not (augment.test_flip or augment.test_shift):
        return model
    check_test_shift(augment, model.input_shape[1:])
    pixels = keras.Input(model.input_shape[1:], name="pixels")
    views = [pixels]
    if augment.test_shift:
        s = augment.test_shift
        height, width = model.input_shape[1:3]
        padded = keras.ops.pad(pixels, [(0, 0), (s, s), (s, s), (0, 0)], mode="reflect")
        views += [padded[:, :height, :width], padded[:, 2 * s:, 2 * s:]]
    if augment.test_flip:
        for axis in FLIP_AXES[augment.flip]:
            views += [keras.ops.flip(view, axis=axis) for view in views]
    probabilities = keras.layers.Average(name="test_time_views")([model(view) for view in views])
    averaged = keras.Model(pixels, probabilities, name=model.name)
    averaged.compile(loss=make_loss(config.train, config.data.labels), metrics=list(config.train.metrics))
    return averaged


def compile_model(model: keras.Model, train, labels: str, steps_per_epoch: int, compute: Compute) -> None:
    """Optimizer (with its learning-rate schedule), loss and metrics, as `train` (TrainConfig) says,
    with the compute levers resolved in `compute`."""
    if compute.conv_gradients == "forward":
        use_forward_convolutions(model)
    optimizer = make_optimizer(train, steps_per_epoch, compute.learning_rate_scale)
    model.compile(optimizer=optimizer, loss=make_loss(train, labels),
                  metrics=list(train.metrics), steps_per_execution=compute.steps_per_execution,
                  jit_compile=compute.jit_compile)


def make_optimizer(train, steps_per_epoch: int, scale: float = 1.0) -> keras.optimizers.Optimizer:
    options = train.optimizer
    cls = {n.lower(): getattr(keras.optimizers, n) for n in dir(keras.optimizers) if n[:1].isupper()}[options.name]
    kwargs = dict(options.model_extra or {})
    rate = scale * (options.learning_rate or inspect.signature(cls).parameters["learning_rate"].default)
    warmup = round(train.warmup_epochs * steps_per_epoch)
    if train.lr_schedule == "cosine" or warmup:
        total = train.epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else rate,
            decay_steps=max(total - warmup, 1),
            alpha=1.0 if train.lr_schedule == "constant" else 0.0,  # alpha 1: stay at the peak
            warmup_target=rate if warmup else None,
            warmup_steps=warmup,
        )
    return construct(cls, {**kwargs, "learning_rate": rate}, "train.optimizer")


def make_loss(train, labels: str):
    if train.loss != "auto":
        return keras.losses.get(train.loss)  # a name the config checked against the labels
    if labels == "onehot":
        return keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def construct(cls, kwargs: dict, label: str):
    """cls(**kwargs), with a misspelled argument named and its nearest valid spelling suggested."""
    accepted = _arguments(cls)
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(f"{label}: unknown argument {key!r}{did_you_mean(key, accepted)}; "
                              f"{cls.__name__} takes {', '.join(sorted(accepted))}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{label}: {_first_line(e)}") from None


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


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [error.__class__.__name__])[0]

"""The config schema: every key, its default and its own check. A YAML file holds only what differs.

Checks that span several keys are in rules.py; reading the file is in yaml_file.py.
"""

import os
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_serializer,
    field_validator,
    model_validator,
)

from cnnclf import keras_names
from cnnclf.data.datasets import DATASETS, KNOWN
from cnnclf.data.sources import SOURCES
from cnnclf.errors import did_you_mean, listing


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _on_off(value):
    """`true` means the section with its defaults, `false`/`null` means off."""
    return {} if value is True else None if value is False else value


class AugmentConfig(Section):
    """Random changes to training images (Keras preprocessing layers, inactive at inference), and
    whether inference averages over flips and shifts training drew from (test-time augmentation)."""

    flip: Optional[Literal["horizontal", "vertical", "horizontal_and_vertical"]] = None
    translate: float = Field(0.0, ge=0, lt=0.5)  # up to this fraction of height and width, per image
    rotate: float = Field(0.0, ge=0, le=0.5)  # up to this fraction of a full turn
    zoom: float = Field(0.0, ge=0, lt=1)  # up to this fraction in or out
    fill: Literal["reflect", "constant", "nearest"] = "reflect"  # what fills pixels moved in from outside
    test_flip: bool = False  # evaluate, predict and export average each image's probabilities over its flips
    test_shift: int = Field(0, ge=0)  # pixels; they also average over the image shifted this far down-right and up-left


Side = Annotated[int, Field(gt=0, le=4096)]  # pixels; larger inputs are beyond what cnnclf's models train on


def _local_path(value: Optional[str]) -> Optional[str]:
    """A path as the user wrote it, made absolute, so that a run's config works from anywhere."""
    if value is None:
        return None
    if "\0" in value:
        raise ValueError("a path cannot hold a NUL character")
    return os.path.abspath(os.path.expanduser(value))


class DataConfig(Section):
    dataset: Literal[DATASETS] = "mnist"  # type: ignore[valid-type]
    source: Optional[Literal[tuple(SOURCES)]] = None  # type: ignore[valid-type]  # null: the dataset's own
    path: Optional[str] = None  # file or directory, for local sources; relative to the working directory
    test_path: Optional[str] = None  # csv: the test CSV; folder: test folder if not <path>/test
    path_column: str = "path"  # manifest: the column of image paths, relative to the CSV's folder
    label_column: str = "label"  # csv and manifest: the column of labels (manifest labels may be names)
    split_column: str = "split"  # manifest: train or test per row, if the column exists
    image_shape: Optional[tuple[Side, Side, Literal[1, 3]]] = None  # [height, width, channels]
    resize: Literal["stretch", "crop", "pad"] = "stretch"  # image files of another aspect: stretch them, crop
    # the centre to the aspect, or pad (letterbox) them, then resize
    skip_bad_images: bool = False  # image files: skip and count files that are not images
    labels: Literal["sparse", "onehot"] = "sparse"  # the loss follows: (sparse_)categorical_crossentropy
    test_split: Optional[float] = Field(None, gt=0, lt=1)  # image files without a test part: this fraction
    # becomes the test set (null: 0.2), chosen per file by a seeded hash of its path
    validation: Literal["split", "test"] = "split"  # split: hold out validation_split of train
    validation_split: float = Field(0.1, gt=0, lt=1)  # fraction of train, stratified and seeded
    limit_train: Optional[PositiveInt] = None  # stratified subset size (images), for smoke runs
    limit_test: Optional[PositiveInt] = None
    storage: Literal["auto", "memory", "stream"] = "auto"  # image files: decoded once into memory, or read
    # and decoded batch by batch (auto: memory when the decoded pixels fit memory_budget_mb)
    memory_budget_mb: Union[Literal["auto"], PositiveInt] = "auto"  # auto: a quarter of the machine's memory
    cache: Optional[str] = None  # stream: a folder for decoded pixels, reused by later epochs and runs
    normalize: Literal["scale", "none"] = "scale"  # scale: x/255, done inside the model
    augment: AugmentConfig = AugmentConfig()  # none by default

    @field_validator("path", "test_path", "cache")
    @classmethod
    def _absolute(cls, value):
        return _local_path(value)

    @model_validator(mode="after")
    def _resolve(self):
        if self.source is None and self.dataset in KNOWN:
            self.source = KNOWN[self.dataset].default_source
        return self


def _plain(value: Any, where: str) -> None:
    """Layer arguments are numbers, strings, booleans and lists of them: a mapping would be
    deserialized by Keras into an object of any registered class."""
    if isinstance(value, dict):
        raise ValueError(f"{where} is a mapping; layer arguments are plain values (numbers, strings, lists), "
                         f"and objects such as initializers are named by string, like he_uniform")
    if isinstance(value, (list, tuple)):
        for item in value:
            _plain(item, where)


def _check_layer(item: Any) -> dict:
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError("each layer is a one-key mapping, like {Conv2D: {filters: 32, kernel_size: 3}}")
    ((name, kwargs),) = item.items()
    if name in keras_names.refused_layer_names():
        raise ValueError(f"{name} is refused: a config may name only layers that compute on their input, not "
                         f"ones that load files, models or code (see COMPUTE_LAYERS in cnnclf/keras_names.py)")
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
    weights: Optional[str] = "imagenet"  # imagenet (Keras's download cache) | null (random) | a weights file
    trainable: bool = False  # false: frozen (batch normalization in inference mode); true: every layer trains

    @field_validator("name")
    @classmethod
    def _known(cls, name):
        valid = keras_names.application_names()
        if name not in valid:
            raise ValueError(f"{name!r} is not a keras.applications model{did_you_mean(name, valid)}; "
                             f"`cnnclf config presets` lists them")
        return name

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights):
        return weights if weights in (None, "imagenet") else _local_path(weights)


class ModelConfig(Section):
    preset: Optional[str] = None  # a built-in architecture by name (`cnnclf config presets`), or:
    backbone: Optional[BackboneConfig] = None  # a pretrained feature extractor, with layers as its head, or:
    layers: Optional[list[LayerSpec]] = None  # [{KerasLayerName: {kwargs}}, ...]; the classifier may be left out


class OptimizerConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # other keyword arguments go to the Keras optimizer

    name: str = "adam"
    learning_rate: Optional[PositiveFloat] = None  # null: the optimizer's own default

    @field_validator("name")
    @classmethod
    def _known(cls, name):
        valid = keras_names.optimizer_names()
        if name.lower() not in valid:
            raise ValueError(f"{name!r} is not a Keras optimizer{did_you_mean(name.lower(), valid)}; "
                             f"valid: {', '.join(valid)}")
        return name.lower()

    @model_validator(mode="after")
    def _plain_extras(self):
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, (bool, int, float, str)) and value is not None:
                raise ValueError(f"{key}: optimizer arguments are numbers, strings or booleans, got {value!r}")
        return self


class EarlyStoppingConfig(Section):
    monitor: str = "val_loss"
    patience: NonNegativeInt = 2  # epochs without improvement before stopping
    min_delta: NonNegativeFloat = 0.0  # smallest change that counts as an improvement
    restore_best_weights: bool = True
    mode: Literal["auto", "min", "max"] = "auto"


class CheckpointConfig(Section):
    monitor: str = "val_loss"  # the best model by this value is kept as model.keras
    mode: Literal["auto", "min", "max"] = "auto"


class MlflowConfig(Section):
    tracking_uri: str  # e.g. http://mlflow.example:5000, sqlite:///mlflow.db, file:///path/mlruns
    experiment: str = "cnnclf"


class FineTuneConfig(Section):
    """A second phase in the same run: the backbone unfrozen, at a small learning rate."""

    epochs: PositiveInt = 5
    learning_rate: PositiveFloat = 1.0e-5
    unfreeze: Union[Literal["all"], PositiveInt] = "all"  # all, or the backbone's last N layers
    # (batch normalization stays in inference mode either way, as Keras's transfer-learning guide says)


class TrainConfig(Section):
    optimizer: OptimizerConfig = OptimizerConfig()  # a name, or {name: rmsprop, learning_rate: 0.001}
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 by the last epoch
    warmup_epochs: NonNegativeFloat = 0.0  # linear warm-up from 0, before the schedule
    loss: str = "auto"  # auto: (sparse_)categorical_crossentropy, following data.labels
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # needs data.labels: onehot
    metrics: list[str] = ["accuracy"]
    epochs: int = Field(10, gt=0, le=100_000)
    batch_size: PositiveInt = 32  # images per training step
    eval_batch_size: Union[Literal["auto"], PositiveInt] = "auto"  # images per validation/test step; auto: as
    # many as fit in 64 MB of activations (at least batch_size, at most 1024)
    early_stopping: Optional[EarlyStoppingConfig] = EarlyStoppingConfig()  # or false
    checkpoint: Optional[CheckpointConfig] = CheckpointConfig()  # or false: keep the last epoch's model
    deterministic: bool = False  # TensorFlow's deterministic ops: same config and seed, same metrics
    # Compute levers; auto picks what the benchmark measured fastest on the device (BENCHMARKS.md).
    steps_per_execution: Union[Literal["auto"], PositiveInt] = "auto"  # training steps per call into TF
    jit_compile: Union[Literal["auto"], bool] = "auto"  # XLA; auto: on GPUs, off on CPUs
    mixed_precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    threads: Union[Literal["auto"], PositiveInt] = "auto"  # TensorFlow's intra-op threads; auto: all cores
    conv_gradients: Literal["auto", "tensorflow", "forward"] = "auto"  # of stride-1 Conv2D layers: TensorFlow's
    # kernels, or forward convolutions (conv_gradients.py); auto: forward on CPUs, TensorFlow's on GPUs
    distribute: Literal["none", "auto", "mirrored", "multi_worker"] = "none"  # auto: mirrored on 2+ GPUs
    batch_size_per_replica: bool = False  # true: batch_size per replica, false: per step across all replicas
    scale_learning_rate: bool = False  # times the replicas, with batch_size_per_replica (linear scaling)
    cpu_replicas: PositiveInt = 1  # mirrored without GPUs: split the CPU into this many devices
    fine_tune: Optional[FineTuneConfig] = None  # with model.backbone: a second phase, the backbone unfrozen
    class_weight: Union[Literal["none", "balanced"], dict[str, PositiveFloat]] = "none"  # balanced: each class
    # weighs images / (classes x its images) in the loss; or {class name: weight}, others 1
    tensorboard: bool = False  # TensorBoard logs in <run>/tensorboard
    mlflow: Optional[MlflowConfig] = None  # log params, metrics, artifacts and the model to MLflow

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @field_validator("early_stopping", "checkpoint", "fine_tune", mode="before")
    @classmethod
    def _switch(cls, value):
        return _on_off(value)

    @field_serializer("early_stopping", "checkpoint", "fine_tune")
    def _off_is_false(self, value):
        return False if value is None else value.model_dump()

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics):
        valid = keras_names.metric_names()
        for name in metrics:
            if name not in valid:
                raise ValueError(f"{name!r} is not a Keras metric{did_you_mean(name, valid)}; "
                                 f"valid: {listing(valid, 12)}")
        return metrics

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, loss):
        valid = keras_names.loss_names()
        if loss != "auto" and loss not in valid:
            raise ValueError(f"{loss!r} is not a Keras loss{did_you_mean(loss, valid)}; use auto, or a name such "
                             f"as categorical_crossentropy")
        return loss

    def monitors(self) -> list[str]:
        """Values that early stopping and the checkpoint can watch."""
        names = ["loss", *self.metrics]
        return names + [f"val_{n}" for n in names]


def _check_dimension(value: Any) -> dict:
    kinds = {"choice": "a list of values", "uniform": "[low, high]", "log_uniform": "[low, high], low > 0",
             "int": "[low, high] whole numbers"}
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in kinds:
        raise ValueError(f"a search dimension is one of {', '.join(f'{{{k}: {v}}}' for k, v in kinds.items())}")
    ((kind, spec),) = value.items()
    if kind == "choice":
        if not isinstance(spec, list) or not spec:
            raise ValueError("choice needs a non-empty list of values")
    elif not (isinstance(spec, list) and len(spec) == 2 and all(isinstance(v, (int, float)) for v in spec)
              and spec[0] < spec[1] and (kind != "log_uniform" or spec[0] > 0)
              and (kind != "int" or all(isinstance(v, int) for v in spec))):
        raise ValueError(f"{kind} needs {kinds[kind]}")
    return value


class TuneConfig(Section):
    """`cnnclf tune`: search these config keys with Optuna; every trial is an ordinary run."""

    space: dict[str, Annotated[Any, AfterValidator(_check_dimension)]]  # key path -> {choice|uniform|log_uniform|int}
    metric: str = "val_accuracy"  # a trial scores its best epoch's value of this
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: PositiveInt = 20  # finished trials the study should reach (cnnclf tune --trials overrides)


class OutputConfig(Section):
    runs_dir: str = "runs"  # each run gets runs_dir/<UTC time>-<name>/


class Config(Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]+$", max_length=100)  # run-name prefix; default: the file's stem
    seed: int = Field(42, ge=0, lt=2**32)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()
    tune: Optional[TuneConfig] = None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

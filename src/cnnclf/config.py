"""The config schema. Every default lives here; a YAML file holds only what differs.

load_config(path, overrides) reads YAML safely, applies `--set key.path=value` overrides,
validates, and raises ConfigError naming the file, line, key, what was found and the fix.
"""

import difflib
import logging
import os
import re
import typing
from pathlib import Path
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
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from cnnclf import keras_api
from cnnclf.data.datasets import DATASETS, KNOWN, SOURCES
from cnnclf.errors import ConfigError, did_you_mean

log = logging.getLogger("cnnclf")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class DataConfig(Section):
    dataset: Literal[DATASETS] = "mnist"
    source: Optional[Literal[tuple(SOURCES)]] = None  # null: keras (sklearn for digits)
    path: Optional[str] = None  # file or directory, for local sources; relative to the working directory
    test_path: Optional[str] = None  # csv: the test CSV; folder: test folder if not <path>/test
    label_column: str = "label"  # csv only
    image_shape: Optional[tuple[PositiveInt, PositiveInt, Literal[1, 3]]] = None  # [height, width, channels]
    skip_bad_images: bool = False  # folder only: skip and count files that are not images
    labels: Literal["sparse", "onehot"] = "sparse"  # the loss follows: (sparse_)categorical_crossentropy
    validation: Literal["split", "test"] = "split"  # split: hold out validation_split of train
    validation_split: float = Field(0.1, gt=0, lt=1)  # fraction of train, stratified and seeded
    limit_train: Optional[PositiveInt] = None  # stratified subset size (images), for smoke runs
    limit_test: Optional[PositiveInt] = None
    normalize: Literal["scale", "none"] = "scale"  # scale: x/255, done inside the model
    augment: AugmentConfig = AugmentConfig()  # none by default

    @model_validator(mode="after")
    def _resolve(self):
        if self.source is None and self.dataset in KNOWN:
            self.source = KNOWN[self.dataset].default_source
        for key in ("path", "test_path"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, os.path.abspath(os.path.expanduser(value)))
        return self


def _check_layer(item: Any) -> dict:
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError("each layer is a one-key mapping, like {Conv2D: {filters: 32, kernel_size: 3}}")
    ((name, kwargs),) = item.items()
    valid = keras_api.layer_names()
    if name not in valid:
        raise ValueError(f"{name!r} is not a Keras layer{did_you_mean(name, valid)}; valid: {', '.join(valid)}")
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, dict):
        raise ValueError(f"the arguments of {name} must be a mapping like {{units: 10}}, got {kwargs!r}")
    return {name: kwargs}


LayerSpec = Annotated[Any, AfterValidator(_check_layer)]


class ModelConfig(Section):
    preset: Optional[str] = None  # a built-in architecture by name (`cnnclf config presets`), or:
    layers: Optional[list[LayerSpec]] = None  # [{KerasLayerName: {kwargs}}, ...]; the classifier may be left out


class OptimizerConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # other keyword arguments go to the Keras optimizer

    name: str = "adam"
    learning_rate: Optional[PositiveFloat] = None  # null: the optimizer's own default

    @field_validator("name")
    @classmethod
    def _known(cls, name):
        valid = keras_api.optimizer_names()
        if name.lower() not in valid:
            raise ValueError(f"{name!r} is not a Keras optimizer{did_you_mean(name.lower(), valid)}; "
                             f"valid: {', '.join(valid)}")
        return name.lower()


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


class TrainConfig(Section):
    optimizer: OptimizerConfig = OptimizerConfig()  # a name, or {name: rmsprop, learning_rate: 0.001}
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 by the last epoch
    warmup_epochs: NonNegativeFloat = 0.0  # linear warm-up from 0, before the schedule
    loss: str = "auto"  # auto: (sparse_)categorical_crossentropy, following data.labels
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # needs data.labels: onehot
    metrics: list[str] = ["accuracy"]
    epochs: PositiveInt = 10
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
    tensorboard: bool = False  # TensorBoard logs in <run>/tensorboard
    mlflow: Optional[MlflowConfig] = None  # log params, metrics, artifacts and the model to MLflow

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @field_validator("early_stopping", "checkpoint", mode="before")
    @classmethod
    def _switch(cls, value):
        return _on_off(value)

    @field_serializer("early_stopping", "checkpoint")
    def _off_is_false(self, value):
        return False if value is None else value.model_dump()

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics):
        valid = keras_api.metric_names()
        for name in metrics:
            if name not in valid:
                raise ValueError(f"{name!r} is not a Keras metric{did_you_mean(name, valid)}; "
                                 f"valid: {', '.join(valid)}")
        return metrics

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
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9._-]+$")  # run-name prefix; default: the file's stem
    seed: int = 42
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()
    tune: Optional[TuneConfig] = None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def with_overrides(self, overrides: dict[str, Any], where=None) -> "Config":
        """A validated copy with dotted keys replaced, e.g. {"train.epochs": 1}."""
        where = where or _Locator(None, {}, overrides)
        raw = self.model_dump(mode="json")
        for key, value in overrides.items():
            _set_path(raw, _parse_path(key), value, key)
        return _validate(raw, where)


def flatten(value, prefix: str = "") -> dict:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}; lists stay values."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


# --- loading ----------------------------------------------------------------------------


def load_config(path, overrides: tuple[str, ...] = ()) -> Config:
    """Read, override (`key.path=value` strings) and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; check the path (examples are in configs/)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.__class__.__name__}); pass a YAML file") from None
    try:
        raw = yaml.safe_load(text)
        lines = _key_lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem}); check the indentation and colons there") from None
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty; start from `cnnclf init` or a file in configs/")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of sections (data:, model:, train:), "
                          f"got a {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    sets = dict(_parse_set(s) for s in overrides)
    where = _Locator(path, lines, sets)
    if not sets:
        return _validate(raw, where)
    return _parse(raw, where).with_overrides(sets, where)


def _parse_set(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key.path=value, like --set train.epochs=3")
    return key.strip(), yaml.safe_load(value) if value.strip() else None


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_path(key: str) -> tuple:
    """'model.layers[2].Dense.units' -> ('model', 'layers', 2, 'Dense', 'units')."""
    parts = tuple(int(i) if i else name for name, i in _PATH_PART.findall(key))
    if not parts or _dotted(parts) != key:
        raise ConfigError(f"--set {key}: not a key path; write it like train.optimizer.learning_rate "
                          f"or model.layers[2].Dense.units")
    return parts


def _set_path(raw: dict, parts: tuple, value, key: str) -> None:
    """raw[parts] = value on a resolved config dict, checking each key against the schema."""
    node, schema = raw, Config  # schema: the pydantic model at this depth; None inside free-form values
    for depth, part in enumerate(parts):
        here = _dotted(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                has = f"has {len(node)} items" if isinstance(node, list) else "is not a list"
                raise ConfigError(f"--set {key}: {here} does not exist ({_dotted(parts[:depth])} {has})")
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {_dotted(parts[:depth])} has no keys; set it as a whole")
            fields = _fields_of(schema)
            if fields is not None and part not in fields:
                raise ConfigError(f"--set {key}: unknown key {here!r}{_nearest_key(parts[: depth + 1], fields)}")
            schema = _model_in(fields[part]) if fields is not None else None
        if depth == len(parts) - 1:
            node[part] = value
            return
        if isinstance(part, str) and not isinstance(node.get(part), (dict, list)):
            node[part] = {}  # a section switched off (false) comes back on with its defaults
        node = node[part]


def _model_in(annotation) -> Optional[type]:
    """The pydantic model inside a field's annotation (Optional[X], list[X]), if any."""
    for t in _walk_types(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _fields_of(model) -> Optional[dict]:
    """Field annotations of a pydantic model; None where any key is allowed."""
    if model is None or model.model_config.get("extra") == "allow":
        return None
    return {name: field.annotation for name, field in model.model_fields.items()}


def _nearest_key(path: tuple, siblings) -> str:
    """The closest key to the last part of `path`, as a full path: a sibling, or a key elsewhere
    in the schema (so train.learning_rate points at train.optimizer.learning_rate); siblings win ties."""
    name, parent = str(path[-1]), _dotted(path[:-1])
    scored = [(difflib.SequenceMatcher(None, name, s).ratio(), 1, f"{parent}.{s}" if parent else s) for s in siblings]
    scored += [(difflib.SequenceMatcher(None, name, p.rsplit(".", 1)[-1]).ratio(), 0, p) for p in _schema_paths(Config)]
    ratio, _, best = max(scored, default=(0, 0, ""))
    return f"; did you mean {best!r}?" if ratio >= 0.6 else ""


def _schema_paths(model, prefix="") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        paths.append(prefix + name)
        if _model_in(annotation) is not None:
            paths += _schema_paths(_model_in(annotation), f"{prefix}{name}.")
    return paths


def _walk_types(annotation):
    stack = [annotation]
    while stack:
        t = stack.pop()
        yield t
        stack.extend(typing.get_args(t))


# --- validation and its messages ---------------------------------------------------------


class _Locator:
    """Says where a key came from: `file.yaml:LINE`, `--set key`, or the file itself."""

    def __init__(self, path: Optional[Path], lines: dict, sets: dict):
        self.path, self.lines, self.sets = path, lines, {_parse_path(k): k for k in sets}

    def __call__(self, loc: tuple) -> str:
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.sets:
                return f"--set {self.sets[loc[:n]]}"
        if self.path is None:
            return "config"
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.lines:
                return f"{self.path}:{self.lines[loc[:n]]}"
        return str(self.path)


def _parse(raw: dict, where) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e.errors(), where)) from None


def _validate(raw: dict, where) -> Config:
    config = _parse(raw, where)
    _check_consistency(config, where)
    return config


_UNION_TAG = re.compile(r"[\[(]|^(int|bool|str|float|none|constrained-\w+)$")


def _describe(errors: list[dict], where) -> str:
    """One line for the first mistake; the alternatives of a union (auto or a number) are joined."""
    located = [(tuple(p for p in e["loc"] if not (isinstance(p, str) and _UNION_TAG.search(p))), e) for e in errors]
    loc, error = located[0]
    key = _dotted(loc)
    if error["type"] == "extra_forbidden":
        schema = Config
        for part in loc[:-1]:
            if not isinstance(part, int):
                schema = _model_in(_fields_of(schema)[part])
        return f"{where(loc)}: unknown key {key!r}{_nearest_key(loc, _fields_of(schema) or ())}"
    if error["type"] == "missing":
        return f"{where(loc)}: {key} is required"
    messages = dict.fromkeys(e["msg"].removeprefix("Value error, ") for place, e in located if place == loc)
    message = " or ".join(m[0].lower() + m[1:] for m in messages)
    place = where(loc)
    named = "" if place == f"--set {key}" else f"{key}: "  # --set already names the key
    return f"{place}: {named}got {error['input']!r}; {message}"


def _check_consistency(cfg: Config, where) -> None:
    """Rules that span several keys; pydantic has checked each key on its own."""
    data, train = cfg.data, cfg.train

    def fail(loc, message):
        raise ConfigError(f"{where(loc)}: {message}")

    if data.source is None:
        fail(("data", "source"), f"dataset custom needs data.source; one of {', '.join(SOURCES)}")
    if data.dataset not in SOURCES[data.source]:
        fail(("data", "source"), f"source {data.source} cannot hold dataset {data.dataset}; "
                                 f"it holds {', '.join(SOURCES[data.source])}")
    local = data.source not in ("keras", "sklearn")
    if local and data.path is None:
        fail(("data", "path"), f"source {data.source} reads local files: set data.path")
    if data.source == "csv" and data.test_path is None:
        fail(("data", "test_path"), "source csv needs data.test_path, the test CSV file")
    # Keys another source would read are ignored, not refused, so that switching a config
    # between sources (a local copy, or keras's download) means changing data.source alone.
    defaults = DataConfig.model_fields
    for key, used_by in (("path", SOURCES.keys() - {"keras", "sklearn"}), ("test_path", {"csv", "folder"}),
                         ("label_column", {"csv"}), ("skip_bad_images", {"folder"})):
        if getattr(data, key) != defaults[key].default and data.source not in used_by:
            log.warning(f"{where(('data', key))}: warning: data.{key} is not used by source {data.source}; ignored")
    if data.augment.test_flip and data.augment.flip is None:
        fail(("data", "augment", "test_flip"), "test-time flips are the ones training saw: set data.augment.flip too")
    if data.augment.test_shift and not data.augment.translate:
        fail(("data", "augment", "test_shift"), "test-time shifts are ones training saw: set data.augment.translate too")
    known = KNOWN.get(data.dataset)
    if known and data.image_shape and tuple(data.image_shape) != known.shape:
        fail(("data", "image_shape"), f"dataset {data.dataset} has images of shape {list(known.shape)}, "
                                      f"got {list(data.image_shape)}; fix it or set data.dataset: custom")

    model = cfg.model
    if (model.preset is None) == (model.layers is None):
        both = "both" if model.preset else "neither"
        fail(("model",), f"set exactly one of model.preset and model.layers ({both} given)")
    if model.preset is not None:
        from cnnclf.presets import PRESETS

        if model.preset not in PRESETS:
            fail(("model", "preset"), f"unknown preset {model.preset!r}{did_you_mean(model.preset, PRESETS)}; "
                                      f"valid: {', '.join(PRESETS)}")

    if train.distribute in ("mirrored", "multi_worker") and train.steps_per_execution not in ("auto", 1):
        fail(("train", "steps_per_execution"), f"{train.distribute} needs 1 step per execution (Keras 3.15's "
                                               f"multi-step loop fails under tf.distribute); set it to auto or 1")
    if train.scale_learning_rate and not train.batch_size_per_replica:
        fail(("train", "scale_learning_rate"), "the batch per step is fixed, so the learning rate keeps its scale; "
                                               "set train.batch_size_per_replica: true to scale both")
    if train.label_smoothing and data.labels != "onehot":
        fail(("train", "label_smoothing"), "label smoothing needs one-hot labels: set data.labels: onehot")
    monitors = train.monitors()
    for section in ("early_stopping", "checkpoint"):
        watched = getattr(train, section)
        if watched is not None and watched.monitor not in monitors:
            fail(("train", section, "monitor"), f"{watched.monitor!r} is not logged"
                 f"{did_you_mean(watched.monitor, monitors)}; logged values: {', '.join(monitors)}")
    if cfg.tune is not None:
        if cfg.tune.metric not in monitors:
            fail(("tune", "metric"), f"{cfg.tune.metric!r} is not logged{did_you_mean(cfg.tune.metric, monitors)}; "
                                     f"logged values: {', '.join(monitors)}")
        raw = cfg.model_dump(mode="json")
        for key, dimension in cfg.tune.space.items():
            try:  # each key must be one --set could change
                _set_path(raw, _parse_path(key), next(iter(dimension.values()))[0], key)
            except ConfigError as e:
                fail(("tune", "space", key), str(e).replace("--set ", "", 1))


def _key_lines(text: str) -> dict[tuple, int]:
    """1-based line of every key and list item in a YAML text, by key path."""
    lines: dict[tuple, int] = {}

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[path + (key.value,)] = key.start_mark.line + 1
                walk(value, path + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    walk(yaml.compose(text, Loader=yaml.SafeLoader), ())
    return lines


def _dotted(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")



"""The config schema: every key, its default and its own check. A YAML file holds only what differs.

The sections: data (here), model (model_keys.py), train (train_keys.py), output and tune (here).
Checks that span several keys are in rules.py; reading the file is in yaml_file.py.
"""

from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, PositiveInt, field_validator, model_validator

from cnnclf.config.base import Section, local_path
from cnnclf.config.model_keys import BackboneConfig, ModelConfig
from cnnclf.config.train_keys import TrainConfig
from cnnclf.data.datasets import DATASETS, KNOWN
from cnnclf.data.sources import SOURCES

__all__ = ["AugmentConfig", "BackboneConfig", "Config", "DataConfig", "ModelConfig", "TrainConfig"]


class AugmentConfig(Section):
    """Random changes to training images (Keras preprocessing layers, inactive at inference), and
    whether inference averages over flips and shifts training drew from (test-time augmentation)."""

    flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | None = None
    alternate_flips: bool = False  # flip each image in every other epoch (airbench's rule: it sees both sides
    # equally often) rather than at random; needs flip: horizontal
    translate: float = Field(0.0, ge=0, lt=0.5)  # up to this fraction of height and width, per image
    rotate: float = Field(0.0, ge=0, le=0.5)  # up to this fraction of a full turn
    zoom: float = Field(0.0, ge=0, lt=1)  # up to this fraction in or out
    fill: Literal["reflect", "constant", "nearest"] = "reflect"  # what fills pixels moved in from outside
    test_flip: bool = False  # evaluate, predict and export average each image's probabilities over its flips
    test_shift: int = Field(0, ge=0)  # pixels; they also average over the image shifted this far down-right and up-left
    # Mixing and erasing (timm's --mixup --cutmix --aa --reprob), training only; 0 is off:
    mixup: float = Field(0.0, ge=0, le=10)  # MixUp's alpha: each batch blended with itself reversed, labels too
    cutmix: float = Field(0.0, ge=0, le=10)  # CutMix's alpha: a box pasted from the reversed batch (with mixup:
    # one of the two per batch)
    randaugment: float = Field(0.0, ge=0, le=1)  # RandAugment's magnitude (Keras's layer, 2 ops per image)
    erasing: float = Field(0.0, ge=0, le=1)  # random erasing: the share of images with a box erased


Side = Annotated[int, Field(gt=0, le=4096)]  # pixels; larger inputs are beyond what cnnclf's models train on


class DataConfig(Section):
    dataset: Literal[DATASETS] = "mnist"  # type: ignore[valid-type]
    source: Literal[tuple(SOURCES)] | None = None  # type: ignore[valid-type]  # null: the dataset's own
    path: str | None = None  # file or directory, for local sources; relative to the working directory
    test_path: str | None = None  # csv: the test CSV; folder: test folder if not <path>/test
    path_column: str = "path"  # manifest: the column of image paths, relative to the CSV's folder
    label_column: str = "label"  # csv and manifest: the column of labels (manifest labels may be names)
    split_column: str = "split"  # manifest: train, val or test per row, if the column exists
    image_shape: tuple[Side, Side, Literal[1, 3]] | None = None  # [height, width, channels]
    resize: Literal["stretch", "crop", "pad"] = "stretch"  # image files of another aspect: stretch them, crop
    # the centre to the aspect, or pad (letterbox) them, then resize
    skip_bad_images: bool = False  # image files: skip and count files that are not images
    labels: Literal["sparse", "onehot"] = "sparse"  # the loss follows: (sparse_)categorical_crossentropy
    test_split: float | None = Field(None, gt=0, lt=1)  # image files without a test part: this fraction
    # becomes the test set (null: split.py's DEFAULT_TEST_SPLIT), chosen per file by a seeded hash of its path
    validation: Literal["split", "test"] = "split"  # split: hold out validation_split of train
    validation_split: float = Field(0.1, gt=0, lt=1)  # fraction of train, stratified and seeded
    limit_train: PositiveInt | None = None  # stratified subset size (images), for smoke runs
    limit_test: PositiveInt | None = None
    storage: Literal["auto", "memory", "stream"] = "auto"  # image files: decoded once into memory, or read
    # and decoded batch by batch (auto: memory when the decoded pixels fit memory_budget_mb)
    memory_budget_mb: Literal["auto"] | PositiveInt = "auto"  # auto: a quarter of the machine's memory
    cache: str | None = None  # stream: a folder for decoded pixels, reused by later epochs and runs
    normalize: Literal["scale", "none"] = "scale"  # scale: x/255, done inside the model
    augment: AugmentConfig = AugmentConfig()  # none by default

    @field_validator("path", "test_path", "cache")
    @classmethod
    def _absolute(cls, value):
        return local_path(value)

    @model_validator(mode="after")
    def _resolve(self):
        if self.source is None and self.dataset in KNOWN:
            self.source = KNOWN[self.dataset].default_source
        return self


def _check_dimension(value: Any) -> dict:
    kinds = {
        "choice": "a list of values",
        "uniform": "[low, high]",
        "log_uniform": "[low, high], low > 0",
        "int": "[low, high] whole numbers",
    }
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in kinds:
        raise ValueError(f"a search dimension is one of {', '.join(f'{{{k}: {v}}}' for k, v in kinds.items())}")
    ((kind, spec),) = value.items()
    if kind == "choice":
        if not isinstance(spec, list) or not spec:
            raise ValueError("choice needs a non-empty list of values")
    elif not (
        isinstance(spec, list)
        and len(spec) == 2
        and all(isinstance(v, (int, float)) for v in spec)
        and spec[0] < spec[1]
        and (kind != "log_uniform" or spec[0] > 0)
        and (kind != "int" or all(isinstance(v, int) for v in spec))
    ):
        raise ValueError(f"{kind} needs {kinds[kind]}")
    return value


class TuneConfig(Section):
    """`cnnclf tune`: search these config keys with Optuna; every trial is an ordinary run."""

    space: dict[str, Annotated[Any, AfterValidator(_check_dimension)]]  # key path -> {choice|uniform|log_uniform|int}
    metric: str = "val_accuracy"  # a trial scores its best epoch's value of this
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: PositiveInt = 20  # finished trials the study should reach (cnnclf tune --trials overrides)
    storage: str | None = None  # null: SQLite in the runs folder; or postgresql://user@host/db, mysql://...,
    # journal:PATH (Optuna's journal file on a shared file system): one study for many workers and machines;
    # no password here: PGPASSWORD, ~/.pgpass or CNNCLF_TUNE_PASSWORD (--storage overrides)
    pruner: Literal["none", "median", "hyperband"] = "none"  # stop unpromising trials, fed each epoch's metric
    heartbeat_seconds: PositiveInt = 60  # a database study fails (and asks again) a trial silent for twice this


class OutputConfig(Section):
    runs_dir: str = "runs"  # each run gets runs_dir/<UTC time>-<name>/
    plots: bool = True  # the plots and report.html once trained (false: `cnnclf plot RUN` draws them later)


class Config(Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]+$", max_length=100)  # run-name prefix; default: the file's stem
    seed: int = Field(42, ge=0, lt=2**32)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()
    tune: TuneConfig | None = None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

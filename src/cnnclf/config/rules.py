"""Rules that span several config keys; the schema has checked each key on its own."""

import logging
from pathlib import Path

from cnnclf.config.schema import Config, DataConfig
from cnnclf.data.datasets import KNOWN
from cnnclf.data.sources import SOURCES
from cnnclf.errors import ConfigError, did_you_mean
from cnnclf.model import keras_names
from cnnclf.redaction import holds_password

log = logging.getLogger("cnnclf")


def check(cfg: Config, where) -> None:
    """Raise ConfigError, located by `where` (a key path -> 'file:line' or '--set key'), for the
    first rule the config breaks; warn about keys its data source does not read."""

    def fail(loc, message):
        raise ConfigError(f"{where(loc)}: {message}")

    _check_data(cfg.data, where, fail)
    _check_model(cfg, where, fail)
    _check_train(cfg, fail)


def check_weights_file(model) -> None:
    """model.backbone.weights, where it names a file: one that exists and is a weights file (HDF5),
    checked before TensorFlow starts (a run's config is read without it: its model is in model.keras)."""
    backbone = model.backbone
    if backbone is None or backbone.weights in (None, "imagenet"):
        return
    path = Path(backbone.weights)
    if not path.exists():
        raise ConfigError(
            f"{path}: no such file (model.backbone.weights); give the weights file of {backbone.name} "
            f"(.weights.h5 or .h5), or imagenet, or null"
        )
    import h5py

    if not path.is_file() or not h5py.is_hdf5(path):
        raise ConfigError(
            f"{path}: not a weights file (model.backbone.weights: Keras saves them as HDF5, .weights.h5 or .h5); "
            f"give the weights file of {backbone.name}"
        )


def _check_data(data: DataConfig, where, fail) -> None:
    if data.source is None:
        raise ConfigError(f"{where(('data', 'source'))}: dataset custom needs data.source; one of {', '.join(SOURCES)}")
    source = SOURCES[data.source]
    if data.dataset not in source.datasets:
        fail(
            ("data", "source"),
            f"source {data.source} cannot hold dataset {data.dataset}; it holds {', '.join(source.datasets)}",
        )
    if "path" in source.reads and data.path is None:
        fail(("data", "path"), f"source {data.source} reads local files: set data.path")
    if data.source == "csv" and data.test_path is None:
        fail(("data", "test_path"), "source csv needs data.test_path, the test CSV file")
    # Keys another source would read are ignored, not refused, so that switching a config
    # between sources (a local copy, or keras's download) means changing data.source alone.
    defaults = DataConfig.model_fields
    for key in sorted(set().union(*(s.reads for s in SOURCES.values())) - source.reads, key=list(defaults).index):
        if getattr(data, key) != defaults[key].default:
            log.warning(f"{where(('data', key))}: warning: data.{key} is not used by source {data.source}; ignored")
    if data.augment.alternate_flips and data.augment.flip != "horizontal":
        fail(
            ("data", "augment", "alternate_flips"),
            "alternating flips are horizontal ones: set data.augment.flip: horizontal",
        )
    if data.augment.test_flip and data.augment.flip is None:
        fail(("data", "augment", "test_flip"), "test-time flips are the ones training saw: set data.augment.flip too")
    if data.augment.test_shift and not data.augment.translate:
        fail(
            ("data", "augment", "test_shift"), "test-time shifts are ones training saw: set data.augment.translate too"
        )
    known = KNOWN.get(data.dataset)
    if known and data.image_shape and tuple(data.image_shape) != known.shape:
        fail(
            ("data", "image_shape"),
            f"dataset {data.dataset} has images of shape {list(known.shape)}, "
            f"got {list(data.image_shape)}; fix it or set data.dataset: custom",
        )
    if data.cache is not None and data.storage == "memory":
        fail(
            ("data", "cache"),
            "the cache holds decoded pixels for data.storage: stream; set storage to stream "
            "or auto, or remove data.cache",
        )


def _check_model(cfg: Config, where, fail) -> None:
    model = cfg.model
    if model.backbone is not None and model.whiten is not None:
        fail(("model", "whiten"), "a backbone brings its own first layers: remove model.whiten or model.backbone")
    if model.backbone is not None:
        if model.preset is not None:
            fail(("model", "preset"), "a preset is a whole network: set model.preset or model.backbone, not both")
    elif (model.preset is None) == (model.layers is None):
        both = "both" if model.preset else "neither"
        fail(("model",), f"set exactly one of model.preset and model.layers ({both} given), or model.backbone")
    if model.backbone is not None:
        known = KNOWN.get(cfg.data.dataset)
        shape = cfg.data.image_shape or (known.shape if known else None)
        problem = keras_names.too_small(model.backbone.name, shape) if shape is not None else None
        if problem:
            fail(("model", "backbone", "name"), problem)
        if model.backbone.weights is None and not model.backbone.trainable:
            log.warning(
                f"{where(('model', 'backbone', 'trainable'))}: warning: a backbone with random weights (weights: "
                f"null) that does not train gives features that stay near chance; set trainable: true, or "
                f"weights: imagenet or a weights file"
            )
    if cfg.train.fine_tune is not None:
        if model.backbone is None:
            fail(("train", "fine_tune"), "fine-tuning unfreezes a pretrained backbone: set model.backbone")
        elif model.backbone.trainable:
            fail(
                ("train", "fine_tune"),
                "the backbone already trains (model.backbone.trainable: true); set it to "
                "false to train the head first, or remove train.fine_tune",
            )
    if model.preset is not None:
        from cnnclf.model.presets import PRESETS

        if model.preset not in PRESETS:
            fail(
                ("model", "preset"),
                f"unknown preset {model.preset!r}{did_you_mean(model.preset, PRESETS)}; valid: {', '.join(PRESETS)}",
            )
    if model.layers == [] and model.backbone is None:
        fail(
            ("model", "layers"),
            "the layer list is empty; list the layers (at least Flatten or "
            "GlobalAveragePooling2D before the classifier) or use model.preset",
        )


def _check_train(cfg: Config, fail) -> None:
    data, train = cfg.data, cfg.train
    if train.distribute in ("mirrored", "multi_worker") and train.steps_per_execution not in ("auto", 1):
        fail(
            ("train", "steps_per_execution"),
            f"{train.distribute} needs 1 step per execution (Keras 3.15's "
            f"multi-step loop fails under tf.distribute); set it to auto or 1",
        )
    if train.scale_learning_rate and not train.batch_size_per_replica:
        fail(
            ("train", "scale_learning_rate"),
            "the batch per step is fixed, so the learning rate keeps its scale; "
            "set train.batch_size_per_replica: true to scale both",
        )
    if train.time_budget is not None and train.fine_tune is not None:
        fail(("train", "time_budget"), "a time budget plans one training phase; with fine_tune, set epochs instead")
    if train.time_budget is not None and train.distribute == "multi_worker":
        fail(("train", "time_budget"), "a time budget is measured on one machine; with multi_worker, set epochs")
    if train.ema is not None and train.lookahead is not None:
        fail(("train", "lookahead"), "train.ema and train.lookahead both average the weights: keep one of them")
    if train.mlflow is not None and holds_password(train.mlflow.tracking_uri):
        fail(
            ("train", "mlflow", "tracking_uri"),
            "the URI holds a password or token, which every run would write into its config.yaml; leave it out "
            "and give it as MLFLOW_TRACKING_PASSWORD (an MLflow server) or PGPASSWORD (PostgreSQL)",
        )
    mixing = [key for key in ("mixup", "cutmix") if getattr(data.augment, key)]
    if mixing and data.labels != "onehot":
        fail(("data", "augment", mixing[0]), f"{mixing[0]} mixes labels as it mixes images: set data.labels: onehot")
    if train.label_smoothing and data.labels != "onehot":
        fail(("train", "label_smoothing"), "label smoothing needs one-hot labels: set data.labels: onehot")
    for i, name in enumerate(train.metrics):
        needed = keras_names.labels_needed(name)
        if needed not in (None, data.labels):
            fail(
                ("train", "metrics", i),
                f"metric {name} needs {needed} labels; set data.labels: {needed}, "
                f"or use accuracy, which follows the labels",
            )
    needed = keras_names.labels_needed(train.loss) if train.loss != "auto" else None
    if needed not in (None, data.labels):
        fail(("train", "loss"), f"loss {train.loss} needs {needed} labels; set data.labels: {needed}, or loss: auto")
    monitors = train.monitors()
    for section in ("early_stopping", "checkpoint"):
        watched = getattr(train, section)
        if watched is not None and watched.monitor not in monitors:
            fail(
                ("train", section, "monitor"),
                f"{watched.monitor!r} is not logged"
                f"{did_you_mean(watched.monitor, monitors)}; logged values: {', '.join(monitors)}",
            )
    if cfg.tune is not None:
        if cfg.tune.metric not in monitors:
            fail(
                ("tune", "metric"),
                f"{cfg.tune.metric!r} is not logged{did_you_mean(cfg.tune.metric, monitors)}; "
                f"logged values: {', '.join(monitors)}",
            )
        from cnnclf.config.keys import parse_path, set_path

        raw = cfg.model_dump(mode="json")
        for key, dimension in cfg.tune.space.items():
            try:  # each key must be one --set could change
                set_path(raw, Config, parse_path(key), next(iter(dimension.values()))[0], key)
            except ConfigError as e:
                fail(("tune", "space", key), str(e).replace("--set ", "", 1))

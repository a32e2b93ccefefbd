"""Config loading: defaults, overrides, and exact messages for every kind of mistake."""

import pytest

from cnnclf.config import load_config
from cnnclf.errors import ConfigError
from helpers import ROOT

GOOD = """\
data:
  dataset: fashion_mnist
model:
  preset: s003_fashion
train:
  optimizer: {name: rmsprop, learning_rate: 0.001}
  epochs: 3
"""


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path, *overrides):
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return str(caught.value)


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.name == "exp"  # the file's stem
    assert config.data.source == "keras"  # the dataset's default source
    assert config.train.optimizer.name == "rmsprop" and config.train.optimizer.learning_rate == 0.001
    assert config.train.batch_size == 32 and config.data.validation_split == 0.1
    assert config.train.early_stopping.patience == 2 and config.train.checkpoint.monitor == "val_loss"


def test_resolved_config_round_trips(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    again = load_config(write(tmp_path, config.to_yaml(), "resolved.yaml"))
    assert again == config


def test_overrides_reach_nested_keys_and_layer_arguments(tmp_path):
    text = GOOD.replace("  preset: s003_fashion\n", "  layers:\n    - Flatten: {}\n    - Dense: {units: 64}\n")
    config = load_config(write(tmp_path, text), ("train.optimizer.learning_rate=0.01", "model.layers[1].Dense.units=128",
                                                 "train.early_stopping=false"))
    assert config.train.optimizer.learning_rate == 0.01 and config.train.optimizer.name == "rmsprop"
    assert config.model.layers[1] == {"Dense": {"units": 128}}
    assert config.train.early_stopping is None


@pytest.mark.parametrize("text, expected", [
    ("data:\n  dataset: mnist\n  normalise: scale\nmodel: {preset: s002_mnist}\n",
     "exp.yaml:3: unknown key 'data.normalise'; did you mean 'data.normalize'?"),
    ("data: {dataset: mnist}\nmodel: {preset: s002_mnist}\ntrain:\n  epochs: -3\n",
     "exp.yaml:4: train.epochs: got -3; input should be greater than 0"),
    ("data: {dataset: mnist}\nmodel: {preset: s002_mnist}\ntrain:\n  batch_size: 0\n",
     "exp.yaml:4: train.batch_size: got 0; input should be greater than 0"),
    ("data: {dataset: mnist, validation_split: 1.0}\nmodel: {preset: s002_mnist}\n",
     "exp.yaml:1: data.validation_split: got 1.0; input should be less than 1"),
    ("data: {dataset: mnist}\nmodel: {preset: s002_mnist}\ntrain: {epochs: ten}\n",
     "exp.yaml:3: train.epochs: got 'ten'; input should be a valid integer, unable to parse string as an integer"),
    ("model: {preset: s002_mnist}\ntrain: {steps_per_execution: fast}\n",
     "exp.yaml:2: train.steps_per_execution: got 'fast'; input should be 'auto' or input should be a valid integer, "
     "unable to parse string as an integer"),
    ("model: {preset: s002_mnist}\ntrain: {conv_gradients: fast}\n",
     "exp.yaml:2: train.conv_gradients: got 'fast'; input should be 'auto', 'tensorflow' or 'forward'"),
    ("data: {dataset: mnst}\nmodel: {preset: s002_mnist}\n",
     "exp.yaml:1: data.dataset: got 'mnst'; input should be 'mnist', 'fashion_mnist', 'cifar10', 'digits' or 'custom'"),
    ("model:\n  layers:\n    - Conv2d: {filters: 8}\n",
     "exp.yaml:3: model.layers[0]: got {'Conv2d': {'filters': 8}}; 'Conv2d' is not a Keras layer; did you mean 'Conv2D'?"),
    ("model: {preset: s002_mnist}\ntrain: {optimizer: adamm}\n",
     "exp.yaml:2: train.optimizer.name: got 'adamm'; 'adamm' is not a Keras optimizer; did you mean 'adam'?"),
    ("model:\n  preset: s002_mnist\n  layers: [{Flatten: {}}]\n",
     "exp.yaml:1: set exactly one of model.preset and model.layers (both given)"),
    ("model: {preset: s002_mnst}\n",
     "exp.yaml:1: unknown preset 's002_mnst'; did you mean 's002_mnist'?; valid: "),
    ("model: {preset: s002_mnist}\ntrain:\n  early_stopping: {monitor: val_acc}\n",
     "exp.yaml:3: 'val_acc' is not logged; did you mean 'val_accuracy'?; logged values: loss, accuracy, val_loss, val_accuracy"),
    ("data: {source: idx}\nmodel: {preset: s002_mnist}\n",
     "exp.yaml:1: source idx reads local files: set data.path"),
    ("data: {dataset: cifar10, source: idx, path: x}\nmodel: {preset: s002_mnist}\n",
     "exp.yaml:1: source idx cannot hold dataset cifar10; it holds mnist, fashion_mnist, custom"),
    ("data: {dataset: custom}\nmodel: {preset: s002_mnist}\n",
     "exp.yaml:1: dataset custom needs data.source; one of keras, sklearn, idx, csv, npz, cifar, folder"),
    ("model: {preset: s002_mnist}\ntrain:\n  ema: true\n  lookahead: true\n",
     "exp.yaml:4: train.ema and train.lookahead both average the weights: keep one of them"),
    ("model: {preset: s002_mnist}\ntrain: {label_smoothing: 0.1}\n",
     "exp.yaml:2: label smoothing needs one-hot labels: set data.labels: onehot"),
    ("data:\n  augment: {translate: 0.1, test_flip: true}\nmodel: {preset: s002_mnist}\n",
     "exp.yaml:2: test-time flips are the ones training saw: set data.augment.flip too"),
    ("data:\n  augment: {flip: horizontal, test_shift: 1}\nmodel: {preset: s002_mnist}\n",
     "exp.yaml:2: test-time shifts are ones training saw: set data.augment.translate too"),
    ("model: {preset: s002_mnist}\ntune:\n  space: {train.lerning_rate: {choice: [1, 2]}}\n",
     "exp.yaml:3: train.lerning_rate: unknown key 'train.lerning_rate'; did you mean 'train.optimizer.learning_rate'?"),
    ("model: {preset: s002_mnist}\ntune:\n  space: {train.epochs: {uniform: [5, 1]}}\n",
     "exp.yaml:3: tune.space.train.epochs: got {'uniform': [5, 1]}; uniform needs [low, high]"),
    ("model: {preset: s002_mnist}\ntune:\n  metric: val_acc\n  space: {train.epochs: {int: [1, 3]}}\n",
     "exp.yaml:3: 'val_acc' is not logged; did you mean 'val_accuracy'?"),
    ("data: {dataset: mnist, image_shape: [32, 32, 3]}\nmodel: {preset: s002_mnist}\n",
     "exp.yaml:1: dataset mnist has images of shape [28, 28, 1], got [32, 32, 3]; fix it or set data.dataset: custom"),
])
def test_config_mistakes_name_line_key_and_fix(tmp_path, text, expected):
    message = error_of(write(tmp_path, text))
    assert message.startswith(str(tmp_path / expected.split(":")[0]) + ":" + expected.split(":", 1)[1])


@pytest.mark.parametrize("text, expected", [
    ("", "the config file is empty; start from `cnnclf init` or a file in configs/"),
    ("data: [unclosed\n", ":2: not valid YAML"),
    ("- just\n- a list\n", "a config must be a YAML mapping of sections (data:, model:, train:), got a list"),
])
def test_unusable_files(tmp_path, text, expected):
    assert expected in error_of(write(tmp_path, text))


def test_missing_file():
    assert error_of("nope/missing.yaml") == "nope/missing.yaml: no such config file; check the path (examples are in configs/)"


@pytest.mark.parametrize("override, expected", [
    ("train.epoch=3", "--set train.epoch: unknown key 'train.epoch'; did you mean 'train.epochs'?"),
    ("train.epochs", "--set 'train.epochs': expected key.path=value, like --set train.epochs=3"),
    ("model.layers[5].Dense.units=3", "--set model.layers[5].Dense.units: model.layers[5] does not exist (model.layers is not a list)"),
    ("train.epochs=0", "--set train.epochs: got 0; input should be greater than 0"),
    ("train.optimizer={name: adam, learning_rate: -1}",  # a key below the one set is named
     "--set train.optimizer: train.optimizer.learning_rate: got -1; input should be greater than 0"),
])
def test_override_mistakes(tmp_path, override, expected):
    assert error_of(write(tmp_path, GOOD), override) == expected


def test_validation_does_not_import_tensorflow(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from cnnclf.config import load_config; load_config(sys.argv[1]); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(write(tmp_path, GOOD))], check=True)


def test_keys_of_another_source_are_ignored_with_a_warning(tmp_path, caplog):
    text = ("data: {dataset: fashion_mnist, source: keras, path: train.csv, test_path: test.csv, label_column: y}\n"
            "model: {preset: s003_fashion}\n")
    config = load_config(write(tmp_path, text))
    assert config.data.source == "keras"
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"{tmp_path / 'exp.yaml'}:1: warning: data.{key} is not used by source keras; ignored"
                        for key in ("path", "test_path", "label_column")]


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")))
def test_every_shipped_config_is_valid_and_resolves_to_itself(path, tmp_path):
    config = load_config(ROOT / path)
    (tmp_path / "resolved.yaml").write_text(config.to_yaml())
    assert load_config(tmp_path / "resolved.yaml") == config


def test_every_misspelt_key_is_named_at_once(tmp_path):
    path = write(tmp_path, "data: {pth: x, dataset: mnist, qqqqqq: 1}\nmodel: {preset: s002_mnist}\ntrain:\n  epochz: 3\n")
    assert error_of(path) == (
        f"{path}:1: unknown key 'data.pth'; did you mean 'data.path'? Also {path}:1: unknown key 'data.qqqqqq'. "
        f"Also {path}:4: unknown key 'train.epochz'; did you mean 'train.epochs'?")


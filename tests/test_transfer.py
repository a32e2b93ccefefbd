"""Transfer learning: pretrained backbones (their preprocessing inside the model), frozen then
fine-tuned in one run, class weights, the collapse warning, and Grad-CAM."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from cnnclf.model import backbones
from helpers import FINE_TUNING, SMALL, backbone_config, cnnclf, weights_file, write_config


def backbone_weights(model_path: Path) -> list[np.ndarray]:
    model = keras.saving.load_model(model_path, safe_mode=True)
    return backbones.find(model).get_weights()


@pytest.mark.parametrize("name, family", [("MobileNetV2", "mobilenet_v2"), ("DenseNet121", "densenet"),
                                          ("ResNet50", "resnet50"), ("Xception", "xception")])
@pytest.mark.parametrize("channels", [3, 1])
def test_preprocessing_layers_do_what_keras_preprocess_input_does(name, family, channels):
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (2, 8, 8, channels)).astype(np.float32)
    model = keras.Sequential([keras.Input((8, 8, channels))])
    for layer, weights in backbones.input_layers(name, channels):
        model.add(layer)
        if weights is not None:
            layer.set_weights(weights)
    rgb = np.repeat(pixels, 3, axis=-1) if channels == 1 else pixels
    expected = getattr(keras.applications, family).preprocess_input(rgb.copy())
    np.testing.assert_allclose(model.predict(pixels, verbose=0), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_frozen_then_fine_tuned_in_one_run_and_resumed_across_the_boundary(tmp_path, pictures, fine_tuned,
                                                                             monkeypatch):
    run, _, weights, straight = fine_tuned
    rows = (run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,phase,") and [r.split(",")[1] for r in rows[1:]] == ["train", "fine_tune"]
    assert "epoch 1/2 (head)" in straight.stderr and "epoch 2/2 (fine-tuning)" in straight.stderr

    from cnnclf.training import fitting

    real, calls = fitting.start_fine_tuning, []

    def stop_at_the_boundary(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C as fine-tuning is about to start
        return real(*args, **kwargs)

    monkeypatch.setattr(fitting, "start_fine_tuning", stop_at_the_boundary)
    config = backbone_config(tmp_path / "b", pictures, {**SMALL, "weights": str(weights)}, **FINE_TUNING)
    cut = cnnclf("train", config)
    assert cut.exit_code == 130 and "after 1 finished epoch;" in cut.stderr
    resumed_run = next((tmp_path / "b" / "runs").iterdir())
    resumed = cnnclf("resume", resumed_run)
    assert resumed.exit_code == 0, resumed.stderr
    assert "epoch 2/2" in resumed.stderr and "epoch 1/" not in resumed.stderr

    def history(path):
        return [{k: v for k, v in row.items() if k not in ("seconds", "time")} for row in
                __import__("csv").DictReader((path / "history.csv").open())]

    assert history(resumed_run) == history(run)
    assert json.loads((resumed_run / "metrics.json").read_text()) == json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_a_frozen_backbone_keeps_the_given_weights_exactly(tmp_path, pictures):
    weights = weights_file(tmp_path / "given.weights.h5")
    result = cnnclf("train", backbone_config(tmp_path, pictures, {**SMALL, "weights": str(weights)}))
    assert result.exit_code == 0, result.stderr
    trained = backbone_weights(Path(result.stdout.split()[-1]) / "model.keras")
    given = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3))
    given.load_weights(weights)
    for got, want in zip(trained, given.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_imagenet_weights_come_through_keras_download_cache(tmp_path, pictures, monkeypatch):
    """The download mocked: Keras's get_file hands over a weights file built here."""
    import warnings

    from keras.src.utils import file_utils

    from cnnclf.config import load_config
    from cnnclf.data.dataset import load
    from cnnclf.training.train import prepare

    weights = weights_file(tmp_path / "downloaded.weights.h5", seed=5)
    asked = []
    monkeypatch.setattr(file_utils, "get_file", lambda fname=None, origin=None, *a, **k: asked.append(fname)
                        or str(weights))
    config = load_config(backbone_config(tmp_path, pictures, {"name": "MobileNetV3Small"}))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        model = prepare(config, load(config.data, config.seed)).model
    assert asked and asked[0].startswith("weights_mobilenet_v3_small")
    assert not [w for w in shown if "224" in str(w.message)]  # Keras's note on the weights' input size
    given = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3))
    given.load_weights(weights)
    for got, want in zip(backbones.find(model).get_weights(), given.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_offline_imagenet_weights_are_one_line_naming_the_file(tmp_path, pictures, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    result = cnnclf("train", backbone_config(tmp_path, pictures, {"name": "MobileNetV3Small"}))
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("Error: model.backbone: the ImageNet weights of MobileNetV3Small cannot be downloaded "
                           "(OSError: [Errno -3] Temporary failure in name resolution); fetch ")  # not "(Exception)"
    assert f"into {tmp_path}/keras/models/weights_mobilenet_v3_small" in line
    assert line.endswith("or set model.backbone.weights to a weights file (.weights.h5 or .h5)")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("backbone, image_shape, expected", [
    ({"name": "MobileNetV3Small", "weights": "LARGE"}, [32, 32, 3], "does not fit MobileNetV3Small ("),
    ({"name": "InceptionV3", "weights": None}, [32, 32, 3],
     "InceptionV3 takes images of at least 75x75 pixels, the data has 32x32; set data.image_shape to [75, 75, 3] "
     "or more"),
    ({"name": "MobileNetV3Smal", "weights": None}, [32, 32, 3], "is not a keras.applications model; did you mean "
                                                               "'MobileNetV3Small'?"),
])
def test_backbone_mistakes_are_one_line(tmp_path, pictures, backbone, image_shape, expected):
    if backbone["weights"] == "LARGE":
        backbone = {**backbone, "weights": str(weights_file(tmp_path / "large.weights.h5", "MobileNetV3Large"))}
    config = yaml.safe_load(backbone_config(tmp_path, pictures, backbone).read_text())
    config["data"]["image_shape"] = image_shape
    result = cnnclf("train", write_config(tmp_path / "c.yaml", config))
    assert result.exit_code == 2 and expected in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_frozen_random_backbone_is_warned_about(tmp_path, pictures):
    config = backbone_config(tmp_path, pictures, {"name": "MobileNetV3Small", "weights": None, "trainable": False})
    result = cnnclf("config", "validate", config)
    line = config.read_text().splitlines().index("    trainable: false") + 1
    assert result.exit_code == 0 and result.stderr == (
        f"{config}:{line}: warning: a backbone with random weights (weights: null) that does not train gives features "
        f"that stay near chance; set trainable: true, or weights: imagenet or a weights file\n")
    trains = backbone_config(tmp_path, pictures, {"name": "MobileNetV3Small", "weights": None, "trainable": True})
    assert cnnclf("config", "validate", trains).stderr == ""


def test_class_weights_reweigh_the_loss():
    from cnnclf.errors import DataError
    from cnnclf.training.fitting import class_weights

    labels = np.array([0] * 30 + [1] * 10)
    assert class_weights("balanced", labels, ["a", "b"]) == {0: 40 / 60, 1: 40 / 20}
    assert class_weights({"b": 3.0}, labels, ["a", "b"]) == {0: 1.0, 1: 3.0}
    assert class_weights("none", labels, ["a", "b"]) is None
    with pytest.raises(DataError, match="train.class_weight: c is not a class of the data"):
        class_weights({"c": 2.0}, labels, ["a", "b"])
    x = np.zeros((40, 2), np.float32)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros",
                                                                    bias_initializer=keras.initializers.Constant([1, 0]))])
    model.compile("sgd", "sparse_categorical_crossentropy")
    plain = model.fit(x, labels, epochs=1, verbose=0, shuffle=False).history["loss"][0]
    model.set_weights([np.zeros((2, 2)), np.array([1.0, 0.0])])
    weighted = model.fit(x, labels, epochs=1, verbose=0, shuffle=False,
                         class_weight=class_weights("balanced", labels, ["a", "b"])).history["loss"][0]
    assert weighted > plain  # the rare class, predicted badly, counts more


def test_the_collapse_warning_names_the_class_and_the_fixes():
    from cnnclf.inference.evaluate import collapse_warning

    everything_bee = {"class_names": ["ant", "bee"], "confusion_matrix": [[0, 20], [0, 20]]}  # rows: true
    warning = collapse_warning(everything_bee)
    assert warning.startswith("the model predicts bee for 100% of the test images, which are 50% bee")
    assert "train.class_weight: balanced" in warning
    assert collapse_warning(everything_bee, "balanced").endswith(  # not advice to set what is set
        "it has learnt the majority, not the classes; try a smaller train.batch_size or a lower learning rate")
    mostly_bees = {"class_names": ["ant", "bee"], "confusion_matrix": [[0, 2], [0, 38]]}  # the class that is 95%
    assert collapse_warning(mostly_bees) is None
    assert collapse_warning({"class_names": ["ant", "bee"], "confusion_matrix": [[8, 1], [1, 30]]}) is None


@pytest.mark.slow
def test_grad_cam_pictures_for_predictions_and_the_report(trained_run, tmp_path, digit_files_for_cam):
    result = cnnclf("predict", trained_run, *digit_files_for_cam, "--explain", tmp_path / "cam", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert all(Path(r["explanation"]).stat().st_size > 2000 for r in rows)
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == sorted(f"{p.stem}.gradcam.png"
                                                                         for p in digit_files_for_cam)
    layer = cnnclf("predict", trained_run, digit_files_for_cam[0], "--explain", tmp_path / "c2", "--layer", "conv")
    assert layer.exit_code == 2 and layer.stderr.startswith("Error: --layer conv: no such layer; did you mean")
    assert (trained_run / "plots" / "gradcam.png").stat().st_size > 5000
    with np.load(trained_run / "predictions.npz") as saved:
        maps = saved["gradcam"].astype(np.float32)
    assert maps.shape == (6, 28, 28) and maps.min() >= 0 and maps.max() <= 1 + 1e-3
    assert np.isclose(maps.max(axis=(1, 2)), 1, atol=1e-3).sum() >= 3  # each scaled to its peak (none: all zero)


@pytest.fixture
def digit_files_for_cam(tmp_path):
    from PIL import Image

    from cnnclf.data.idx import read_idx
    from helpers import SAMPLE

    images = read_idx(SAMPLE / "t10k-images-idx3-ubyte.gz", "images")[:3]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def test_grad_cam_finds_the_part_of_the_image_that_decides(tmp_path):
    """An image lit only in its bottom-right quarter, which alone raises class 0: the heatmap lies there."""
    from cnnclf.model import gradcam

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1, use_bias=False, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    model.layers[0].set_weights([np.ones((1, 1, 1, 1))])
    model.layers[2].set_weights([np.stack([np.ones(64), -np.ones(64)], axis=1), np.zeros(2)])
    images = np.zeros((1, 8, 8, 1), np.float32)
    images[0, 4:, 4:] = 1
    heat = gradcam.heatmaps(model, images, np.array([0]))[0]
    assert heat[5:, 5:].min() > 0.9 and heat[:3, :3].max() < 0.1
    assert gradcam.target(model) == (0, None)


def test_a_randomly_initialized_backbone_keeps_quick_batch_norm_statistics():
    from cnnclf.config.schema import BackboneConfig
    from cnnclf.model import backbones

    def momenta(weights):
        settings = BackboneConfig(name="MobileNetV3Small", weights=weights, trainable=True)
        config = type("C", (), {"model": type("M", (), {"backbone": settings})})
        built = backbones.build(config, (32, 32, 3))
        return {layer.momentum for layer in built.layers if isinstance(layer, keras.layers.BatchNormalization)}

    assert momenta(None) == {0.9}  # the application's own is 0.999: 3 short epochs validated at chance

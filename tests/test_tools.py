"""What users do around training: predict, runs, compare, export, config, init, data inspect,
train --from, plot --data, shell completion, the HTML report, TensorBoard and MLflow."""

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cnnclf.data.idx import read_idx
from helpers import SAMPLE, cnnclf, run_exported, tiny_config, write_config


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """Ten real test digits as PNG files (one grey 28x28, one RGB 40x40), a non-image, and their labels."""
    folder = tmp_path_factory.mktemp("digits")
    images = read_idx(SAMPLE / "t10k-images-idx3-ubyte.gz", "images")[:10]
    labels = read_idx(SAMPLE / "t10k-labels-idx1-ubyte.gz", "labels")[:10]
    for i, image in enumerate(images):
        picture = Image.fromarray(image)
        if i == 0:
            picture = picture.convert("RGB").resize((40, 40))
        picture.save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder, [str(label) for label in labels]


@pytest.fixture(scope="module")
def second_run(tiny_run, tmp_path_factory):
    """tiny_run rerun with --from and changes, with TensorBoard and MLflow (a local file store) on."""
    tmp = tmp_path_factory.mktemp("second")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    result = cnnclf("train", "--from", tiny_run[0], "--set", "train.epochs=1", "--set", "train.tensorboard=true",
                    "--set", f"train.mlflow.tracking_uri=file://{tmp}/mlruns", "--runs-dir", tmp / "runs")
    monkeypatch.undo()
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.split()[-1]), tmp / "mlruns"


def test_predict_prints_classes_and_skips_non_images(trained_run, digit_files, tmp_path):
    folder, labels = digit_files
    result = cnnclf("predict", trained_run, folder, "--top-k", 3, "--csv", tmp_path / "out.csv")
    assert result.exit_code == 0, result.stderr
    assert f"skipped {folder}/notes.txt: not a readable image (ImageError: not an image in a format cnnclf reads" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["file", "class", "probability", "unknown", "top", "1", "top", "2", "top", "3"]
    assert len(lines) == 11
    table = list(csv.reader((tmp_path / "out.csv").open()))
    assert table[0] == ["file", "class", "probability", "unknown", "top1_class", "top1_probability", "top2_class",
                        "top2_probability", "top3_class", "top3_probability"] and len(table) == 11
    assert all(row[4] == row[1] and row[5] == row[2] for row in table[1:])  # a cell each, the best first
    assert {row[3] for row in table[1:]} <= {"true", "false"}
    predicted = {Path(row[0]).stem: row[1] for row in table[1:]}
    assert sum(predicted[str(i)] == labels[i] for i in range(10)) >= 6  # a 90% model; the RGB 40x40 one too
    again = cnnclf("predict", trained_run, folder, "--csv", tmp_path / "out.csv")
    assert again.exit_code == 2 and again.stderr == (
        f"Error: --csv {tmp_path / 'out.csv'}: already exists; choose another file or remove it\n")


def test_predict_json(trained_run, digit_files):
    folder, labels = digit_files
    result = cnnclf("predict", trained_run, folder / "3.png", folder / "0.png", "--json", "--top-k", 2)
    rows = json.loads(result.stdout)
    assert [Path(r["file"]).name for r in rows] == ["3.png", "0.png"]
    assert all(len(r["top_k"]) == 2 and r["top_k"][0]["class"] == r["class"] for r in rows)
    assert all(0 < r["probability"] <= 1 and r["top_k"][1]["probability"] <= r["probability"] for r in rows)


def test_predict_with_nothing_readable(trained_run, digit_files):
    result = cnnclf("predict", trained_run, digit_files[0] / "notes.txt")
    assert result.exit_code == 2 and "Error: no readable images in" in result.stderr


@pytest.mark.slow
def test_runs_lists_every_run(tiny_run, second_run, tmp_path):
    import shutil

    runs_dir = tmp_path / "runs"
    for run in (tiny_run[0], second_run[0]):
        shutil.copytree(run, runs_dir / run.name)
    backbone = shutil.copytree(tiny_run[0], runs_dir / "20260101T000000Z-bb")
    config = yaml.safe_load((backbone / "config.yaml").read_text())
    config["model"] = {"backbone": {"name": "MobileNetV3Small", "weights": None, "trainable": True}}
    config["data"].update(dataset="custom", image_shape=[32, 32, 1])
    (backbone / "config.yaml").write_text(yaml.safe_dump(config))
    result = cnnclf("runs", runs_dir, "--sort", "test_accuracy")
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["id", "dataset", "model", "params", "epochs", "best", "val", "acc", "test", "acc",
                              "balanced", "acc", "macro", "F1", "seconds", "status"]
    assert len(rows) == 3 and any(tiny_run[0].name in row and "completed" in row and "27210" in row for row in rows)
    listed = json.loads(cnnclf("runs", runs_dir, "--json", "--sort", "test_accuracy").stdout)
    scores = [row["test_accuracy"] for row in listed]
    assert scores == sorted(scores, reverse=True) and {row["id"] for row in listed} == {
        tiny_run[0].name, second_run[0].name, backbone.name}
    named = {row["id"]: row["model"] for row in listed}
    assert named[tiny_run[0].name] == "3 layers" and named[backbone.name] == "MobileNetV3Small"
    first = next(row for row in listed if row["id"] == tiny_run[0].name)
    assert first["epochs"] == 2 and 0.8 < first["test_accuracy"] <= 1 and 0.8 < first["balanced_accuracy"] <= 1
    bad = cnnclf("runs", runs_dir, "--sort", "speed")
    assert bad.exit_code == 2 and "--sort speed: not a column; one of id, dataset," in bad.stderr


@pytest.mark.slow
def test_train_from_a_run_reuses_its_config(tiny_run, second_run):
    config = yaml.safe_load((second_run[0] / "config.yaml").read_text())
    original = yaml.safe_load((tiny_run[0] / "config.yaml").read_text())
    assert config["train"]["epochs"] == 1 and config["model"] == original["model"] and config["name"] == "tiny"


@pytest.mark.slow
def test_compare_shows_differences_metrics_and_curves(tiny_run, second_run, tmp_path):
    result = cnnclf("compare", tiny_run[0], second_run[0], "--json", "--out", tmp_path / "c.png")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["config_differences"]["train.epochs"] == [2, 1]
    assert "train.tensorboard" in found["config_differences"] and "data.path" not in found["config_differences"]
    assert found["metrics"][tiny_run[0].name]["epochs_done"] == 2
    assert (tmp_path / "c.png").stat().st_size > 10_000
    text = cnnclf("compare", tiny_run[0], second_run[0], "--out", tmp_path / "d.png").stdout
    assert "train.epochs" in text and "test_accuracy" in text


def set_test_time_views(run: Path) -> None:
    """Turn on test-time flips and 1-pixel shifts in a run's config, as if it had trained with them."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["augment"].update(flip="horizontal", translate=0.1, test_flip=True, test_shift=1)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def view_averaged(run: Path, x: np.ndarray) -> np.ndarray:
    """The run's model's probabilities for x, x shifted 1 pixel down-right and up-left (edges
    reflected), and the mirror images of the three, averaged (the model in float32, as cnnclf loads it
    for inference whatever precision it trained in)."""
    from cnnclf.inference.loading import load_model
    from cnnclf.rundir.directory import RunDir

    model = load_model(RunDir(run))
    height, width = x.shape[1:3]
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    views = [x, padded[:, :height, :width], padded[:, 2:, 2:]]
    views += [view[:, :, ::-1] for view in views]
    return np.mean([model.predict(view, verbose=0) for view in views], axis=0)


def test_test_time_views_average_evaluation_and_predictions(trained_run, digit_files):
    set_test_time_views(trained_run)
    result = cnnclf("evaluate", trained_run, "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    saved = np.load(trained_run / "predictions.npz")
    probabilities, index = saved["probabilities"], saved["sample_index"]
    np.testing.assert_allclose(probabilities[index], view_averaged(trained_run, saved["sample_images"]), atol=1e-5)
    assert metrics["test_accuracy"] == pytest.approx((probabilities.argmax(1) == saved["y_true"]).mean())
    rows = json.loads(cnnclf("predict", trained_run, digit_files[0] / "3.png", "--json").stdout)
    x = np.asarray(Image.open(digit_files[0] / "3.png"))[None, ..., None].astype(np.float32)
    from cnnclf.measures import calibrated  # predict answers with the run's temperature, applied last

    temperature = json.loads((trained_run / "calibration.json").read_text())["temperature"]
    assert rows[0]["probability"] == pytest.approx(calibrated(view_averaged(trained_run, x), temperature).max(),
                                                   abs=1e-5)
    config = (trained_run / "config.yaml").read_text()
    (trained_run / "config.yaml").write_text(config.replace("test_shift: 1", "test_shift: 3"))
    edited = cnnclf("export", trained_run, "--format", "onnx")
    assert edited.exit_code == 2 and edited.stderr.strip() == (
        "Error: data.augment.test_shift: 3 pixels is further than training's translations reach "
        "(0.1 of 28 pixels); set it to at most 2 or raise data.augment.translate")


@pytest.mark.slow
def test_export_goes_into_the_run_and_never_over_a_given_file(trained_run):
    """Each format's agreement with predict is in test_exports.py; here, where exports go."""
    result = cnnclf("export", trained_run, "--format", "onnx")
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == trained_run / "export" / "model.onnx"
    x = read_idx(SAMPLE / "t10k-images-idx3-ubyte.gz", "images")[:5, ..., None].astype(np.float32)
    rows = json.loads(cnnclf("predict", trained_run, *digit_pngs(trained_run, x), "--json").stdout)
    assert [r["class"] for r in rows] == [str(i) for i in run_exported(path, "onnx", x).argmax(1)]
    taken = cnnclf("export", trained_run, "--format", "onnx", "--out", path)
    assert taken.exit_code == 2 and "already exists; choose another --out" in taken.stderr


def digit_pngs(run: Path, x: np.ndarray) -> list[Path]:
    folder = run / "digits"
    folder.mkdir()
    for i, image in enumerate(x.astype(np.uint8)):
        Image.fromarray(image[..., 0]).save(folder / f"{i}.png")
    return sorted(folder.iterdir(), key=lambda p: int(p.stem))


def test_config_show_validate_and_presets(tmp_path):
    shown = cnnclf("config", "show", "configs/quickstart.yaml", "--set", "train.epochs=3")
    resolved = yaml.safe_load(shown.stdout)
    assert resolved["train"]["epochs"] == 3 and resolved["train"]["batch_size"] == 64
    assert resolved["train"]["eval_batch_size"] == "auto" and resolved["name"] == "quickstart"
    assert cnnclf("config", "validate", "configs/quickstart.yaml").stdout == "configs/quickstart.yaml: valid\n"
    bad = write_config(tmp_path / "bad.yaml", {"model": {"preset": "s002_mnist"}, "train": {"epochz": 1}})
    invalid = cnnclf("config", "validate", bad)
    assert invalid.exit_code == 2 and invalid.stderr == f"Error: {bad}:4: unknown key 'train.epochz'; did you mean 'train.epochs'?\n"
    presets = cnnclf("config", "presets").stdout
    assert "s002_mnist: Conv2D > MaxPooling2D > Flatten > Dense > Dropout" in presets


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10", "digits", "custom"])
def test_init_writes_a_valid_commented_starter(tmp_path, dataset):
    from cnnclf.config import load_config

    out = tmp_path / f"{dataset}.yaml"
    result = cnnclf("init", "--dataset", dataset, "--out", out)
    assert result.exit_code == 0 and result.stdout.strip() == str(out)
    assert "# decays to 0 by the last epoch" in out.read_text()
    assert load_config(out).data.dataset == dataset
    again = cnnclf("init", "--dataset", dataset, "--out", out)
    assert again.exit_code == 2 and again.stderr == f"Error: {out}: already exists; choose another --out or remove it\n"


def test_data_inspect_reports_balance_duplicates_and_unreadable(tmp_path, formats, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data inspect draws its grid in the working folder
    from helpers import png_bytes

    shutil.copytree(formats / "folder", tmp_path / "folder")
    (tmp_path / "folder/train/3/broken.png").write_bytes(b"garbage")
    shutil.copy(tmp_path / "folder/train/7/0000.png" if (tmp_path / "folder/train/7/0000.png").exists()
                else next((tmp_path / "folder/train/7").iterdir()), tmp_path / "folder/test/7/copy.png")
    (tmp_path / "folder/test/7/fresh.png").write_bytes(png_bytes(np.full((28, 28), 9, np.uint8)))
    config = write_config(tmp_path / "c.yaml", {"data": {"dataset": "mnist", "source": "folder",
                                                         "path": str(tmp_path / "folder"), "validation": "test"},
                                                "model": {"layers": [{"Flatten": {}}]},
                                                "output": {"runs_dir": str(tmp_path / "runs")}})
    result = cnnclf("data", "inspect", config, "--json")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["image_shape"] == [28, 28, 1] and found["sizes"] == {"train": 300, "test": 102}
    assert sum(c["train"] for c in found["class_balance"].values()) == 300
    assert found["test_images_also_in_train"] >= 1
    assert found["unreadable_files"] == [str(tmp_path / "folder/train/3/broken.png")]
    assert Path(found["grid"]).stat().st_size > 10_000
    text = cnnclf("data", "inspect", config).stdout
    assert "unreadable files: 1" in text and "total" in text


def test_plot_data_draws_training_images_per_class(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "runs"))
    result = cnnclf("plot", "--data", config)
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip()) == Path("tiny-data.png")  # in the working folder, not in runs/
    assert (tmp_path / "tiny-data.png").stat().st_size > 10_000 and not (tmp_path / "runs").exists()
    assert cnnclf("plot", "--data", config).exit_code == 0  # its own earlier grid is drawn again
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "mine.png")  # a picture of the user's
    refused = cnnclf("plot", "--data", config, "--out", tmp_path / "mine.png")
    assert refused.exit_code == 2 and "mine.png: exists, and cnnclf did not draw it" in refused.stderr


def test_shell_completion_script(monkeypatch):
    from click.testing import CliRunner

    from cnnclf.cli import cli

    result = CliRunner().invoke(cli, [], prog_name="cnnclf", env={"_CNNCLF_COMPLETE": "bash_source"})
    assert "_CNNCLF_COMPLETE=bash_complete" in result.output and "complete -o" in result.output


def rendered(report: Path, tmp_path: Path) -> str:
    """report.html as headless Chromium renders it (its DOM once its script has run)."""
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           report.as_uri()], capture_output=True, text=True, timeout=120).stdout


def facts(dom: str) -> dict[str, str]:
    """The report's table of facts: {name: value}."""
    return dict(re.findall(r"<tr><td>([^<]*)</td><td class=\"n\">([^<]*)</td></tr>", dom))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
@pytest.mark.slow
def test_report_as_train_wrote_it_reads_completed_in_headless_chromium(tiny_run, tmp_path):
    """The report is the page people open first: as `train` left it (not redrawn by `cnnclf plot`)."""
    run = tiny_run[0]
    dom = rendered(run / "report.html", tmp_path)
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-images-loaded="9"' in body and 'data-images="9"' in body
    assert "Per class (test)" in dom and "expected calibration error" in dom and "Most confused (test)" in dom
    assert re.search(r"<p class=\"status completed\">completed</p>", dom), dom[:2000]
    status, shown = json.loads((run / "run.json").read_text()), facts(dom)
    assert shown["epochs"] == "2 of 2" and float(shown["wall time (s)"]) == status["wall_seconds"] > 0
    assert float(shown["training images/s"]) == status["train_images_per_second"] > 0
    assert shown["why this precision"] == "the config sets it"  # tiny_config says float32


@pytest.mark.slow
def test_tensorboard_logs(second_run):
    events = list((second_run[0] / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)


@pytest.mark.slow
def test_mlflow_has_params_epoch_metrics_artifacts_and_model(second_run):
    from mlflow.tracking import MlflowClient

    run, store = second_run
    client = MlflowClient(tracking_uri=f"file://{store}")
    tracked = client.get_run(json.loads((run / "run.json").read_text())["mlflow_run_id"])
    assert tracked.info.status == "FINISHED" and tracked.info.run_name == run.name
    assert tracked.data.params["train.epochs"] == "1" and tracked.data.params["model.layers"].startswith("[")
    assert len(client.get_metric_history(tracked.info.run_id, "val_accuracy")) == 1
    assert tracked.data.metrics["test_accuracy"] == json.loads((run / "metrics.json").read_text())["test_accuracy"]
    artifacts = {a.path for a in client.list_artifacts(tracked.info.run_id)}
    assert {"metrics.json", "history.csv", "config.yaml", "report.html", "plots"} <= artifacts
    import keras
    import mlflow

    mlflow.set_tracking_uri(f"file://{store}")
    uri = json.loads((run / "run.json").read_text())["mlflow_model_uri"]  # an MLflow Model: pyfunc loads it
    x = read_idx(SAMPLE / "t10k-images-idx3-ubyte.gz", "images")[:4, ..., None].astype(np.float32)
    np.testing.assert_allclose(mlflow.pyfunc.load_model(uri).predict(x),
                               keras.saving.load_model(run / "model.keras").predict(x, verbose=0), atol=1e-5)


def test_each_answer_says_whether_it_is_unknown(trained_run, digit_files):
    """The run's threshold (fitted on its validation split, calibration.json) marks answers unknown in
    the table, the CSV and the JSON; --min-confidence overrides it; metrics.json has the calibration
    error before and after the run's temperature, and what the threshold costs."""
    folder, _ = digit_files
    fitted = json.loads((trained_run / "calibration.json").read_text())
    assert fitted["fitted_on"] == "100 validation images" and 0 < fitted["threshold"] < 1 and fitted["temperature"] > 0
    rows = json.loads(cnnclf("predict", trained_run, folder, "--json").stdout)
    assert all(r["unknown"] == (r["probability"] < fitted["threshold"]) for r in rows)
    strict = json.loads(cnnclf("predict", trained_run, folder, "--json", "--min-confidence", 1).stdout)
    assert all(r["unknown"] for r in strict) and [r["class"] for r in strict] == [r["class"] for r in rows]
    shown = cnnclf("predict", trained_run, folder, "--min-confidence", 1).stdout.splitlines()
    assert all(line.split()[3] == "unknown" for line in shown[1:])
    calibration = json.loads((trained_run / "metrics.json").read_text())["calibration"]
    assert calibration["temperature"] == fitted["temperature"] and 0 <= calibration["test_flagged_unknown"] <= 1
    assert calibration["expected_calibration_error_after"] <= calibration["expected_calibration_error_before"] + 0.05


@pytest.mark.slow
def test_data_issues_puts_the_planted_wrong_labels_first(tmp_path):
    """Photos whose class is their colour, four of them moved into another class's folder: the models
    trained on the other folds call them by their colour, and cleanlab ranks them first."""
    from helpers import COLOURS, photo

    root = tmp_path / "photos"
    for name, colour in COLOURS.items():  # in colour, every one (photos() makes some grayscale)
        (root / name).mkdir(parents=True)
        for i in range(24):
            photo(colour, (20, 20), seed=i).save(root / name / f"{i:03d}.png")
    planted = []
    for source, target, i in (("cat", "dog", 1), ("cat", "fox", 2), ("dog", "fox", 3), ("fox", "cat", 4)):
        moved = root / target / f"planted-{source}-{i}.png"
        (root / source / f"{i:03d}.png").rename(moved)
        planted.append(f"{target}/{moved.name}")
    config = write_config(tmp_path / "p.yaml", {
        "data": {"dataset": "custom", "source": "folder", "path": str(root), "image_shape": [16, 16, 3]},
        "model": {"layers": [{"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}},
                             {"GlobalAveragePooling2D": {}}]},
        "train": {"epochs": 40, "batch_size": 8, "optimizer": {"name": "adam", "learning_rate": 0.01},
                  "mixed_precision": "float32"},
        "output": {"runs_dir": str(tmp_path / "runs"), "plots": False}})
    result = cnnclf("data", "issues", config, "--folds", 3, "--epochs", 10, "--out", tmp_path / "issues.csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "issues.csv").open()))
    assert len(rows) == 72 == len({r["file"] for r in rows})  # every image, test ones too
    assert {r["file"] for r in rows[:4]} == set(planted), rows[:6]
    assert all(r["flagged"] == "true" for r in rows[:4]) and [r["given"] for r in rows[:4]] != [r["suggested"] for r in rows[:4]]
    assert (tmp_path / "issues.png").stat().st_size > 10_000
    assert "fold 1 of 3 done in" in result.stderr and len(list((tmp_path / "issues.folds").iterdir())) == 3
    again = cnnclf("data", "issues", config, "--out", tmp_path / "issues.csv")
    assert again.exit_code == 2 and "issues.csv: already exists" in again.stderr


def test_lr_find_suggests_a_rate_draws_the_sweep_and_leaves_no_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "runs"))
    result = cnnclf("lr-find", config, "--steps", 40, "--low", 1e-5, "--high", 10)
    assert result.exit_code == 0, result.stderr
    said, command, picture = result.stdout.strip().splitlines()
    rate = float(said.split(": ")[1].split()[0])
    assert 1e-5 <= rate <= 10 and command.strip() == f"cnnclf train {config} --set train.optimizer.learning_rate={rate:.3g}"
    assert Path(picture) == Path("tiny-lr-find.png") and (tmp_path / picture).stat().st_size > 10_000
    assert not (tmp_path / "runs").exists()  # no run directory, no model
    assert "swept " in result.stderr and "UserWarning" not in result.stderr


def test_the_steepest_descent_is_before_the_lowest_loss():
    from cnnclf.tools.lr_find import suggest

    rates = np.geomspace(1e-5, 1, 50)
    losses = 2.3 - 2.0 / (1 + np.exp(-(np.log10(rates) + 2.5) * 4))  # falls fastest at 10^-2.5...
    losses[40:] += np.linspace(0, 20, 10)  # ...and diverges late
    assert suggest(rates, losses) == pytest.approx(10 ** -2.5, rel=0.3)

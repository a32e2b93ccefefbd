"""End to end through the CLI: train, evaluate and plot on tiny real data, and the run directory."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import cnnclf, tiny_config, write_config

RUN_FILES = {"run.json", "run.lock", "config.yaml", "model.keras", "history.csv", "metrics.json", "predictions.npz",
             "calibration.json",
             "data_samples.npz", "summary.txt", "env.json", "train.log", "report.html", "plots"}
PLOTS = ["confusion_matrix.png", "data_samples.png", "gradcam.png", "learning_curves.png", "per_class_accuracy.png",
         "precision_recall.png", "reliability.png", "test_samples.png", "top_losses.png"]


@pytest.fixture
def trained(tiny_run):
    return tiny_run


def test_train_writes_a_complete_run_directory(trained):
    run, result = trained
    assert {p.name for p in run.iterdir()} == RUN_FILES  # backup/ removed once completed
    assert run.name.endswith("-tiny") and run.parent.name == "runs"
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert "epoch 2/2" in result.stderr and "epoch 2/2" in (run / "train.log").read_text()
    assert sorted(p.name for p in (run / "plots").iterdir()) == PLOTS


def test_metrics_are_sane(trained):
    run, _ = trained
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.8 < metrics["test_accuracy"] <= 1.0 and 0 < metrics["test_loss"] < 1.0
    assert metrics["test_images"] == 200 and len(metrics["per_class"]) == 10
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 200
    assert abs(np.trace(cm) / 200 - metrics["test_accuracy"]) < 1e-6
    assert set(metrics["per_class"]["7"]) == {"precision", "recall", "f1", "support"}
    assert metrics["test_accuracy"] < metrics["top_k_accuracy"]["3"] < metrics["top_k_accuracy"]["5"] <= 1
    assert 0 <= metrics["expected_calibration_error"] < 0.2
    with np.load(run / "predictions.npz") as p:
        assert p["probabilities"].shape == (200, 10) and np.allclose(p["probabilities"].sum(axis=1), 1, atol=1e-4)


def test_per_class_scores_match_scikit_learn(trained):
    from sklearn.metrics import classification_report, confusion_matrix

    from cnnclf.measures import confusion_matrix as counts
    from cnnclf.measures import per_class

    run, _ = trained
    metrics = json.loads((run / "metrics.json").read_text())
    with np.load(run / "predictions.npz") as p:
        y_true, y_pred = p["y_true"], p["probabilities"].argmax(axis=1)
    report = classification_report(y_true, y_pred, target_names=metrics["class_names"], output_dict=True,
                                   zero_division=0)
    for name, row in metrics["per_class"].items():
        assert row == pytest.approx({"precision": report[name]["precision"], "recall": report[name]["recall"],
                                     "f1": report[name]["f1-score"], "support": report[name]["support"]})
    assert metrics["macro_avg"]["f1"] == pytest.approx(report["macro avg"]["f1-score"])
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    # a class never predicted and one never present: scikit-learn's zero_division=0
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 2])
    scores = per_class(counts(y_true, y_pred, 3))
    expected = classification_report(y_true, y_pred, labels=[0, 1, 2], output_dict=True, zero_division=0)
    for c in range(3):
        assert [scores[k][c] for k in ("precision", "recall", "f1")] == pytest.approx(
            [expected[str(c)][k] for k in ("precision", "recall", "f1-score")])


@pytest.mark.slow
def test_training_leaves_out_what_keras_imports_optionally():
    """Keras imports pandas, scikit-learn, matplotlib and scipy at start-up (125 MB resident); cnnclf's
    start and its training modules leave them out, and they still import normally afterwards."""
    import subprocess
    import sys

    code = ("import sys; from cnnclf import startup; startup.start(); "
            "import cnnclf.training.train, cnnclf.data.idx, cnnclf.data.split; "
            "held = [m for m in startup.OPTIONAL_AT_IMPORT if m in sys.modules]; assert not held, held; "
            "import sklearn.metrics, matplotlib.pyplot, pandas")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_history_has_one_row_per_epoch(trained):
    run, _ = trained
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(rows[0])
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])


def test_config_env_and_summary_are_recorded(trained):
    run, _ = trained
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["path"] == str(Path("data/mnist-sample").resolve())  # absolute: evaluate works anywhere
    assert config["train"]["early_stopping"]["patience"] == 2  # defaults written out
    env = json.loads((run / "env.json").read_text())
    assert {"python", "tensorflow", "keras", "seed", "device", "command", "git_commit", "data"} <= set(env)
    assert env["data"]["sizes"] == {"train": 900, "validation": 100, "test": 200}
    assert len(env["data"]["split_sha256"]) == 64 and len(env["data"]["files"]) == 4
    assert env["compute"]["conv_gradients"] == (  # auto: TensorFlow's kernels where the CPU has AVX-512
        "tensorflow" if env["device"]["cpu_class"].startswith(("AMX", "AVX-512")) else "forward")
    summary = (run / "summary.txt").read_text()
    assert "classifier (Dense)" in summary and "Total params: 27,210" in summary


def test_evaluate_reloads_the_run_and_prints_json(trained):
    run, _ = trained
    before = json.loads((run / "metrics.json").read_text())
    result = cnnclf("evaluate", run, "--json")
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["test_accuracy"] == pytest.approx(before["test_accuracy"])
    assert printed["confusion_matrix"] == before["confusion_matrix"]
    table = cnnclf("evaluate", run)
    assert table.exit_code == 0 and "precision  recall" in table.stdout and "test_accuracy" in table.stdout


def test_plot_redraws_from_the_run_directory_alone(trained_run):
    for png in (trained_run / "plots").iterdir():
        png.unlink()
    (trained_run / "report.html").unlink()
    result = cnnclf("plot", trained_run)
    assert result.exit_code == 0
    paths = [Path(p) for p in result.stdout.split()]
    assert sorted(p.name for p in paths) == sorted(PLOTS + ["report.html"])
    assert all(p.stat().st_size > 10_000 for p in paths)


@pytest.mark.parametrize("source, path, test_path, dataset", [
    ("csv", "train.csv", "test.csv", "mnist"),
    ("npz", "digits.npz", None, "mnist"),
    ("folder", "folder.zip", None, "mnist"),
    ("cifar", "cifar-10-batches-py", None, "custom"),
    ("sklearn", None, None, "digits"),
])
@pytest.mark.slow
def test_smoke_runs_on_every_source(tmp_path, formats, source, path, test_path, dataset):
    data = {"dataset": dataset, "source": source}
    if path:
        data["path"] = str(formats / path)
    if test_path:
        data["test_path"] = str(formats / test_path)
    config = write_config(tmp_path / "smoke.yaml", {"data": data, "model": {"layers": [{"Flatten": {}}]},
                                                    "output": {"runs_dir": str(tmp_path / "runs"), "plots": False}})
    result = cnnclf("train", config, "--smoke")
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip().splitlines()[-1])
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 1 and resolved["data"]["limit_train"] == 20 * (4 if source == "cifar" else 10)
    assert json.loads((run / "metrics.json").read_text())["test_images"] > 0
    listed = json.loads(cnnclf("runs", tmp_path / "runs", "--json", "--dataset", dataset).stdout)
    assert [r["status"] for r in listed] == ["completed (smoke)"]  # --smoke runs are no results
    assert cnnclf("runs", tmp_path / "runs", "--json", "--dataset", "cifar100").stdout.strip() == "[]"


def test_two_runs_in_the_same_second_get_their_own_directories(tmp_path):
    from cnnclf.rundir.directory import RunDir

    first, second = RunDir.create(tmp_path, "same"), RunDir.create(tmp_path, "same")
    assert first.path != second.path and second.path.name == first.path.name + "-2"


def test_every_command_has_help_with_an_example():
    from cnnclf.cli import cli

    for name in cli.commands:
        result = cnnclf(name, "--help")
        assert result.exit_code == 0 and "Example" in result.stdout, name
    assert cnnclf("--version").stdout.startswith("cnnclf, version")


@pytest.mark.slow  # trains a run
def test_a_whitened_model_keeps_the_whitening_computed_from_its_training_images(tmp_path):
    import keras

    from cnnclf.config import load_config
    from cnnclf.data.dataset import load
    from cnnclf.model.whitening import whitening_weights

    config = write_config(tmp_path / "w.yaml", {**tiny_config(tmp_path / "runs", epochs=1),
                                                  "model": {"preset": "mnist_bn", "whiten": {"images": 200}}})
    result = cnnclf("train", config)
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.split()[-1])
    resolved = load_config(run / "config.yaml")
    train = load(resolved.data, resolved.seed).splits.train
    expected = whitening_weights(train.gather(np.arange(200)), 2, 5e-4, 1 / 255)
    layer = keras.saving.load_model(run / "model.keras").get_layer("whiten")
    assert not layer.trainable and layer.kernel.shape == (2, 2, 1, 8)
    for got, want in zip(layer.get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # computed, then never trained


def test_training_says_what_the_machine_does(trained):
    import re

    _, result = trained
    assert re.search(r"^training on .+ \((AMX|AVX-512 BF16|AVX-512|AVX2|other), \d+ cores\): float32, as the config "
                     r"sets it; 32 steps per execution, batches of 16$", result.stderr, re.M), result.stderr


def test_label_smoothing_says_how_high_a_perfect_models_loss_is():
    from cnnclf.config import TrainConfig
    from cnnclf.training.compute import Compute
    from cnnclf.training.train import what_runs

    compute = Compute(steps_per_execution=32, jit_compile=False, mixed_precision="mixed_bfloat16",
                      precision_reason="this CPU has AMX", conv_gradients="tensorflow", replicas=1, batch_size=256,
                      learning_rate_scale=1)
    line = what_runs(compute, TrainConfig(label_smoothing=0.1), 10)
    assert "mixed_bfloat16, as this CPU has AMX; 32 steps per execution, batches of 256" in line
    assert line.endswith("with label smoothing 0.1, a perfect model's loss is 0.50, not 0: accuracy says how "
                         "training goes")


def test_the_runs_table_fits_a_wide_terminal(trained):
    run, _ = trained
    lines = cnnclf("runs", run.parent).stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "dataset", "model", "params"] and max(map(len, lines)) <= 200


def test_the_sample_grid_shows_mistakes_of_every_class_the_rare_ones_first():
    import numpy as np

    from cnnclf.inference.evaluate import sample_order

    y_true = np.array([0] * 50 + [1] * 50 + [2] * 5 + [3] * 4)
    y_pred = y_true.copy()
    y_pred[:40], y_pred[50:90] = 1, 0  # the common pair's 80 mistakes...
    y_pred[100], y_pred[105] = 3, 2  # ...and one each of the rare classes
    order = sample_order(y_true, y_pred)
    assert list(y_true[order[:4]]) == [3, 2, 0, 1] and list(order[:2]) == [105, 100]
    assert set(order[:82]) == set(np.flatnonzero(y_pred != y_true)) and len(order) == len(y_true)


def test_a_time_budget_plans_the_epochs_and_the_schedule_ends_with_the_run(tmp_path, monkeypatch):
    """The speed is injected (no timing in tests): 900 training and 2,000 validation images/s make an
    epoch of the tiny config (900 + 100 images) 1.05 s; 93% of a 2.3 s budget fits 2 whole epochs with
    2% left. The cosine schedule ends at the last epoch's end; resume keeps the plan (config.yaml's
    epochs), measuring nothing."""
    from cnnclf.errors import Interrupted
    from cnnclf.training import budget, callbacks

    monkeypatch.setattr(budget, "_measure", lambda *args: (900.0, 2000.0, 0.0, 0.0))
    config = tiny_config(tmp_path / "runs", epochs=50, time_budget=2.3, lr_schedule="cosine", warmup_epochs=0.5)
    result = cnnclf("train", write_config(tmp_path / "b.yaml", config))
    assert result.exit_code == 0, result.stderr
    assert "time budget 2.3 s: 900 images/s training and 2,000 validating on this machine, 1.1 s an epoch: 2 epochs" \
        in result.stderr
    run = Path(result.stdout.split()[-1])
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2
    assert json.loads((run / "run.json").read_text())["time_budget"]["epochs"] == 2
    rates = [float(r["learning_rate"]) for r in csv.DictReader((run / "history.csv").open())]
    assert len(rates) == 2 and rates[0] > 1e-4 and rates[1] < 1e-6  # decayed to 0 exactly at the run's end

    original = callbacks.EpochLines.on_epoch_begin

    def stop_in_the_second_epoch(self, epoch, logs=None):
        if epoch == 1:
            raise Interrupted("stopped by SIGINT", 2)
        original(self, epoch, logs)

    monkeypatch.setattr(callbacks.EpochLines, "on_epoch_begin", stop_in_the_second_epoch)
    stopped = cnnclf("train", write_config(tmp_path / "b.yaml", config))
    assert stopped.exit_code == 130
    monkeypatch.setattr(callbacks.EpochLines, "on_epoch_begin", original)
    monkeypatch.setattr(budget, "_measure", lambda *args: pytest.fail("resume measured again"))
    interrupted = sorted((tmp_path / "runs").iterdir())[-1]
    resumed = cnnclf("resume", interrupted)
    assert resumed.exit_code == 0, resumed.stderr
    assert [float(r["learning_rate"]) for r in csv.DictReader((interrupted / "history.csv").open())] == rates


def test_a_time_budget_measures_this_machine_with_a_throwaway_model(tmp_path):
    """Unmocked: the speeds come from training and validating a copy of the model, the plan from them
    (no timing asserted, only that the decision is made of what was measured)."""
    config = tiny_config(tmp_path / "runs", epochs=50, time_budget=3, lr_schedule="cosine")
    result = cnnclf("train", write_config(tmp_path / "b.yaml", config))
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.split()[-1])
    decision = json.loads((run / "run.json").read_text())["time_budget"]
    assert decision["train_images_per_second"] > 0 and decision["validation_images_per_second"] > 0
    assert decision["tracing_seconds"] >= 0 and decision["per_epoch_seconds"] > 0
    epoch = 900 / decision["train_images_per_second"] + 100 / decision["validation_images_per_second"]
    assert decision["epoch_seconds"] == pytest.approx(epoch + decision["per_epoch_seconds"], abs=0.02)
    assert 1 <= decision["epochs"] <= 100_000
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == decision["epochs"]
    assert len(list(csv.DictReader((run / "history.csv").open()))) == decision["epochs"]


def test_a_time_budget_is_read_in_seconds_minutes_or_hours():
    from cnnclf.config import TrainConfig

    assert [TrainConfig(time_budget=v).time_budget for v in ("90s", "5m", "1.5h", 42)] == [90, 300, 5400, 42]
    with pytest.raises(ValueError, match="a time budget is seconds, or a number with s, m or h"):
        TrainConfig(time_budget="soon")


@pytest.mark.parametrize("seconds, planned, epochs, steps", [
    (2, "1 epoch of 59% of the training images (33 steps each)", 1, 33),  # (0.93 x 2 - 0.1) / 3 of an epoch
    (8, "3 epochs of 79% of the training images (45 steps each)", 3, 45),  # 2 whole epochs would leave 17%
    (3.6, "2 epochs of 52% of the training images (29 steps each)", 2, 29),  # 1 whole epoch would leave 7%
])
def test_a_time_budget_between_whole_epochs_trains_shorter_ones(tmp_path, monkeypatch, seconds, planned, epochs,
                                                                  steps):
    """900 training images at 300 images/s take 3 s, 100 validating at 1,000 images/s 0.1 s. A budget
    shorter than an epoch trains part of one; where whole epochs would leave more than 3% of it unused
    (beyond the 7% kept in reserve),
    there is one more and each is shorter (other images each time); the schedule ends with the last."""
    from cnnclf.training import budget

    monkeypatch.setattr(budget, "_measure", lambda *args: (300.0, 1000.0, 0.0, 0.0))
    config = tiny_config(tmp_path / "runs", epochs=5, time_budget=seconds, lr_schedule="cosine")
    result = cnnclf("train", write_config(tmp_path / "b.yaml", config))
    assert result.exit_code == 0, result.stderr
    assert f"3.1 s an epoch: {planned}" in result.stderr
    run = Path(result.stdout.split()[-1])
    train = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (train["epochs"], train["steps_per_epoch"]) == (epochs, steps)
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert len(rows) == epochs and float(rows[-1]["learning_rate"]) < 1e-6  # the cosine ended with the last epoch


def test_a_time_budget_times_a_step_apart_from_the_start_of_each_pass_over_the_data():
    """Each timed call starts a pass over the data (as each epoch does): counted as steps, a 1 s start
    made 0.1 s steps look 0.35 s long at 4 steps. The difference of two calls parts them."""
    from cnnclf.training.budget import _per_item

    assert _per_item([(0, 0.0), (4, 1.4), (8, 1.8)]) == (pytest.approx(0.1), pytest.approx(1.0))
    assert _per_item([(0, 0.0), (1, 2.5)]) == (2.5, 0.0)  # one call: all of it is the step
    assert _per_item([(0, 0.0), (1, 0.3), (1, 0.3)]) == (0.3, 0.0)  # a split of one batch: no difference

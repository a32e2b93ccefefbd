"""What a new user touches: options where they are typed, tables that line up, plots in folders,
exports that carry their class names, a starter config fitted to the data, and no long silences."""

import json
import logging
import re
from pathlib import Path

import pytest

from helpers import cnnclf, tiny_config, write_config


def test_debug_and_set_work_after_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data inspect draws its grid in the working folder
    bad = write_config(tmp_path / "bad.yaml", {"model": {"preset": "s002_mnist"}, "train": {"epochz": 1}})
    plain = cnnclf("config", "validate", bad)
    assert plain.exit_code == 2 and "Traceback" not in plain.stderr
    debugged = cnnclf("config", "validate", bad, "--debug")
    assert debugged.exit_code == 1 and type(debugged.exception).__name__ == "ConfigError"  # raised, not printed
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "runs"))
    inspected = cnnclf("data", "inspect", config, "--set", "data.limit_train=100", "--json")
    assert inspected.exit_code == 0, inspected.stderr
    assert json.loads(inspected.stdout)["sizes"]["train"] + json.loads(inspected.stdout)["sizes"]["validation"] == 100


def test_config_validate_checks_paths_and_deep_loads_data_and_model(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "runs"))
    deep = cnnclf("config", "validate", config, "--deep")
    assert deep.exit_code == 0, deep.stderr
    assert deep.stdout.strip() == (f"{config}: valid; data: 900 train, 100 validation, 200 test images of [28, 28, 1] "
                                   f"in 10 classes; model: 27,210 parameters")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    gone = cnnclf("config", "validate", config, "--set", f"data.path={tmp_path / 'nowhere'}")
    assert gone.exit_code == 2 and "no such file or folder (data.path)" in gone.stderr


def test_tables_line_up_with_short_class_names(tiny_run):
    run, _ = tiny_run
    lines = cnnclf("evaluate", run).stdout.splitlines()
    assert lines[0].startswith("class  precision") and lines[1].startswith("0    ")
    assert "balanced_accuracy" in lines[-1] and "macro_f1" in lines[-1]


def test_compare_rounds_and_draws_into_its_folder(tiny_run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_run[0], runs / tiny_run[0].name)
    shutil.copytree(tiny_run[0], runs / (tiny_run[0].name + "-2"))
    result = cnnclf("compare", *sorted(runs.iterdir()))
    assert result.exit_code == 0, result.stderr
    assert not any(len(number) > 8 for number in __import__("re").findall(r"\d+\.\d+", result.stdout))
    plot = Path(result.stdout.strip().splitlines()[-1])
    assert plot.parent == runs / "compare" and plot.stat().st_size > 5000


def test_report_names_dataset_model_parameters_and_date(tiny_run):
    page = (tiny_run[0] / "report.html").read_text()
    assert "dataset mnist (idx: " in page and "model: 3 layers, 27,210 parameters; started 20" in page
    assert "balanced accuracy" in page and "macro f1" in page


@pytest.mark.slow  # trains a run
def test_a_warning_reaches_the_log_the_run_record_and_the_report(tmp_path, monkeypatch):
    from cnnclf.inference import evaluate

    monkeypatch.setattr(evaluate, "collapse_warning", lambda metrics, class_weight: "the model predicts 7 for 95%")
    config = tiny_config(tmp_path / "runs", epochs=1)
    config["output"]["plots"] = True
    result = cnnclf("train", write_config(tmp_path / "c.yaml", config))
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip().splitlines()[-1])
    assert "warning: the model predicts 7 for 95%" in result.stderr
    assert json.loads((run / "run.json").read_text())["warnings"] == ["the model predicts 7 for 95%"]
    assert "warning: the model predicts 7 for 95%" in (run / "report.html").read_text()


@pytest.mark.slow
def test_exports_carry_class_names_input_size_and_named_output(trained_run):
    import onnxruntime

    result = cnnclf("export", trained_run, "--format", "onnx")
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    meta = json.loads(path.with_name("model.onnx.json").read_text())
    assert meta["output"] == {"name": "probabilities", "classes": [str(i) for i in range(10)]}
    assert meta["input"]["shape"] == [None, 28, 28, 1] and meta["input"]["pixel_range"] == [0, 255]
    assert meta["input"]["resampling"] == "bilinear" and meta["input"]["resize"] == "stretch"
    assert meta["input"]["pad_color"] is None  # set where resize is pad: [0] for each channel
    session = onnxruntime.InferenceSession(str(path))
    assert [o.name for o in session.get_outputs()] == ["probabilities"]


def test_init_points_at_a_local_copy_or_says_how_to_get_one(tmp_path, monkeypatch, caplog):
    from cnnclf.tools import starter

    monkeypatch.setitem(starter.LOCAL_COPIES, "cifar10", [("folder", str(tmp_path / "cifar.zip"))])
    (tmp_path / "cifar.zip").write_bytes(b"")
    result = cnnclf("init", "--dataset", "cifar10", "--out", tmp_path / "c.yaml")
    assert result.exit_code == 0
    text = (tmp_path / "c.yaml").read_text()
    assert f"source: folder\n  path: {tmp_path / 'cifar.zip'}" in text
    monkeypatch.setitem(starter.LOCAL_COPIES, "cifar10", [("folder", str(tmp_path / "absent.zip"))])
    offline = cnnclf("init", "--dataset", "cifar10", "--out", tmp_path / "d.yaml")
    assert "source: keras" in (tmp_path / "d.yaml").read_text() and "no local copy found" in offline.stderr


def test_init_fits_a_custom_config_to_the_images(tmp_path):
    from helpers import photos

    photos(tmp_path / "photos", counts={"cat": 150, "dog": 40, "fox": 30})
    result = cnnclf("init", "--dataset", "custom", "--path", tmp_path / "photos", "--out", tmp_path / "mine.yaml")
    assert result.exit_code == 0, result.stderr
    from cnnclf.config import load_config

    config = load_config(tmp_path / "mine.yaml")
    steps = -(-int(220 * 0.8 * 0.9) // config.train.batch_size)
    assert config.train.batch_size <= 16 and steps >= 10  # not 2 steps an epoch
    assert config.data.image_shape == (32, 32, 3) and config.data.augment.flip == "horizontal"
    assert config.train.class_weight == "balanced" and config.train.epochs == 40
    assert "chose: 220 images in 3 classes" in result.stderr


def test_slow_steps_are_named_quick_ones_are_not(monkeypatch, caplog):
    import time

    from cnnclf import progress

    monkeypatch.setattr(progress, "SILENCE", 0.05)
    with caplog.at_level(logging.INFO, logger="cnnclf"):
        with progress.step("quick"):
            pass
        with progress.step("evaluating"):
            time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "evaluating ..." and lines[1].startswith("evaluating: done in 0.")
    assert not any(line.startswith("quick") for line in lines)


@pytest.mark.slow  # trains a run
def test_a_slow_epoch_shows_its_progress_on_a_terminal_only(tmp_path, monkeypatch, caplog):
    from cnnclf import progress
    from cnnclf.training import callbacks

    monkeypatch.setattr(progress, "SILENCE", 0.0)
    monkeypatch.setattr(callbacks, "TICK", 0.02)
    config = tiny_config(tmp_path / "runs", epochs=1, steps_per_execution=1)
    with caplog.at_level(logging.INFO, logger="cnnclf"):
        result = cnnclf("train", write_config(tmp_path / "c.yaml", config))
    assert result.exit_code == 0, result.stderr
    bars = [r.getMessage() for r in caplog.records if getattr(r, "transient", False)]
    assert any("images/s" in bar for bar in bars) and all(re.fullmatch(r"epoch 1/1 \[[#.]{20}\] \d+/57 steps  ([\d,]+ images/s  ~\d+ s left|validating \.\.\.|starting \.\.\.)",
                                     bar) for bar in bars), bars
    run = Path(result.stdout.split()[-1])
    assert "/57 steps" not in (run / "train.log").read_text()  # bars never reach the log file
    assert len(re.findall(r"\d+/57 steps", result.stderr)) <= 1  # off a terminal: a line every 10 s at most


def test_progress_bars_are_drawn_over_on_a_terminal_and_every_ten_seconds_elsewhere(monkeypatch):
    import io
    import sys

    from cnnclf.progress import StderrHandler

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    def records(handler, at=()):
        for i, (message, transient) in enumerate((("epoch 1/2 [#...] 1/4 steps", True),
                                                  ("epoch 1/2 [##..] 2/4 steps", True),
                                                  ("epoch 1/2 [###.] 3/4 steps", True),
                                                  ("epoch 1/2  accuracy 0.5", False))):
            record = logging.makeLogRecord({"msg": message, "transient": transient, "levelno": logging.INFO})
            record.created = at[i] if at else record.created
            handler.emit(record)

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    records(StderrHandler())
    assert screen.getvalue() == ("\r\033[Kepoch 1/2 [#...] 1/4 steps\r\033[Kepoch 1/2 [##..] 2/4 steps"
                                 "\r\033[Kepoch 1/2 [###.] 3/4 steps\r\033[Kepoch 1/2  accuracy 0.5\n")
    log_file = io.StringIO()  # not a terminal: a CI job's log, `cnnclf train ... 2> log`
    monkeypatch.setattr(sys, "stderr", log_file)
    records(StderrHandler(), at=(100.0, 104.0, 111.0, 112.0))  # seconds: the second bar comes too soon
    assert log_file.getvalue() == ("epoch 1/2 [#...] 1/4 steps\nepoch 1/2 [###.] 3/4 steps\n"
                                   "epoch 1/2  accuracy 0.5\n")

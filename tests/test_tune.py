"""cnnclf tune: Optuna trials are ordinary runs; the study continues where it stopped."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnclf.errors import Interrupted
from conftest import cnnclf, tiny_config, write_config

pytestmark = pytest.mark.slow  # trains for real, in subprocesses and clusters

SPACE = {"train.optimizer.learning_rate": {"log_uniform": [1.0e-4, 1.0e-2]},
         "model.layers[0].Conv2D.filters": {"choice": [4, 8]},
         "train.batch_size": {"int": [16, 32]}}


def tune_config(tmp: Path, epochs=1) -> Path:
    config = tiny_config(tmp / "runs", epochs=epochs)
    config["data"].update(limit_train=400, limit_test=100)
    return write_config(tmp / "study.yaml", {**config, "name": "study", "tune": {"space": SPACE}})


def trials_csv(tmp: Path) -> list[dict]:
    return list(csv.DictReader((tmp / "runs" / "tune-study" / "trials.csv").open()))


def test_three_trials_then_one_more(tmp_path):
    result = cnnclf("tune", tune_config(tmp_path), "--trials", 3)
    assert result.exit_code == 0, result.stderr
    rows = trials_csv(tmp_path)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    assert all(Path(r["run"]).name.endswith(f"-study-trial{r['trial']}") for r in rows)
    assert all(json.loads((Path(r["run"]) / "run.json").read_text())["status"] == "completed" for r in rows)
    best = max(rows, key=lambda r: float(r["val_accuracy"]))
    assert f"best: trial {best['trial']}, {float(best['val_accuracy']):.4f}" in result.stdout
    chosen = yaml.safe_load((tmp_path / "runs" / "tune-study" / "best.yaml").read_text())
    assert chosen["train"]["optimizer"]["learning_rate"] == pytest.approx(float(best["train.optimizer.learning_rate"]))
    assert chosen["model"]["layers"][0]["Conv2D"]["filters"] == int(best["model.layers[0].Conv2D.filters"])
    assert chosen["tune"] is None and cnnclf("config", "validate", tmp_path / "runs/tune-study/best.yaml").exit_code == 0

    more = cnnclf("tune", tune_config(tmp_path), "--trials", 4)
    assert more.exit_code == 0, more.stderr
    rows = trials_csv(tmp_path)
    assert len(rows) == 4 and rows[3]["state"] == "COMPLETE"
    drawn = [(r["train.optimizer.learning_rate"], r["train.batch_size"]) for r in rows]
    assert len(set(drawn)) == 4  # the continued study does not replay its first draws


def test_an_interrupted_trial_is_resumed_when_tune_runs_again(tmp_path, monkeypatch):
    from cnnclf.training import callbacks

    calls = {"epochs": 0}
    original = callbacks.EpochLines.on_epoch_begin

    def interrupt_in_second_trial(self, epoch, logs=None):
        calls["epochs"] += 1
        if calls["epochs"] == 4:  # trial 1, its second epoch
            raise Interrupted("stopped by SIGINT", 2)
        original(self, epoch, logs)

    monkeypatch.setattr(callbacks.EpochLines, "on_epoch_begin", interrupt_in_second_trial)
    config = tune_config(tmp_path, epochs=2)
    stopped = cnnclf("tune", config, "--trials", 3)
    assert stopped.exit_code == 130 and "continue with: cnnclf resume" in stopped.stderr
    monkeypatch.undo()

    again = cnnclf("tune", config, "--trials", 3)
    assert again.exit_code == 0, again.stderr
    rows = trials_csv(tmp_path)
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]  # 1 asked again as 2
    assert f"trial 2: resuming {rows[1]['run']}" in again.stderr and "epoch 2/2" in again.stderr
    resumed = Path(rows[2]["run"])
    assert resumed == Path(rows[1]["run"]) and len(list((tmp_path / "runs").glob("*-study-trial1"))) == 1
    assert [int(r["epoch"]) for r in csv.DictReader((resumed / "history.csv").open())] == [1, 2]
    assert rows[2]["epochs"] == "2"  # both epochs reported to the trial, the first try's too
    assert rows[2]["train.batch_size"] == rows[1]["train.batch_size"]


def test_a_config_without_a_tune_section(tmp_path):
    result = cnnclf("tune", write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "runs")))
    assert result.exit_code == 2 and "the config has no tune: section" in result.stderr


def test_two_workers_on_one_machine_share_the_local_study(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cnnclf", "tune", str(tune_config(tmp_path)), "--trials", "3",
                             "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = trials_csv(tmp_path)
    assert 3 <= len([r for r in rows if r["state"] == "COMPLETE"]) <= 4  # the last two may start together
    assert "train.threads" not in (tmp_path / "study.yaml").read_text()
    threads = {yaml.safe_load((Path(r["run"]) / "config.yaml").read_text())["train"]["threads"] for r in rows}
    assert threads == {max(1, (os.cpu_count() or 1) // 2)}  # each worker its share of the cores

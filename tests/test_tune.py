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
from helpers import cnnclf, tiny_config, write_config

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
    assert stopped.exit_code == 130 and stopped.stderr.endswith(
        "\nError: stopped by SIGINT in trial 1; run the same `cnnclf tune` command again to continue the study (it "
        "resumes the trial's run)\n")  # not `cnnclf resume RUN`, which would train the run outside the study
    assert "Traceback" not in stopped.stderr
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


def test_a_study_belongs_to_one_config(tmp_path):
    """Two configs of one name would share a study silently (and best.yaml hand back the other's trial)."""
    assert cnnclf("tune", tune_config(tmp_path), "--trials", 1).exit_code == 0
    other = yaml.safe_load((tmp_path / "study.yaml").read_text())
    other["data"]["limit_train"] = 300
    (tmp_path / "other").mkdir()
    other_path = write_config(tmp_path / "other" / "study.yaml", other)
    refused = cnnclf("tune", other_path, "--trials", 2)
    assert refused.exit_code == 2 and refused.stderr.startswith(
        f"Error: study study in sqlite:///{tmp_path}/runs/tune-study/study.db belongs to another config "
        f"(data.limit_train differs); give this config its own name:")
    other["tune"].update(metric="val_loss", direction="minimize")
    minimizing = cnnclf("tune", write_config(tmp_path / "other" / "study.yaml", other), "--trials", 2)
    assert minimizing.exit_code == 2 and "study study in sqlite:" in minimizing.stderr and \
        "maximizes its metric, this config minimizes val_loss; give this config its own name:" in minimizing.stderr
    assert len(trials_csv(tmp_path)) == 1  # nothing trained into the study


def test_two_storages_of_one_config_keep_their_own_summaries(tmp_path):
    config = tune_config(tmp_path)
    assert cnnclf("tune", config, "--trials", 1).exit_code == 0
    journal = f"journal:{tmp_path / 'study.log'}"
    result = cnnclf("tune", config, "--trials", 1, "--storage", journal)
    assert result.exit_code == 0, result.stderr
    folders = sorted(p.name for p in (tmp_path / "runs").glob("tune-study*"))
    assert len(folders) == 2 and folders[0] == "tune-study" and folders[1].startswith("tune-study-")
    assert [len(list(csv.DictReader((tmp_path / "runs" / f / "trials.csv").open()))) for f in folders] == [1, 1]
    assert str(tmp_path / "runs" / folders[1] / "trials.csv") in result.stdout


def test_workers_started_together_draw_apart():
    """The sampler's seed was seed + trials + pid: worker A (pid 101, 0 trials) and B (pid 100, 1 trial)
    drew identical parameters."""
    from unittest import mock

    from cnnclf.tools.tune import _sampler_seed

    seeds = set()
    for pid, trials in ((101, 0), (100, 1), (102, 0), (101, 1)):
        with mock.patch("os.getpid", return_value=pid):
            seeds.add(_sampler_seed(42, trials))
    assert len(seeds) == 4


def test_a_server_that_takes_the_connection_and_never_answers_is_given_up(tmp_path, monkeypatch):
    import socket
    import threading
    import time

    from cnnclf.tools import study

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    held = []
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    monkeypatch.setattr(study, "CONNECT_SECONDS", 2)
    started = time.time()
    result = cnnclf("tune", tune_config(tmp_path), "--storage",
                    f"postgresql://cnnclf@127.0.0.1:{silent.getsockname()[1]}/studies")
    assert result.exit_code == 2 and time.time() - started < 30
    assert result.stderr.startswith(f"Error: tune.storage postgresql://cnnclf@127.0.0.1:{silent.getsockname()[1]}"
                                    f"/studies: cannot open the study there (")
    silent.close()


def test_the_dashboard_answers_only_loopback_names_and_refuses_a_port_in_use(tmp_path):
    import signal
    import socket
    import time

    import httpx

    config = tune_config(tmp_path)
    assert cnnclf("tune", config, "--trials", 1).exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = cnnclf("tune", config, "--dashboard", "--port", port)
    assert busy.exit_code == 2 and busy.stderr.startswith(f"Error: port {port} on 127.0.0.1 is in use")
    server = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "cnnclf", "tune", str(config), "--dashboard",
                               "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        said = ""
        while "/dashboard" not in said:
            said += server.stderr.readline()
        url = said.split("on ", 1)[1].split()[0].removesuffix("/dashboard")
        time.sleep(0.5)
        studies = httpx.get(f"{url}/api/studies").json()["study_summaries"]
        assert [s["study_name"] for s in studies] == ["study"]
        assert httpx.get(f"{url}/api/studies", headers={"host": "rebound.example"}).status_code == 400
        assert httpx.delete(f"{url}/api/studies/{studies[0]['study_id']}",
                            headers={"host": "rebound.example:80"}).status_code == 400  # DNS rebinding deletes nothing
        assert httpx.get(f"{url}/api/studies").json()["study_summaries"] != []
        metric = httpx.get(f"{url}/api/studies/{studies[0]['study_id']}").json()["objective_names"]
        assert metric == ["val_accuracy"]  # not "Objective 0"
    finally:
        server.send_signal(signal.SIGINT)
        _, rest = server.communicate(timeout=60)
    assert "tensorflow" not in said + rest  # -X importtime lists every module imported: TensorFlow is not


def test_a_thread_that_loses_the_database_leaves_the_one_line_to_the_study(monkeypatch):
    """Optuna's heartbeat thread meets a stopped database too; its traceback must not precede the line."""
    import threading

    from sqlalchemy.exc import OperationalError

    from cnnclf.errors import RunError
    from cnnclf.tools.study import database_errors

    printed = []  # what Python's own hook would print, in turn
    monkeypatch.setattr(threading, "excepthook", lambda args: printed.append(args.exc_type))

    def lost():
        raise RuntimeError("commit failed") from OperationalError("SELECT", {}, ConnectionRefusedError())

    def run(target):
        thread = threading.Thread(target=target)
        thread.start(), thread.join()

    with pytest.raises(RunError, match="stopped answering"), database_errors("postgresql://u:pw@127.0.0.1/db"):
        run(lost)
        raise OperationalError("SELECT", {}, ConnectionRefusedError("refused"))
    with database_errors("sqlite:///x.db"):
        run(lambda: 1 / 0)  # any other thread's failure is still printed
    run(lost)  # and outside a study, Python's hook again
    assert printed == [ZeroDivisionError, RuntimeError]

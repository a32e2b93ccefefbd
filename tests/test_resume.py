"""Interruptions: Ctrl-C and SIGTERM mark the run and keep its state; resume reproduces the
uninterrupted run; a NaN loss fails the run and keeps the last good model; same seed, same metrics."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnclf.atomic import write_json
from cnnclf.errors import Interrupted
from cnnclf.rundir.directory import RunDir
from cnnclf.signals import deferred_interrupts, interrupts_raised
from helpers import cnnclf, history, resumable_config, signal_after_epochs, start_training, tiny_config, write_config


@pytest.mark.slow
def test_sigterm_then_resume_matches_an_uninterrupted_run(tmp_path, uninterrupted):
    straight_run = uninterrupted
    assert not (straight_run / "plots").exists() and not (straight_run / "report.html").exists()  # plots: false

    process = start_training(resumable_config(tmp_path / "cut"))
    run = signal_after_epochs(process, tmp_path / "cut" / "runs", 2, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1] == (f"Error: stopped by SIGTERM after 2 finished epochs; "
                                               f"continue with: cnnclf resume {run}")
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "interrupted" and status["epochs_done"] == 2
    assert (run / "backup" / "epoch-0002" / "weights.weights.h5").exists() and len(history(run)) == 2

    before = json.loads((run / "env.json").read_text())
    with pytest.MonkeyPatch.context() as another_cpu:
        another_cpu.setattr("cnnclf.device.cpu_class", lambda flags=None: "other")
        resumed = cnnclf("resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert "epoch 3/4" in resumed.stderr and "epoch 1/4" not in resumed.stderr
    env = json.loads((run / "env.json").read_text())  # what the resume ran on, the first session's kept
    assert env["device"]["cpu_class"] == "other" and env["data"] == before["data"]
    assert [s["cpu_class"] for s in env["sessions"]] == [before["device"]["cpu_class"], "other"]
    assert env["sessions"][1]["mixed_precision"] == env["compute"]["mixed_precision"]
    assert "early stopping: no improvement in val_accuracy for 2 epochs after epoch 1" in resumed.stderr
    assert history(run) == history(straight_run)
    assert json.loads((run / "metrics.json").read_text()) == json.loads((straight_run / "metrics.json").read_text())
    assert json.loads((run / "run.json").read_text())["status"] == "completed" and not (run / "backup").exists()
    again = cnnclf("resume", run)
    assert again.exit_code == 2 and "this run completed; nothing to resume" in again.stderr


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted(tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    process = start_training(resumable_config(tmp_path), temp)
    run = signal_after_epochs(process, tmp_path / "runs", 1, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert not list(temp.iterdir())  # autograph's generated modules went with the process's scratch folder
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("Error: stopped by SIGINT after ")
    assert "Traceback" not in stderr
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_nan_loss_fails_the_run_and_keeps_the_last_good_model(tmp_path, monkeypatch):
    """Fault injection: the classifier's kernel turns to NaN when epoch 2 begins. Nothing after it
    can turn NaN into a number (max-pooling and oneDNN's fused ReLU do, on some CPUs), so the loss
    is NaN on every CPU."""
    from cnnclf.training import callbacks

    class PoisonedAtEpoch2(callbacks.StopOnNaN):
        def on_epoch_begin(self, epoch, logs=None):
            super().on_epoch_begin(epoch, logs)
            if epoch == 1:
                kernel = self.model.get_layer("classifier").kernel
                kernel.assign(np.full(kernel.shape, np.nan, np.float32))

    monkeypatch.setattr("cnnclf.training.train.StopOnNaN", PoisonedAtEpoch2)
    config = write_config(tmp_path / "nan.yaml", tiny_config(tmp_path / "runs", epochs=3, steps_per_execution=1))
    result = cnnclf("train", config)
    run = next((tmp_path / "runs").iterdir())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: the loss became nan in epoch 2, batch 1; lower train.optimizer.learning_rate or check "
        f"data.normalize (run {run} is marked failed)")
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "failed" and status["error"].startswith("the loss became nan in epoch 2, batch 1")
    assert (run / "model.keras").exists() and len(history(run)) == 1  # epoch 1's model, nothing of epoch 2
    assert [p.name for p in (run / "backup").glob("epoch-*")] == ["epoch-0001"]


def test_nan_weights_with_a_finite_loss_fail_the_run_at_the_epochs_end(tmp_path, monkeypatch):
    """Fault injection: the convolution's kernel turns to NaN as epoch 2 ends, after its last loss.
    Whatever max-pooling makes of it, the weights are checked before the epoch is saved."""
    from cnnclf.training import callbacks

    class PoisonedAsEpoch2Ends(callbacks.StopOnNaN):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                kernel = self.model.layers[1].kernel
                kernel.assign(np.full(kernel.shape, np.nan, np.float32))
            super().on_epoch_end(epoch, logs)

    monkeypatch.setattr("cnnclf.training.train.StopOnNaN", PoisonedAsEpoch2Ends)
    config = write_config(tmp_path / "nan.yaml", tiny_config(tmp_path / "runs", epochs=3))
    result = cnnclf("train", config)
    run = next((tmp_path / "runs").iterdir())
    assert result.exit_code == 1
    assert re.fullmatch(  # Keras numbers layer names per process: conv2d, conv2d_1, ...
        rf"Error: the weights became non-finite in epoch 2 \(cnnclf/conv2d(_\d+)?/kernel\); lower "
        rf"train\.optimizer\.learning_rate or check data\.normalize \(run {re.escape(str(run))} is marked failed\)",
        result.stderr.splitlines()[-1])
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert len(history(run)) == 1 and [p.name for p in (run / "backup").glob("epoch-*")] == ["epoch-0001"]


def test_a_signal_as_an_epoch_ends_leaves_history_and_state_agreeing(tmp_path, monkeypatch):
    """Fault injection: SIGTERM just after the other callbacks' end of epoch 2, before the state is
    saved. The epoch counts as unfinished, so history.csv must not show it either."""
    from cnnclf.training import callbacks

    ended = callbacks.EpochLines.on_epoch_end

    def signalled(self, epoch, logs=None):
        ended(self, epoch, logs)
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(callbacks.EpochLines, "on_epoch_end", signalled)
    result = cnnclf("train", resumable_config(tmp_path))
    run = next((tmp_path / "runs").iterdir())
    assert result.exit_code == 128 + signal.SIGTERM
    assert result.stderr.splitlines()[-1].startswith("Error: stopped by SIGTERM after 1 finished epoch;")
    assert json.loads((run / "run.json").read_text())["epochs_done"] == 1 and len(history(run)) == 1


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    config = write_config(tmp_path / "det.yaml", tiny_config(tmp_path / "runs", deterministic=True))
    first, second = cnnclf("train", config), cnnclf("train", config)
    runs = [Path(r.stdout.split()[-1]) for r in (first, second)]
    assert runs[0] != runs[1]
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    assert metrics[0] == metrics[1] and history(runs[0]) == history(runs[1])


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        write_json(target, {"v": object()})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_signals_wait_for_state_being_saved(tmp_path):
    saved = []
    with pytest.raises(Interrupted, match="stopped by SIGINT"):
        with interrupts_raised():
            with deferred_interrupts():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                saved.append("complete")
    assert saved == ["complete"]


def test_resume_refuses_a_run_that_is_still_training(tmp_path, monkeypatch):
    """A run is training while a process holds its lock, whatever run.json says; a PID in run.json that
    now belongs to another process (here: 1) does not block a resume. The refusal comes before
    TensorFlow starts."""
    run = RunDir.create(tmp_path, "live")
    run.config.write_text("model: {preset: s002_mnist}\n")
    run.set_status("running")
    state = run.status()
    state["pid"] = 1
    write_json(run.path / "run.json", state)
    assert not run.is_alive()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from cnnclf.rundir.directory import RunDir\n"
                               "with RunDir(sys.argv[1]).locked():\n print('locked', flush=True); time.sleep(60)",
                               str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run.is_alive()
        with monkeypatch.context() as patched:
            patched.setattr("cnnclf.cli.training.start_tensorflow", lambda *a, **k: pytest.fail("TensorFlow started"))
            result = cnnclf("resume", run.path)
        assert result.exit_code == 2
        assert result.stderr.startswith(f"Error: {run.path}: this run is being trained by process {holder.pid} (")
        assert result.stderr.strip().endswith("wait for it or stop it first")
    finally:
        holder.kill()
        holder.wait()
    assert not run.is_alive()  # the lock died with its process
    unblocked = cnnclf("resume", run.path)
    assert "being trained" not in unblocked.stderr


@pytest.mark.slow
def test_a_resumed_run_reports_completed_and_follows_its_epochs(tmp_path):
    """run.json's epochs_done follows each epoch (`cnnclf runs` showed 0 until the end); report.html as
    resume writes it reads completed with every epoch (it said running, 14 of 40)."""
    import shutil

    config = tiny_config(tmp_path / "runs", epochs=3, deterministic=True)
    config["output"]["plots"] = True
    process = start_training(write_config(tmp_path / "r.yaml", config))
    run = signal_after_epochs(process, tmp_path / "runs", 1, signal.SIGTERM)
    process.communicate(timeout=120)
    assert json.loads((run / "run.json").read_text())["epochs_done"] >= 1
    resumed = cnnclf("resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "completed" and status["epochs_done"] == 3
    if shutil.which("chromium"):
        from test_tools import facts, rendered

        dom = rendered(run / "report.html", tmp_path)
        assert "<p class=\"status completed\">completed</p>" in dom and facts(dom)["epochs"] == "3 of 3"
    else:
        page = (run / "report.html").read_text()
        assert "<p class='status completed'>completed</p>" in page and "<td class='n'>3 of 3</td>" in page

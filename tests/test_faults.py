"""Faults at the worst moments: kill -9 while an epoch's state is being saved, two resumes of one
run at once, and a disk that fills up. Each leaves a run that resumes to the same result as an
uninterrupted one, or a clear refusal; none leaves a dead run shown as running."""

import errno
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import cnnclf, history, photos, resumable_config, signal_after_epochs, start_training, write_config

pytestmark = pytest.mark.slow

# Python run as `cnnclf train CONFIG`, with one fault planted: kill -9 at a chosen instant of epoch 2's save.
FAULTS = {
    # the weights are saved in the new state folder, which is not yet renamed into place
    "before-rename": """
import os, signal
real = os.rename
def rename(src, dst):
    if str(dst).endswith("epoch-0002"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.rename = rename
""",
    # half of the weights file is written
    "mid-weights": """
import os, signal, keras
real = keras.Model.save_weights
def save_weights(self, filepath, *args, **kwargs):
    real(self, filepath, *args, **kwargs)
    if ".partial-0002" in str(filepath):
        data = open(filepath, "rb").read()
        open(filepath, "wb").write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
keras.Model.save_weights = save_weights
""",
    # the state is in place, history.csv and model.keras not yet published from it
    "before-publish": """
import os, signal
from cnnclf.training import epoch_backup
real = epoch_backup.TrainingState._publish
def publish(self, saved):
    if saved.name == "epoch-0002":
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, saved)
epoch_backup.TrainingState._publish = publish
""",
}


@pytest.mark.parametrize("fault", FAULTS)
def test_kill_9_while_saving_then_resume_matches_an_uninterrupted_run(tmp_path, uninterrupted, fault):
    config = resumable_config(tmp_path)
    code = FAULTS[fault] + "\nimport sys\nfrom cnnclf.cli import main\nsys.argv = ['cnnclf', 'train', sys.argv[1]]\nmain()\n"
    killed = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = next((tmp_path / "runs").iterdir())
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    listed = json.loads(cnnclf("runs", tmp_path / "runs", "--json").stdout)
    assert listed[0]["status"] == "stopped (no process; resume it)"  # not shown as running
    resumed = cnnclf("resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert [row["epoch"] for row in history(run)] == ["1", "2", "3"]  # early stopping
    assert history(run) == history(uninterrupted)
    assert json.loads((run / "metrics.json").read_text()) == json.loads((uninterrupted / "metrics.json").read_text())


def test_two_resumes_at_once_one_trains_the_other_is_refused(tmp_path):
    process = start_training(resumable_config(tmp_path))
    # SIGKILL, which lands at once: a SIGTERM that is handled after the tiny run's last epoch leaves a
    # completed run, with nothing to resume (seen on the faster CPU)
    run = signal_after_epochs(process, tmp_path / "runs", 1, signal.SIGKILL)
    process.communicate(timeout=120)
    resumes = [subprocess.Popen([sys.executable, "-m", "cnnclf", "resume", str(run)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((p.wait(timeout=300), p.stderr.read()) for p in resumes)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    refused = outcomes[1][1].strip().splitlines()[-1]
    assert refused.startswith(f"Error: {run}: this run is being trained by process ") and "Traceback" not in refused
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert [row["epoch"] for row in history(run)] == ["1", "2", "3"]  # early stopping


def test_a_full_disk_is_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    """Fault injection: the disk fills while epoch 2's state is saved (any machine)."""
    from cnnclf.training import epoch_backup

    real = epoch_backup.TrainingState._commit

    def commit(self, name, saved):
        if name == "epoch-0002":
            raise OSError(errno.ENOSPC, "No space left on device", str(self.run.backup / ".partial-0002"))
        return real(self, name, saved)

    monkeypatch.setattr(epoch_backup.TrainingState, "_commit", commit)
    result = cnnclf("train", resumable_config(tmp_path))
    run = next((tmp_path / "runs").iterdir())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (f"Error: disk full writing {run}/backup/.partial-0002; free some "
                                              f"space, then `cnnclf resume {run}`")
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    monkeypatch.setattr(epoch_backup.TrainingState, "_commit", real)
    resumed = cnnclf("resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert [row["epoch"] for row in history(run)] == ["1", "2", "3"]  # early stopping


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MB tmpfs, where the machine lets this process mount one (root, not in a locked-down container)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs",
                                                         str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_really_full_disk_is_one_line_and_the_run_resumes(tmp_path, small_disk):
    config = resumable_config(tmp_path)
    result = subprocess.run([sys.executable, "-m", "cnnclf", "train", str(config), "--runs-dir",
                             str(small_disk / "runs")], capture_output=True, text=True, timeout=300)
    run = next((small_disk / "runs").iterdir())
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: disk full writing ") and last.endswith(f"then `cnnclf resume {run}`"), last
    listed = json.loads(cnnclf("runs", small_disk / "runs", "--json").stdout)
    assert "running" != listed[0]["status"]
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = cnnclf("resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert [row["epoch"] for row in history(run)] == ["1", "2", "3"]  # early stopping


def test_a_streamed_file_gone_during_training_is_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    """The file is deleted after the data was checked, before the epoch that reads it."""
    from cnnclf.training import train

    root = photos(tmp_path / "photos", counts={"cat": 8, "dog": 8})
    victim = root / "dog" / "001.jpg"
    saved = victim.read_bytes()
    prepare = train.prepare
    monkeypatch.setattr(train, "prepare", lambda *args: victim.unlink() or prepare(*args))
    config = write_config(tmp_path / "stream.yaml", {
        "data": {"dataset": "custom", "source": "folder", "path": str(root), "image_shape": [16, 16, 3],
                 "storage": "stream", "validation": "test"},
        "model": {"layers": [{"Flatten": {}}]}, "train": {"epochs": 1, "batch_size": 4},
        "output": {"runs_dir": str(tmp_path / "runs"), "plots": False}})
    result = cnnclf("train", config)
    assert result.exit_code == 2, result.stderr
    run = next((tmp_path / "runs").iterdir())
    assert result.stderr.splitlines()[-1].startswith(f"Error: {victim}: not readable during training (")
    assert result.stderr.splitlines()[-1].endswith(
        f"though it was when the data was checked; restore the file, then resume the run (run {run} is marked failed)")
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "failed" and "\n" not in status["error"] and "Traceback" not in status["error"]
    monkeypatch.undo()
    victim.write_bytes(saved)
    resumed = cnnclf("resume", run)
    assert resumed.exit_code == 0, resumed.stderr


KILLED_EXPORT = """
import os, signal, sys, keras
archive = type(keras.export.ExportArchive())  # ExportArchive() makes one of its backend's class
real = archive.write_out
def write_out(self, filepath, *args, **kwargs):
    real(self, filepath, *args, **kwargs)
    for name in os.listdir(os.path.join(filepath, "variables")):
        os.remove(os.path.join(filepath, "variables", name))  # half-way: variables not yet written
    os.kill(os.getpid(), signal.SIGKILL)
archive.write_out = write_out
from cnnclf.cli import main
sys.argv = ['cnnclf', 'export', sys.argv[1], '--format', 'savedmodel'] + sys.argv[2:]
main()
"""


def test_exports_lose_nothing_and_leave_nothing_half_written(trained_run, tmp_path):
    first = cnnclf("export", trained_run, "--format", "savedmodel")
    assert first.exit_code == 0, first.stderr
    place = trained_run / "export" / "model.savedmodel"
    before = sorted(p.relative_to(place) for p in place.rglob("*"))
    killed = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(trained_run)], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p.relative_to(place) for p in place.rglob("*")) == before  # the earlier export, whole
    out = tmp_path / "m.savedmodel"
    killed = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(trained_run), "--out", str(out)],
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL and not out.exists()  # a retry is not refused as "already exists"
    retried = cnnclf("export", trained_run, "--format", "savedmodel", "--out", out)
    assert retried.exit_code == 0 and (out / "variables").is_dir() and not list(tmp_path.glob(".m.savedmodel.*"))

    mine = tmp_path / "m.tflite"
    mine.with_name("m.tflite.json").write_text("my notes")
    taken = cnnclf("export", trained_run, "--format", "tflite", "--out", mine)
    assert taken.exit_code == 2 and taken.stderr == f"Error: {mine}.json: already exists; choose another --out or remove it\n"
    assert mine.with_name("m.tflite.json").read_text() == "my notes" and not mine.exists()

    (trained_run / "model.keras").write_bytes(b"damaged")  # a re-export whose model does not load
    failed = cnnclf("export", trained_run, "--format", "savedmodel")
    assert failed.exit_code == 2 and sorted(p.relative_to(place) for p in place.rglob("*")) == before
    assert (place.parent / "model.savedmodel.json").exists()


def cache_config(tmp_path, root, cache, side=16) -> Path:
    return write_config(tmp_path / "cached.yaml", {
        "data": {"dataset": "custom", "source": "folder", "path": str(root), "image_shape": [side, side, 3],
                 "storage": "stream", "cache": str(cache), "validation": "test"},
        "model": {"layers": [{"Flatten": {}}]}, "train": {"epochs": 1, "batch_size": 4, "mixed_precision": "float32"},
        "output": {"runs_dir": str(tmp_path / "runs"), "plots": False}})


def test_a_cache_filling_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, small_disk):
    """Decoded pixels of 40 images at 128x128 take 1.9 MB: more than the 1.5 MB disk holds."""
    root = photos(tmp_path / "photos", counts={"cat": 20, "dog": 20})
    result = subprocess.run([sys.executable, "-m", "cnnclf", "train",
                             str(cache_config(tmp_path, root, small_disk / "cache", side=128))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith(
        f"Error: disk full writing {small_disk}/cache/"), result.stderr
    assert not list((small_disk / "cache").glob(".*")) and not any((tmp_path / "runs").iterdir()), result.stderr


def test_a_damaged_or_abandoned_cache_is_built_again(tmp_path):
    from cnnclf.config import load_config
    from cnnclf.data.dataset import load

    root = photos(tmp_path / "photos", counts={"cat": 6, "dog": 6})
    config = load_config(cache_config(tmp_path, root, tmp_path / "cache"))
    first = load(config.data, config.seed).splits.test
    meta = next((tmp_path / "cache").glob("*.json"))
    meta.write_text("{garbage")  # damaged
    abandoned = meta.with_name(f".{meta.stem}.99999999.pixels")  # a killed process's half-filled entry
    abandoned.write_bytes(b"half")
    again = load(config.data, config.seed).splits.test
    np.testing.assert_array_equal(again.gather(np.arange(len(again))), first.gather(np.arange(len(first))))
    assert not abandoned.exists() and json.loads(meta.read_text())["positions"]


def test_a_failure_before_the_first_epoch_leaves_a_run_marked_failed(tmp_path, monkeypatch):
    from cnnclf.errors import DataError
    from cnnclf.training import train

    def unreadable(run, data):
        raise DataError("a sampled training image cannot be read")

    monkeypatch.setattr(train, "write_data_samples", unreadable)
    result = cnnclf("train", resumable_config(tmp_path))
    run = next((tmp_path / "runs").iterdir())
    assert result.exit_code == 2 and result.stderr.splitlines()[-1] == (
        f"Error: a sampled training image cannot be read (run {run} is marked failed)")
    listed = json.loads(cnnclf("runs", tmp_path / "runs", "--json").stdout)
    assert [row["status"] for row in listed] == ["failed"]
    monkeypatch.undo()
    assert cnnclf("resume", run).exit_code == 0


def test_sigterm_during_an_export_leaves_no_partial_export(trained_run, monkeypatch):
    import os

    from cnnclf.inference import export as exporting

    real = exporting._write

    def terminated_midway(predictor, fmt, path):
        real(predictor, fmt, path)  # the partial export is whole on disk, not yet renamed into place
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(exporting, "_write", terminated_midway)
    result = cnnclf("export", trained_run, "--format", "savedmodel")
    assert result.exit_code == 128 + signal.SIGTERM and result.stderr == "Error: stopped by SIGTERM\n"
    assert not list((trained_run / "export").iterdir())  # no hidden .partial folder left behind


def hold_lock(run: Path) -> subprocess.Popen:
    """Another process that holds the run's lock, as `cnnclf train` does while it trains."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from cnnclf.rundir.directory import RunDir\n"
                               "with RunDir(sys.argv[1]).locked():\n print('locked', flush=True); time.sleep(120)",
                               str(run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_evaluate_and_export_of_a_run_still_training_say_so(trained_run, tmp_path):
    status = json.loads((trained_run / "run.json").read_text())
    (trained_run / "run.json").write_text(json.dumps({**status, "status": "running", "epochs_done": 2}))
    holder = hold_lock(trained_run)
    try:
        said = (f"warning: {trained_run.name} is still training (2 epochs done): its model is its best epoch so far, "
                f"2; {{}} that, not the final model")
        evaluated = cnnclf("evaluate", trained_run)
        assert evaluated.exit_code == 0 and said.format("evaluating") in evaluated.stderr
        exported = cnnclf("export", trained_run, "--format", "tflite", "--out", tmp_path / "m.tflite")
        assert exported.exit_code == 0 and said.format("exporting") in exported.stderr
        described = json.loads((tmp_path / "m.tflite.json").read_text())
        assert (described["run"], described["epoch"], described["run_status"]) == (trained_run.name, 2, "running")
        (trained_run / "model.keras").unlink()
        early = cnnclf("evaluate", trained_run)
        assert early.exit_code == 2 and early.stderr == (
            f"Error: {trained_run}: this run has no model yet (status running); it is training now: try again "
            f"once its first epoch is done\n")  # not `cnnclf resume`, which the lock would refuse
    finally:
        holder.kill()
        holder.wait()

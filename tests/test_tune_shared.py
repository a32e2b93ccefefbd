"""One study on a real PostgreSQL server (a throwaway cluster in a temporary folder, on 127.0.0.1):
two `cnnclf tune` workers, one killed with kill -9 mid-trial, whose trial the other takes up;
the password nowhere in what cnnclf writes; refusals in one line; the dashboard in headless Chromium."""

import csv
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from helpers import cnnclf, tiny_config, write_config

pytestmark = pytest.mark.slow  # a database server, several training processes

PASSWORD = "s3cret-Pa55"  # noqa: S105 - the test's own throwaway cluster
SPACE = {"train.optimizer.learning_rate": {"log_uniform": [1.0e-3, 1.0e-2]}, "train.batch_size": {"int": [16, 32]}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres(postgres_server):
    return postgres_server[0]


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL cluster of our own on a free port, a database `studies` with password login; as
    root, run as the postgres user (initdb refuses root). Its URL, and pg_ctl's command line (to stop
    and start it)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it)")
    bin_dir = Path(found[-1]).parent
    tmp = Path(tempfile.mkdtemp(prefix="cnnclf-pg-"))  # not under pytest's folder, which only root may enter
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    (tmp / "password").write_text(PASSWORD)
    if as_user:
        shutil.chown(tmp, "postgres")
        shutil.chown(tmp / "password", "postgres")
    port = free_port()
    subprocess.run([*as_user, bin_dir / "initdb", "-D", tmp / "data", "-U", "cnnclf", "--auth=scram-sha-256",
                    f"--pwfile={tmp / 'password'}"], check=True, capture_output=True)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", tmp / "data", "-l", tmp / "log", "-w", "-o",
                    f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    subprocess.run([bin_dir / "psql" if (bin_dir / "psql").exists() else "psql", "-h", "127.0.0.1",
                    "-p", str(port), "-U", "cnnclf", "-d", "postgres", "-c", "CREATE DATABASE studies"],
                   check=True, capture_output=True, env=env)
    pg_ctl = [*as_user, bin_dir / "pg_ctl", "-D", tmp / "data", "-l", tmp / "log", "-w", "-o",
              f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1"]
    yield f"postgresql://cnnclf@127.0.0.1:{port}/studies", pg_ctl
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", tmp / "data", "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)


def study_config(tmp: Path, name: str, epochs=3, **tune) -> Path:
    config = tiny_config(tmp / "runs", epochs=epochs)
    config["data"].update(limit_train=400, limit_test=100)
    return write_config(tmp / f"{name}.yaml", {**config, "name": name,
                                                "tune": {"space": SPACE, "heartbeat_seconds": 1, **tune}})


def summary(runs: Path, name: str, file: str) -> Path:
    """A study's trials.csv or best.yaml: in runs/tune-<name>-<8 hex digits of its storage>/."""
    (folder,) = runs.glob(f"tune-{name}-????????")
    return folder / file


def start_tune(config: Path, storage: str, runs: Path, trials: int, password=PASSWORD) -> subprocess.Popen:
    env = {**os.environ, "PGPASSWORD": password}
    return subprocess.Popen([sys.executable, "-m", "cnnclf", "tune", str(config), "--storage", storage, "--trials",
                             str(trials), "--set", f"output.runs_dir={runs}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_two_workers_share_one_study_and_take_up_a_killed_workers_trial(postgres, tmp_path):
    config = study_config(tmp_path, "shared")
    first = start_tune(config, postgres, tmp_path / "a", trials=5)
    deadline = time.time() + 120
    while not list((tmp_path / "a").glob("*/backup/epoch-0001")) and time.time() < deadline:
        time.sleep(0.05)
    second = start_tune(config, postgres, tmp_path / "b", trials=5)
    first.send_signal(signal.SIGKILL)  # mid-trial: an epoch of its first trial saved, the rest not
    first.communicate()
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    rows = list(csv.DictReader(summary(tmp_path / "b", "shared", "trials.csv").open()))
    numbers = [int(r["trial"]) for r in rows]
    assert numbers == sorted(set(numbers))  # every trial number once
    killed = [r for r in rows if r["run"].startswith(str(tmp_path / "a")) and r["state"] == "FAIL"]
    assert killed, rows  # failed by its heartbeat...
    taken_up = [r for r in rows if r["run"] == killed[0]["run"] and r["state"] == "COMPLETE"]
    assert taken_up and f"resuming {killed[0]['run']}" in err  # ...and its run resumed by the other worker
    completed = [r["run"] for r in rows if r["state"] == "COMPLETE"]
    assert len(completed) == len(set(completed)) == 5  # no run directory trained by two trials
    assert all(json.loads((Path(r) / "run.json").read_text())["status"] == "completed" for r in completed)
    written = [p for folder in ("a", "b") for p in (tmp_path / folder).rglob("*") if p.is_file()]
    assert all(PASSWORD.encode() not in p.read_bytes() for p in written) and PASSWORD not in out + err
    best = summary(tmp_path / "b", "shared", "best.yaml")
    assert yaml.safe_load(best.read_text())["tune"] is None
    assert cnnclf("train", best, "--set", "train.epochs=1", "--runs-dir", tmp_path / "again").exit_code == 0


def test_pruning_stops_unpromising_trials_and_says_what_it_saved(postgres, tmp_path):
    config = study_config(tmp_path, "pruned", epochs=3, pruner="median")
    process = start_tune(config, postgres, tmp_path / "runs", trials=6)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    rows = list(csv.DictReader(summary(tmp_path / "runs", "pruned", "trials.csv").open()))
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    saved = sum(int(r["epochs_saved"]) for r in rows)
    assert f"pruning saved {saved} of" in out
    for row in pruned:
        assert json.loads((Path(row["run"]) / "run.json").read_text())["status"] == "pruned"
        assert int(row["epochs"]) + int(row["epochs_saved"]) == 3


@pytest.mark.parametrize("storage, password, expected", [
    ("postgresql://cnnclf@127.0.0.1:{closed}/studies", PASSWORD, "Error: tune.storage postgresql://cnnclf@127.0.0.1:{closed}/studies: cannot open the study there ("),
    ("{url}", "wrong", "Error: tune.storage {url}: cannot open the study there ("),
    ("postgresql://cnnclf:{password}@127.0.0.1:{closed}/studies", PASSWORD, "Error: tune.storage postgresql://cnnclf:***@127.0.0.1:{closed}/studies: cannot open"),
])
def test_a_storage_unreachable_or_refusing_is_one_line_without_the_password(postgres, tmp_path, storage, password,
                                                                            expected):
    closed = free_port()
    fill = {"closed": closed, "url": postgres, "password": PASSWORD}
    process = start_tune(study_config(tmp_path, "refused"), storage.format(**fill), tmp_path / "runs", 1, password)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and err.strip().startswith(expected.format(**fill)), err
    assert err.count("\n") == 1 and PASSWORD not in err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_the_dashboard_shows_the_study_in_headless_chromium(postgres, tmp_path):
    config = study_config(tmp_path, "watched", epochs=1)
    done = start_tune(config, postgres, tmp_path / "runs", trials=1)
    assert done.wait(timeout=300) == 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cnnclf", "tune", str(config), "--storage", postgres,
                               "--dashboard", "--port", str(port)], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PGPASSWORD": PASSWORD},
                              # Ctrl-C as a terminal sends it, even where the suite runs in the background
                              # (`cmd &` in a script starts it with SIGINT ignored, and so its children)
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = server.stderr.readline()
        while "dashboard of" not in line and line:
            line = server.stderr.readline()
        assert f"on http://127.0.0.1:{port}/dashboard" in line and PASSWORD not in line
        time.sleep(1)
        dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                              "--no-first-run", "--disable-background-networking", "--disable-component-update",
                              "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000",
                              "--dump-dom", f"http://127.0.0.1:{port}/dashboard"],
                             capture_output=True, text=True, timeout=120).stdout
        assert "watched" in dom  # the study, listed by the page's own JavaScript from the server's API
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def test_a_password_in_the_url_is_written_nowhere_and_a_database_gone_mid_trial_is_one_line(postgres_server, tmp_path):
    url, pg_ctl = postgres_server
    with_password = url.replace("cnnclf@", f"cnnclf:{PASSWORD}@")
    config = study_config(tmp_path, "stopped", epochs=30)
    process = start_tune(config, with_password, tmp_path / "runs", trials=2, password="")
    deadline = time.time() + 120
    while not list((tmp_path / "runs").glob("*/backup/epoch-0001")) and time.time() < deadline:
        time.sleep(0.05)
    subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=True, capture_output=True)
    try:
        out, err = process.communicate(timeout=300)
    finally:
        subprocess.run([*pg_ctl, "start"], check=True, capture_output=True)
    assert process.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"Error: the study's database {url.replace('cnnclf@', 'cnnclf:***@')} stopped answering (")
    assert last.endswith("once it is back, run the same command again to continue the study")
    assert "Traceback" not in err and PASSWORD not in out + err
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name == "env.json" for p in written) and any(p.name == "run.lock" for p in written)
    assert all(PASSWORD.encode() not in p.read_bytes() for p in written)

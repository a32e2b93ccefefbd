"""tf.distribute on one machine: mirrored over two logical CPUs, and two workers on localhost
ports; both must match a single-process run of the same global batch."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cnnclf, tiny_config, write_config

pytestmark = pytest.mark.slow  # trains for real, in subprocesses and clusters

GLOBAL_BATCH = 32


def history(run: Path) -> list[dict]:
    return [{k: float(v) for k, v in row.items() if k not in ("seconds", "time")}
            for row in csv.DictReader((run / "history.csv").open())]


def assert_same_training(run: Path, reference: Path, tolerance: float) -> None:
    for got, want in zip(history(run), history(reference), strict=True):
        assert got == pytest.approx(want, abs=tolerance)
    metrics = [json.loads((r / "metrics.json").read_text())["test_accuracy"] for r in (run, reference)]
    assert metrics[0] == pytest.approx(metrics[1], abs=tolerance)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    result = cnnclf("train", write_config(tmp / "c.yaml", tiny_config(tmp / "runs", batch_size=GLOBAL_BATCH)))
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.split()[-1])


def cnnclf_process(config: Path, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnclf", "train", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_mirrored_over_two_logical_cpus(tmp_path, single_process):
    config = write_config(tmp_path / "m.yaml", tiny_config(tmp_path / "runs", batch_size=GLOBAL_BATCH // 2,
                                                           batch_size_per_replica=True, distribute="mirrored",
                                                           cpu_replicas=2))
    process = cnnclf_process(config)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    run = Path(out.split()[-1])
    compute = json.loads((run / "env.json").read_text())["compute"]
    assert compute["replicas"] == 2 and compute["batch_size"] == GLOBAL_BATCH
    assert_same_training(run, single_process, tolerance=2e-3)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_write_one_run_directory(tmp_path, single_process):
    config = write_config(tmp_path / "w.yaml", tiny_config(tmp_path / "runs", batch_size=GLOBAL_BATCH,
                                                           distribute="multi_worker"))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [cnnclf_process(config, {"TF_CONFIG": json.dumps({"cluster": cluster,
                                                                "task": {"type": "worker", "index": i}})})
               for i in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    assert outputs[1][0] == "" and "this worker is done; the chief writes the run directory" in outputs[1][1]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and Path(outputs[0][0].split()[-1]) == runs[0]
    env = json.loads((runs[0] / "env.json").read_text())
    assert env["compute"]["replicas"] == 2 and env["compute"]["steps_per_execution"] == 1
    assert_same_training(runs[0], single_process, tolerance=2e-3)


def test_multi_worker_needs_tf_config(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = write_config(tmp_path / "w.yaml", tiny_config(tmp_path / "runs", distribute="multi_worker"))
    result = cnnclf("train", config)
    assert result.exit_code == 2
    assert result.stderr == ("Error: train.distribute: multi_worker needs the TF_CONFIG environment variable "
                             "(the cluster and this worker's task); see README, Distributed training\n")

"""One epoch of a seed preset on the full real datasets (skipped where ../shared/data is absent)."""

import json
from pathlib import Path

import numpy as np
import pytest

from cnnclf.data.csv_files import write_csv
from cnnclf.data.idx import read_idx
from helpers import SHARED_DATA, cnnclf, needs_shared_data, write_config

pytestmark = pytest.mark.slow  # trains for real, in subprocesses and clusters


def train_one_epoch(tmp_path, data, preset, batch_size):
    config = write_config(tmp_path / f"{preset}.yaml", {
        "data": {**data, "validation": "test"}, "model": {"preset": preset},
        "train": {"epochs": 1, "batch_size": batch_size}, "output": {"runs_dir": str(tmp_path / "runs"), "plots": False}})
    result = cnnclf("train", config)
    assert result.exit_code == 0, result.stderr
    return json.loads((Path(result.stdout.split()[-1]) / "metrics.json").read_text())


@needs_shared_data
def test_full_mnist_from_idx_one_epoch(tmp_path):
    metrics = train_one_epoch(tmp_path, {"dataset": "mnist", "source": "idx", "path": str(SHARED_DATA / "mnist")},
                              "s002_mnist", batch_size=128)
    assert metrics["test_images"] == 10_000 and metrics["test_accuracy"] > 0.97


@needs_shared_data
def test_full_fashion_mnist_from_kaggle_csv_one_epoch(tmp_path):
    for part, out in (("train", "fashion-mnist_train.csv"), ("t10k", "fashion-mnist_test.csv")):
        images = read_idx(SHARED_DATA / "fashion-mnist" / f"{part}-images-idx3-ubyte.gz", "images")
        labels = read_idx(SHARED_DATA / "fashion-mnist" / f"{part}-labels-idx1-ubyte.gz", "labels")
        write_csv(tmp_path / out, images, labels)
    assert (tmp_path / "fashion-mnist_train.csv").read_text()[:24] == "label,pixel1,pixel2,pixe"
    metrics = train_one_epoch(tmp_path, {"dataset": "fashion_mnist", "source": "csv",
                                         "path": str(tmp_path / "fashion-mnist_train.csv"),
                                         "test_path": str(tmp_path / "fashion-mnist_test.csv")},
                              "s003_fashion", batch_size=32)
    assert metrics["test_images"] == 10_000 and metrics["test_accuracy"] > 0.85
    assert np.isclose(sum(r["support"] for r in metrics["per_class"].values()), 10_000)

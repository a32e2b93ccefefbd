"""Helpers several test files share: configs and data of the error batteries, a PNG that only
claims a size, and training in a process of its own, interrupted at a chosen epoch."""

import csv
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from conftest import SAMPLE, png_bytes, tiny_config, write_config

LAYERS = [{"Flatten": {}}]


def config(tmp, data=None, model=None, train=None, text=None):
    """A config file in tmp; runs would go to tmp/runs."""
    path = tmp / "exp.yaml"
    if text is not None:
        path.write_text(text)
        return path
    return write_config(path, {"data": data or {"dataset": "mnist", "source": "idx", "path": str(SAMPLE)},
                               "model": model or {"layers": LAYERS}, "train": train or {"epochs": 1},
                               "output": {"runs_dir": str(tmp / "runs"), "plots": False}})


def npz(tmp, x_train, y_train, x_test=None, y_test=None, dataset="custom"):
    x_test = x_train if x_test is None else x_test
    y_test = y_train if y_test is None else y_test
    np.savez(tmp / "d.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return {"dataset": dataset, "source": "npz", "path": str(tmp / "d.npz")}


def folder(tmp, files):
    """files: {relative path: bytes}."""
    for name, data in files.items():
        path = tmp / "imgs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {"dataset": "custom", "source": "folder", "path": str(tmp / "imgs")}


GRAY = png_bytes(np.zeros((8, 8), np.uint8))
GRAY_10 = png_bytes(np.zeros((10, 10), np.uint8))


def two_classes(**extra):
    files = {f"{part}/{c}/{i}.png": GRAY for part in ("train", "test") for c in ("cat", "dog") for i in range(3)}
    files.update(extra)
    return files


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says width x height, with a tiny image body: enough to be judged by its size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# Everything resume must restore: dropout's random state, early stopping's wait and best, the
# checkpoint's best, the schedule's position, Adam's moments and lookahead's weights.
RESUMABLE = dict(epochs=4, deterministic=True, lr_schedule="cosine", warmup_epochs=0.5,
                 lookahead={"every_steps": 5, "decay": 0.9},
                 # an improvement of 1.0 in accuracy never comes: early stopping stops after epoch 3, unless
                 # a resume forgot its count of epochs without improvement
                 early_stopping={"monitor": "val_accuracy", "mode": "max", "patience": 2, "min_delta": 1.0})


def resumable_config(tmp, name="resumable"):
    tmp.mkdir(exist_ok=True)
    config = tiny_config(tmp / "runs", **RESUMABLE)
    config["model"]["layers"].insert(2, {"Dropout": {"rate": 0.3}})
    return write_config(tmp / f"{name}.yaml", {**config, "name": name})


def history(run: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "time")}
            for row in csv.DictReader((run / "history.csv").open())]


def start_training(config: Path, temp: Path | None = None) -> subprocess.Popen:
    """`cnnclf train CONFIG` in a process of its own (with TMPDIR `temp`, where given)."""
    env = {**os.environ, "TMPDIR": str(temp)} if temp else None
    return subprocess.Popen([sys.executable, "-m", "cnnclf", "train", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def signal_after_epochs(process, runs: Path, epochs: int, signum) -> Path:
    """Wait until the run has saved its state after `epochs` epochs, then send the signal."""
    deadline = time.time() + 120
    while time.time() < deadline:
        found = sorted(runs.glob("*/backup/epoch-*"))
        if found and int(found[-1].name.split("-")[1]) >= epochs:
            process.send_signal(signum)
            return found[-1].parents[1]
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"no epoch saved after 120 s: {process.communicate()}")

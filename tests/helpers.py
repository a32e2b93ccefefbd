"""What the tests share beside their fixtures (conftest.py): the paths, running the CLI in-process,
configs and data of every kind written to disk (tiny real data from the MNIST sample in data/,
a user's photos, backbones' weights), exports run, the error batteries' configs, a PNG that only
claims a size, and training in a process of its own, interrupted at a chosen epoch."""

import csv
import io
import os
import pickle
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "mnist-sample"
SHARED_DATA = ROOT.parent / "shared" / "data"


def cnnclf(*args):
    """Run the CLI in-process; the result has exit_code, stdout and stderr."""
    from cnnclf.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], obj={"started": time.time()})


def run_exported(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """The probabilities an exported model (savedmodel, tflite or onnx) gives for images `x`."""
    import tensorflow as tf

    if fmt == "savedmodel":
        loaded = tf.saved_model.load(str(path))  # referenced while it serves: its variables live in it
        return loaded.signatures["serving_default"](pixels=tf.constant(x))["probabilities"].numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path))
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    interpreter = tf.lite.Interpreter(model_path=str(path))
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False, width=10_000))  # line numbers never depend on a path's length
    return path


def write_cifar(folder: Path, x_train, y_train, x_test, y_test, names=("a", "b", "c", "d"), protocol=2):
    """The cifar-10-batches-py layout: pickled dicts with bytes keys, N x 3072 channel-first rows."""
    folder.mkdir()

    def dump(path, x, y):
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        path.write_bytes(pickle.dumps({b"data": rows, b"labels": [int(v) for v in y]}, protocol=protocol))

    half = len(x_train) // 2
    dump(folder / "data_batch_1", x_train[:half], y_train[:half])
    dump(folder / "data_batch_2", x_train[half:], y_train[half:])
    dump(folder / "test_batch", x_test, y_test)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in names]},
                                                       protocol=protocol))


def write_folder(folder: Path, x_train, y_train, x_test, y_test, names=None):
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (image, label) in enumerate(zip(x, y)):
            path = folder / part / (names[label] if names else str(label)) / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)


def png_bytes(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def tiny_config(runs_dir: Path, **train) -> dict:
    """A config that trains for real on 1,000 MNIST sample images in a few seconds; in float32, so
    that its numbers are the same whichever CPU runs the tests (auto is mixed_bfloat16 on AMX)."""
    return {
        "name": "tiny",
        "data": {"dataset": "mnist", "source": "idx", "path": str(SAMPLE), "limit_train": 1000, "limit_test": 200},
        "model": {"layers": [{"Conv2D": {"filters": 16, "kernel_size": 3, "activation": "relu"}},
                             {"MaxPooling2D": {"pool_size": 2}}, {"Flatten": {}}]},
        "train": {"epochs": 2, "batch_size": 16, "mixed_precision": "float32", **train},
        "output": {"runs_dir": str(runs_dir), "plots": False},  # drawn only where a test looks at them
    }


needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")

# --- a user's photos ---------------------------------------------------------------------------

COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "fox": (40, 40, 200)}
MODES = ("RGB", "L", "RGBA", "P")


def photo(colour, size, mode="RGB", seed=0) -> Image.Image:
    """A noisy picture with a square of the class's colour in the middle."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    pixels[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = colour
    image = Image.fromarray(pixels)
    return image.convert(mode) if mode != "RGB" else image


def photos(root: Path, counts=None, suffix=".jpg") -> Path:
    """photos/<class>/*: mixed sizes and colour modes, imbalanced (cat 3x fox by default)."""
    counts = counts or {"cat": 36, "dog": 24, "fox": 12}
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            size = [(40, 30), (32, 32), (24, 48), (64, 40)][i % 4]
            mode = MODES[i % 4] if suffix == ".png" else ("RGB", "L")[i % 2]
            photo(COLOURS[name], size, mode, seed=i).save(root / name / f"{i:03d}{suffix}")
    return root


# --- backbones ------------------------------------------------------------------------------------

SMALL = {"name": "MobileNetV3Small", "weights": None}


def backbone_config(tmp, root, backbone=None, augment=None, **train) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return write_config(tmp / "bb.yaml", {
        "data": {"dataset": "custom", "source": "folder", "path": str(root), "image_shape": [32, 32, 3],
                 "augment": augment or {}},
        "model": {"backbone": backbone or SMALL},
        "train": {"epochs": 2, "batch_size": 16, "optimizer": {"name": "adam", "learning_rate": 0.01},
                  "deterministic": True, **train},
        "output": {"runs_dir": str(tmp / "runs"), "plots": False}})


def weights_file(path: Path, name="MobileNetV3Small", seed=3) -> Path:
    """A backbone's weights as a file, made here: what a download would bring."""
    import keras

    keras.utils.set_random_seed(seed)
    getattr(keras.applications, name)(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    return path


FINE_TUNING = dict(epochs=1, fine_tune={"epochs": 1, "learning_rate": 1e-4, "unfreeze": 10},
                   augment={"flip": "horizontal", "zoom": 0.1})


# --- the batteries' configs, and training interrupted ----------------------------------------------

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

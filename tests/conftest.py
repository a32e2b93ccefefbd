"""Shared fixtures: tiny real data (from the MNIST sample in data/) written in every source
format, and a way to run the CLI in-process and read its stdout, stderr and exit code."""

import io
import logging
import pickle
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from cnnclf import progress, startup
from cnnclf.data.csv_files import write_csv
from cnnclf.data.idx import read_idx, write_idx

startup.start()  # the quiet TensorFlow import, once for the session
progress.SILENCE = 1e9  # no "still working" lines in the stderr that tests read whole

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "mnist-sample"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _cnnclf_log_reaches_caplog(caplog):
    """The CLI keeps its log from the root logger (where a library's basicConfig would print it again),
    where caplog listens: caplog's handler listens on the cnnclf logger itself, once."""
    logger = logging.getLogger("cnnclf")
    logger.propagate = False
    logger.setLevel(logging.INFO)  # as the CLI has it, whichever test runs first
    logger.addHandler(caplog.handler)
    yield
    logger.removeHandler(caplog.handler)


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


@pytest.fixture(scope="session")
def digits():
    """Real MNIST digits: 300 train and 100 test images, (N, 28, 28, 1) uint8, labels 0-9."""
    x_train = read_idx(SAMPLE / "train-images-idx3-ubyte.gz", "images")[:300, ..., None]
    y_train = read_idx(SAMPLE / "train-labels-idx1-ubyte.gz", "labels")[:300].astype(np.int64)
    x_test = read_idx(SAMPLE / "t10k-images-idx3-ubyte.gz", "images")[:100, ..., None]
    y_test = read_idx(SAMPLE / "t10k-labels-idx1-ubyte.gz", "labels")[:100].astype(np.int64)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def color():
    """32x32 RGB images (the CIFAR shape): a coloured square whose colour is the class (4 classes)."""
    rng = np.random.default_rng(0)

    def make(n):
        y = np.arange(n) % 4
        x = rng.integers(0, 40, (n, 32, 32, 3)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 8:24, 8:24, label % 3] = 200 + 10 * (label // 3)
        return x, y.astype(np.int64)

    return (*make(40), *make(20))


@pytest.fixture(scope="session")
def formats(tmp_path_factory, digits, color):
    """The same tiny datasets written as idx, csv, npz, cifar pickles, an image folder and a zip."""
    root = tmp_path_factory.mktemp("formats")
    x_train, y_train, x_test, y_test = digits
    (root / "idx").mkdir()
    for part, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        write_idx(root / "idx" / f"{part}-images-idx3-ubyte.gz", x[..., 0], "images")
        write_idx(root / "idx" / f"{part}-labels-idx1-ubyte.gz", y.astype(np.uint8), "labels")
    write_csv(root / "train.csv", x_train, y_train)
    write_csv(root / "test.csv", x_test, y_test)
    np.savez(root / "digits.npz", x_train=x_train[..., 0], y_train=y_train, x_test=x_test[..., 0], y_test=y_test)
    write_cifar(root / "cifar-10-batches-py", *color)
    write_folder(root / "folder", *digits)
    with zipfile.ZipFile(root / "folder.zip", "w") as archive:
        for path in sorted((root / "folder").rglob("*.png")):
            archive.write(path, "digits/" + str(path.relative_to(root / "folder")))
    return root


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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One completed training run of tiny_config, and what the CLI printed; do not modify it."""
    tmp = tmp_path_factory.mktemp("tiny")
    config = tiny_config(tmp / "runs")
    config["output"]["plots"] = True  # its plots and report are what several tests look at
    result = cnnclf("train", write_config(tmp / "tiny.yaml", config))
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1]), result


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory):
    """A run of helpers.resumable_config trained without interruption: what every resumed one must equal."""
    from helpers import resumable_config

    result = cnnclf("train", resumable_config(tmp_path_factory.mktemp("straight")))
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.split()[-1])


@pytest.fixture
def trained_run(tiny_run, tmp_path):
    """A copy of the tiny run that a test may change."""
    copy = tmp_path / tiny_run[0].name
    shutil.copytree(tiny_run[0], copy)
    return copy


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


@pytest.fixture(scope="session")
def pictures(tmp_path_factory):
    return photos(tmp_path_factory.mktemp("pictures") / "photos", counts={"cat": 24, "dog": 16, "fox": 8})


FINE_TUNING = dict(epochs=1, fine_tune={"epochs": 1, "learning_rate": 1e-4, "unfreeze": 10},
                   augment={"flip": "horizontal", "zoom": 0.1})


@pytest.fixture(scope="session")
def fine_tuned(tmp_path_factory, pictures):
    """A MobileNetV3Small from a weights file, frozen for an epoch, then its last 10 layers fine-tuned
    for one (batch norm in inference mode), with augmentation: its run, config and weights file."""
    tmp = tmp_path_factory.mktemp("fine-tuned")
    weights = weights_file(tmp / "given.weights.h5")
    config = backbone_config(tmp / "a", pictures, {**SMALL, "weights": str(weights)}, **FINE_TUNING)
    result = cnnclf("train", config)
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.split()[-1]), config, weights, result

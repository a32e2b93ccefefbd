"""The tests' fixtures: tiny real data (from the MNIST sample in data/) in every source format, a
trained run shared by the session, a user's photos, a fine-tuned backbone; and the log reaching
caplog. What the tests share besides fixtures is in helpers.py. TensorFlow is not started here:
the commands start it as they do for a user, and tests that need it first ask for `tensorflow`."""

import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnclf import progress
from cnnclf.data.csv_files import write_csv
from cnnclf.data.idx import read_idx, write_idx
from helpers import (
    FINE_TUNING,
    SAMPLE,
    SMALL,
    backbone_config,
    cnnclf,
    photos,
    tiny_config,
    weights_file,
    write_cifar,
    write_config,
    write_folder,
)

progress.SILENCE = 1e9  # no "still working" lines in the stderr that tests read whole


@pytest.fixture(scope="session")
def tensorflow():
    """TensorFlow, started quietly as the commands start it (for tests that use it before any command)."""
    from cnnclf import startup

    return startup.start()


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


@pytest.fixture(scope="session")
def pictures(tmp_path_factory):
    return photos(tmp_path_factory.mktemp("pictures") / "photos", counts={"cat": 24, "dog": 16, "fox": 8})


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

"""Every source reads the same tiny datasets to the same arrays; keras downloads are mocked."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cnnclf.config import DataConfig
from cnnclf.data.dataset import load
from cnnclf.data.images import load_images
from cnnclf.data.parts import InMemory
from cnnclf.data.split import split_arrays
from cnnclf.errors import DataError
from helpers import ROOT, cnnclf, write_cifar, write_folder


def data(**kwargs):
    return DataConfig(**kwargs)


@pytest.mark.parametrize("source, path, test_path", [
    ("idx", "idx", None),
    ("csv", "train.csv", "test.csv"),
    ("npz", "digits.npz", None),
    ("folder", "folder", None),
    ("folder", "folder.zip", None),
])
def test_every_local_source_reads_the_same_digits(formats, digits, source, path, test_path):
    loaded = load(data(dataset="mnist", source=source, path=str(formats / path), validation="test",
                       test_path=str(formats / test_path) if test_path else None), seed=0)
    splits = loaded.splits
    x_train, y_train, x_test, y_test = digits
    order = np.argsort(y_train, kind="stable") if source == "folder" else slice(None)  # folders group by class
    test_order = np.argsort(y_test, kind="stable") if source == "folder" else slice(None)
    assert splits.train.x.dtype == np.uint8 and splits.train.x.shape == (300, 28, 28, 1)
    np.testing.assert_array_equal(splits.train.x, x_train[order])
    np.testing.assert_array_equal(splits.train.labels, y_train[order])
    np.testing.assert_array_equal(splits.test.x, x_test[test_order])
    np.testing.assert_array_equal(splits.test.labels, y_test[test_order])
    assert splits.class_names == [str(i) for i in range(10)]
    hashes = loaded.fingerprint.get("files") if source != "folder" else {"all": loaded.fingerprint["files_sha256"]}
    assert hashes and all(len(h) == 64 for h in hashes.values())


def test_custom_folder_takes_class_names_from_folders(tmp_path, color):
    write_folder(tmp_path / "shapes", *color, names=("circle", "square", "star", "tri"))
    splits = load(data(dataset="custom", source="folder", path=str(tmp_path / "shapes")), seed=0).splits
    assert splits.class_names == ["circle", "square", "star", "tri"] and splits.shape == (32, 32, 3)


def test_folder_converts_and_resizes_to_image_shape(formats):
    splits = load(data(dataset="custom", source="folder", path=str(formats / "folder"), image_shape=[16, 20, 3],
                       validation="test"), seed=0).splits
    assert splits.train.x.shape == (300, 16, 20, 3)
    np.testing.assert_array_equal(splits.train.x[..., 0], splits.train.x[..., 2])  # grey made RGB


def test_cifar_pickles(formats, color):
    images = load_images(data(dataset="custom", source="cifar", path=str(formats / "cifar-10-batches-py")))
    np.testing.assert_array_equal(images.x_train, color[0])
    np.testing.assert_array_equal(images.y_test, color[3])
    assert images.class_names == ["a", "b", "c", "d"]


def test_digits_from_sklearn():
    images = load_images(data(dataset="digits"))
    assert images.x_train.shape[1:] == (8, 8, 1) and len(images.y_train) + len(images.y_test) == 1797
    assert images.x_train.max() == 255


@pytest.fixture
def keras_downloads(monkeypatch, tmp_path, digits):
    """keras.datasets.*.load_data() run for real; only get_file (the download) is replaced by
    files made from the digits: MNIST and Fashion-MNIST are the digits, CIFAR-10 is 50,000
    blank images whose first pixel is the label."""
    import keras.src.datasets.cifar10 as cifar_module
    import keras.src.datasets.fashion_mnist as fashion_module
    import keras.src.datasets.mnist as mnist_module

    x_train, y_train, x_test, y_test = digits
    np.savez(tmp_path / "mnist.npz", x_train=x_train[..., 0], y_train=y_train, x_test=x_test[..., 0], y_test=y_test)
    monkeypatch.setattr(mnist_module, "get_file", lambda fname, **kw: str(tmp_path / "mnist.npz"))

    fashion_dir = tmp_path / "fashion"
    fashion_dir.mkdir()

    def header(magic, shape):
        return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)

    for part, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        (fashion_dir / f"{part}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(header(2049, y.shape) + y.astype(np.uint8).tobytes()))
        (fashion_dir / f"{part}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(header(2051, x.shape[:3]) + x.tobytes()))
    monkeypatch.setattr(fashion_module, "get_file", lambda fname, origin, cache_subdir, **kw: str(fashion_dir / fname))

    cifar_dir = tmp_path / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    cifar_dir.parent.mkdir()
    x = np.zeros((20000, 32, 32, 3), np.uint8)  # keras reads five batches of exactly 10,000
    x[:, 0, 0, :] = np.arange(20000)[:, None] % 10
    write_cifar(cifar_dir, x, np.arange(20000) % 10, x[:10], np.arange(10), protocol=3)
    (cifar_dir / "data_batch_2").unlink()
    for i in range(2, 6):
        (cifar_dir / f"data_batch_{i}").symlink_to(cifar_dir / "data_batch_1")
    monkeypatch.setattr(cifar_module, "get_file", lambda **kw: str(cifar_dir.parent))
    return digits


def test_keras_download_path_with_the_download_mocked(keras_downloads):
    x_train, y_train, x_test, y_test = keras_downloads
    mnist = load_images(data(dataset="mnist", source="keras"))
    np.testing.assert_array_equal(mnist.x_train, x_train)
    fashion = load_images(data(dataset="fashion_mnist", source="keras"))
    np.testing.assert_array_equal(fashion.y_test, y_test)
    assert fashion.class_names[0] == "T-shirt/top"
    cifar = load_images(data(dataset="cifar10", source="keras"))
    assert cifar.x_train.shape == (50000, 32, 32, 3) and cifar.class_names[0] == "airplane"
    np.testing.assert_array_equal(cifar.x_train[:20, 0, 0, 0], cifar.y_train[:20])


@pytest.mark.parametrize("seed", sorted(p.stem for p in (ROOT / "configs" / "seeds").glob("*.yaml")))
@pytest.mark.slow
def test_seed_configs_train_from_the_keras_source(keras_downloads, tmp_path, seed):
    """Each tutorial's config runs from keras.datasets by changing only data.source."""
    result = cnnclf("train", ROOT / "configs" / "seeds" / f"{seed}.yaml", "--smoke", "--set", "data.source=keras",
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip().splitlines()[-1])
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["source"] == "keras"
    assert json.loads((run / "metrics.json").read_text())["test_images"] > 0


def test_keras_download_failure_is_one_clear_line(monkeypatch):
    import keras.src.datasets.mnist as mnist_module

    def offline(**kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(mnist_module, "get_file", offline)
    with pytest.raises(DataError, match=r"^keras.datasets.mnist.load_data\(\) failed \(ConnectionError: no network\); "
                                        r"check the network, or point data.source/data.path at local files$"):
        load_images(data(dataset="mnist", source="keras"))


def test_split_is_stratified_seeded_and_fingerprinted(formats):
    images = load_images(data(dataset="mnist", source="idx", path=str(formats / "idx")))
    cfg = data(dataset="mnist", source="idx", path=str(formats / "idx"), limit_train=200, validation_split=0.25)
    limits = (cfg.limit_train, cfg.limit_test)
    a, b = split_arrays(images, cfg, 1, limits), split_arrays(images, cfg, 1, limits)
    c = split_arrays(images, cfg, 2, limits)
    assert (len(a.train), len(a.validation), len(a.test)) == (150, 50, 100)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    np.testing.assert_array_equal(a.validation.x, b.validation.x)
    counts = np.bincount(a.validation.labels, minlength=10)
    assert counts.max() - counts.min() <= 2  # stratified
    on_test = split_arrays(images, data(dataset="mnist", source="idx", path=str(formats / "idx"), validation="test"),
                           1, (None, None))
    np.testing.assert_array_equal(on_test.validation.x, on_test.test.x)


def test_folder_decoding_in_worker_processes_gives_the_same_arrays(formats, monkeypatch):
    from cnnclf.data import parts

    cfg = data(dataset="mnist", source="folder", path=str(formats / "folder.zip"))
    alone = load(cfg, seed=0)
    monkeypatch.setattr(parts, "PARALLEL_FROM", 1)
    monkeypatch.setattr(parts, "CHUNK", 7)
    pooled = load(cfg, seed=0)
    np.testing.assert_array_equal(alone.splits.train.x, pooled.splits.train.x)
    np.testing.assert_array_equal(alone.splits.test.labels, pooled.splits.test.labels)
    assert alone.fingerprint == pooled.fingerprint


def test_batches_cover_each_image_once_without_autotuning():
    import keras

    from cnnclf.data.pipeline import evaluation_batches, training_batches

    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    y = np.arange(10) % 3
    train, steps = training_batches(InMemory(x, y), 4, seed=0, step_counter=keras.Variable(0), num_classes=3,
                                    onehot=True)
    test = evaluation_batches(InMemory(x, y), 4, num_classes=3, onehot=False)
    assert steps == 3
    seen = np.concatenate([images.numpy().ravel() for images, _ in train])
    assert sorted(seen) == list(range(10)) and list(seen) != list(range(10))  # shuffled
    labels = np.concatenate([labels.numpy() for _, labels in train])
    assert labels.shape == (10, 3) and (labels.argmax(1) == seen % 3).all()
    assert [images.numpy().ravel().tolist() for images, _ in test] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # Autotuning made about one epoch in ten twice as long (the iterator's end waited on its thread).
    assert train.options().autotune.enabled is False and test.options().autotune.enabled is False


def test_alternating_flips_show_each_image_both_ways_in_two_epochs():
    import keras

    from cnnclf.data.pipeline import training_batches

    x = np.zeros((6, 1, 2, 1), np.uint8)
    x[:, 0, 0, 0] = np.arange(6) + 1  # the left pixel names the image; mirrored, it is on the right
    counter = keras.Variable(0, dtype="int64")
    seen = {i: [] for i in range(1, 7)}
    for epoch in range(2):
        counter.assign(epoch * 2)  # 2 steps an epoch
        train, _ = training_batches(InMemory(x, np.zeros(6, int)), 3, seed=0, step_counter=counter, num_classes=2,
                                    onehot=False, alternate_flips=True)
        for images, _ in train:
            for image in images.numpy():
                left, right = int(image[0, 0, 0]), int(image[0, 1, 0])
                seen[left or right].append("plain" if left else "mirrored")
    assert all(sorted(ways) == ["mirrored", "plain"] for ways in seen.values())

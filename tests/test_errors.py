"""Bad input: one line on stderr naming the file or key, what was found and the fix; exit
code 2; no traceback; and no run directory left behind. One row per mistake a user makes."""

import gzip
import os
import pickle
import zipfile

import numpy as np
import pytest

from helpers import GRAY, GRAY_10, LAYERS, cnnclf, config, folder, npz, two_classes


def idx_folder(tmp, images=None, magic=2051, truncate=0):
    folder = tmp / "idx"
    folder.mkdir()
    images = np.zeros((20, 28, 28), np.uint8) if images is None else images
    labels = np.arange(len(images)) % 10
    for part in ("train", "t10k"):
        raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in images.shape) + images.tobytes()
        (folder / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[: len(raw) - truncate]))
        raw = (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
        (folder / f"{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw))
    return folder


def csv_files(tmp, body):
    header = "label," + ",".join(f"pixel{i + 1}" for i in range(784))
    good = "\n".join(f"{i % 10}," + ",".join(["0"] * 784) for i in range(20))
    (tmp / "train.csv").write_text(f"{header}\n{good}\n{body}\n")
    (tmp / "test.csv").write_text(f"{header}\n{good}\n")
    return {"dataset": "mnist", "source": "csv", "path": str(tmp / "train.csv"), "test_path": str(tmp / "test.csv")}


def folder_with_empty_class(tmp):
    data = folder(tmp, two_classes())
    (tmp / "imgs/train/bird").mkdir()
    return data


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def cifar_with_exploit(tmp):
    batches = tmp / "cifar"
    batches.mkdir()
    (batches / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}, protocol=2))
    (batches / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}))
    return {"dataset": "cifar10", "source": "cifar", "path": str(batches)}


# (case id, build the command line from tmp, the expected stderr line with {tmp} for the folder)
CASES = [
    # --- the config ---------------------------------------------------------------------
    ("config-missing", lambda t: ["train", t / "nope.yaml"],
     "{tmp}/nope.yaml: no such config file; check the path (examples are in configs/)"),
    ("config-not-yaml", lambda t: ["train", config(t, text="data: [unclosed\n")],
     "{tmp}/exp.yaml:2: not valid YAML (expected ',' or ']', but got '<stream end>'); check the indentation "
     "and colons there"),
    ("config-python-tag", lambda t: ["train", config(t, text="data: !!python/object/apply:os.system [ls]\n")],
     "{tmp}/exp.yaml:1: not valid YAML (could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system'); check the indentation and colons there"),
    ("config-empty", lambda t: ["train", config(t, text="")],
     "{tmp}/exp.yaml: the config file is empty; start from `cnnclf init` or a file in configs/"),
    ("unknown-key", lambda t: ["train", config(t, text="model: {preset: s002_mnist}\ntrian: {epochs: 1}\n")],
     "{tmp}/exp.yaml:2: unknown key 'trian'; did you mean 'train'?"),
    ("wrong-type", lambda t: ["train", config(t, train={"epochs": "many"})],
     "{tmp}/exp.yaml:9: train.epochs: got 'many'; input should be a valid integer, unable to parse string as "
     "an integer"),
    ("negative-epochs", lambda t: ["train", config(t, train={"epochs": -1})],
     "{tmp}/exp.yaml:9: train.epochs: got -1; input should be greater than 0"),
    ("batch-size-zero", lambda t: ["train", config(t, train={"batch_size": 0})],
     "{tmp}/exp.yaml:9: train.batch_size: got 0; input should be greater than 0"),
    ("validation-split-one", lambda t: ["train", config(t, data={"dataset": "mnist", "validation_split": 1})],
     "{tmp}/exp.yaml:3: data.validation_split: got 1; input should be less than 1"),
    ("unknown-layer", lambda t: ["train", config(t, model={"layers": [{"Dense2D": {"units": 3}}]})],
     "{tmp}/exp.yaml:7: model.layers[0]: got {'Dense2D': {'units': 3}}; 'Dense2D' is not a Keras layer; "
     "did you mean 'Dense'?; valid: Activation, ActivityRegularization,"),
    ("unknown-optimizer", lambda t: ["train", config(t, train={"optimizer": "adamw2"})],
     "{tmp}/exp.yaml:9: train.optimizer.name: got 'adamw2'; 'adamw2' is not a Keras optimizer; did you mean "
     "'adamw'?; valid: adadelta,"),
    ("preset-and-layers", lambda t: ["train", config(t, model={"preset": "s002_mnist", "layers": LAYERS})],
     "{tmp}/exp.yaml:5: set exactly one of model.preset and model.layers (both given)"),
    ("set-unknown-key", lambda t: ["train", config(t), "--set", "train.learning_rate=0.1"],
     "--set train.learning_rate: unknown key 'train.learning_rate'; did you mean 'train.optimizer.learning_rate'?"),
    ("bad-layer-argument", lambda t: ["train", config(t, model={"layers": [{"Dense": {"unit": 3}}]})],
     "model.layers[0].Dense: unknown argument 'unit'; did you mean 'units'?; Dense takes activation,"),
    # --- the data -----------------------------------------------------------------------
    ("data-path-missing", lambda t: ["train", config(t, data={"dataset": "mnist", "source": "idx",
                                                              "path": str(t / "gone")})],
     "{tmp}/gone: no such folder; data.path must be the folder holding the four IDX files"),
    ("idx-bad-magic", lambda t: ["train", config(t, data={"dataset": "mnist", "source": "idx",
                                                          "path": str(idx_folder(t, magic=1234))})],
     "{tmp}/idx/train-images-idx3-ubyte.gz: bad IDX magic number 1234, expected 2051 for images; is this an "
     "IDX images file?"),
    ("idx-truncated", lambda t: ["train", config(t, data={"dataset": "mnist", "source": "idx",
                                                          "path": str(idx_folder(t, truncate=100))})],
     "{tmp}/idx/train-images-idx3-ubyte.gz: truncated IDX payload: the header promises 15680 bytes "
     "(20 x 28 x 28) but 15580 follow; download the file again"),
    ("csv-no-label-column", lambda t: ["train", config(t, data={**csv_files(t, ""), "label_column": "class"})],
     "{tmp}/train.csv: no label column 'class' in the header (it starts label, pixel1, pixel2, ...); "
     "set data.label_column"),
    ("csv-short-row", lambda t: ["train", config(t, data=csv_files(t, "3,0,0"))],
     "{tmp}/train.csv:22: row has 3 values, the header has 785; fix or remove that row"),
    ("csv-not-a-number", lambda t: ["train", config(t, data=csv_files(t, "3,abc" + ",0" * 783))],
     "{tmp}/train.csv:22: column pixel1 holds 'abc', not a whole number"),
    ("csv-pixel-out-of-range", lambda t: ["train", config(t, data=csv_files(t, "3,0,300" + ",0" * 782))],
     "{tmp}/train.csv:22: column pixel2 holds 300, outside the pixel range 0-255"),
    ("label-out-of-range", lambda t: ["train", config(t, data=npz(t, np.zeros((4, 28, 28), np.uint8),
                                                                  np.array([0, 1, 2, 12]), dataset="mnist"))],
     "{tmp}/d.npz: train label 12 (item 3) is outside the class range 0-9; fix the labels or set "
     "data.dataset: custom"),
    ("class-missing-from-train", lambda t: ["train", config(t, data=npz(t, np.zeros((4, 8, 8), np.uint8),
                                                                        np.array([0, 2, 0, 2])))],
     "{tmp}/d.npz: classes missing from the training set: 1; every class needs training images"),
    ("train-test-shapes", lambda t: ["train", config(t, data=npz(t, np.zeros((4, 8, 8), np.uint8), np.array([0, 1] * 2),
                                                                 np.zeros((2, 9, 9), np.uint8), np.array([0, 1])))],
     "{tmp}/d.npz: train images are 8x8x1 but test images are 9x9x1; both sets must have the same image shape"),
    ("folder-no-classes", lambda t: ["train", config(t, data=folder(t, {"train/readme.txt": b"x",
                                                                        "test/readme.txt": b"x"}))],
     "{tmp}/imgs (train/): no class folders; expected train/<class>/<image files>"),
    ("folder-empty-class", lambda t: ["train", config(t, data=folder_with_empty_class(t))],
     "{tmp}/imgs (train/): class folder 'bird' has no images; add some or remove the folder"),
    ("folder-not-an-image", lambda t: ["train", config(t, data=folder(t, two_classes(**{"train/dog/x.png": b"no"})))],
     "{tmp}/imgs/train/dog/x.png: not a readable image (ImageError: not an image in a format cnnclf reads: PNG, "
     "JPEG, BMP, GIF, WEBP, TIFF or PPM); remove it or set data.skip_bad_images: true to skip and count such files"),
    ("folder-mixed-sizes", lambda t: ["train", config(t, data=folder(t, two_classes(**{"train/dog/9.png": GRAY_10})))],
     "{tmp}/imgs/train/dog/9.png: image is 10x10x1 but the first image is 8x8x1; set data.image_shape: "
     "[height, width, channels] to resize them all"),
    ("folder-class-sets", lambda t: ["train", config(t, data=folder(t, two_classes(**{"test/cow/1.png": GRAY})))],
     "{tmp}/imgs: test classes differ from train classes (missing in test: none; only in test: cow)"),
    ("cifar-pickle-exploit", lambda t: ["train", config(t, data=cifar_with_exploit(t))],
     "{tmp}/cifar/data_batch_1: refused to load posix.system: CIFAR pickles may hold only plain data, so this "
     "file was not loaded; use the official cifar-10-batches-py files"),
    # --- run directories ----------------------------------------------------------------
    ("evaluate-not-a-run", lambda t: ["evaluate", t],
     "{tmp}: not a cnnclf run directory (no run.json and config.yaml); pass a folder that `cnnclf train` made, "
     "like runs/<id>"),
    ("plot-missing", lambda t: ["plot", t / "runs/none"],
     "{tmp}/runs/none: no such run directory; `cnnclf runs` lists the runs"),
    ("resume-not-a-run", lambda t: ["resume", t], "{tmp}: not a cnnclf run directory (no run.json and config.yaml); "
     "pass a folder that `cnnclf train` made, like runs/<id>"),
]


@pytest.mark.parametrize("case, build, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, monkeypatch, case, build, expected):
    monkeypatch.chdir(tmp_path)  # an executed exploit would leave tmp/pwned
    result = cnnclf(*build(tmp_path))
    stderr = result.stderr.replace(str(tmp_path), "{tmp}")
    stderr = __import__("re").sub(r"object at 0x[0-9a-f]+", "object at ADDRESS", stderr)
    assert result.exit_code == 2, result.stderr
    assert stderr.startswith("Error: " + expected), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path / "pwned").exists()


def test_skip_bad_images_skips_and_counts_them(tmp_path):
    data = folder(tmp_path, two_classes(**{"train/dog/x.png": b"not an image", "train/cat/y.jpg": b"nor this"}))
    result = cnnclf("train", config(tmp_path, data={**data, "skip_bad_images": True, "validation": "test"}))
    assert result.exit_code == 0, result.stderr
    assert f"skipped 2 unreadable image files (data.skip_bad_images), the first: {tmp_path}/imgs/train/cat/y.jpg" \
        in result.stderr
    env = __import__("json").loads((__import__("pathlib").Path(result.stdout.split()[-1]) / "env.json").read_text())
    assert len(env["data"]["skipped_files"]) == 2


def test_evaluate_a_run_without_a_model(tmp_path):
    from cnnclf.rundir.directory import RunDir

    run = RunDir.create(tmp_path, "empty")
    run.config.write_text("model: {preset: s002_mnist}\n")
    run.set_status("interrupted")
    result = cnnclf("evaluate", run.path)
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {run.path}: this run has no model yet (status interrupted); "
                             f"`cnnclf resume {run.path}` continues its training\n")
    plotted = cnnclf("plot", run.path)
    assert plotted.exit_code == 2 and "nothing to plot yet" in plotted.stderr


def test_a_lambda_layer_in_model_file_is_refused(tmp_path, trained_run):
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda x: x * 2),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.save(trained_run / "model.keras")
    result = cnnclf("evaluate", trained_run)
    assert result.exit_code == 2  # a run directory cnnclf refuses to load is bad input
    assert result.stderr == (f"Error: {trained_run}/model.keras: the model holds a Lambda layer (code), which safe "
                             f"mode refuses to load; cnnclf never runs code from model files\n")


def test_zip_of_one_class_folder(tmp_path):
    """A zip without train/ is a flat tree of classes (inside its wrapping folder): one class is too few."""
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as archive:
        archive.writestr("images/a/1.png", GRAY)
    result = cnnclf("train", config(tmp_path, data={"dataset": "custom", "source": "folder",
                                                    "path": str(tmp_path / "x.zip")}))
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {tmp_path}/x.zip: only one class folder (a); a classifier needs at least two "
                             f"classes, each a folder of its images\n")

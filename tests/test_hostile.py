"""A battery of hostile and careless input, one row per case: each must end in one line on stderr
naming what was wrong and the fix, exit code 2, no traceback, no run directory, and nothing
executed that the user did not write. Rows grouped by class: code from a config or run directory,
size bombs, silent wrong results, wrong messages for damaged files and directories."""

import gzip
import json
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import (
    GRAY,
    GRAY_10,
    SAMPLE,
    cnnclf,
    config,
    folder,
    npz,
    photos,
    png_bytes,
    png_header_only,
    two_classes,
    write_cifar,
)

TINY = {"dataset": "mnist", "source": "idx", "path": str(SAMPLE)}


def layers(*specs):
    return {"layers": list(specs) + [{"Flatten": {}}]}


def run_dir(tmp, config_text: str, status: str = "failed", **files) -> Path:
    """A run directory as cnnclf leaves one, with config.yaml and any files replaced."""
    run = tmp / "runs" / "20260101T000000Z-x"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config_text)
    (run / "run.json").write_text(json.dumps({"status": status, "class_names": [str(i) for i in range(10)]}))
    for name, data in files.items():
        (run / name.replace("__", ".")).write_bytes(data if isinstance(data, bytes) else data.encode())
    return run


def good_run_config(tmp) -> str:
    return yaml.safe_dump({"name": "x", "data": TINY, "model": layers(),
                           "output": {"runs_dir": str(tmp / "runs"), "plots": False}})


def alias_bomb(flow: bool = False) -> str:
    """A few hundred bytes that stand for 9^9 values; `flow`: as one line, for --set."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    if flow:
        return "{" + ", ".join(lines) + "}"
    return "\n".join(lines) + "\nmodel: {preset: s002_mnist}\n"





def zip_of(tmp, entries: dict, name="d.zip", method=zipfile.ZIP_DEFLATED) -> Path:
    path = tmp / name
    with zipfile.ZipFile(path, "w", method) as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return path


def images_zip(tmp, **extra) -> dict:
    entries = {f"{c}/{i}.png": GRAY for c in ("cat", "dog") for i in range(4)}
    entries.update(extra)
    return {"dataset": "custom", "source": "folder", "path": str(zip_of(tmp, entries))}


def corrupt_crc(tmp) -> dict:
    data = images_zip(tmp)
    path = Path(data["path"])
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("dog/3.png")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF  # inside the compressed data
    path.write_bytes(bytes(raw))
    return data


def unsupported_method(tmp) -> dict:
    data = images_zip(tmp, **{"dog/odd.png": GRAY})
    path = Path(data["path"])
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local header and central directory
        at = raw.find(signature + b"", raw.find(b"dog/odd.png") - 60 if signature == b"PK\x03\x04" else 0)
        while at != -1:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if raw[name_at:name_at + 11] == b"dog/odd.png":
                raw[at + offset:at + offset + 2] = struct.pack("<H", 9)  # deflate64
                break
            at = raw.find(signature, at + 4)
    path.write_bytes(bytes(raw))
    return data


def idx_with(tmp, header_dims, payload: bytes, gz=True) -> dict:
    folder_path = tmp / "idx"
    folder_path.mkdir()
    images = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in header_dims) + payload
    labels = (2049).to_bytes(4, "big") + (20).to_bytes(4, "big") + bytes(range(10)) * 2
    for part in ("train", "t10k"):
        (folder_path / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images) if gz else images)
        (folder_path / f"{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return {"dataset": "mnist", "source": "idx", "path": str(folder_path)}


def cifar(tmp, data=None, names=(b"a", b"b"), meta=True) -> dict:
    path = tmp / "cifar"
    x = np.zeros((4, 32, 32, 3), np.uint8)
    write_cifar(path, x, np.array([0, 1, 0, 1]), x[:2], np.array([0, 1]), names=("a", "b"))
    if data is not None:
        (path / "data_batch_1").write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1]}, protocol=2))
    if meta:
        (path / "batches.meta").write_bytes(pickle.dumps({b"label_names": list(names)}, protocol=2))
    else:
        (path / "batches.meta").write_bytes(pickle.dumps({b"num_cases_per_batch": 2}, protocol=2))
    return {"dataset": "custom", "source": "cifar", "path": str(path)}


def csv_data(tmp, rows, header=None, bom=False, dataset="custom") -> dict:
    header = header or "label," + ",".join(f"pixel{i + 1}" for i in range(784))
    text = header + "\n" + "\n".join(rows) + "\n"
    for name in ("train.csv", "test.csv"):
        (tmp / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return {"dataset": dataset, "source": "csv", "path": str(tmp / "train.csv"), "test_path": str(tmp / "test.csv")}


def digit_rows(labels, extra_first=None):
    return [(f"{extra_first}," if extra_first is not None else "") + f"{label}," + ",".join(["0"] * 784)
            for label in labels]


def manifest(tmp, rows: list[str], header="path,label", files=("a.png", "b.png", "c.png", "d.png")) -> dict:
    for name in files:
        (tmp / name).write_bytes(GRAY)
    (tmp / "list.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return {"dataset": "custom", "source": "manifest", "path": str(tmp / "list.csv")}


def backbone_weights(tmp, weights: Path) -> Path:
    data = {**folder(tmp, two_classes()), "image_shape": [32, 32, 3]}
    return config(tmp, data=data, model={"backbone": {"name": "MobileNetV3Small", "weights": str(weights)}})


def non_utf8_name(tmp) -> dict:
    data = folder(tmp, two_classes())
    os.makedirs(os.fsencode(tmp / "imgs/train/cat"), exist_ok=True)
    with open(os.path.join(os.fsencode(tmp / "imgs/train/cat"), b"caf\xe9.png"), "wb") as f:
        f.write(GRAY)
    return data


def custom_object_model(tmp) -> Path:
    import keras

    @keras.saving.register_keras_serializable(package="hostile")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    model = keras.Sequential([keras.Input((28, 28, 1)), Doubler(), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    run = run_dir(tmp, good_run_config(tmp), status="completed")
    model.save(run / "model.keras")
    keras.saving.get_custom_objects().pop("hostile>Doubler")
    return run


def truncated_model(tmp) -> Path:
    import keras

    run = run_dir(tmp, good_run_config(tmp), status="completed")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(run / "model.keras")
    raw = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(raw[: len(raw) // 2])
    return run


# (case id, build the command line from tmp, expected stderr line after "Error: ", with {tmp} for the folder)
CASES = [
    # --- code from a config or a run directory ----------------------------------------------------------
    ("layer-tfsm", lambda t: ["train", config(t, model=layers({"TFSMLayer": {"filepath": str(t / "sm")}}))],
     "{tmp}/exp.yaml:7: model.layers[0]: got {'TFSMLayer': {'filepath': '{tmp}/sm'}}; TFSMLayer is refused: a config "
     "may name only layers that compute on their input, not ones that load files, models or code"),
    ("layer-lookup-file", lambda t: ["train", config(t, model=layers({"StringLookup": {"vocabulary": "/etc/passwd"}}))],
     "{tmp}/exp.yaml:7: model.layers[0]: got {'StringLookup': {'vocabulary': '/etc/passwd'}}; StringLookup is refused"),
    ("layer-lambda", lambda t: ["train", config(t, model=layers({"Lambda": {"function": "os.system"}}))],
     "{tmp}/exp.yaml:7: model.layers[0]: got {'Lambda': {'function': 'os.system'}}; Lambda is refused"),
    ("layer-wrapper", lambda t: ["train", config(t, model=layers(
        {"TimeDistributed": {"layer": {"class_name": "TFSMLayer", "config": {"filepath": "x"}}}}))],
     "{tmp}/exp.yaml:7: model.layers[0]: got {'TimeDistributed': "),
    ("layer-torch", lambda t: ["train", config(t, model=layers({"TorchModuleWrapper": {"module": "x"}}))],
     "{tmp}/exp.yaml:7: model.layers[0]: got {'TorchModuleWrapper': {'module': 'x'}}; TorchModuleWrapper is refused"),
    ("layer-argument-object", lambda t: ["train", config(t, model=layers(
        {"Conv2D": {"filters": 2, "kernel_size": 3, "kernel_initializer": {"module": "os", "class_name": "system"}}}))],
     "{tmp}/exp.yaml:7: model.layers[0]: got {'Conv2D': "),
    ("optimizer-argument-object", lambda t: ["train", config(t, train={"optimizer": {"name": "adam", "clipnorm": {
        "module": "os"}}})],
     "{tmp}/exp.yaml:9: train.optimizer: got {'name': 'adam', 'clipnorm': {'module': 'os'}}; clipnorm: optimizer "
     "arguments are numbers, strings or booleans"),
    ("run-config-loads-code", lambda t: ["resume", run_dir(t, yaml.safe_dump(
        {"data": TINY, "model": layers({"TFSMLayer": {"filepath": "/x"}})}))],
     "{tmp}/runs/20260101T000000Z-x/config.yaml:"),
    ("from-run-loads-code", lambda t: ["train", "--from", run_dir(t, yaml.safe_dump(
        {"data": TINY, "model": layers({"TFSMLayer": {"filepath": "/x"}})}))],
     "{tmp}/runs/20260101T000000Z-x/config.yaml:"),
    ("cifar-pickle-code", lambda t: ["train", config(t, data=cifar(t, data=Exploit()))],
     "{tmp}/cifar/data_batch_1: refused to load posix.system"),
    # --- size bombs -----------------------------------------------------------------------------------------
    ("yaml-alias-bomb", lambda t: ["train", config(t, text=alias_bomb())],
     "{tmp}/exp.yaml: the YAML expands to more than 100,000 values through aliases (*name); write the values out"),
    ("yaml-recursive-alias", lambda t: ["train", config(t, text="data: &a [*a]\n")],
     "{tmp}/exp.yaml:1: a YAML alias refers to a value that contains it, which never ends; remove the alias"),
    ("yaml-huge-file", lambda t: ["config", "validate", config(t, text="# " + "x" * 2_000_000 + "\n")],
     "{tmp}/exp.yaml: 2,000,003 bytes is too large for a config (at most 1,048,576); pass the YAML config file"),
    ("set-alias-bomb", lambda t: ["train", config(t), "--set", "name=" + alias_bomb(flow=True)],
     "--set name: the YAML expands to more than 100,000 values through aliases (*name); write the values out"),
    ("zip-bomb", lambda t: ["train", config(t, data=images_zip(t, **{"dog/bomb.png": b"\0" * (20 * 2**20)}))],
     "{tmp}/d.zip:dog/bomb.png: the entry expands to 20,971,520 bytes ("),
    ("npz-bomb", lambda t: ["train", config(t, data=npz_bomb(t))],
     "{tmp}/d.npz:x_train.npy: the entry expands to "),
    ("huge-image", lambda t: ["train", config(t, data=folder(t, two_classes(**{"train/dog/big.png":
                                                                             png_header_only(12000, 12000)})))],
     "{tmp}/imgs/train/dog/big.png: not a readable image (ImageTooLarge: 12000x12000 is 144.0 megapixels, more than "
     "cnnclf's limit of 64; downscale it)"),
    ("idx-dimensions-overflow", lambda t: ["train", config(t, data=idx_with(t, [2**32 - 1] * 3, b"\0" * 100))],
     "{tmp}/idx/train-images-idx3-ubyte.gz: the IDX header promises 4294967295 x 4294967295 x 4294967295 = "),
    ("idx-gzip-overlong", lambda t: ["train", config(t, data=idx_with(t, [20, 28, 28], b"\0" * (20 * 784 + 10**7)))],
     "{tmp}/idx/train-images-idx3-ubyte.gz: overlong IDX payload: the header promises 15680 bytes (20 x 28 x 28) "
     "but more follow"),
    ("image-shape-huge", lambda t: ["train", config(t, data={**TINY, "dataset": "custom",
                                                             "image_shape": [20000, 20000, 3]})],
     "{tmp}/exp.yaml:6: data.image_shape[0]: got 20000; input should be less than or equal to 4096"),
    # --- silent wrong results and unbounded messages ----------------------------------------------------------
    ("one-class-npz", lambda t: ["train", config(t, data=npz(t, np.zeros((4, 8, 8), np.uint8), np.zeros(4, int)))],
     "{tmp}/d.npz: only one class (0); a classifier needs at least two classes"),
    ("one-class-folder", lambda t: ["train", config(t, data=folder(t, {f"cat/{i}.png": GRAY for i in range(5)}))],
     "{tmp}/imgs: only one class folder (cat); a classifier needs at least two classes, each a folder of its images"),
    ("mistyped-label", lambda t: ["train", config(t, data=csv_data(t, digit_rows([0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                                                 2000000])))],
     "{tmp}/train.csv: labels run up to 2000000 but only 11 distinct values appear (the largest: 2000000, 9, 8); "
     "labels are class indices 0 to K-1, so fix the mistyped ones"),
    ("many-missing-classes", lambda t: ["train", config(t, data=csv_data(t, digit_rows(range(0, 40, 2))))],
     "{tmp}/train.csv: classes missing from the training set: 1, 3, 5, 7, 9, 11, 13, 15 and 11 more; every class"),
    ("known-dataset-label", lambda t: ["train", config(t, data=csv_data(t, digit_rows([0, 1, 12]), dataset="mnist"))],
     "{tmp}/train.csv: train label 12 (item 2) is outside the class range 0-9"),
    # --- data files: wrong exit code or message ---------------------------------------------------------------
    ("cifar-out-of-range", lambda t: ["train", config(t, data=cifar(t, data=np.full((2, 3072), 300)))],
     "{tmp}/cifar/data_batch_1: pixel values run 300-300, outside 0-255; is this a CIFAR batch?"),
    ("cifar-names-not-utf8", lambda t: ["train", config(t, data=cifar(t, names=(b"a", b"\xff\xfe")))],
     "{tmp}/cifar/batches.meta: label_names are not UTF-8 text (UnicodeDecodeError); write the class names as UTF-8"),
    ("file-name-not-utf8", lambda t: ["train", config(t, data=non_utf8_name(t))],
     "{tmp}/imgs: the file name 'train/cat/caf\\\\xe9.png' is not valid UTF-8; rename it"),
    ("zip-crc", lambda t: ["train", config(t, data=corrupt_crc(t))],
     "{tmp}/d.zip:dog/3.png: not a readable image (BadZipFile: Bad CRC-32 for file 'dog/3.png')"),
    ("zip-compression", lambda t: ["train", config(t, data=unsupported_method(t))],
     "{tmp}/d.zip:dog/odd.png: compression method 9 cannot be read; zip the files again with stored, deflate, "
     "bzip2, lzma"),
    ("csv-index-column", lambda t: ["train", config(t, data=csv_data(t, digit_rows([0, 1], extra_first=7),
                                                                     header="id,label," + ",".join(
                                                                         f"pixel{i + 1}" for i in range(784))))],
     "{tmp}/train.csv: column 'id' is not a pixel (785 columns besides the label, one more than 784 pixels); "
     "remove that column"),
    ("manifest-missing-files", lambda t: ["train", config(t, data=manifest(t, [f"gone{i}.png,cat" for i in range(7)]
                                                                          + ["a.png,dog"]))],
     "{tmp}/list.csv: 7 of 8 listed files are missing (relative to {tmp}): gone0.png, gone1.png, gone2.png and 4 "
     "more; fix the paths or remove the rows"),
    ("backbone-weights-missing", lambda t: ["train", backbone_weights(t, t / "nope.weights.h5")],
     "{tmp}/nope.weights.h5: no such file (model.backbone.weights); give the weights file of MobileNetV3Small "
     "(.weights.h5 or .h5), or imagenet, or null"),
    ("backbone-weights-missing-validate", lambda t: ["config", "validate", backbone_weights(t, t / "nope.weights.h5")],
     "{tmp}/nope.weights.h5: no such file (model.backbone.weights)"),
    ("backbone-weights-a-folder", lambda t: ["train", backbone_weights(t, t / "imgs")],
     "{tmp}/imgs: not a weights file (model.backbone.weights: Keras saves them as HDF5, .weights.h5 or .h5); "
     "give the weights file of MobileNetV3Small"),
    ("backbone-weights-a-text-file", lambda t: ["train", backbone_weights(t, t / "exp.yaml")],
     "{tmp}/exp.yaml: not a weights file (model.backbone.weights"),
    ("cache-a-file", lambda t: ["train", config(t, data={**folder(t, two_classes()), "storage": "stream",
                                                          "cache": str(t / "exp.yaml")})],
     "{tmp}/exp.yaml: not a folder (data.cache); name a folder for the decoded pixels"),
    ("manifest-duplicates", lambda t: ["train", config(t, data=manifest(t, ["a.png,cat", "b.png,dog", "a.png,cat"]))],
     "{tmp}/list.csv:4: a.png is listed again (first on line 2, 2 rows in all); list each file once"),
    ("manifest-duplicates-spelt-otherwise", lambda t: ["train", config(t, data=manifest(
        t, ["a.png,cat,train", "b.png,dog,train", "sub/../a.png,cat,test", f"{t}/a.png,cat,test"],
        header="path,label,split"))],
     "{tmp}/list.csv:4: a.png is listed again (first on line 2, 3 rows in all); list each file once"),
    ("manifest-split-and-test-split", lambda t: ["train", config(t, data={**manifest(
        t, ["a.png,cat,train", "b.png,dog,test"], header="path,label,split"), "test_split": 0.2})],
     "{tmp}/list.csv: the manifest has a 'split' column, which says the test set; remove data.test_split"),
    ("manifest-no-label-column", lambda t: ["train", config(t, data=manifest(t, ["a.png"], header="path"))],
     "{tmp}/list.csv: no 'label' column in the header (path); set data.label_column"),
    ("manifest-bad-split", lambda t: ["train", config(t, data=manifest(t, ["a.png,cat,dev"], header="path,label,split"))],
     "{tmp}/list.csv:2: split 'dev' is not train, val or test"),
    ("folder-test-part-and-test-split", lambda t: ["train", config(t, data={**folder(t, two_classes()),
                                                                            "test_split": 0.3})],
     "{tmp}/imgs: the data has its own test part (test/ or a split column); remove data.test_split"),
    ("folder-path-is-a-file", lambda t: ["train", config(t, data={"dataset": "custom", "source": "folder",
                                                                  "path": str(config(t))})],
     "{tmp}/exp.yaml: not a folder or a zip file; data.path must be a folder of class folders or a zip of one"),
    ("class-name-newline", lambda t: ["train", config(t, data=folder(t, {**two_classes(), "train/a\nb/1.png": GRAY,
                                                                         "train/a\nb/2.png": GRAY_10,
                                                                         "test/a\nb/1.png": GRAY}))],
     "{tmp}/imgs/train/a b/2.png: image is 10x10x1 but the first image is 8x8x1"),
    # --- config values that failed only after TensorFlow started ---------------------------------------------
    ("negative-seed", lambda t: ["train", config(t, text="seed: -1\nmodel: {preset: s002_mnist}\n")],
     "{tmp}/exp.yaml:1: seed: got -1; input should be greater than or equal to 0"),
    ("unknown-metric", lambda t: ["train", config(t, train={"metrics": ["f1"]})],
     "{tmp}/exp.yaml:9: train.metrics: got ['f1']; 'f1' is not a Keras metric; valid: accuracy, acc, AUC,"),
    ("metric-for-other-labels", lambda t: ["train", config(t, train={"metrics": ["categorical_accuracy"]})],
     "{tmp}/exp.yaml:10: metric categorical_accuracy needs onehot labels; set data.labels: onehot, or use accuracy"),
    ("loss-for-other-labels", lambda t: ["train", config(t, train={"loss": "categorical_crossentropy"})],
     "{tmp}/exp.yaml:9: loss categorical_crossentropy needs onehot labels; set data.labels: onehot, or loss: auto"),
    ("unknown-loss", lambda t: ["train", config(t, train={"loss": "crossentropy"})],
     "{tmp}/exp.yaml:9: train.loss: got 'crossentropy'; 'crossentropy' is not a Keras loss"),
    ("empty-layers", lambda t: ["train", config(t, model={"layers": []})],
     "{tmp}/exp.yaml:6: the layer list is empty; list the layers"),
    ("infinite-warmup", lambda t: ["train", config(t, train={"warmup_epochs": float("inf")})],
     "{tmp}/exp.yaml:9: train.warmup_epochs: got inf; input should be a finite number"),
    ("nul-in-path", lambda t: ["train", config(t, data={**TINY, "path": "a\0b"})],
     "{tmp}/exp.yaml:4: data.path: got 'a\\x00b'; a path cannot hold a NUL character"),
    ("name-with-slash", lambda t: ["train", config(t), "--name", "a/b"],
     "--set name: got 'a/b'; string should match pattern"),
    ("set-tag", lambda t: ["train", config(t), "--set", "train.epochs=!!python/object/apply:os.system [ls]"],
     "--set train.epochs: '!!python/object/apply:os.system [ls]' carries the YAML tag "
     "tag:yaml.org,2002:python/object/apply:os.system; write plain values"),
    ("set-not-yaml", lambda t: ["train", config(t), "--set", "train.epochs=[1"],
     "--set train.epochs: '[1' is not valid YAML"),
    ("storage-memory-with-cache", lambda t: ["train", config(t, data={**folder(t, two_classes()), "storage": "memory",
                                                                      "cache": str(t / "c")})],
     "{tmp}/exp.yaml:6: the cache holds decoded pixels for data.storage: stream"),
    # --- output paths -------------------------------------------------------------------------------------
    ("runs-dir-under-a-file", lambda t: ["train", config(t), "--runs-dir", str(config(t)) + "/runs"],
     "output.runs_dir {tmp}/exp.yaml/runs: cannot write there (Not a directory); choose another folder"),
    ("validate-missing-path", lambda t: ["config", "validate", config(t, data={**TINY, "path": str(t / "gone")})],
     "{tmp}/gone: no such file or folder (data.path); check the path"),
    # --- damaged run directories --------------------------------------------------------------------------
    ("run-json-garbage", lambda t: ["evaluate", run_dir(t, good_run_config(t), **{"model__keras": b"x"})
                                    .joinpath("run.json").write_text("{oops") and t / "runs/20260101T000000Z-x"],
     "{tmp}/runs/20260101T000000Z-x/run.json: the run's status file is damaged (JSONDecodeError); the run cannot "
     "be used as it is"),
    ("model-truncated", lambda t: ["evaluate", truncated_model(t)],
     "{tmp}/runs/20260101T000000Z-x/model.keras: the model file is damaged ("),
    ("model-custom-object", lambda t: ["evaluate", custom_object_model(t)],
     "{tmp}/runs/20260101T000000Z-x/model.keras: the model uses hostile>Doubler, which is not a Keras class cnnclf "
     "knows (a custom object); cnnclf loads only models made of Keras's own layers"),
    ("model-is-a-folder", lambda t: ["evaluate", run_dir(t, good_run_config(t), status="completed").joinpath(
        "model.keras").mkdir() or t / "runs/20260101T000000Z-x"],
     "{tmp}/runs/20260101T000000Z-x: this run has no model yet (status completed)"),
    ("history-garbage", lambda t: ["plot", run_dir(t, good_run_config(t), **{"history__csv": "epoch,loss\nx,y\n"})],
     "{tmp}/runs/20260101T000000Z-x/history.csv: the run's history file is damaged"),
    ("metrics-garbage", lambda t: ["plot", run_dir(t, good_run_config(t), **{"metrics__json": "[1, 2"})],
     "{tmp}/runs/20260101T000000Z-x/metrics.json: the run's metrics file is damaged (JSONDecodeError)"),
    ("run-config-garbage", lambda t: ["resume", run_dir(t, "data: [\n")],
     "{tmp}/runs/20260101T000000Z-x/config.yaml:2: not valid YAML"),
    # --- the fourth battery (issue 37): what a file, an upload or a database URL can still do -------------------
    ("image-postscript", lambda t: ["train", config(t, data=folder(t, two_classes(**{"train/dog/x.png": POSTSCRIPT})))],
     "{tmp}/imgs/train/dog/x.png: not a readable image (ImageError: not an image in a format cnnclf reads: PNG, "
     "JPEG, BMP, GIF, WEBP, TIFF or PPM); remove it or set data.skip_bad_images: true"),
    ("image-a-fifo", lambda t: ["train", config(t, data=with_special(folder(t, two_classes()), "train/dog/f.png"))],
     "{tmp}/imgs/train/dog/f.png: not a readable image (NotReadable: not a regular file (a FIFO)); remove it"),
    ("image-links-to-dev-zero", lambda t: ["train", config(t, data=with_special(folder(t, two_classes()),
                                                                                "train/dog/z.png", "/dev/zero"))],
     "{tmp}/imgs/train/dog/z.png: not a readable image (NotReadable: not a regular file (a character device))"),
    ("config-a-fifo", lambda t: ["train", special(t / "exp.yaml")],
     "{tmp}/exp.yaml: not a regular file (a FIFO); pass a YAML config file"),
    ("config-links-to-dev-zero", lambda t: ["config", "validate", special(t / "exp.yaml", "/dev/zero")],
     "{tmp}/exp.yaml: not a regular file (a character device); pass a YAML config file"),
    ("data-path-a-fifo", lambda t: ["train", config(t, data={"dataset": "custom", "source": "npz",
                                                             "path": str(special(t / "d.npz"))})],
     "{tmp}/d.npz: a FIFO, not a file or folder (data.path); name the data's file or folder"),
    ("idx-file-a-fifo", lambda t: ["train", config(t, data=with_special(idx_with(t, [20, 28, 28], b"\0" * 15680),
                                                                        "train-labels-idx1-ubyte.gz"))],
     "{tmp}/idx/train-labels-idx1-ubyte.gz: not a regular file (a FIFO); an IDX folder holds the four IDX files"),
    ("yaml-key-twice", lambda t: ["train", config(t, text="train:\n  epochs: 3\n  epochs: 50000\n")],
     "{tmp}/exp.yaml:3: key 'epochs' is given twice (first on line 2), and YAML would keep only the later one; "
     "remove one of them"),
    ("set-key-twice", lambda t: ["train", config(t), "--set", "train={epochs: 1, epochs: 9}"],
     "--set train: key 'epochs' is given twice (first on line 1)"),
    ("yaml-nested-deep", lambda t: ["train", config(t, text="a: " + "[" * 5000 + "]" * 5000 + "\n")],
     "{tmp}/exp.yaml: the YAML nests too deeply to be a config; write it out plainly"),
    ("classifier-beyond-a-tensor", lambda t: ["train", config(t, model=layers({"Dense": {"units": 10_000_000}}))],
     "model.layers: the classifier cnnclf adds, Dense: 10 units on 7,840,000,000 inputs make 78,400,000,010 weights"),
    ("dense-beyond-a-tensor", lambda t: ["train", config(t, model={"layers": [{"Flatten": {}},
                                                                               {"Dense": {"units": 10_000_000}}]})],
     "model.layers[1].Dense: 10,000,000 units on 784 inputs make 7,850,000,000 weights (31.4 GB in float32; "
     "training holds 4 times that), more than a tensor can hold (2,147,483,647 values); make the layer smaller"),
    ("warmup-1e300", lambda t: ["train", config(t, train={"warmup_epochs": 1e300})],
     "{tmp}/exp.yaml:9: train.warmup_epochs: got 1e+300; input should be less than or equal to 100000"),
    ("mlflow-uri-password", lambda t: ["train", config(t, train={"mlflow": {
        "tracking_uri": "postgresql://me:hunter2@db/mlflow"}})],
     "{tmp}/exp.yaml:10: the URI holds a password or token, which every run would write into its config.yaml"),
    ("tune-port-not-a-number", lambda t: ["tune", config(t, text=TUNE_TEXT), "--storage",
                                          "postgresql://me:hunter2@db:abc/studies"],
     "tune.storage postgresql://me:***@db:abc/studies: not a database URL"),
    ("tune-password-in-query", lambda t: ["tune", config(t, text=TUNE_TEXT), "--storage",
                                          "postgresql://me@127.0.0.1:1/studies?password=hunter2"],
     "tune.storage postgresql://me@127.0.0.1:1/studies?password=***: cannot open the study there ("),
]

POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke showpage\n"
TUNE_TEXT = (f"data: {{dataset: mnist, source: idx, path: {SAMPLE}}}\nmodel: {{layers: [{{Flatten: {{}}}}]}}\n"
             "tune: {space: {train.batch_size: {choice: [8, 16]}}}\n")


def special(path: Path, target: str | None = None) -> Path:
    """A FIFO at `path` (reading it would wait for a writer forever), or a link to `target` (a device)."""
    if path.exists():
        path.unlink()
    if target is None:
        os.mkfifo(path)
    else:
        os.symlink(target, path)
    return path


def with_special(data: dict, name: str, target: str | None = None) -> dict:
    special(Path(data["path"]) / name, target)
    return data



class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def npz_bomb(tmp) -> dict:
    np.savez_compressed(tmp / "d.npz", x_train=np.zeros((30_000, 28, 28), np.uint8), y_train=np.zeros(30_000, int),
                        x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, int))
    return {"dataset": "custom", "source": "npz", "path": str(tmp / "d.npz")}


@pytest.mark.parametrize("case, build, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_clear_line_and_exit_2(tmp_path, monkeypatch, case, build, expected):
    monkeypatch.chdir(tmp_path)  # an executed exploit would leave tmp/pwned
    runs_before = set((tmp_path / "runs").rglob("*")) if (tmp_path / "runs").exists() else set()
    result = cnnclf(*build(tmp_path))
    stderr = result.stderr.replace(str(tmp_path), "{tmp}")
    assert result.exit_code == 2, result.stderr
    assert stderr.startswith("Error: " + expected), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and len(stderr) < 600, stderr
    made = {p for p in (tmp_path / "runs").iterdir()} if (tmp_path / "runs").exists() else set()
    assert not {p for p in made if p.name != "20260101T000000Z-x"} - runs_before  # no run directory made
    assert not (tmp_path / "pwned").exists()


def test_the_battery_keeps_its_cases():
    assert len(CASES) >= 82 and len({c[0] for c in CASES}) == len(CASES)  # none lost, none named twice


def test_csv_with_a_byte_order_mark_simply_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data inspect draws its grid in the working folder
    data = csv_data(tmp_path, digit_rows([0, 1] * 10), bom=True)
    result = cnnclf("data", "inspect", config(tmp_path, data={**data, "validation": "test"}), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sizes"]["train"] == 20


def test_cifar_without_label_names_uses_indices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cnnclf("data", "inspect", config(tmp_path, data={**cifar(tmp_path, meta=False), "validation": "test"}),
                    "--json")
    assert result.exit_code == 0, result.stderr
    assert list(json.loads(result.stdout)["class_balance"]) == ["0", "1"]


def test_sixteen_bit_images_are_scaled_not_clipped():
    from PIL import Image

    from cnnclf.data.decoding import decode_image

    ramp = (np.arange(784, dtype=np.uint32).reshape(28, 28) * 65535 // 783).astype(np.uint16)
    out = __import__("io").BytesIO()
    Image.fromarray(ramp).save(out, format="PNG")
    pixels = decode_image(out.getvalue(), (28, 28, 1), resize=False)[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255 and int(np.sum(pixels == 255)) <= 2
    np.testing.assert_allclose(pixels, np.round(ramp / 257), atol=1)


def test_huge_images_are_refused_when_predicting_too(trained_run, tmp_path):
    (tmp_path / "big.png").write_bytes(png_header_only(12000, 12000))
    result = cnnclf("predict", trained_run, tmp_path / "big.png")
    assert result.exit_code == 2
    assert f"skipped {tmp_path}/big.png: not a readable image (ImageTooLarge: 12000x12000 is 144.0 megapixels" \
        in result.stderr


def test_names_and_runs_dirs_are_strings(tmp_path):
    from cnnclf.config import load_config

    path = config(tmp_path, text="name: null\nmodel: {preset: s002_mnist}\n")
    assert load_config(path).name == "exp"  # null: the file's stem
    dated = load_config(path, values={"name": "2024-06-01", "output.runs_dir": "001"})
    assert dated.name == "2024-06-01" and dated.output.runs_dir == "001"
    assert load_config(config(tmp_path, text="model: {preset: s002_mnist}\n").rename(tmp_path / "_scratch.yaml")
                       ).name == "_scratch"
    spaced = config(tmp_path, text="model: {preset: s002_mnist}\n").rename(tmp_path / "my exp (2).yaml")
    assert load_config(spaced).name == "my-exp-2"  # a file name a run name cannot hold, made safe


def test_output_folders_are_made(tmp_path, trained_run):
    out = tmp_path / "new" / "deeper" / "c.yaml"
    result = cnnclf("init", "--dataset", "mnist", "--out", out)
    assert result.exit_code == 0 and out.is_file()
    digit = tmp_path / "d.png"
    digit.write_bytes(png_bytes(np.zeros((28, 28), np.uint8)))
    predicted = cnnclf("predict", trained_run, digit, "--csv", tmp_path / "made" / "p.csv")
    assert predicted.exit_code == 0 and (tmp_path / "made" / "p.csv").is_file()


def test_a_damaged_run_is_listed_not_fatal(tiny_run, tmp_path):
    import shutil

    shutil.copytree(tiny_run[0], tmp_path / "runs" / tiny_run[0].name)
    broken = tmp_path / "runs" / "20260101T000000Z-broken"
    broken.mkdir()
    (broken / "run.json").write_text("")
    (broken / "config.yaml").write_text("data: {}\n")
    result = cnnclf("runs", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert rows[tiny_run[0].name]["status"] == "completed"
    assert rows[broken.name]["status"].startswith("damaged (the run's status file is damaged")


def test_a_dead_running_run_is_not_shown_running(trained_run):
    status = json.loads((trained_run / "run.json").read_text())
    (trained_run / "run.json").write_text(json.dumps({**status, "status": "running", "pid": 1}))
    rows = json.loads(cnnclf("runs", trained_run.parent, "--json").stdout)
    assert next(r for r in rows if r["id"] == trained_run.name)["status"] == "stopped (no process; resume it)"


def test_markup_in_class_names_is_drawn_as_text(tmp_path):
    from cnnclf.reporting import image_grids

    path = image_grids.data_grid(np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 1]), ["price_$5_$10", r"$\frac{}$"],
                                 tmp_path / "g.png")
    assert path.stat().st_size > 1000


def test_messages_list_a_few_values_and_a_count():
    from cnnclf.errors import listing

    assert listing(range(2_000_000)) == "0, 1, 2, 3, 4, 5, 6, 7 and 1,999,992 more"
    assert listing(["x" * 200]) == "x" * 77 + "..."
    assert re.fullmatch(r"a, b", listing(["a", "b"]))


# --- a tampered split.csv (issue 31) --------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    """A small run trained on a folder of photos: it has a split.csv."""
    tmp = tmp_path_factory.mktemp("photo-run")
    root = photos(tmp / "photos", counts={"cat": 20, "dog": 20})
    config = yaml.safe_dump({"data": {"dataset": "custom", "source": "folder", "path": str(root),
                                      "image_shape": [16, 16, 3]},
                             "model": {"layers": [{"Flatten": {}}]},
                             "train": {"epochs": 1, "batch_size": 8, "mixed_precision": "float32"},
                             "output": {"runs_dir": str(tmp / "runs"), "plots": False}})
    (tmp / "p.yaml").write_text(config)
    result = cnnclf("train", tmp / "p.yaml")
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.split()[-1])


def tamper(rows: list[list[str]], how: str) -> list[list[str]]:
    header, body = rows[0], rows[1:]
    if how == "train-says-test":
        return [header] + [[f, c, "test" if s == "train" else s] for f, c, s in body]
    if how == "test-rows-deleted":
        tests = [r for r in body if r[2] == "test"]
        return [header] + [r for r in body if r not in tests[: len(tests) // 2]]
    return [header] + [[f, c, {"test": "TEST", "train": "tset"}.get(s, s)] for f, c, s in body]  # misspelt


@pytest.mark.parametrize("how", ["train-says-test", "test-rows-deleted", "misspelt"])
@pytest.mark.parametrize("command", ["evaluate", "resume", "train --from"])
def test_a_tampered_split_is_refused_in_one_line(photo_run, tmp_path, how, command):
    import csv
    import shutil

    run = shutil.copytree(photo_run, tmp_path / photo_run.name)
    rows = list(csv.reader((run / "split.csv").open()))
    with (run / "split.csv").open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(tamper(rows, how))
    metrics = (run / "metrics.json").read_bytes()
    if command == "resume":
        status = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**status, "status": "interrupted"}))
    result = cnnclf(*command.split(), run)
    assert result.exit_code == 2 and result.stderr == (
        f"Error: {run}/split.csv: not the split this run trained on (it changed since: its sha256 differs from "
        f"env.json's); restore the file, or train a new run\n")
    assert (run / "metrics.json").read_bytes() == metrics  # not rewritten


def test_plots_of_a_thousand_classes_stay_page_sized(tiny_run, tmp_path):
    """A run of 1,000 classes asked for a 55,400 x 110,800 pixel confusion matrix; every figure is bounded."""
    import io
    import shutil

    from PIL import Image

    run = shutil.copytree(tiny_run[0], tmp_path / tiny_run[0].name)
    n, rng = 1000, np.random.default_rng(0)
    names = [f"class {i:04d}" for i in range(n)]
    y_true = np.arange(2000) % n
    probabilities = rng.dirichlet(np.ones(n), 2000).astype(np.float32)
    counts = np.zeros((n, n), int)
    np.add.at(counts, (y_true, probabilities.argmax(1)), 1)
    per_class = {name: {"precision": 0.5, "recall": float(i % 7) / 7, "f1": 0.5, "support": 2}
                 for i, name in enumerate(names)}
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(class_names=names, confusion_matrix=counts.tolist(), per_class=per_class)
    (run / "metrics.json").write_text(json.dumps(metrics))
    out = io.BytesIO()
    np.savez(out, y_true=y_true, probabilities=probabilities, sample_index=np.arange(36),
             sample_images=np.zeros((36, 28, 28, 1), np.uint8), gradcam=np.zeros((0, 28, 28), np.float16))
    (run / "predictions.npz").write_bytes(out.getvalue())
    out = io.BytesIO()
    np.savez(out, images=np.zeros((n, 28, 28, 1), np.uint8), labels=np.arange(n), class_names=np.array(names))
    (run / "data_samples.npz").write_bytes(out.getvalue())
    result = cnnclf("plot", run)
    assert result.exit_code == 0, result.stderr
    for png in (run / "plots").glob("*.png"):
        with Image.open(png) as image:
            assert max(image.size) <= 2600, (png.name, image.size)


# --- the fourth battery's files that predict, train and the server meet (issue 37) ----------------------------


def hostile_folder(folder: Path) -> dict[str, str]:
    """Beside a real digit: PostScript named .png, a JPEG with a malformed EXIF block, a FIFO, a link to
    /dev/zero, and a 2 GiB file named .jpg; what predict must say of each."""
    from test_reading import ORIENTATION_6, jpeg_with_exif

    folder.mkdir()
    (folder / "digit.png").write_bytes(png_bytes(np.zeros((28, 28), np.uint8)))
    (folder / "ps.png").write_bytes(POSTSCRIPT)
    (folder / "exif.jpg").write_bytes(jpeg_with_exif([ORIENTATION_6, (0x0131, 5, 1, struct.pack(">II", 1, 0))]))
    special(folder / "fifo.png")
    special(folder / "zero.png", "/dev/zero")
    with open(folder / "video.jpg", "wb") as f:
        f.truncate(2 * 2**30)
    return {"ps.png": "ImageError: not an image in a format cnnclf reads",
            "fifo.png": "NotReadable: not a regular file (a FIFO)",
            "zero.png": "NotReadable: not a regular file (a character device)",
            "video.jpg": "NotReadable: 2,147,483,648 bytes, more than cnnclf reads of such a file"}


def test_predict_skips_and_names_each_hostile_file_and_classifies_the_rest(trained_run, tmp_path):
    skipped = hostile_folder(tmp_path / "in")
    result = cnnclf("predict", trained_run, tmp_path / "in", "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(Path(r["file"]).name for r in json.loads(result.stdout)) == ["digit.png", "exif.jpg"]
    for name, reason in skipped.items():
        assert f"skipped {tmp_path}/in/{name}: not a readable image ({reason}" in result.stderr
    named = cnnclf("predict", trained_run, tmp_path / "in" / "fifo.png", tmp_path / "in" / "digit.png")
    assert named.exit_code == 0 and f"skipped {tmp_path}/in/fifo.png: not a readable image" in named.stderr


def test_training_skips_and_names_hostile_files_when_asked(tmp_path):
    data = folder(tmp_path, two_classes(**{"train/dog/ps.png": POSTSCRIPT}))
    special(Path(data["path"]) / "train/cat/fifo.png")
    result = cnnclf("train", config(tmp_path, data={**data, "skip_bad_images": True, "validation": "test"}))
    assert result.exit_code == 0, result.stderr
    assert "skipped 2 unreadable image files (data.skip_bad_images)" in result.stderr
    run = Path(result.stdout.split()[-1])
    assert {"fifo.png", "ps.png"} == {Path(p).name for p in json.loads((run / "env.json").read_text())["data"][
        "skipped_files"]}


def test_a_password_on_the_command_line_is_recorded_masked(tmp_path, monkeypatch):
    """env.json and run.lock record the command line: a database password in it is masked there."""
    from helpers import tiny_config, write_config

    monkeypatch.setattr("sys.argv", ["cnnclf", "train", "x.yaml", "--set",
                                     "tune.storage=postgresql://me:hun@ter2@db/s?password=hunter3"])
    config = tiny_config(tmp_path / "runs", epochs=1)
    result = cnnclf("train", write_config(tmp_path / "c.yaml", config))
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.split()[-1])
    recorded = json.loads((run / "env.json").read_text())["command"]
    assert recorded[-1] == "tune.storage=postgresql://me:***@db/s?password=***"
    for path in run.rglob("*"):
        assert not path.is_file() or b"ter2" not in path.read_bytes() and b"hunter3" not in path.read_bytes(), path

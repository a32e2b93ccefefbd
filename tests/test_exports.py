"""Every export is the inference graph, in float32: for each model a config can build (augmentation,
test-time views, bfloat16 training, a backbone fine-tuned in a second phase), each format gives
`cnnclf predict`'s probabilities on the same files, the same on every call."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cnnclf.data.decoding import decode_image
from conftest import cnnclf, photos, run_exported, write_config

FORMATS = ["savedmodel", "tflite", "onnx"]
AUGMENT = {"flip": "horizontal", "translate": 0.1, "rotate": 0.05, "zoom": 0.1}


def trained(tmp: Path, root: Path, model: dict, **train) -> Path:
    config = write_config(tmp / "run.yaml", {
        "data": {"dataset": "custom", "source": "folder", "path": str(root), "image_shape": [32, 32, 3],
                 "resize": "pad", "augment": {**AUGMENT, **train.pop("augment", {})}},
        "model": model,
        "train": {"epochs": 1, "batch_size": 16, "optimizer": {"name": "adam", "learning_rate": 0.01}, **train},
        "output": {"runs_dir": str(tmp / "runs"), "plots": False}})
    result = cnnclf("train", config)
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.split()[-1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return photos(tmp_path_factory.mktemp("export-photos") / "photos", counts={"cat": 16, "dog": 12, "fox": 8})


@pytest.fixture(scope="module")
def augmented_run(tmp_path_factory, folder):
    """Trained in mixed bfloat16 with flips, shifts, rotations and zooms, evaluated over test-time flips
    and shifts."""
    layers = [{"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}}, {"BatchNormalization": {}},
              {"MaxPooling2D": {"pool_size": 2}}, {"Dropout": {"rate": 0.3}}, {"GlobalAveragePooling2D": {}}]
    return trained(tmp_path_factory.mktemp("augmented"), folder, {"layers": layers},
                   augment={"test_flip": True, "test_shift": 1}, mixed_precision="mixed_bfloat16")


@pytest.fixture(scope="module")
def fine_tuned_run(fine_tuned):
    """A backbone from a weights file, frozen, then fine-tuned (batch norm in inference mode)."""
    return fine_tuned[0]


def predicted(run: Path, files: list[Path]) -> np.ndarray:
    """`cnnclf predict`'s probabilities for the files, in the run's class order."""
    classes = json.loads((run / "run.json").read_text())["class_names"]
    result = cnnclf("predict", run, *files, "--json", "--top-k", len(classes))
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    return np.array([[{t["class"]: t["probability"] for t in row["top_k"]}[c] for c in classes] for row in rows])


@pytest.mark.slow
@pytest.mark.parametrize("which", ["augmented_run", "fine_tuned_run"])
def test_every_export_gives_predicts_answers_on_the_same_files(request, which, tmp_path):
    run = request.getfixturevalue(which)
    files = sorted(Path(yaml.safe_load((run / "config.yaml").read_text())["data"]["path"]).rglob("*.jpg"))[::3]
    expected = predicted(run, files)
    for fmt in FORMATS:
        exported = cnnclf("export", run, "--format", fmt, "--out", tmp_path / f"model.{fmt}")
        assert exported.exit_code == 0, exported.stderr
        path = Path(exported.stdout.strip())
        described = json.loads(path.with_name(path.name + ".json").read_text())
        shape = tuple(described["input"]["shape"][1:])
        x = np.stack([decode_image(f.read_bytes(), shape, described["input"]["resize"]) for f in files])
        first = run_exported(path, fmt, x.astype(np.float32))
        np.testing.assert_allclose(first, expected, atol=2e-4, err_msg=fmt)
        assert (first.argmax(1) == expected.argmax(1)).all(), fmt
        np.testing.assert_array_equal(run_exported(path, fmt, x.astype(np.float32)), first, err_msg=fmt)

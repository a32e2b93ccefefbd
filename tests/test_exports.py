"""Every export is the inference graph, in float32: for each model a config can build (augmentation,
test-time views, bfloat16 training, a backbone fine-tuned in a second phase), each format gives
`cnnclf predict`'s probabilities on the same files, the same on every call."""

import json
import re
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


def readme_export_examples() -> tuple[str, dict[str, str]]:
    """README's "Using an export": the block that prepares an image, and each format's block."""
    from conftest import ROOT

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using an export"): text.index("## Serving a model")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    formats = {"onnxruntime": "onnx", "Interpreter": "tflite", "saved_model": "savedmodel"}
    return blocks[0], {next(f for key, f in formats.items() if key in block): block for block in blocks[1:]}


@pytest.mark.slow
def test_the_readme_examples_of_each_export_run_as_written(augmented_run, tmp_path):
    """A padded (letterboxed) run: each example, as README writes it, gives predict's class and probability."""
    import subprocess
    import sys

    prepare, examples = readme_export_examples()
    assert sorted(examples) == sorted(FORMATS)
    photo = sorted(Path(yaml.safe_load((augmented_run / "config.yaml").read_text())["data"]["path"]).rglob("*.jpg"))[5]
    expected = json.loads(cnnclf("predict", augmented_run, photo, "--json").stdout)[0]
    for fmt, example in examples.items():
        exported = cnnclf("export", augmented_run, "--format", fmt)
        assert exported.exit_code == 0, exported.stderr
        script = (prepare.replace("runs/20261121T101500Z-fashion/export/model.onnx", exported.stdout.strip())
                  .replace('"shoe.png"', repr(str(photo))) + example)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (fmt, done.stderr[-2000:])
        name, probability = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
        assert name == expected["class"] and float(probability) == pytest.approx(expected["probability"], abs=2e-4), fmt

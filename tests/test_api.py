"""The Python API (issue 38): the README's example runs as written on the shipped sample, in a Python
process of its own; failures raise cnnclf's errors and never exit the interpreter; nothing prints
unless asked; and the API answers what the command line does on the same run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, cnnclf, png_bytes

pytestmark = pytest.mark.slow  # trains for real, in a process of its own


def readme_example() -> str:
    """The Python block of README.md's "From Python" section, as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_as_written(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    from cnnclf.data.idx import read_idx

    digits = read_idx(ROOT / "data" / "mnist-sample" / "t10k-images-idx3-ubyte.gz", "images")[:5]
    for i, digit in enumerate(digits):
        (photos / f"{i}.png").write_bytes(png_bytes(digit))
    (tmp_path / "a.png").write_bytes(png_bytes(digits[0]))
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "data").symlink_to(ROOT / "data")
    script = readme_example() + "\nimport json\nprint(json.dumps({'path': str(run.path), 'rows': len(table), " \
                                "'metrics': sorted(run.evaluate())}))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing is printed unless asked
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(said["path"]).parent == tmp_path / "runs" and said["rows"] == 6 and "test_accuracy" in said["metrics"]


@pytest.fixture(scope="module")
def api_run(tiny_run):
    import cnnclf

    return cnnclf.Run(tiny_run[0])


def test_a_run_opened_from_python_says_what_its_files_say(api_run, tiny_run):
    import pandas as pd

    run = tiny_run[0]
    assert api_run.path == run and api_run.status["status"] == "completed"
    assert api_run.config["train"]["epochs"] == 2 and api_run.metrics == json.loads((run / "metrics.json").read_text())
    history = api_run.history
    assert isinstance(history, pd.DataFrame) and list(history["epoch"]) == [1, 2] and "val_accuracy" in history


def test_predict_from_python_is_predict_on_the_command_line(api_run, tmp_path, digits):
    x = digits[2][:6]
    for i, image in enumerate(x):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(image[..., 0]))
    (tmp_path / "notes.txt").write_text("not an image")
    table = api_run.predict([tmp_path / "0.png", tmp_path], top_k=2)
    shell = json.loads(cnnclf("predict", api_run.path, tmp_path / "0.png", tmp_path, "--top-k", 2, "--json").stdout)
    assert list(table["file"]) == [r["file"] for r in shell] and list(table["class"]) == [r["class"] for r in shell]
    np.testing.assert_allclose(table["probability"], [r["probability"] for r in shell], atol=1e-6)
    assert list(table.columns[:4]) == ["file", "class", "probability", "unknown"] and "top2_class" in table
    assert list(table["unknown"]) == [r["unknown"] for r in shell]
    assert api_run.predict(x, min_confidence=1.0)["unknown"].all()
    arrays = api_run.predict(x, top_k=2)  # the same pixels as an array
    assert arrays["file"].isna().all() and list(arrays["class"]) == list(table["class"])[1:]
    bigger = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)  # 56x56: resized as a 56x56 file would be
    assert list(api_run.predict(bigger)["class"]) == list(table["class"])[1:]


def test_failures_raise_cnnclf_errors_and_never_exit(tmp_path, api_run):
    import cnnclf

    with pytest.raises(cnnclf.NotARunError, match="no such run directory"):
        cnnclf.Run(tmp_path / "nope")
    with pytest.raises(cnnclf.ConfigError, match="no such config file"):
        cnnclf.train(tmp_path / "missing.yaml")
    with pytest.raises(cnnclf.ConfigError, match=r"--set train.epochs: got 0"):
        cnnclf.train(ROOT / "configs" / "quickstart.yaml", overrides={"train.epochs": 0})
    with pytest.raises(cnnclf.DataError, match="images must be uint8"):
        api_run.predict(np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(cnnclf.ConfigError, match="format 'zip'"):
        api_run.export("zip")
    assert issubclass(cnnclf.DataError, cnnclf.CnnclfError)


def test_export_from_python_is_the_command_lines(api_run, tmp_path):
    out = api_run.export("tflite", out=tmp_path / "m.tflite")
    assert out == tmp_path / "m.tflite" and out.is_file()
    assert json.loads((tmp_path / "m.tflite.json").read_text())["run"] == api_run.path.name

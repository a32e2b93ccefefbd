"""Classify image files with a run's best model, converting them the way its data was."""

import logging
from pathlib import Path

import numpy as np

from cnnclf.data.files import DECODE_ERRORS, decode_image, reason
from cnnclf.errors import DataError
from cnnclf.evaluate import load_predictor
from cnnclf.runs import RunDir

log = logging.getLogger("cnnclf")


def predict(run: RunDir, paths: list[str], top_k: int) -> list[dict]:
    """One row per readable image: file, class, probability and the top-k classes.
    Files that are not images are reported on stderr and skipped."""
    model = load_predictor(run)
    class_names = run.class_names()
    shape = tuple(model.input_shape[1:])
    policy = run.read_config().data.resize
    files, images = [], []
    for path in _expand(paths):
        try:
            images.append(decode_image(path.read_bytes(), shape, policy))
            files.append(path)
        except DECODE_ERRORS as e:
            log.warning(f"skipped {path}: not a readable image ({reason(e)})")
    if not images:
        raise DataError(f"no readable images in {', '.join(paths)}; pass PNG or JPEG files or folders of them")
    probabilities = model.predict(np.stack(images), batch_size=256, verbose=0)
    rows = []
    for path, p in zip(files, probabilities):
        top = np.argsort(p)[::-1][:top_k]
        rows.append({"file": str(path), "class": class_names[top[0]], "probability": float(p[top[0]]),
                     "top_k": [{"class": class_names[i], "probability": float(p[i])} for i in top]})
    return rows


def _expand(paths: list[str]) -> list[Path]:
    found = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return found


def table(rows: list[dict]) -> list[list[str]]:
    """Rows for printing or CSV: file, class, probability, then the top-k as 'class probability'."""
    return [[r["file"], r["class"], f"{r['probability']:.4f}",
             *(f"{t['class']} {t['probability']:.4f}" for t in r["top_k"])] for r in rows]

"""Classify image files with a run's best model, converting them the way its data was."""

import logging
from pathlib import Path

import numpy as np

from cnnclf.data.decoding import DECODE_ERRORS, reason
from cnnclf.data.files import MAX_FILE_BYTES
from cnnclf.errors import DataError, printable
from cnnclf.inference.loading import Predictor
from cnnclf.reading import open_regular
from cnnclf.rundir.directory import RunDir

log = logging.getLogger("cnnclf")

BATCH = 256  # images per call into the model


def predict(
    run: RunDir,
    paths: list[str],
    top_k: int,
    explain: bool = False,
    layer: str | None = None,
    min_confidence: float | None = None,
) -> list[dict]:
    """One row per readable image: file, class, probability (calibrated: the run's temperature),
    unknown (the probability below the run's threshold, or `min_confidence` where given) and the
    top-k classes, and with `explain`
    its pixels and the Grad-CAM heatmap of its class (numpy arrays: the caller draws them, as
    reporting.image_grids.explanations does for `predict --explain`). Files that are not images are
    reported on stderr and skipped."""
    predictor = Predictor(run)
    files, images = [], []
    for path in _expand(paths):
        try:  # the file's header is read first: a file in no image format is refused before the rest is read
            with open_regular(path, MAX_FILE_BYTES) as stream:
                images.append(predictor.decode(stream))
            files.append(path)
        except DECODE_ERRORS as e:
            log.warning(f"skipped {printable(path)}: not a readable image ({reason(e)})")
    if not images:
        raise DataError(f"no readable images in {', '.join(paths)}; pass PNG or JPEG files or folders of them")
    pixels = np.stack(images)
    probabilities = predictor.in_batches(pixels)
    rows = [_row(predictor, str(path), p, top_k, min_confidence) for path, p in zip(files, probabilities)]
    if explain:
        for row, image, heat in zip(rows, pixels, _heatmaps(predictor, pixels, probabilities.argmax(axis=1), layer)):
            row.update(pixels=image, heatmap=heat)
    return rows


def predict_arrays(run: RunDir, images: np.ndarray, top_k: int, min_confidence: float | None = None) -> list[dict]:
    """predict's rows for uint8 images (n, height, width, channels) in an array, file None: each of
    another size brought to the model's as a file of that size would be (the run's resize policy)."""
    from PIL import Image

    from cnnclf.data.decoding import fit_image

    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4):
        kind = f"{images.dtype} of shape {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise DataError(
            f"images must be uint8 (n, height, width, channels), got {kind}; pass files, or np.uint8 pixels"
        )
    predictor = Predictor(run)
    if images.shape[1:] != predictor.shape:
        policy = predictor.config.data.resize
        pictures = (Image.fromarray(i[..., 0] if i.shape[-1] == 1 else i) for i in images)
        images = np.stack([fit_image(picture, predictor.shape, policy) for picture in pictures])
    return [_row(predictor, None, p, top_k, min_confidence) for p in predictor.in_batches(images)]


def _row(predictor: Predictor, file, probabilities: np.ndarray, top_k: int, min_confidence: float | None) -> dict:
    return {"file": file, **predictor.answer(probabilities, top_k, min_confidence)}


def flat(row: dict) -> dict:
    """A row with its top-k spread into columns: top1_class, top1_probability, ... (the API's table)."""
    spread = {f"top{i}_{k}": t[k] for i, t in enumerate(row["top_k"], 1) for k in ("class", "probability")}
    return {**{k: v for k, v in row.items() if k != "top_k"}, **spread}


def _heatmaps(predictor: Predictor, pixels: np.ndarray, classes: np.ndarray, layer: str | None) -> np.ndarray:
    """Grad-CAM heatmaps of each image's class, BATCH images at a time."""
    from cnnclf.model import gradcam

    return np.concatenate(
        [
            gradcam.heatmaps(predictor.model, pixels[i : i + BATCH], classes[i : i + BATCH], layer)
            for i in range(0, len(pixels), BATCH)
        ]
    )


def _expand(paths: list[str]) -> list[Path]:
    """The files named, and those in the folders named; what is not a regular file (a FIFO, a device)
    is kept, to be reported and skipped when it is read."""
    found = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if not p.is_dir() and not p.name.startswith("."))
        elif path.exists():
            found.append(path)
        else:
            raise DataError(f"{printable(path)}: no such file or folder")
    return found


def table(rows: list[dict], columns: bool = False) -> list[list[str]]:
    """Rows for printing: file, class, probability, unknown, then each of the top-k as 'class probability'; or
    with `columns` (CSV), each top-k class and probability in cells of their own. Names are shown with
    control characters escaped (an ANSI or right-to-left mark in a class name reaches no terminal raw),
    and in CSV a name that a spreadsheet would run as a formula (=, +, -, @) is quoted as text."""
    name = _cell if columns else printable

    def ranked(t: dict) -> list[str]:
        return (
            [name(t["class"]), f"{t['probability']:.4f}"] if columns else [f"{name(t['class'])} {t['probability']:.4f}"]
        )

    return [
        [
            name(r["file"]),
            name(r["class"]),
            f"{r['probability']:.4f}",
            ("true" if columns else "unknown") if r["unknown"] else ("false" if columns else ""),
            *(c for t in r["top_k"] for c in ranked(t)),
        ]
        for r in rows
    ]


def _cell(text: str) -> str:
    """A name as a CSV cell: printable, and led by ' where a spreadsheet would take it for a formula."""
    text = printable(text)
    return "'" + text if text.startswith(("=", "+", "-", "@")) else text

"""How far to trust an answer, fitted once a run is trained, on its validation split, and kept in
calibration.json:

- a temperature that calibrates the probabilities (Guo et al.'s temperature scaling: the logits
  divided by it, the classes unchanged), which predict, serve and every export then give;
- a rejection threshold on the calibrated top probability, the one that keeps 95% of the correctly
  classified validation images: an answer below it is marked unknown (an image of a class the model
  never saw scores low more often than one it knows; bench/unknown.py measured the top probability
  against the largest logit and the energy, BENCHMARKS.md "Unknown classes").

A run whose validation is its test set (data.validation: test) has nothing to fit on that is not
the test: it keeps temperature 1 and flags nothing, and says so.
"""

import json

import numpy as np

from cnnclf.measures import calibrated, fit_temperature, keeping
from cnnclf.rundir.directory import RunDir

KEPT = 0.95  # of the correctly classified validation images, the share the threshold keeps
SCORE = "top probability"  # calibrated


def fit(validation_probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """calibration.json's content, from the validation split's probabilities (the inference graph's)."""
    if not len(labels):
        return unfitted("the run has no validation split of its own (data.validation: test)")
    temperature = fit_temperature(validation_probabilities, labels)
    scaled = calibrated(validation_probabilities, temperature)
    right = scaled.argmax(1) == labels
    return {
        "temperature": temperature,
        "score": SCORE,
        "threshold": keeping(scaled.max(1)[right], KEPT) if right.any() else 0.0,
        "kept": KEPT,
        "fitted_on": f"{len(labels):,} validation images",
    }


def unfitted(why: str) -> dict:
    return {"temperature": 1.0, "score": SCORE, "threshold": 0.0, "kept": None, "fitted_on": None, "why": why}


def read(run: RunDir) -> dict:
    """The run's calibration; a run trained before cnnclf fitted one answers as it always did."""
    path = run.calibration
    if not path.exists():
        return unfitted("the run was trained before cnnclf calibrated runs")
    try:
        found = json.loads(path.read_text())
        float(found["temperature"]), float(found["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        from cnnclf.errors import NotARunError

        raise NotARunError(f"{path}: the run's calibration file is damaged ({e.__class__.__name__})") from None
    return found


def unknown(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Which answers are below the threshold on the (calibrated) top probability."""
    return probabilities.max(axis=1) < threshold

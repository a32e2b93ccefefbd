"""The measures of a classifier's answers, from predicted probabilities with numpy alone: no
TensorFlow, and no scikit-learn, which would hold 124 MB through the rest of a run (tests check
them against it). Evaluation (inference/) computes them, the plots (reporting/) read what it
stored; neither imports the other."""

import numpy as np

CALIBRATION_BINS = 15  # equal-width confidence bins


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j]: images of class i predicted as class j."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of each class from a confusion matrix; 0 where undefined."""
    hits, support, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros(len(hits)), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(len(hits)), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(len(hits)), where=both > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def top_k_accuracy(probabilities: np.ndarray, y_true: np.ndarray, k: int) -> float:
    top = np.argsort(probabilities, axis=1)[:, -k:]
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


def calibration_bins(probabilities: np.ndarray, y_true: np.ndarray) -> list[dict]:
    """Per confidence bin: its range, image count, mean confidence and accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    return [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": int(np.sum(index == b)),
            "confidence": float(confidence[index == b].mean()) if np.any(index == b) else None,
            "accuracy": float(correct[index == b].mean()) if np.any(index == b) else None,
        }
        for b in range(CALIBRATION_BINS)
    ]


def expected_calibration_error(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """Mean |accuracy - confidence| over the bins, weighted by how many images fall in each."""
    bins = calibration_bins(probabilities, y_true)
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / len(y_true))


def calibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logits divided by `temperature` (softmax(log p / T): the same classes,
    sharper below 1, softer above)."""
    scaled = np.log(np.maximum(probabilities, 1e-12)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature that minimizes the negative log-likelihood of the true classes (Guo et al.'s
    temperature scaling): a grid over 0.05-20, then a finer one around the best."""
    rows = np.arange(len(y_true))

    def nll(t: float) -> float:
        return float(-np.mean(np.log(np.maximum(calibrated(probabilities, t)[rows, y_true], 1e-12))))

    grid = np.geomspace(0.05, 20, 121)
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = np.geomspace(best / 1.06, best * 1.06, 41)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def keeping(scores: np.ndarray, share: float) -> float:
    """The highest threshold that keeps at least `share` of the scores at or above it."""
    if not len(scores):
        return float("-inf")
    ranked = np.sort(scores)[::-1]
    return float(ranked[max(int(np.ceil(share * len(ranked))), 1) - 1])


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Precision and recall at every threshold on `scores` (highest first), starting at recall 0, and the
    average precision (the precision at each positive, averaged: scikit-learn's definition)."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(np.float64)
    found = np.cumsum(hits)
    precision = found / np.arange(1, len(hits) + 1)
    total = max(hits.sum(), 1.0)
    average = float((precision * hits).sum() / total)
    return np.concatenate([[1.0], precision]), np.concatenate([[0.0], found / total]), average


def most_confused(counts: np.ndarray, names: list[str], limit: int = 5) -> list[dict]:
    """The class pairs most often confused (fastai's most_confused): given, predicted, how many, and
    their share of the given class's images; largest first."""
    off = counts.astype(np.float64).copy()
    np.fill_diagonal(off, 0)
    pairs = [(int(i), int(j)) for i, j in zip(*np.unravel_index(np.argsort(-off, axis=None), off.shape)) if off[i, j]]
    rows = counts.sum(axis=1)
    return [
        {"given": names[i], "predicted": names[j], "images": int(counts[i, j]), "share": float(counts[i, j] / rows[i])}
        for i, j in pairs[:limit]
    ]

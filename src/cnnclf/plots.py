"""Plots drawn from a run directory's files alone (matplotlib's Agg backend; nothing is shown)."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnnclf.callbacks import read_history  # noqa: E402
from cnnclf.runs import RunDir  # noqa: E402


def draw_all(run: RunDir) -> list:
    """Every plot the run's files allow; returns their paths."""
    run.plots.mkdir(exist_ok=True)
    drawn = []
    if run.history.exists():
        drawn.append(learning_curves(run))
    if run.metrics.exists():
        drawn.append(confusion(run))
    return drawn


def learning_curves(run: RunDir):
    """Accuracy and loss per epoch, training vs validation, as the tutorials draw them."""
    rows = read_history(run.history)
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for prefix, label in (("", "training"), ("val_", "validation")):
            if f"{prefix}{metric}" in rows[0]:
                ax.plot(epochs, [r[f"{prefix}{metric}"] for r in rows], marker="o", label=label)
        ax.set(title=metric.capitalize(), xlabel="epoch", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, run.plots / "learning_curves.png")


def confusion(run: RunDir):
    """Confusion matrix, counts and normalized by true class."""
    metrics = json.loads(run.metrics.read_text())
    counts = np.array(metrics["confusion_matrix"])
    names = metrics["class_names"]
    normalized = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(6, 0.5 * len(names) + 3)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for ax, values, title, fmt in ((axes[0], counts, "Counts", "d"), (axes[1], normalized, "Normalized by true class", ".2f")):
        ax.imshow(values, cmap="Blues")
        ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(len(names)), yticks=range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_yticklabels(names)
        if len(names) <= 20:
            threshold = values.max() / 2
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                        color="white" if v > threshold else "black")
    return _save(fig, run.plots / "confusion_matrix.png")


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""Plots drawn from a run directory's files alone (matplotlib's Agg backend; nothing is shown)."""

import math

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # class names are text: "price_$5_$10" is not mathematics
matplotlib.rcParams["text.usetex"] = False
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from cnnclf.runs import RunDir  # noqa: E402

WRONG, RIGHT = "#c0392b", "#1e8449"


def draw_all(run: RunDir) -> list:
    """Every plot the run's files allow, then report.html; returns their paths."""
    from cnnclf.report import write_report

    run.plots.mkdir(exist_ok=True)
    drawn = []
    if run.history.exists():
        drawn.append(learning_curves(run))
    if run.metrics.exists():
        drawn += [confusion(run), per_class_accuracy(run)]
    if run.predictions.exists():
        drawn += [test_samples(run), reliability(run)]
        with np.load(run.predictions) as f:
            explained = "gradcam" in f.files and len(f["gradcam"]) > 0
        if explained:
            drawn.append(gradcam_samples(run))
    if run.data_samples.exists():
        with np.load(run.data_samples) as f:
            drawn.append(data_grid(f["images"], f["labels"], list(f["class_names"]), run.plots / "data_samples.png"))
    if drawn:
        drawn.append(write_report(run, drawn))
    return drawn


def learning_curves(run: RunDir):
    """Accuracy and loss per epoch, training vs validation, as the tutorials draw them, with the
    epoch whose model was kept marked, and a fine-tuning phase shaded."""
    rows = run.read_history()
    epochs = [r["epoch"] for r in rows]
    kept = kept_epoch(run, rows)
    tuned = [r["epoch"] for r in rows if r.get("phase") == "fine_tune"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for prefix, label in (("", "training"), ("val_", "validation")):
            if f"{prefix}{metric}" in rows[0]:
                ax.plot(epochs, [r[f"{prefix}{metric}"] for r in rows], marker="o", label=label)
        if kept is not None:
            ax.axvline(kept, color="black", linestyle=":", label=f"kept: epoch {kept}")
        if tuned:
            ax.axvspan(min(tuned) - 0.5, max(tuned) + 0.5, color="#f5cba7", alpha=0.35, label="fine-tuning")
        ax.set(title=metric.capitalize(), xlabel="epoch", ylabel=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, run.plots / "learning_curves.png")


def kept_epoch(run: RunDir, rows: list[dict]) -> int | None:
    """The epoch whose model is model.keras: the best by the checkpoint's monitor, else the last."""
    if not rows:
        return None
    checkpoint = run.read_config().train.checkpoint
    if checkpoint is None or checkpoint.monitor not in rows[0]:
        return rows[-1]["epoch"]
    higher = checkpoint.mode == "max" or (checkpoint.mode == "auto" and "acc" in checkpoint.monitor)
    values = [r[checkpoint.monitor] for r in rows]
    best = max(values) if higher else min(values)
    return rows[values.index(best)]["epoch"]


def compared_curves(runs: list[RunDir], path):
    """Several runs' validation accuracy and loss per epoch on one plot (cnnclf compare)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in runs:
        rows = run.read_history()
        for ax, metric in zip(axes, ("val_accuracy", "val_loss")):
            if rows and metric in rows[0]:
                ax.plot([r["epoch"] for r in rows], [r[metric] for r in rows], marker="o", label=run.path.name)
    for ax, metric in zip(axes, ("validation accuracy", "validation loss")):
        ax.set(title=metric.capitalize(), xlabel="epoch", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def confusion(run: RunDir):
    """Confusion matrix, counts above and normalized by true class below, each the page's width."""
    metrics = run.read_metrics()
    counts = np.array(metrics["confusion_matrix"])
    names = metrics["class_names"]
    normalized = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(7.0, 0.55 * len(names) + 4)
    fig, axes = plt.subplots(2, 1, figsize=(size + 1.5, 2 * size))
    font = max(6, min(12, 140 // max(len(names), 1)))
    for ax, values, title, fmt in ((axes[0], counts, "Counts", "d"), (axes[1], normalized, "Normalized by true class",
                                                                      ".2f")):
        shown = ax.imshow(values, cmap="Blues")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set(title=title, xlabel="predicted class", ylabel="true class", xticks=range(len(names)),
               yticks=range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_yticklabels(names)
        if len(names) <= 20:
            threshold = values.max() / 2
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=font,
                        color="white" if v > threshold else "black")
    return _save(fig, run.plots / "confusion_matrix.png")


def per_class_accuracy(run: RunDir):
    """Accuracy (recall) of each class, worst first, on a 0-1 axis, against the overall test accuracy."""
    metrics = run.read_metrics()
    rows = sorted(metrics["per_class"].items(), key=lambda item: -item[1]["recall"])  # barh: last on top
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * len(rows) + 1.2)))
    ax.barh([name for name, _ in rows], [r["recall"] for _, r in rows], color="#2e86c1")
    ax.axvline(metrics["test_accuracy"], color="black", linestyle="--")
    ax.set(title=f"Per-class accuracy (test); dashed line: overall {metrics['test_accuracy']:.2%}",
           xlabel="accuracy (recall)", xlim=(0, 1))
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, run.plots / "per_class_accuracy.png")


def test_samples(run: RunDir):
    """Sample test images, misclassified first: true label, prediction and its probability."""
    metrics = run.read_metrics()
    names = metrics["class_names"]
    with np.load(run.predictions) as f:
        images, index = f["sample_images"], f["sample_index"]
        truth, probabilities = f["y_true"][index], f["probabilities"][index]
    titles, colors = [], []
    for true, p in zip(truth, probabilities):
        predicted = int(p.argmax())
        titles.append(f"{names[true]}\n→ {names[predicted]} {p[predicted]:.0%}")
        colors.append(RIGHT if predicted == true else WRONG)
    return _grid(images, titles, colors, "Test samples (misclassified first): true → predicted",
                 run.plots / "test_samples.png")


def gradcam_samples(run: RunDir):
    """The first test samples (misclassified ones first) with their Grad-CAM heatmaps."""
    names = run.read_metrics()["class_names"]
    with np.load(run.predictions) as f:
        maps = f["gradcam"].astype(np.float32)
        index = f["sample_index"][: len(maps)]
        images, truth, probabilities = f["sample_images"][: len(maps)], f["y_true"][index], f["probabilities"][index]
    titles = [f"{names[t]}\n→ {names[int(p.argmax())]} {p.max():.0%}" for t, p in zip(truth, probabilities)]
    return explanations(images, maps, titles, run.plots / "gradcam.png",
                        "Where the model looked (Grad-CAM), misclassified test images first: true → predicted")


def explanations(images: np.ndarray, maps: np.ndarray, titles: list[str], path, title: str = ""):
    """Each image beside its Grad-CAM heatmap laid over it."""
    fig, axes = plt.subplots(2, len(images), figsize=(max(2.2 * len(images), 3), 4.8), squeeze=False)
    for column, (image, heat, text) in enumerate(zip(images, maps, titles)):
        top, bottom = axes[0, column], axes[1, column]
        for ax in (top, bottom):
            ax.axis("off")
            _show(ax, image)
        bottom.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        top.set_title(text, fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def reliability(run: RunDir):
    """Reliability diagram: accuracy against confidence per bin, with the calibration error."""
    from cnnclf.metrics import calibration_bins

    metrics = run.read_metrics()
    with np.load(run.predictions) as f:
        bins = [b for b in calibration_bins(f["probabilities"], f["y_true"]) if b["count"]]
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    width = bins[0]["high"] - bins[0]["low"]
    ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge",
           color="#2e86c1", edgecolor="black", label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(title=f"Reliability (expected calibration error {metrics['expected_calibration_error']:.3f})",
           ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    counts.bar([b["low"] for b in bins], [b["count"] for b in bins], width=width, align="edge", color="grey")
    counts.set(xlabel="confidence (top probability)", ylabel="images", yscale="log")
    return _save(fig, run.plots / "reliability.png")


def data_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], path):
    """Training images, one row per class: the "look at your data" plot."""
    per_class = max(int(np.sum(labels == c)) for c in range(len(class_names)))
    fig, axes = plt.subplots(len(class_names), per_class, figsize=(per_class * 1.1, len(class_names) * 1.15),
                             squeeze=False)
    for c, row in enumerate(axes):
        shown = images[labels == c]
        for j, ax in enumerate(row):
            ax.axis("off")
            if j < len(shown):
                _show(ax, shown[j])
        row[0].set_title(str(class_names[c]), fontsize=10, loc="left")
    fig.suptitle("Training images per class")
    return _save(fig, path)


def _grid(images, titles, colors, title, path):
    columns = min(6, len(images))
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 2.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, text, color in zip(axes.flat, images, titles, colors):
        _show(ax, image)
        ax.set_title(text, fontsize=10, color=color)
    fig.suptitle(title)
    return _save(fig, path)


def _show(ax, image):
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
              vmin=0, vmax=255)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

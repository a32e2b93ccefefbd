"""Plots drawn from a run directory's files alone (matplotlib's Agg backend; nothing is shown)."""

import math

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # class names are text: "price_$5_$10" is not mathematics
matplotlib.rcParams["text.usetex"] = False
import matplotlib.pyplot as plt  # noqa: E402
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
    """Accuracy and loss per epoch, training vs validation, as the tutorials draw them."""
    rows = run.read_history()
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
    """Confusion matrix, counts and normalized by true class."""
    metrics = run.read_metrics()
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


def per_class_accuracy(run: RunDir):
    """Accuracy (recall) of each class, worst first, against the overall test accuracy."""
    metrics = run.read_metrics()
    rows = sorted(metrics["per_class"].items(), key=lambda item: -item[1]["recall"])  # barh: last on top
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * len(rows) + 1)))
    ax.barh([name for name, _ in rows], [r["recall"] for _, r in rows], color="#2e86c1")
    ax.axvline(metrics["test_accuracy"], color="black", linestyle="--",
               label=f"overall {metrics['test_accuracy']:.2%}")
    low = min(r["recall"] for _, r in rows)
    ax.set(title="Per-class accuracy (test)", xlabel="accuracy", xlim=(max(0, low - 0.05), 1))
    ax.legend(loc="lower right")
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
        row[0].set_title(str(class_names[c]), fontsize=8, loc="left")
    fig.suptitle("Training images per class")
    return _save(fig, path)


def _grid(images, titles, colors, title, path):
    columns = min(9, len(images))
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, text, color in zip(axes.flat, images, titles, colors):
        _show(ax, image)
        ax.set_title(text, fontsize=7, color=color)
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

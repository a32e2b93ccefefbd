"""Plots drawn from a run directory's files alone (figures.py sets matplotlib up): every plot of a
run and report.html (draw_all), the charts here and the image grids in image_grids.py."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from cnnclf.reporting.figures import MAX_INCHES, plt, save
from cnnclf.reporting.image_grids import data_grid, gradcam_samples, test_samples, top_losses
from cnnclf.rundir.directory import RunDir, kept_epoch

NAMED_CLASSES = 40  # classes named along an axis; beyond, the charts show indices, or the best and worst
PR_CLASSES = 12  # precision-recall curves on one plot, at most (the worst classes)


def draw_all(run: RunDir) -> list:
    """Every plot the run's files allow, then report.html; returns their paths. The plots are drawn
    by two processes at once where the system can fork (each plot is seconds of single-core work)."""
    from cnnclf.reporting.report import write_report

    run.plots.mkdir(exist_ok=True)
    jobs = []
    if run.history.exists():
        jobs.append(("learning_curves", learning_curves))
    if run.metrics.exists():
        jobs += [("confusion_matrix", confusion), ("per_class_accuracy", per_class_accuracy)]
    if run.predictions.exists():
        jobs += [("test_samples", test_samples), ("reliability", reliability), ("precision_recall", precision_recall)]
        with np.load(run.predictions) as f:
            if "gradcam" in f.files and len(f["gradcam"]) > 0:
                jobs.append(("gradcam", gradcam_samples))
            if "loss_index" in f.files:  # runs evaluated before it was kept have none
                jobs.append(("top_losses", top_losses))
    if run.data_samples.exists():
        jobs.append(("data_samples", _data_samples))
    _in_two_processes([(draw, run) for _, draw in jobs])
    drawn = [run.plots / f"{name}.png" for name, _ in jobs]
    if drawn:
        drawn.append(write_report(run, drawn))
    return drawn


def _data_samples(run: RunDir):
    with np.load(run.data_samples) as f:
        return data_grid(f["images"], f["labels"], list(f["class_names"]), run.plots / "data_samples.png")


def _in_two_processes(jobs: list) -> None:
    """Run the jobs ((draw, run) pairs), every other one in a forked worker (the executor data/parts.py
    decodes with); an error in either raises here. The worker runs matplotlib alone, never TensorFlow."""
    if len(jobs) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        for draw, run in jobs:
            draw(run)
        return
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as worker:
        drawing = [worker.submit(draw, run) for draw, run in jobs[1::2]]
        for draw, run in jobs[0::2]:
            draw(run)
        for future in drawing:
            future.result()


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
    return save(fig, run.plots / "learning_curves.png")


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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


def confusion(run: RunDir):
    """Confusion matrix, counts above and normalized by true class below, each the page's width."""
    metrics = run.read_metrics() or {}
    counts = np.array(metrics["confusion_matrix"])
    names = metrics["class_names"]
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    mistakes = np.where(np.eye(len(names), dtype=bool), np.nan, shares)  # the diagonal (accuracy) apart
    size = min(max(7.0, 0.55 * len(names) + 4), MAX_INCHES / 2)  # two matrices, one above the other
    fig, axes = plt.subplots(2, 1, figsize=(size + 1.5, 2 * size))
    font = max(6, min(12, 140 // max(len(names), 1)))
    named = len(names) <= NAMED_CLASSES  # beyond, a class's name would not fit its row: indices, every few
    # the mistakes on a scale of their own: a model right 99% of the time still shows where its 1% goes
    for ax, values, title, cmap in (
        (axes[0], counts, "Counts", "Blues"),
        (axes[1], mistakes, "Where each class's mistakes go: share of its test images (diagonal: accuracy)", "Reds"),
    ):
        shown = ax.imshow(values, cmap=cmap, vmin=0)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set(title=title, xlabel="predicted class", ylabel="true class")
        if named:
            ax.set(xticks=range(len(names)), yticks=range(len(names)))
            ax.set_xticklabels(names, rotation=45, ha="right")
            ax.set_yticklabels(names)
        if len(names) <= 20:
            threshold = np.nanmax(values, initial=0) / 2
            for (i, j), v in np.ndenumerate(counts if values is counts else shares):
                text = f"{v:d}" if values is counts else (f"{v:.1%}" if v or i == j else "")
                dark = values is counts and v > threshold or values is mistakes and i != j and v > threshold
                color = "grey" if values is mistakes and i == j else "white" if dark else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=font, color=color)
    return save(fig, run.plots / "confusion_matrix.png")


def per_class_accuracy(run: RunDir):
    """Accuracy (recall) of each class, worst first, on a 0-1 axis, against the overall test accuracy."""
    metrics = run.read_metrics() or {}
    rows = sorted(metrics["per_class"].items(), key=lambda item: -item[1]["recall"])  # barh: last on top
    shown = f"; the best and worst {NAMED_CLASSES // 2} of {len(rows):,}" if len(rows) > NAMED_CLASSES else ""
    if shown:
        rows = rows[: NAMED_CLASSES // 2] + rows[-NAMED_CLASSES // 2 :]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * len(rows) + 1.2)))
    ax.barh([name for name, _ in rows], [r["recall"] for _, r in rows], color="#2e86c1")
    ax.axvline(metrics["test_accuracy"], color="black", linestyle="--")
    ax.set(
        title=f"Per-class accuracy (test){shown}; dashed line: overall {metrics['test_accuracy']:.2%}",
        xlabel="accuracy (recall)",
        xlim=(0, 1),
    )
    ax.grid(axis="x", alpha=0.3)
    return save(fig, run.plots / "per_class_accuracy.png")


def reliability(run: RunDir):
    """Reliability diagram: accuracy against confidence per bin, with the calibration error."""
    metrics = run.read_metrics() or {}
    fitted = metrics.get("calibration") or {}
    if "bins" not in fitted:  # a run evaluated before metrics.json held them: its own probabilities
        from cnnclf.measures import calibration_bins

        with np.load(run.predictions) as f:
            fitted = {"bins": calibration_bins(f["probabilities"], f["y_true"]), "temperature": 1.0}
    bins = [b for b in fitted["bins"] if b["count"]]
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    width = bins[0]["high"] - bins[0]["low"]
    ax.bar(
        [b["low"] for b in bins],
        [b["accuracy"] for b in bins],
        width=width,
        align="edge",
        color="#2e86c1",
        edgecolor="black",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    error = fitted.get("expected_calibration_error_after", metrics["expected_calibration_error"])
    after = (
        f" (the model's own {metrics['expected_calibration_error']:.3f}; temperature {fitted['temperature']:.2f})"
        if fitted.get("temperature", 1.0) != 1.0
        else ""
    )
    ax.set_title(f"Reliability of the answers\nexpected calibration error {error:.3f}{after}", pad=26)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)  # above the bars, not on them
    counts.bar([b["low"] for b in bins], [b["count"] for b in bins], width=width, align="edge", color="grey")
    counts.set(xlabel="confidence (top probability)", ylabel="images", yscale="log")
    # plain numbers: the log axis' default labels are math text, which is off (class names are text)
    counts.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    counts.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}"))
    counts.yaxis.set_minor_formatter(NullFormatter())
    return save(fig, run.plots / "reliability.png")


def precision_recall(run: RunDir):
    """Precision against recall for each class, one against the rest, ranked by the class's probability,
    with its average precision; the worst classes where there are too many to tell apart."""
    from cnnclf.measures import precision_recall_curve

    names = (run.read_metrics() or {})["class_names"]
    with np.load(run.predictions) as f:
        probabilities, y_true = f["probabilities"], f["y_true"]
    curves = [(name, *precision_recall_curve(probabilities[:, c], y_true == c)) for c, name in enumerate(names)]
    curves = sorted(curves, key=lambda curve: curve[3])[:PR_CLASSES]  # the lowest average precision first
    fig, ax = plt.subplots(figsize=(7, 6))
    for name, precision, recall, average in curves:  # each point: the best precision at that recall or beyond
        ax.step(recall, np.maximum.accumulate(precision[::-1])[::-1], where="post", label=f"{name} (AP {average:.2f})")
    worst = f": the {PR_CLASSES} of lowest AP of {len(names):,}" if len(names) > PR_CLASSES else ""
    ax.set(
        title=f"Precision-recall per class, one against the rest{worst}",
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left", fontsize=8, ncol=1 + len(curves) // 8)
    return save(fig, run.plots / "precision_recall.png")


def lr_find(rates: np.ndarray, losses: np.ndarray, suggested: float, path):
    """`cnnclf lr-find`'s plot: the smoothed loss against the learning rate, the suggestion marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(rates, losses, color="#2e86c1")
    ax.axvline(suggested, color="black", linestyle="--", label=f"suggested {suggested:.2g} (steepest descent)")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)", title="Learning-rate range test")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # plain numbers, not math text
    top = float(np.nanpercentile(losses, 95)) if len(losses) else 1.0
    ax.set_ylim(min(losses.min(initial=0), 0) if len(losses) else 0, top * 1.2)
    ax.legend(loc="upper left")
    return save(fig, path)

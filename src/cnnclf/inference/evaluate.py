"""Test-set evaluation of a run's best model: metrics.json and predictions.npz."""

import io

import keras
import numpy as np

from cnnclf.atomic import write_bytes, write_json
from cnnclf.data.pipeline import errors_unwrapped, evaluation_batches
from cnnclf.errors import printable
from cnnclf.inference import calibration
from cnnclf.inference.loading import inference_model
from cnnclf.measures import (
    calibrated,
    calibration_bins,
    confusion_matrix,
    expected_calibration_error,
    per_class,
    top_k_accuracy,
)
from cnnclf.model.build import eval_batch_size
from cnnclf.model.loss import make_loss
from cnnclf.rundir.directory import RunDir

SAMPLES = 36  # test images kept for the sample grid, misclassified ones first
EXPLAINED = 6  # of them, the first few (misclassified) get a Grad-CAM heatmap in the report
TOP_K = (3, 5)
TOP_LOSSES = 12  # the highest-loss test images the report shows (fastai's plot_top_losses)


def probabilities_of(model: keras.Model, part, config, num_classes: int) -> np.ndarray:
    """The probabilities `model` (as inference_model wraps it, uncalibrated) gives a split's images: one
    pass, batch by batch (model.predict on the same batches peaked 100-700 MB higher, s004_mnist)."""
    batches = evaluation_batches(part, eval_batch_size(model, config.train), num_classes, False)
    graph = inference_model(model, config)
    with errors_unwrapped():
        return np.concatenate(
            [graph.predict_on_batch(x) for x, _ in batches] or [np.zeros((0, num_classes), np.float32)]
        ).astype(np.float32)


def calibrate(run: RunDir, model: keras.Model, splits, config) -> dict:
    """Fit the run's temperature and rejection threshold on its validation split (calibration.py) and
    write calibration.json; its content."""
    if config.data.validation == "test":
        fitted = calibration.fit(np.zeros((0, splits.num_classes), np.float32), splits.validation.labels[:0])
    else:
        fitted = calibration.fit(
            probabilities_of(model, splits.validation, config, splits.num_classes), splits.validation.labels
        )
    write_json(run.calibration, fitted)
    return fitted


def evaluate(run: RunDir, model: keras.Model, splits, config) -> dict:
    """Evaluate `model` (as inference_model wraps it) on the test split; write metrics.json and
    predictions.npz; return the metrics. The loss, accuracy and calibration error are the model's own;
    "calibration" gives the calibration error after the run's temperature, and what its threshold
    for unknown answers costs on the test images."""
    base = model
    probabilities = probabilities_of(model, splits.test, config, splits.num_classes)
    y_true, y_pred = splits.test.labels, probabilities.argmax(axis=1)
    results = test_scores(probabilities, y_true, config)
    counts = confusion_matrix(y_true, y_pred, splits.num_classes)
    scores = per_class(counts)
    rows = zip(splits.class_names, scores["precision"], scores["recall"], scores["f1"], scores["support"])
    metrics = {
        "test_loss": float(results.pop("loss")),
        **{f"test_{name}": float(value) for name, value in results.items()},
        "test_images": int(len(y_true)),
        "balanced_accuracy": float(scores["recall"].mean()),  # the mean of the classes' recalls
        "macro_f1": float(scores["f1"].mean()),
        "class_names": splits.class_names,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in rows
        },
        "macro_avg": {key: float(values.mean()) for key, values in scores.items() if key != "support"},
        "confusion_matrix": counts.tolist(),
        "top_k_accuracy": {str(k): top_k_accuracy(probabilities, y_true, k) for k in TOP_K if k < splits.num_classes},
        "expected_calibration_error": expected_calibration_error(probabilities, y_true),
        "calibration": _calibration(calibration.read(run), probabilities, y_true),
    }
    write_json(run.metrics, metrics)
    order = sample_order(y_true, y_pred)[:SAMPLES]
    samples = splits.test.gather(order)
    explained = order[:EXPLAINED]
    losses = -np.log(np.maximum(probabilities[np.arange(len(y_true)), y_true], 1e-12))
    worst = np.argsort(-losses, kind="stable")[:TOP_LOSSES]  # the test images the model is surest wrong about
    out = io.BytesIO()
    np.savez_compressed(
        out,
        y_true=y_true,
        probabilities=probabilities,
        sample_index=order,
        sample_images=samples,
        gradcam=_explain(base, samples[:EXPLAINED], y_pred[explained]),
        loss_index=worst,
        loss_images=splits.test.gather(worst),
    )
    write_bytes(run.predictions, out.getvalue())
    return metrics


def _calibration(fitted: dict, probabilities: np.ndarray, y_true: np.ndarray) -> dict:
    """The calibration error before and after the run's temperature, the reliability diagram's bins
    (after), and what the threshold for unknown answers costs: the share of test images it flags, and
    the accuracy of the answers it keeps."""
    answered = calibrated(probabilities, fitted["temperature"])
    flagged = calibration.unknown(answered, fitted["threshold"])
    kept = ~flagged
    return {
        **fitted,
        "expected_calibration_error_before": expected_calibration_error(probabilities, y_true),
        "expected_calibration_error_after": expected_calibration_error(answered, y_true),
        "bins": calibration_bins(answered, y_true),
        "test_flagged_unknown": float(flagged.mean()) if len(flagged) else 0.0,
        "test_accuracy_of_the_rest": float(np.mean(answered[kept].argmax(1) == y_true[kept])) if kept.any() else 0.0,
    }


def sample_order(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Test images in the order the sample grid shows them: the mistakes first, taken class by class in
    turn (the class with fewest test images first), so that every class's mistakes appear and not only
    the commonest pair's; then the images classified right."""
    wrong = np.flatnonzero(y_pred != y_true)
    counts = np.bincount(y_true, minlength=int(y_true.max(initial=0)) + 1)
    rounds = np.zeros(len(wrong), np.int64)
    for label in np.unique(y_true[wrong]):
        members = y_true[wrong] == label
        rounds[members] = np.arange(members.sum())  # a class's first mistake in round 0, its second in 1, ...
    turn = np.lexsort((wrong, counts[y_true[wrong]], rounds))  # by round, then rarest class, then index
    return np.concatenate([wrong[turn], np.flatnonzero(y_pred == y_true)])


def test_scores(probabilities: np.ndarray, y_true: np.ndarray, config) -> dict[str, float]:
    """The loss and each of train.metrics on the test set, as Keras computes them."""
    onehot = config.data.labels == "onehot"
    y = np.eye(probabilities.shape[1], dtype=np.float32)[y_true] if onehot else y_true
    results = {"loss": float(keras.ops.convert_to_numpy(make_loss(config.train, config.data.labels)(y, probabilities)))}
    for name in config.train.metrics:
        if name in ("accuracy", "acc"):
            results[name] = float(np.mean(probabilities.argmax(axis=1) == y_true))
            continue
        metric = keras.metrics.get(name)
        if isinstance(metric, keras.metrics.Metric):
            metric.update_state(y, probabilities)
            results[name] = float(keras.ops.convert_to_numpy(metric.result()))
        else:
            results[name] = float(np.mean(keras.ops.convert_to_numpy(metric(y, probabilities))))
    return results


def _explain(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Grad-CAM heatmaps (float16) of the predicted classes; none when the model has no feature map."""
    from cnnclf.errors import ConfigError
    from cnnclf.model import gradcam

    try:
        return gradcam.heatmaps(model, images, classes).astype(np.float16)
    except ConfigError:
        return np.zeros((0, *images.shape[1:3]), np.float16)


COLLAPSE_SHARE, COLLAPSE_LABELS = 0.9, 0.6


def collapse_warning(metrics: dict, class_weight="none") -> str | None:
    """A warning when the test predictions fall on one class: over 90% of them, where that class is
    under 60% of the labels (the model has learnt the majority, not the classes). From the confusion
    matrix, so it costs no pass over the images. The fixes it names leave out train.class_weight:
    balanced where `class_weight` (the run's) is that already."""
    counts = np.array(metrics["confusion_matrix"])
    total = counts.sum()
    if total < 10:
        return None
    top = int(counts.sum(axis=0).argmax())
    share, labels_share = counts[:, top].sum() / total, counts[top].sum() / total
    if share <= COLLAPSE_SHARE or labels_share >= COLLAPSE_LABELS:
        return None
    name = metrics["class_names"][top]
    return (
        f"the model predicts {name} for {share:.0%} of the test images, which are {labels_share:.0%} "
        f"{name}: it has learnt the majority, not the classes; try "
        + ("" if class_weight == "balanced" else "train.class_weight: balanced, ")
        + "a smaller train.batch_size or a lower learning rate"
    )


def metrics_table(metrics: dict) -> str:
    """The per-class table and the totals, as text."""
    width = max(len(printable(n)) for n in [*metrics["class_names"], "class"]) + 2
    lines = [f"{'class':<{width}}precision  recall      f1  support"]
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{printable(name):<{width}}{row['precision']:9.4f}{row['recall']:8.4f}{row['f1']:8.4f}{row['support']:9d}"
        )
    lines.append(
        f"test_loss {metrics['test_loss']:.4f}  test_accuracy {metrics['test_accuracy']:.4f}  "
        f"balanced_accuracy {metrics['balanced_accuracy']:.4f}  macro_f1 {metrics['macro_f1']:.4f}  "
        f"({metrics['test_images']} images)"
    )
    return "\n".join(lines)

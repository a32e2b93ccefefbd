"""Test-set evaluation of a run's best model: metrics.json and predictions.npz."""

import io

import keras
import numpy as np

from cnnclf.data.pipeline import evaluation_batches
from cnnclf.errors import RunError
from cnnclf.metrics import confusion_matrix, expected_calibration_error, per_class, top_k_accuracy
from cnnclf.models import eval_batch_size, inference_model
from cnnclf.runs import RunDir, write_bytes, write_json

SAMPLES = 36  # test images kept for the sample grid, misclassified ones first
TOP_K = (3, 5)


def load_model(run: RunDir) -> keras.Model:
    """The run's best model, loaded with Keras safe mode on (no code from the file is run)."""
    try:
        return keras.saving.load_model(run.model, safe_mode=True)
    except ValueError as e:
        if "safe_mode" not in str(e):
            raise
        raise RunError(f"{run.model}: the model holds a Lambda layer (code), which safe mode refuses to load; "
                       f"cnnclf never runs code from model files") from None


def load_predictor(run: RunDir) -> keras.Model:
    """The run's best model as predict and export use it: inference_model for the run's config."""
    from cnnclf.config import load_config

    return inference_model(load_model(run), load_config(run.config))


def evaluate(run: RunDir, model: keras.Model, splits, config) -> dict:
    """Evaluate `model` (as inference_model wraps it) on the test split; write metrics.json and
    predictions.npz; return the metrics."""
    onehot = config.data.labels == "onehot"
    test = evaluation_batches(splits.x_test, splits.y_test, eval_batch_size(model, config.train), splits.num_classes,
                              onehot)
    model = inference_model(model, config)
    results = model.evaluate(test, return_dict=True, verbose=0)
    # Batch by batch: model.predict on the same batches peaked 100-700 MB higher (s004_mnist).
    probabilities = np.concatenate([model.predict_on_batch(x) for x, _ in test]).astype(np.float32)
    y_true, y_pred = splits.y_test, probabilities.argmax(axis=1)
    counts = confusion_matrix(y_true, y_pred, splits.num_classes)
    scores = per_class(counts)
    rows = zip(splits.class_names, scores["precision"], scores["recall"], scores["f1"], scores["support"])
    metrics = {
        "test_loss": float(results.pop("loss")),
        **{f"test_{name}": float(value) for name, value in results.items()},
        "test_images": int(len(y_true)),
        "class_names": splits.class_names,
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
                      for name, p, r, f, n in rows},
        "macro_avg": {key: float(values.mean()) for key, values in scores.items() if key != "support"},
        "confusion_matrix": counts.tolist(),
        "top_k_accuracy": {str(k): top_k_accuracy(probabilities, y_true, k) for k in TOP_K if k < splits.num_classes},
        "expected_calibration_error": expected_calibration_error(probabilities, y_true),
    }
    write_json(run.metrics, metrics)
    order = np.argsort(y_pred == y_true, kind="stable")[:SAMPLES]  # wrong ones first
    out = io.BytesIO()
    np.savez_compressed(out, y_true=y_true, probabilities=probabilities, sample_index=order,
                        sample_images=splits.x_test[order])
    write_bytes(run.predictions, out.getvalue())
    return metrics


def evaluate_run(run: RunDir) -> dict:
    """Reload a run's model and the test data its config names; evaluate again and rewrite the metrics."""
    from cnnclf.config import load_config
    from cnnclf.data.images import load_images
    from cnnclf.data.split import split

    config = load_config(run.config)
    splits = split(load_images(config.data), config.data, config.seed)
    return evaluate(run, load_model(run), splits, config)


def report(metrics: dict) -> str:
    """The per-class table and the totals, as text."""
    width = max(len(n) for n in metrics["class_names"]) + 2
    lines = [f"{'class':<{width}}precision  recall      f1  support"]
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:<{width}}{row['precision']:9.4f}{row['recall']:8.4f}{row['f1']:8.4f}{row['support']:9d}")
    lines.append(f"test_loss {metrics['test_loss']:.4f}  test_accuracy {metrics['test_accuracy']:.4f}  "
                 f"({metrics['test_images']} images)")
    return "\n".join(lines)

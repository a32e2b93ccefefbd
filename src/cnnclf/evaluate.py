"""Test-set evaluation of a run's best model: metrics.json and predictions.npz."""

import io
import json
import zipfile

import keras
import numpy as np

from cnnclf.compute import eval_batch_size
from cnnclf.data.pipeline import evaluation_batches
from cnnclf.errors import NotARunError
from cnnclf.fileio import write_bytes, write_json
from cnnclf.metrics import confusion_matrix, expected_calibration_error, per_class, top_k_accuracy
from cnnclf.models import inference_model
from cnnclf.runs import RunDir

SAMPLES = 36  # test images kept for the sample grid, misclassified ones first
TOP_K = (3, 5)


def load_model(run: RunDir) -> keras.Model:
    """The run's best model, loaded with Keras safe mode on (no code from the file is run), after a
    look at its config: a damaged file or a class Keras does not have is one clear line."""
    path = run.model
    _check_archive(path)
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except ValueError as e:
        if "safe_mode" in str(e):
            raise NotARunError(f"{path}: the model holds a Lambda layer (code), which safe mode refuses to load; "
                           f"cnnclf never runs code from model files") from None
        raise _damaged(path, e) from None
    except TypeError as e:
        if "Could not locate" in str(e) or "custom" in str(e).lower():
            name = str(e).split("'")[1] if "'" in str(e) else "an object"
            raise NotARunError(f"{path}: the model uses {name}, which is not a Keras class cnnclf knows (a custom "
                           f"object); cnnclf loads only models made of Keras's own layers") from None
        raise _damaged(path, e) from None
    except (OSError, zipfile.BadZipFile, KeyError, EOFError) as e:
        raise _damaged(path, e) from None


def _check_archive(path) -> None:
    """A .keras file is a zip holding config.json; refuse one that is not, or whose config names an
    object that is not Keras's own (a custom class would need its code, which cnnclf never loads)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
        raise _damaged(path, e) from None
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module = node.get("module")
            if "class_name" in node and node.get("registered_name") and not str(module or "").startswith("keras"):
                raise NotARunError(f"{path}: the model uses {node['registered_name']}, which is not a Keras class "
                                   f"cnnclf knows (a custom object); cnnclf loads only models made of Keras's own "
                                   f"layers")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _damaged(path, error: Exception) -> NotARunError:
    reason = (str(error).strip().splitlines() or [error.__class__.__name__])[0][:120]
    return NotARunError(f"{path}: the model file is damaged ({error.__class__.__name__}: {reason}); resume or retrain "
                    f"the run to write it again")


def load_predictor(run: RunDir) -> keras.Model:
    """The run's best model as predict, export and serve use it: inference_model for the run's config."""
    return inference_model(load_model(run), run.read_config())


def evaluate(run: RunDir, model: keras.Model, splits, config) -> dict:
    """Evaluate `model` (as inference_model wraps it) on the test split; write metrics.json and
    predictions.npz; return the metrics."""
    onehot = config.data.labels == "onehot"
    test = evaluation_batches(splits.test, eval_batch_size(model, config.train), splits.num_classes, onehot)
    model = inference_model(model, config)
    results = model.evaluate(test, return_dict=True, verbose=0)
    # Batch by batch: model.predict on the same batches peaked 100-700 MB higher (s004_mnist).
    probabilities = np.concatenate([model.predict_on_batch(x) for x, _ in test]).astype(np.float32)
    y_true, y_pred = splits.test.labels, probabilities.argmax(axis=1)
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
                        sample_images=splits.test.gather(order))
    write_bytes(run.predictions, out.getvalue())
    return metrics


def evaluate_run(run: RunDir) -> dict:
    """Reload a run's model and the test data its config names (the files its split.csv put in the
    test set); evaluate again and rewrite the metrics."""
    from cnnclf.data.dataset import load

    config = run.read_config()
    data = load(config.data, config.seed, saved_split=run.split if run.split.exists() else None, need=("test",))
    return evaluate(run, load_model(run), data.splits, config)


def metrics_table(metrics: dict) -> str:
    """The per-class table and the totals, as text."""
    width = max(len(n) for n in [*metrics["class_names"], "class"]) + 2
    lines = [f"{'class':<{width}}precision  recall      f1  support"]
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:<{width}}{row['precision']:9.4f}{row['recall']:8.4f}{row['f1']:8.4f}{row['support']:9d}")
    lines.append(f"test_loss {metrics['test_loss']:.4f}  test_accuracy {metrics['test_accuracy']:.4f}  "
                 f"({metrics['test_images']} images)")
    return "\n".join(lines)

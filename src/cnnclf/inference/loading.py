"""What evaluation, predict, export and the server run: a run's model, loaded safely, averaged over
the test-time views data.augment asks for; and Predictor, which decodes images the way the run's
data was and classifies them (predict and serve share it)."""

import json
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

import keras
import numpy as np

from cnnclf import device
from cnnclf.data.decoding import decode_image
from cnnclf.errors import NotARunError, first_line
from cnnclf.model.build import check_test_shift
from cnnclf.rundir.directory import RunDir

FLIP_AXES = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (1, 2)}  # of (N, H, W, C)


def inference_model(model: keras.Model, config, temperature: float = 1.0) -> keras.Model:
    """The inference graph evaluate, predict, serve and every export run: the model called in
    inference mode, so that augmentation layers (which Keras runs whenever it is not told otherwise,
    as an export's trace does not) pass images through, dropout is off and batch norm uses its
    moving statistics. With test-time augmentation, each image's class probabilities are averaged
    over its views: the image, with data.augment.test_shift also the image shifted that many pixels
    down-right and up-left (edges reflected), and with data.augment.test_flip the flips of each. On
    CIFAR-10, flips took 85.11% to 86.06% for twice the inference time, and 1-pixel shifts 87.02% to
    87.59% for 3x more (BENCHMARKS.md). `temperature`: the run's calibration, applied last."""
    augment = config.data.augment
    check_test_shift(augment, model.input_shape[1:])
    pixels = keras.Input(model.input_shape[1:], name="pixels")
    views = [pixels]
    if augment.test_shift:
        s = augment.test_shift
        height, width = model.input_shape[1:3]
        padded = keras.ops.pad(pixels, [(0, 0), (s, s), (s, s), (0, 0)], mode="reflect")
        views += [padded[:, :height, :width], padded[:, 2 * s :, 2 * s :]]
    if augment.test_flip:
        for axis in FLIP_AXES[augment.flip]:
            views += [keras.ops.flip(view, axis=axis) for view in views]
    outputs = [model(view, training=False) for view in views]
    averaged = keras.layers.Average(name="test_time_views", dtype="float32")
    probabilities = averaged(outputs) if len(outputs) > 1 else outputs[0]
    if temperature != 1.0:  # the run's calibration: softmax(log p / T), the same classes (calibration.py)
        probabilities = keras.ops.softmax(keras.ops.log(keras.ops.maximum(probabilities, 1e-12)) / temperature)
    return keras.Model(pixels, probabilities, name=model.name)


def load_model(run: RunDir, as_trained: bool = False) -> keras.Model:
    """The run's best model, loaded with Keras safe mode on (no code from the file is run), after a
    look at its config: a damaged file or a class Keras does not have is one clear line. A model
    trained in mixed precision is loaded in float32 (its weights are float32 already), so that
    predict, the server and every export compute alike on every machine; `as_trained` keeps its
    mixed bfloat16 where this CPU computes bfloat16 natively (evaluation: 2.5x faster on CIFAR-10,
    the same accuracy, top-1 different from float32's on 0.3% of the test images; BENCHMARKS.md)."""
    path = run.model
    config, policies = _check_archive(path)
    keep = as_trained and policies <= {"float32", "mixed_bfloat16"} and device.native_bfloat16()
    if policies - {"float32"} and not keep:
        with tempfile.TemporaryDirectory() as folder:
            return _load(path, _in_float32(path, config, Path(folder) / "model.keras"))
    return _load(path, path)


def _load(path, archive) -> keras.Model:
    try:
        return keras.saving.load_model(archive, safe_mode=True)
    except ValueError as e:
        if "safe_mode" in str(e):
            raise NotARunError(
                f"{path}: the model holds a Lambda layer (code), which safe mode refuses to load; "
                f"cnnclf never runs code from model files"
            ) from None
        raise _damaged(path, e) from None
    except TypeError as e:
        if "Could not locate" in str(e) or "custom" in str(e).lower():
            name = str(e).split("'")[1] if "'" in str(e) else "an object"
            raise NotARunError(
                f"{path}: the model uses {name}, which is not a Keras class cnnclf knows (a custom "
                f"object); cnnclf loads only models made of Keras's own layers"
            ) from None
        raise _damaged(path, e) from None
    except (OSError, zipfile.BadZipFile, KeyError, EOFError) as e:
        raise _damaged(path, e) from None


def _in_float32(path, config: dict, copy: Path) -> Path:
    """A copy of the .keras archive whose layers compute in float32."""

    def float32(node):
        if isinstance(node, list):
            return [float32(n) for n in node]
        if not isinstance(node, dict):
            return node
        if node.get("class_name") == "DTypePolicy":
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {k: float32(v) for k, v in node.items()}

    with zipfile.ZipFile(path) as source, zipfile.ZipFile(copy, "w") as target:
        for item in source.infolist():
            data = json.dumps(float32(config)).encode() if item.filename == "config.json" else source.read(item)
            target.writestr(item, data)
    return copy


def _check_archive(path) -> tuple[dict, set[str]]:
    """A .keras file is a zip holding config.json; refuse one that is not, or whose config names an
    object that is not Keras's own (a custom class would need its code, which cnnclf never loads).
    Its config, and the names of the dtype policies its layers compute in."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, RecursionError) as e:
        raise _damaged(path, e) from None
    policies = set()
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and isinstance(node.get("config"), dict):
                policies.add(str(node["config"].get("name")))
            module = node.get("module")
            if "class_name" in node and node.get("registered_name") and not str(module or "").startswith("keras"):
                raise NotARunError(
                    f"{path}: the model uses {node['registered_name']}, which is not a Keras class "
                    f"cnnclf knows (a custom object); cnnclf loads only models made of Keras's own "
                    f"layers"
                )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return config, policies


def _damaged(path, error: Exception) -> NotARunError:
    reason = first_line(error, 120)
    return NotARunError(
        f"{path}: the model file is damaged ({error.__class__.__name__}: {reason}); resume or retrain "
        f"the run to write it again"
    )


class Predictor:
    """A run's model, loaded once, with what it takes to classify an image file's bytes as the run's
    data were: the same decoding, size, resize policy and test-time views."""

    def __init__(self, run: RunDir):
        from cnnclf.inference import calibration

        self.config = run.read_config()
        self.model = load_model(run)
        self.calibration = calibration.read(run)
        self.inference = inference_model(self.model, self.config, self.calibration["temperature"])
        self.class_names = run.class_names()
        self.shape = tuple(self.model.input_shape[1:])

    def decode(self, data: bytes | BinaryIO) -> np.ndarray:
        """uint8 (height, width, channels); raises one of data.decoding.DECODE_ERRORS."""
        return decode_image(data, self.shape, self.config.data.resize)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.inference.predict_on_batch(np.asarray(images, np.float32)), np.float32)

    def in_batches(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """The probabilities of any number of images, `batch` images per call into the model."""
        return np.concatenate([self.probabilities(images[i : i + batch]) for i in range(0, len(images), batch)])

    def top(self, probabilities: np.ndarray, k: int) -> list[dict]:
        order = np.argsort(probabilities)[::-1][:k]
        return [{"class": self.class_names[i], "probability": float(probabilities[i])} for i in order]

    def answer(self, probabilities: np.ndarray, top_k: int, min_confidence: float | None = None) -> dict:
        """An image's answer, as predict, the server and the API give it: its class and (calibrated)
        probability, whether it is unknown (the probability below the run's threshold, or below
        `min_confidence` where given), and the top-k classes."""
        top = self.top(probabilities, top_k)
        threshold = self.calibration["threshold"] if min_confidence is None else min_confidence
        return {
            "class": top[0]["class"],
            "probability": top[0]["probability"],
            "unknown": bool(top[0]["probability"] < threshold),
            "top_k": top,
        }

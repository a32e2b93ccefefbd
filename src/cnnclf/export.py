"""Export a run's best model: TensorFlow SavedModel, TensorFlow Lite, or ONNX (through tf2onnx).

Every format takes float32 pixels 0-255 of the run's image shape: the scaling the run used
is inside the model, so callers feed images exactly as they load them. Beside the export,
<file>.json gives the class names (the order of the output `probabilities`), the input size,
colour and pixel range, and the resize policy the run's images went through. With data.augment.test_flip
or test_shift the export averages over the same views as evaluation did.
"""

import contextlib
import io
import shutil
import tempfile
import warnings
from pathlib import Path

from cnnclf.errors import ConfigError
from cnnclf.fileio import atomic_path, write_json
from cnnclf.inference import Predictor
from cnnclf.runs import RunDir

FORMATS = {"savedmodel": "model.savedmodel", "tflite": "model.tflite", "onnx": "model.onnx"}


def export(run: RunDir, fmt: str, out: Path | None = None) -> Path:
    """Write the export; the default place is <run>/export/. An --out that exists is never replaced."""
    if out is None:
        out = run.path / "export" / FORMATS[fmt]
        out.parent.mkdir(exist_ok=True)
        if out.is_dir():
            shutil.rmtree(out)  # an earlier export of this run, made from the same model.keras
    elif out.exists():
        raise ConfigError(f"{out}: already exists; choose another --out or remove it")
    import tensorflow as tf

    predictor = Predictor(run)
    model = predictor.averaged
    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="pixels")]
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Saved artifact at ..."
        if fmt == "savedmodel":
            model.export(str(out), format="tf_saved_model", input_signature=signature)
        elif fmt == "tflite":
            with tempfile.TemporaryDirectory() as saved, atomic_path(out) as tmp:
                model.export(saved, format="tf_saved_model", input_signature=signature)
                tmp.write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved).convert())
        else:
            _require_onnx()
            with atomic_path(out) as tmp, warnings.catch_warnings():
                # Keras's ONNX module probes numpy for np.object at import, which numpy warns about
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"keras\.src\.export")
                model.export(str(tmp), format="onnx", input_signature=signature)
                _name_output(tmp, "probabilities")
    write_json(out.with_name(out.name + ".json"), description(predictor, fmt))
    return out


def description(predictor: Predictor, fmt: str) -> dict:
    """What a program needs to use the export, written beside it as <file>.json."""
    height, width, channels = predictor.shape
    return {
        "format": fmt,
        "input": {
            "name": "pixels",
            "shape": [None, height, width, channels],
            "dtype": "float32",
            "pixel_range": [0, 255],
            "color": "grayscale" if channels == 1 else "RGB",
            "resize": predictor.config.data.resize,
        },
        "output": {"name": "probabilities", "classes": predictor.class_names},
        "test_time_views": {
            "flip": predictor.config.data.augment.test_flip,
            "shift": predictor.config.data.augment.test_shift,
        },
    }


def _name_output(path: Path, name: str) -> None:
    """Rename the ONNX graph's output (tf2onnx names it after a TensorFlow op: Identity:0)."""
    import onnx

    graph = onnx.load(str(path))
    old = graph.graph.output[0].name
    for node in graph.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
    graph.graph.output[0].name = name
    onnx.save(graph, str(path))


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs tf2onnx and onnx: pip install 'cnnclf[onnx]'") from None

"""Export a run's best model: TensorFlow SavedModel, TensorFlow Lite, or ONNX (through tf2onnx).

Every format is the inference graph (inference.inference_model) and takes float32 pixels 0-255 of
the run's image shape: the scaling the run used is inside the model, so callers feed images exactly
as they load them; its one output is named `probabilities`. Beside the export, <file>.json gives
the class names (the order of the output), the input size, colour and pixel range, and how the run
brought images of another size to it (the resize policy, the resampling, the padding colour).
With data.augment.test_flip or test_shift the export averages over the same views as evaluation.

Nothing is lost or half-written: the export is made under a temporary name beside its place and
renamed into it once whole; an earlier export at the run's default place is replaced only then, and
a file given with --out (or its .json) that exists is never replaced.
"""

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from cnnclf.atomic import write_json
from cnnclf.errors import ConfigError, RunError
from cnnclf.inference import quantize
from cnnclf.inference.loading import Predictor
from cnnclf.rundir.directory import RunDir, kept_epoch
from cnnclf.signals import interrupts_raised

log = logging.getLogger("cnnclf")

FORMATS = {"savedmodel": "model.savedmodel", "tflite": "model.tflite", "onnx": "model.onnx"}
OUTPUT = "probabilities"


def export(
    run: RunDir,
    fmt: str,
    out: Path | None = None,
    method: str | None = None,
    representative_images: int = 200,
    strict: bool = False,
) -> Path:
    """Write the export; the default place is <run>/export/ (model.int8.tflite and so on, quantized).
    An --out that exists is never replaced. `method` quantizes it (quantize.py) with that many
    representative training images, and checks it against predict on the test split: the figures go
    into its JSON; below the agreement floor it says so, and with `strict` the export is refused."""
    quantize.check_method(fmt, method)
    default = out is None
    name = FORMATS[fmt] if method is None else FORMATS[fmt].replace("model.", f"model.{method}.")
    out = run.path / "export" / name if out is None else Path(out)
    described = out.with_name(out.name + ".json")
    if not default:
        for path in (out, described):
            if path.exists():
                raise ConfigError(f"{path}: already exists; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(run)  # a model that does not load stops here, before anything is touched
    for stale in out.parent.glob(f".{out.name}.*.partial"):  # left by an export that was killed
        _remove(stale)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    extra: dict = {}
    try:
        with interrupts_raised():  # SIGTERM and Ctrl-C end the export here, the partial export removed
            if method is None:
                _write(predictor, fmt, partial)
            else:
                extra = _quantized(run, predictor, fmt, method, partial, representative_images, strict)
            _replace(partial, out)
    finally:
        _remove(partial)
    write_json(described, {**description(predictor, fmt), **extra, **_provenance(run)})
    return out


def _quantized(run: RunDir, predictor: Predictor, fmt: str, method: str, path: Path, count: int, strict: bool) -> dict:
    """Write the quantized export at `path` and check it on the run's test split; its JSON's figures."""
    from cnnclf.data.dataset import load

    config = predictor.config
    splits = load(config.data, config.seed, saved_split=run.saved_split(), need=("train", "test")).splits
    chosen = np.unique(np.linspace(0, len(splits.train) - 1, min(count, len(splits.train))).astype(int))
    representative = splits.train.gather(chosen)
    with tempfile.TemporaryDirectory() as scratch:
        if fmt == "tflite":
            _saved_model(predictor.inference, _signature(predictor), Path(scratch) / "model")
            path.write_bytes(quantize.tflite(Path(scratch) / "model", method, representative))
        else:
            _write(predictor, "onnx", Path(scratch) / "model.onnx")
            quantize.onnx(Path(scratch) / "model.onnx", path, representative)
    test = splits.test.gather(np.arange(len(splits.test)))
    checked = quantize.check(path, fmt, predictor.in_batches(test), splits.test.labels, test)
    log.info(quantize.said(fmt, method, checked))
    if checked["agreement_with_predict"] < quantize.AGREEMENT_FLOOR:
        message = (
            f"the {method} {fmt} export agrees with predict on only {checked['agreement_with_predict']:.2%} of the "
            f"test images, below the floor of {quantize.AGREEMENT_FLOOR:.0%}"
        )
        if strict:
            raise RunError(f"{message}; refused (--strict): export it unquantized, or as float16")
        log.warning(f"warning: {message}; it is kept, but check it before you ship it (--strict refuses it)")
    return {"quantization": {"method": method, "representative_images": int(len(chosen)), **checked}}


def _provenance(run: RunDir) -> dict:
    """Which run and epoch the export holds, and the run's status then (a run still training is
    exported at its best epoch so far)."""
    return {"run": run.path.name, "epoch": kept_epoch(run, run.read_history()), "run_status": run.status()["status"]}


def _signature(predictor: Predictor) -> list:
    import tensorflow as tf

    return [tf.TensorSpec((None, *predictor.inference.input_shape[1:]), tf.float32, name="pixels")]


def _write(predictor: Predictor, fmt: str, path: Path) -> None:
    import tensorflow as tf

    model = predictor.inference
    signature = _signature(predictor)
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Saved artifact at ..."
        if fmt == "onnx":
            _require_onnx()
            with warnings.catch_warnings():
                # Keras's ONNX module probes numpy for np.object at import, which numpy warns about
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"keras\.src\.export")
                model.export(str(path), format="onnx", input_signature=signature)
            _name_output(path, OUTPUT)
        elif fmt == "savedmodel":
            _saved_model(model, signature, path)
        else:
            with tempfile.TemporaryDirectory() as saved:
                _saved_model(model, signature, Path(saved) / "model")
                path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(Path(saved) / "model")).convert())


def _saved_model(model, signature, path: Path) -> None:
    """A SavedModel whose serving signature takes `pixels` and answers `probabilities`."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda pixels: {OUTPUT: model(pixels, training=False)}, input_signature=signature)
    archive.write_out(str(path), verbose=False)


def _replace(new: Path, old: Path) -> None:
    """Put `new` at `old`'s place; an existing `old` (a file, or a SavedModel's folder) goes only once
    `new` is there: at any instant the place holds the old export or the new one."""
    if new.is_dir() and old.is_dir():
        aside = old.with_name(f".{old.name}.{os.getpid()}.old")
        os.rename(old, aside)
        os.rename(new, old)
        shutil.rmtree(aside)
    else:
        os.replace(new, old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def description(predictor: Predictor, fmt: str) -> dict:
    """What a program needs to use the export, written beside it as <file>.json."""
    height, width, channels = predictor.shape
    data = predictor.config.data
    return {
        "format": fmt,
        "input": {
            "name": "pixels",
            "shape": [None, height, width, channels],
            "dtype": "float32",
            "pixel_range": [0, 255],
            "color": "grayscale" if channels == 1 else "RGB",
            "resize": data.resize,  # stretch | crop (the centre, at the input's aspect) | pad (letterbox)
            "resampling": "bilinear",
            "pad_color": [0] * channels if data.resize == "pad" else None,
        },
        "output": {"name": OUTPUT, "classes": predictor.class_names},
        "test_time_views": {"flip": data.augment.test_flip, "shift": data.augment.test_shift},
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

"""Quantized exports, each made by its runtime's own quantizer and checked against predict before it
is kept:

    tflite --quantize float16   TFLite's converter: weights stored in float16, computed in float32
                                (half the file, the same answers but for rounding)
    tflite --quantize int8      TFLite's converter with a representative dataset: weights and
                                activations in int8 where the ops allow (a quarter of the file)
    onnx   --quantize int8      onnxruntime's static quantizer (QDQ, per channel, 7-bit weights), calibrated on the
                                representative images

The representative images are the first of every few of the run's own training split. Every
format keeps its float32 input (pixels 0-255) and output (`probabilities`, calibrated), so a program
written for the float export takes the quantized one unchanged. The check runs the quantized file
on the run's test split beside predict's float model: the share of images given predict's class
(the agreement), the test accuracy and its change, the file's size, and the milliseconds per image
one at a time on this machine; below AGREEMENT_FLOOR the export says so (and --strict refuses it).
"""

import logging
import time
from pathlib import Path

import numpy as np

from cnnclf.errors import ConfigError

log = logging.getLogger("cnnclf")

METHODS = {"tflite": ("float16", "int8"), "onnx": ("int8",)}
AGREEMENT_FLOOR = 0.98  # of the test images, the share that must get predict's class
TIMED = 200  # test images run one at a time for the milliseconds per image
# ONNX: the ops that carry the weights are quantized; the rest (pooling, the test-time views' average,
# the temperature's log and softmax) stay float: quantizing them too cost 10 points of agreement
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
# REDUCED_RANGE: on x86 without VNNI (AVX2, as the AMD EPYC) onnxruntime multiplies int8 in pairs into
# 16 bits, which full-range weights overflow: configs/cifar10.yaml's model agreed with predict on 39%
# of the test images, 98% with weights in 7 bits. An export may run on any machine, so always 7 bits.


def check_method(fmt: str, method: str | None) -> None:
    if method is not None and method not in METHODS.get(fmt, ()):
        offered = "; ".join(f"{f}: {', '.join(m)}" for f, m in METHODS.items())
        raise ConfigError(f"--quantize {method} is not offered for {fmt} ({offered})")


def tflite(saved_model: Path, method: str, representative: np.ndarray) -> bytes:
    """The TFLite file of a SavedModel, quantized by TFLite's own converter."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if method == "float16":
        converter.target_spec.supported_types = [tf.float16]
    else:
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in representative)
    return converter.convert()


def onnx(float_model: Path, out: Path, representative: np.ndarray) -> None:
    """The ONNX model quantized to int8 by onnxruntime's static quantizer."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ConfigError("ONNX quantization needs onnxruntime: pip install 'cnnclf[onnx]'") from None

    class Images(CalibrationDataReader):
        def __init__(self):
            self.images = iter(representative)

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {"pixels": image[None].astype(np.float32)}

    prepared = out.with_name(out.name + ".prepared")
    try:
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Images(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,  # 7-bit weights, as REDUCED_RANGE says
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
        )
    finally:
        prepared.unlink(missing_ok=True)


def runner(path: Path, fmt: str):
    """A function: float32 pixels (n, h, w, c) -> probabilities, from the exported file."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(["probabilities"], {"pixels": x})[0]
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    index = interpreter.get_input_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(index, x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    return run


def check(path: Path, fmt: str, expected: np.ndarray, labels: np.ndarray, images: np.ndarray) -> dict:
    """The quantized file beside predict's float model (`expected`: its probabilities) on the test split."""
    run = runner(path, fmt)
    x = images.astype(np.float32)
    got = np.concatenate([run(x[i : i + 64]) for i in range(0, len(x), 64)])
    timed = x[: min(TIMED, len(x))]
    started = time.perf_counter()
    for i in range(len(timed)):
        run(timed[i : i + 1])
    milliseconds = (time.perf_counter() - started) * 1000 / max(len(timed), 1)
    accuracy, float_accuracy = np.mean(got.argmax(1) == labels), np.mean(expected.argmax(1) == labels)
    return {
        "test_images": int(len(labels)),
        "agreement_with_predict": float(np.mean(got.argmax(1) == expected.argmax(1))),
        "test_accuracy": float(accuracy),
        "test_accuracy_float": float(float_accuracy),
        "test_accuracy_change": float(accuracy - float_accuracy),
        "largest_probability_difference": float(np.abs(got - expected).max()),
        "bytes": path.stat().st_size,
        "milliseconds_per_image": round(milliseconds, 3),
        "agreement_floor": AGREEMENT_FLOOR,
    }


def said(fmt: str, method: str, checked: dict) -> str:
    """The check in one line."""
    return (
        f"{method} {fmt}: agrees with predict on {checked['agreement_with_predict']:.2%} of "
        f"{checked['test_images']:,} test images; test accuracy {checked['test_accuracy']:.4f} "
        f"({checked['test_accuracy_change']:+.4f}); {checked['bytes'] / 1e6:.2f} MB; "
        f"{checked['milliseconds_per_image']:.2f} ms per image on this machine"
    )

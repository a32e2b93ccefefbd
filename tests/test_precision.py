"""Precision follows the CPU: mixed_bfloat16 where it has AMX, float32 elsewhere; a model trained in
bfloat16 is evaluated, predicted with, served and exported in float32 (its weights are float32
already), on any CPU (without native bfloat16 it trains slowly, but it trains)."""

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import cnnclf, tiny_config, write_config


@pytest.mark.parametrize("flags, expected", [({"amx_bf16", "avx512_bf16", "avx512f", "avx2"}, "mixed_bfloat16"),
                                             ({"avx512_bf16", "avx512f", "avx2"}, "float32"),
                                             ({"avx2", "fma"}, "float32"), (set(), "float32")])
def test_auto_precision_follows_the_cpu(monkeypatch, flags, expected):
    import tensorflow as tf

    from cnnclf import device
    from cnnclf.config import TrainConfig
    from cnnclf.training import compute

    monkeypatch.setattr(device, "cpu_flags", lambda: flags)
    monkeypatch.setattr(device, "gpus", lambda: [])
    resolved = compute.resolve(TrainConfig(), tf.distribute.get_strategy())
    assert resolved.mixed_precision == expected
    assert resolved.precision_reason.startswith("this CPU has AMX" if "amx_bf16" in flags else "this ")
    assert resolved.conv_gradients == ("tensorflow" if "avx512f" in flags else "forward")
    assert TrainConfig(mixed_precision="float32").mixed_precision == "float32"  # a choice is kept
    assert compute.resolve(TrainConfig(mixed_precision="float32"), tf.distribute.get_strategy()).mixed_precision \
        == "float32"


@pytest.mark.slow  # trains a run
def test_a_bfloat16_run_is_evaluated_and_predicted_in_float32(tmp_path):
    import keras

    from cnnclf.inference.loading import load_model
    from cnnclf.rundir.directory import RunDir

    config = tiny_config(tmp_path / "runs", epochs=1, mixed_precision="mixed_bfloat16")
    config["output"]["plots"] = True
    result = cnnclf("train", write_config(tmp_path / "bf16.yaml", config))
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.split()[-1])
    env = json.loads((run / "env.json").read_text())
    assert env["compute"]["mixed_precision"] == "mixed_bfloat16" and env["device"]["cpu_class"]
    saved = keras.saving.load_model(run / "model.keras")
    assert {layer.dtype_policy.name for layer in saved.layers} >= {"mixed_bfloat16"}
    model = load_model(RunDir(run))
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    for loaded, trained in zip(model.weights, saved.weights, strict=True):  # the same float32 weights
        np.testing.assert_array_equal(loaded.numpy(), trained.numpy())
    with np.load(run / "predictions.npz") as f:
        probabilities, y_true = f["probabilities"], f["y_true"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(float(np.mean(probabilities.argmax(1) == y_true)))
    # Evaluation computes as the run trained where the CPU has native bfloat16 (else in float32): its
    # classes are float32's but for a stated tolerance, 1% of the test images (0.3% on CIFAR-10).
    from cnnclf.data.dataset import load
    from cnnclf.inference.loading import inference_model

    resolved = RunDir(run).read_config()
    test = load(resolved.data, resolved.seed, need=("test",)).splits.test
    in_float32 = inference_model(model, resolved).predict(test.gather(np.arange(len(test))).astype("float32"), verbose=0)
    assert np.mean(in_float32.argmax(1) != probabilities.argmax(1)) <= 0.01
    report = (run / "report.html").read_text()
    assert "<td>precision</td><td class='n'>mixed_bfloat16</td>" in report
    assert f"({env['device']['cpu_class']}, {env['device']['cpu_cores']} cores)" in report

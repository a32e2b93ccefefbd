"""env.json: what a run ran on and with: versions, device, command line, git commit, data."""

import os
import platform
import subprocess
import sys

from cnnclf.redaction import masked_argv

CPU_CLASSES = {  # flag -> class, the first the CPU has; what its bfloat16 and float32 arithmetic run on
    "amx_bf16": "AMX",  # bfloat16 matrix tiles (Intel Sapphire Rapids and later): 4-5x float32
    "avx512_bf16": "AVX-512 BF16",  # bfloat16 dot products in vector registers
    "avx512f": "AVX-512",
    "avx2": "AVX2",  # e.g. AMD Zen 3: no native bfloat16 (emulated: 7.6x slower than float32)
}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return set()


def cpu_class(flags: set[str] | None = None) -> str:
    """AMX, AVX-512 BF16, AVX-512, AVX2 or other: the class of arithmetic the CPU offers."""
    flags = cpu_flags() if flags is None else flags
    return next((name for flag, name in CPU_CLASSES.items() if flag in flags), "other")


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively, fast enough to train and evaluate in (AMX: 4-5x
    float32's arithmetic); without it bfloat16 is emulated, slower than float32."""
    return cpu_class() == "AMX"


def describe_device() -> dict:
    """What the run trains on: the CPU model, class and core count, and any GPUs TensorFlow sees."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpus = [
        tf.config.experimental.get_device_details(g).get("device_name", g.name)
        for g in tf.config.list_physical_devices("GPU")
    ]
    return {"cpu": cpu, "cpu_class": cpu_class(), "cpu_cores": os.cpu_count(), "gpus": gpus}


def environment(config, compute: dict, data_fingerprint: dict) -> dict:
    """env.json: versions, device, seed, compute settings, command line, git commit, data fingerprints."""
    import keras
    import numpy as np
    import tensorflow as tf

    from cnnclf import __version__

    try:
        git = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = git.stdout.strip() if git.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cnnclf": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": describe_device(),
        "seed": config.seed,
        "compute": compute,
        "command": masked_argv(sys.argv),
        "git_commit": commit or None,
        "data": data_fingerprint,
    }


def resumed(recorded: dict, config, compute: dict) -> dict:
    """env.json once a run is resumed: the device and compute settings of this session (a run resumed
    on another CPU may compute in another precision), the earlier ones kept under "sessions"."""
    now = environment(config, compute, recorded.get("data", {}))
    earlier = recorded.get("sessions") or [_session(recorded)]
    return {**recorded, **{k: now[k] for k in ("device", "compute", "command")}, "sessions": [*earlier, _session(now)]}


def _session(env: dict) -> dict:
    """What one session of training (train, or a resume) ran on."""
    return {
        "cpu_class": (env.get("device") or {}).get("cpu_class"),
        "gpus": (env.get("device") or {}).get("gpus"),
        "mixed_precision": (env.get("compute") or {}).get("mixed_precision"),
        "command": env.get("command"),
    }

"""env.json: what a run ran on and with: versions, device, command line, git commit, data."""

import platform
import subprocess
import sys

from cnnclf import device
from cnnclf.redaction import masked_argv


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
        "device": device.describe(),
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

"""What the machine is, in one place: the CPU's flags and class, whether it computes bfloat16 natively,
and the GPUs TensorFlow sees with their compute capability. Every `auto` (precision, convolution
gradients, XLA, the precision evaluation keeps), env.json, the report and `cnnclf bench` ask here,
and tests fake the machine here alone (cpu_flags, gpus).
"""

import os
import platform

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


def gpus() -> list[dict]:
    """The GPUs TensorFlow sees: name and compute capability ((0, 0) where it does not say)."""
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append({"name": details.get("device_name", gpu.name), "capability": details.get("compute_capability")})
    return found


def auto_precision() -> tuple[str, str]:
    """The mixed precision policy `auto` means on this machine, and why (BENCHMARKS.md, "Compute levers"):
    NVIDIA GPUs with tensor cores (compute capability 7.0 on) mixed_float16; CPUs with AMX
    mixed_bfloat16 (its matrix tiles did 4-5x float32's arithmetic); elsewhere float32 (mixed_bfloat16
    ran 7.6x slower than float32 on the 2-core AMD EPYC, which emulates it)."""
    found = gpus()
    if found:
        if all(tuple(g["capability"] or (0, 0)) >= (7, 0) for g in found):
            return "mixed_float16", "the GPU has tensor cores"
        return "float32", "the GPU has no tensor cores"
    cpu = cpu_class()
    if cpu == "AMX":
        return "mixed_bfloat16", "this CPU has AMX, whose bfloat16 matrix units do 4-5x float32's arithmetic"
    return "float32", f"this {cpu} CPU has no bfloat16 matrix units (bfloat16 would be emulated, and slower)"


def auto_conv_gradients() -> str:
    """Convolution gradients as forward convolutions on CPUs without AVX-512 (1.3x the images/s of
    cifar10_bn on the AMD EPYC); TensorFlow's own on CPUs with it (1.3-2.6x faster on the Intel Xeon
    with AMX) and on GPUs (cuDNN's)."""
    return "tensorflow" if gpus() or cpu_class().startswith(("AMX", "AVX-512")) else "forward"


def describe() -> dict:
    """What a run trains on: the CPU model, class and core count, and any GPUs."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_class": cpu_class(), "cpu_cores": os.cpu_count(), "gpus": [g["name"] for g in gpus()]}

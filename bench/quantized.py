"""Quantized exports beside the float ones (BENCHMARKS.md, "Quantized exports"):

    python bench/quantized.py RUN [RUN ...] --json bench/quantized.json

Each run is exported by `cnnclf export` (a process of its own) as TFLite, TFLite float16, TFLite int8
and ONNX int8; each quantized export's own check (its JSON: agreement with predict on the run's test
split, test accuracy and its change, bytes, milliseconds per image one at a time) is tabulated
beside the float TFLite's size.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

EXPORTS = [("tflite", None), ("tflite", "float16"), ("tflite", "int8"), ("onnx", "int8")]


def export(run: Path, fmt: str, method: str | None, out: Path) -> dict:
    command = [sys.executable, "-m", "cnnclf", "export", str(run), "--format", fmt, "--out", str(out)]
    done = subprocess.run(command + (["--quantize", method] if method else []), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)}: {done.stderr.strip().splitlines()[-1]}")
    described = json.loads(out.with_name(out.name + ".json").read_text())
    return described.get("quantization") or {"bytes": out.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="cnnclf-quantized-") as folder:
        for run in args.runs:
            config = json.loads((run / "env.json").read_text())["command"]
            name = f"{run.name} ({Path(config[2]).name if len(config) > 2 else run.name})"
            results[name] = {}
            for fmt, method in EXPORTS:
                key = f"{fmt} {method or 'float32'}"
                results[name][key] = export(run, fmt, method, Path(folder) / f"{run.name}-{method}.{fmt}")
                print(name, key, json.dumps(results[name][key]), flush=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(
        "| run | export | MB | agreement with predict | test accuracy (change) | ms per image |\n|---|---|--:|--:|--:|--:|"
    )
    for name, rows in results.items():
        for key, row in rows.items():
            if "agreement_with_predict" in row:
                print(
                    f"| {name} | {key} | {row['bytes'] / 1e6:.2f} | {row['agreement_with_predict']:.2%} | "
                    f"{row['test_accuracy']:.4f} ({row['test_accuracy_change']:+.4f}) | "
                    f"{row['milliseconds_per_image']:.2f} |"
                )
            else:
                print(f"| {name} | {key} | {row['bytes'] / 1e6:.2f} | (the float export) | | |")


if __name__ == "__main__":
    main()

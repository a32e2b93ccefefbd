"""A bounded load test of `cnnclf serve` on 127.0.0.1 (BENCHMARKS.md, "Serving"): CLIENTS threads
each send REQUESTS requests of one image, with the server's batching on and off, for an
MNIST-size model and a 96x96 photo model:

    python bench/serve_load.py --data-dir ../shared/data

It trains the two models first (one short epoch each: speed, not accuracy, is measured), then
for each server setting reports requests/s, p50 and p99 latency and errors.
"""

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import yaml
from PIL import Image

CLIENTS, REQUESTS = 8, 200
SETTINGS = {"batching on": ["--max-batch", "32", "--batch-wait-ms", "5"],
            "batching off": ["--max-batch", "1", "--batch-wait-ms", "0"]}


def train(work: Path, name: str, data: dict, layers: list) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "data": data, "model": {"layers": layers},
                                    "train": {"epochs": 1, "batch_size": 64}, "output": {"runs_dir": str(work)}}))
    done = subprocess.run([sys.executable, "-m", "cnnclf", "train", str(path)], capture_output=True, text=True,
                          check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def load(run: Path, body: bytes, flags: list[str]) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cnnclf", "serve", str(run), "--port", str(port), *flags],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        httpx.post(f"{url}/predict", content=body)  # the first call traces the model

        def client(_):
            times, errors = [], 0
            with httpx.Client(timeout=60) as session:
                for _ in range(REQUESTS):
                    started = time.perf_counter()
                    answer = session.post(f"{url}/predict", content=body)
                    times.append(time.perf_counter() - started)
                    errors += answer.status_code != 200
            return times, errors

        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            outcomes = list(pool.map(client, range(CLIENTS)))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)
    latencies = sorted(t for times, _ in outcomes for t in times)
    return {"requests": len(latencies), "errors": sum(e for _, e in outcomes),
            "requests_per_second": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * latencies[int(0.99 * len(latencies)) - 1], 1), "exit_code": server.returncode}


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "serve-load.json")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory(prefix="cnnclf-serve-") as folder:
        work = Path(folder)
        models = {
            "MNIST 28x28": (train(work, "mnist", {"dataset": "mnist", "source": "idx",
                                                  "path": str(root / "data" / "mnist-sample")},
                                  [{"Conv2D": {"filters": 32, "kernel_size": 3, "activation": "relu"}},
                                   {"MaxPooling2D": {"pool_size": 2}}, {"Flatten": {}}]),
                            png(rng.integers(0, 255, (28, 28), dtype=np.uint8))),
            "photos 96x96": (train(work, "photos", {"dataset": "custom", "source": "folder", "limit_train": 2000,
                                                    "limit_test": 500, "image_shape": [96, 96, 3],
                                                    "path": str((args.data_dir / "cifar10/cifar10-jpg.zip").resolve())},
                                   [{"Conv2D": {"filters": 32, "kernel_size": 3, "strides": 2, "activation": "relu"}},
                                    {"Conv2D": {"filters": 64, "kernel_size": 3, "strides": 2, "activation": "relu"}},
                                    {"GlobalAveragePooling2D": {}}]),
                             png(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))),
        }
        for model, (run, body) in models.items():
            for setting, flags in SETTINGS.items():
                results.append({"model": model, "server": setting, **load(run, body, flags)})
                print(json.dumps(results[-1]), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()

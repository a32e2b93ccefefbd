"""The own-images measurements (BENCHMARKS.md, "Your own images"), on the CIFAR-10 JPEG copy read
as a user's photos (a zip of class folders, resized on the way in):

    python bench/own_images.py memory --data-dir ../shared/data   # peak memory against image count
    python bench/own_images.py speed --data-dir ../shared/data    # images/s: memory, stream, cache

Each measurement is a whole `python -m cnnclf train` process; peak memory is the process's own
(run.json's peak_rss_mb, VmHWM), images/s are per epoch from history.csv. Results go to
bench/own-images-<what>.json and a markdown table on stdout.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CHEAP = [{"Conv2D": {"filters": 16, "kernel_size": 5, "strides": 4, "activation": "relu"}},
         {"GlobalAveragePooling2D": {}}]  # so that the data, not the model, is what is measured
LIGHT = [{"Conv2D": {"filters": 32, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}},
         {"Conv2D": {"filters": 64, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}},
         {"Conv2D": {"filters": 128, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}},
         {"GlobalAveragePooling2D": {}}]


def train(work: Path, name: str, data: dict, model: dict, epochs: int) -> dict:
    config = {"name": name, "data": {"dataset": "custom", "source": "folder", "validation_split": 0.05, **data},
              "model": model, "train": {"epochs": epochs, "batch_size": 128, "early_stopping": False,
                                        "optimizer": {"name": "adam", "learning_rate": 0.002}},
              "output": {"runs_dir": str(work / "runs")}}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "cnnclf", "train", str(path)], capture_output=True, text=True)
    wall = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: {done.stderr.strip().splitlines()[-1]}")
    run = Path(done.stdout.strip().splitlines()[-1])
    state = json.loads((run / "run.json").read_text())
    env = json.loads((run / "env.json").read_text())
    rows = list(__import__("csv").DictReader((run / "history.csv").open()))
    n = env["data"]["sizes"]["train"]
    return {"name": name, "train_images": n, "storage": env["data"]["storage"], "peak_rss_mb": state["peak_rss_mb"],
            "wall_seconds": round(wall, 1), "epoch_images_per_second": [round(n / float(r["seconds"]), 1) for r in rows],
            "test_accuracy": json.loads((run / "metrics.json").read_text())["test_accuracy"]}


def memory(work: Path, zip_path: Path) -> list[dict]:
    results = []
    for images in (2000, 16000, 50000):
        for storage in ("memory", "stream"):
            data = {"path": str(zip_path), "image_shape": [96, 96, 3], "limit_train": images, "limit_test": 1000,
                    "storage": storage}
            results.append(train(work, f"mem-{storage}-{images}", data, {"layers": CHEAP}, epochs=1))
            print(json.dumps(results[-1]), flush=True)
    return results


def speed(work: Path, zip_path: Path) -> list[dict]:
    results = []
    for side, model in ((32, {"preset": "cifar10_bn"}), (96, {"layers": LIGHT})):
        shutil.rmtree(work / "cache", ignore_errors=True)
        for storage, extra in (("memory", {}), ("stream", {}), ("cache", {"cache": str(work / "cache")})):
            data = {"path": str(zip_path), "image_shape": [side, side, 3], "limit_train": 10000, "limit_test": 1000,
                    "storage": "memory" if storage == "memory" else "stream", **extra}
            results.append({"side": side, **train(work, f"speed-{side}-{storage}", data, model, epochs=3)})
            print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("memory", "speed"))
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    zip_path = (args.data_dir / "cifar10" / "cifar10-jpg.zip").resolve()
    with tempfile.TemporaryDirectory(prefix="cnnclf-own-") as folder:
        results = (memory if args.what == "memory" else speed)(Path(folder), zip_path)
    out = args.out or Path(__file__).parent / f"own-images-{args.what}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()

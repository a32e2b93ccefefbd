"""Backbones against cifar10_bn on the CIFAR-10 JPEG copy (BENCHMARKS.md, "Backbones"): training
images/s and test accuracy, from random initialization (ImageNet weights cannot be fetched
here), frozen and fully trained, at 32x32 and upscaled to 96x96, so that a user can pick a
backbone for their CPU:

    python bench/backbones.py --data-dir ../shared/data --sides 32 --out bench/backbones-32.json
    python bench/backbones.py --data-dir ../shared/data --sides 96 --train-images 1500 --out bench/backbones-96.json

(ResNet50 trains at 46 images/s at 32x32 here and about a ninth of that at 96x96, so the 96x96 pass
uses fewer images: its accuracies say little, its images/s what a user's photos would cost.)

Each row is a whole `python -m cnnclf train` process on the same stratified subset; images/s is
the last epoch's (the first includes tracing the model).
"""

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

MODELS = [("cifar10_bn", None), ("MobileNetV3Small", False), ("MobileNetV3Small", True), ("EfficientNetB0", False),
          ("EfficientNetB0", True), ("ResNet50", False), ("ResNet50", True)]


def run(work: Path, zip_path: Path, name: str, trainable, side: int, train_images: int, epochs: int) -> dict:
    model = {"preset": name} if trainable is None else {"backbone": {"name": name, "weights": None,
                                                                     "trainable": trainable}}
    tag = f"{name}-{side}-{'preset' if trainable is None else 'trainable' if trainable else 'frozen'}"
    config = {"name": tag, "data": {"dataset": "custom", "source": "folder", "path": str(zip_path),
                                    "image_shape": [side, side, 3], "limit_train": train_images, "limit_test": 2000,
                                    "validation_split": 0.1, "augment": {"flip": "horizontal"}},
              "model": model, "train": {"epochs": epochs, "batch_size": 64, "lr_schedule": "cosine",
                                        "optimizer": {"name": "adam", "learning_rate": 0.002},
                                        "early_stopping": False, "checkpoint": {"monitor": "val_accuracy"}},
              "output": {"runs_dir": str(work)}}
    path = work / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "cnnclf", "train", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"model": tag, "error": done.stderr.strip().splitlines()[-1]}
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    state = json.loads((run_dir / "run.json").read_text())
    sizes = json.loads((run_dir / "env.json").read_text())["data"]["sizes"]
    return {"model": name, "mode": "preset" if trainable is None else "trainable" if trainable else "frozen",
            "side": side, "parameters": state["parameters"], "epochs": len(rows),
            "images_per_second": round(sizes["train"] / float(rows[-1]["seconds"]), 1),
            "test_accuracy": round(json.loads((run_dir / "metrics.json").read_text())["test_accuracy"], 4),
            "wall_seconds": round(time.time() - started, 1), "peak_rss_mb": state["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--sides", default="32,96", help="image sides to run, e.g. 32,96")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "backbones.json")
    args = parser.parse_args()
    zip_path = (args.data_dir / "cifar10" / "cifar10-jpg.zip").resolve()
    results = []
    with tempfile.TemporaryDirectory(prefix="cnnclf-backbones-") as folder:
        for side in map(int, args.sides.split(",")):
            epochs = 3 if side <= 32 else 2
            for name, trainable in MODELS:
                results.append(run(Path(folder), zip_path, name, trainable, side, args.train_images, epochs))
                print(json.dumps(results[-1]), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()

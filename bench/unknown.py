"""Answers outside the known classes (BENCHMARKS.md, "Unknown classes"): which score tells them apart.

    python bench/unknown.py --data-dir ../shared/data --seeds 3

Builds photo folders from the CIFAR-10 JPEG zip with some classes held out of training (SEEN are
trained, UNSEEN only shown afterwards), trains each with the config `cnnclf init` writes, and scores
every test image of the seen classes and every image of the unseen ones by: the top probability
(raw, and after the run's temperature), the largest logit, and the energy (logsumexp of the logits).
Each score's threshold keeps 95% of the correctly classified validation images (the rule cnnclf's
rejection threshold follows), and the temperature is fitted on the validation images too. The table gives, per score, the share of unseen-class images flagged unknown against the
share of seen-class test images flagged (lower is better there), and the AUROC of seen against
unseen; a mean over the seeds.
"""

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

SEEN = ("cat", "dog", "frog", "ship", "automobile", "horse")
UNSEEN = ("airplane", "bird", "deer", "truck")
PER_CLASS = 300  # training photos per seen class
UNSEEN_IMAGES = 200  # per unseen class


def make_folders(zip_path: Path, out: Path) -> Path:
    from PIL import Image

    archive = zipfile.ZipFile(zip_path)
    names = archive.namelist()
    for cls in SEEN:
        for part, count in (("train", PER_CLASS), ("test", PER_CLASS // 3)):
            for i, name in enumerate([n for n in names if n.startswith(f"{part}/{cls}/")][:count]):
                path = out / "seen" / part / cls / f"{i:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.open(io.BytesIO(archive.read(name))).save(path)
    for cls in UNSEEN:
        for i, name in enumerate([n for n in names if n.startswith(f"test/{cls}/")][:UNSEEN_IMAGES]):
            path = out / "unseen" / f"{cls}-{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.open(io.BytesIO(archive.read(name))).save(path)
    return out


def outputs(run: Path, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The run's probabilities (its inference graph, as predict answers) and its logits (the classifier's
    input through its kernel: the bench's own look inside the model) for the files."""
    import keras

    from cnnclf.data.decoding import decode_image
    from cnnclf.inference.loading import Predictor
    from cnnclf.rundir.directory import RunDir

    predictor = Predictor(RunDir(run))
    pixels = np.stack([decode_image(f.read_bytes(), predictor.shape, predictor.config.data.resize) for f in files])
    classifier = next(layer for layer in reversed(predictor.model.layers) if isinstance(layer, keras.layers.Dense))
    features = keras.Model(predictor.model.inputs, classifier.input).predict(pixels.astype("float32"), verbose=0)
    kernel, bias = (np.asarray(w, np.float64) for w in classifier.get_weights())
    return predictor.in_batches(pixels), features @ kernel + bias


def scores(probabilities: np.ndarray, logits: np.ndarray, temperature: float) -> dict[str, np.ndarray]:
    """Each image's scores (higher: more like a known class)."""
    from cnnclf.measures import calibrated

    top = logits.max(1)
    return {
        "top probability": probabilities.max(1),
        "top probability, calibrated": calibrated(probabilities, temperature).max(1),
        "max logit": top,
        "energy": np.log(np.exp(logits - top[:, None]).sum(1)) + top,
    }


def auroc(seen: np.ndarray, unseen: np.ndarray) -> float:
    """The chance that a seen image scores above an unseen one (ties half)."""
    both = np.concatenate([seen, unseen])
    ranks = both.argsort().argsort() + 1.0
    return float((ranks[: len(seen)].sum() - len(seen) * (len(seen) + 1) / 2) / (len(seen) * len(unseen)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="Override the init config's epochs.")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("unknown.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnnclf-unknown-"))
    make_folders(args.data_dir / "cifar10" / "cifar10-jpg.zip", work)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnclf",
            "init",
            "--dataset",
            "custom",
            "--path",
            str(work / "seen"),
            "--out",
            str(work / "seen.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    results = []
    for seed in range(42, 42 + args.seeds):
        started = time.time()
        sets = ["--set", f"seed={seed}", "--set", f"output.runs_dir={work / 'runs'}", "--set", "output.plots=false"]
        if args.epochs:
            sets += ["--set", f"train.epochs={args.epochs}"]
        done = subprocess.run(
            [sys.executable, "-m", "cnnclf", "train", str(work / "seen.yaml"), *sets], capture_output=True, text=True
        )
        if done.returncode:
            sys.exit(done.stderr)
        run = Path(done.stdout.split()[-1])
        rows = [line.split(",") for line in (run / "split.csv").read_text().splitlines()[1:]]
        root = work / "seen"
        validation = [(root / f, c) for f, c, part in rows if part == "validation"]
        test = [(root / f, c) for f, c, part in rows if part == "test"]
        unseen_files = sorted((work / "unseen").glob("*.png"))
        from cnnclf.measures import fit_temperature, keeping

        names = json.loads((run / "run.json").read_text())["class_names"]
        p_val, z_val = outputs(run, [f for f, _ in validation])
        y_val = np.array([names.index(c) for _, c in validation])
        temperature = fit_temperature(p_val, y_val)
        p_test, z_test = outputs(run, [f for f, _ in test])
        y_test = np.array([names.index(c) for _, c in test])
        val, seen, unseen = (
            scores(*outputs(run, unseen_files), temperature) if part == "unseen" else scores(p, z, temperature)
            for part, p, z in (("val", p_val, z_val), ("test", p_test, z_test), ("unseen", None, None))
        )
        right = p_val.argmax(1) == y_val
        row = {
            "seed": seed,
            "seconds": round(time.time() - started, 1),
            "test_accuracy": float(np.mean(p_test.argmax(1) == y_test)),
            "temperature": temperature,
        }
        for name in seen:
            threshold = keeping(val[name][right], 0.95)
            row[name] = {
                "unseen_flagged": float(np.mean(unseen[name] < threshold)),
                "seen_flagged": float(np.mean(seen[name] < threshold)),
                "auroc": auroc(seen[name], unseen[name]),
            }
        results.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        name: {key: statistics.mean(r[name][key] for r in results) for key in results[0][name]}
        for name in results[0]
        if isinstance(results[0][name], dict)
    }
    args.json.write_text(json.dumps({"seen": SEEN, "unseen": UNSEEN, "runs": results, "mean": summary}, indent=2))
    for name, values in summary.items():
        print(
            f"{name:30s} unseen flagged {values['unseen_flagged']:.1%}  seen flagged {values['seen_flagged']:.1%}  "
            f"AUROC {values['auroc']:.3f}"
        )


if __name__ == "__main__":
    main()

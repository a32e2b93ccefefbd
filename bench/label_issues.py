"""How many planted wrong labels `cnnclf data issues` finds (BENCHMARKS.md, "Images labelled wrong"):

    python bench/label_issues.py --data-dir ../shared/data --seeds 2

A photo folder cut from the CIFAR-10 zip (4 classes, PER_CLASS photos each, 32x32), in which
PLANTED photos are moved into another class's folder; `cnnclf init` writes the config, and
`cnnclf data issues` (5 folds) ranks every photo. The table gives how many planted photos are in the
top PLANTED, 2 x PLANTED and 4 x PLANTED of the list (their share), and how many confident learning
flags; a mean over the seeds (each plants other photos).
"""

import argparse
import csv
import io
import json
import random
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CLASSES = ("automobile", "cat", "frog", "ship")
PER_CLASS = 150
PLANTED = 30


def make_folder(zip_path: Path, out: Path, seed: int) -> set[str]:
    from PIL import Image

    rng = random.Random(seed)
    archive = zipfile.ZipFile(zip_path)
    names = archive.namelist()
    for cls in CLASSES:
        for i, member in enumerate([n for n in names if n.startswith(f"train/{cls}/")][:PER_CLASS]):
            (out / cls).mkdir(parents=True, exist_ok=True)
            Image.open(io.BytesIO(archive.read(member))).save(out / cls / f"{i:04d}.png")
    planted = set()
    for path in rng.sample(sorted(out.rglob("*.png")), PLANTED):
        target = rng.choice([c for c in CLASSES if c != path.parent.name])
        moved = out / target / f"planted-{path.parent.name}-{path.name}"
        path.rename(moved)
        planted.add(f"{target}/{moved.name}")
    return planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("label-issues.json"))
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory(prefix="cnnclf-issues-") as folder:
            work = Path(folder)
            planted = make_folder((args.data_dir / "cifar10" / "cifar10-jpg.zip").resolve(), work / "photos", seed)
            run = [sys.executable, "-m", "cnnclf"]
            subprocess.run(
                [*run, "init", "--dataset", "custom", "--path", "photos", "--out", "p.yaml"],
                cwd=work,
                check=True,
                capture_output=True,
            )
            extra = ["--epochs", str(args.epochs)] if args.epochs else []
            done = subprocess.run(
                [
                    *run,
                    "data",
                    "issues",
                    "p.yaml",
                    "--folds",
                    str(args.folds),
                    "--out",
                    "i.csv",
                    "--set",
                    f"seed={seed}",
                    *extra,
                ],
                cwd=work,
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise SystemExit(done.stderr.strip().splitlines()[-1])
            ranked = list(csv.DictReader((work / "i.csv").open()))
            row = {
                "seed": seed,
                "images": len(ranked),
                "planted": len(planted),
                "flagged": sum(r["flagged"] == "true" for r in ranked),
                "planted_flagged": sum(r["flagged"] == "true" and r["file"] in planted for r in ranked),
            }
            for k in (1, 2, 4):
                row[f"top_{k * PLANTED}"] = sum(r["file"] in planted for r in ranked[: k * PLANTED])
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    mean = {key: statistics.mean(r[key] for r in rows) for key in rows[0] if key != "seed"}
    print("| planted | in the top 30 | top 60 | top 120 | flagged (of them planted) |\n|--:|--:|--:|--:|--:|")
    print(
        f"| {PLANTED} of {mean['images']:.0f} | {mean['top_30']:.1f} | {mean['top_60']:.1f} | {mean['top_120']:.1f} | "
        f"{mean['flagged']:.0f} ({mean['planted_flagged']:.1f}) |"
    )


if __name__ == "__main__":
    main()

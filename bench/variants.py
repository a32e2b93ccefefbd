"""A config and its variants, each trained in a process of its own over seeds (BENCHMARKS.md,
"Augmentation" and "Time budgets"):

    python bench/variants.py configs/fashion.yaml --seeds 3 --json bench/augment-fashion.json \\
        --variant "mixup=data.augment.mixup=0.2" --variant "cutmix=data.augment.cutmix=1.0"

Each training is a whole `python -m cnnclf train` process (its wall time, start to exit); the
table gives the mean test accuracy over the seeds with its range, the epochs trained, the seconds
fitting took against train.time_budget where the config has one, and the wall seconds.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def train(work: Path, config: str, seed: int, sets: list[str]) -> dict:
    """One `cnnclf train` process; what its run directory says of it."""
    started = time.time()
    overrides = [part for s in [f"seed={seed}", *sets] for part in ("--set", s)]
    done = subprocess.run(
        [sys.executable, "-m", "cnnclf", "train", config, *overrides], capture_output=True, text=True, cwd=work
    )
    if done.returncode != 0:
        raise SystemExit(f"cnnclf train {config} {' '.join(overrides)}: {done.stderr.strip().splitlines()[-1]}")
    wall = time.time() - started
    run = work / done.stdout.strip().splitlines()[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    status = json.loads((run / "run.json").read_text())
    return {
        "seed": seed,
        "test_accuracy": metrics["test_accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "wall_seconds": round(wall, 1),
        "epochs": status["epochs_done"],
        "fit_seconds": status["fit_seconds"],
        "budget_seconds": (status.get("time_budget") or {}).get("budget_seconds"),
        "run": str(run),
    }


def summary(name: str, rows: list[dict]) -> str:
    """A markdown row: mean (range) of test and balanced accuracy, epochs, fit against budget, wall."""

    def spread(key):
        values = [r[key] for r in rows]
        return f"{statistics.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"

    fit = statistics.mean(r["fit_seconds"] for r in rows)
    budget = rows[0].get("budget_seconds")
    against = f"{fit:.0f} of {budget:.0f}" if budget else f"{fit:.0f}"
    epochs = "/".join(str(r["epochs"]) for r in rows)
    wall = statistics.mean(r["wall_seconds"] for r in rows)
    return f"| {name} | {spread('test_accuracy')} | {spread('balanced_accuracy')} | {epochs} | {against} | {wall:.0f} |"


HEADER = (
    "| variant | test accuracy | balanced accuracy | epochs | fit s (of budget) | wall s |\n|---|--:|--:|--:|--:|--:|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--variant", action="append", default=[], help="NAME=KEY=VALUE;KEY=VALUE (--set each)")
    parser.add_argument("--base", default="", help="KEY=VALUE;... set in every variant, the baseline too")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, default=Path.cwd())
    args = parser.parse_args()
    base = [s for s in args.base.split(";") if s]
    variants = {"as shipped": base}
    for spec in args.variant:
        name, _, sets = spec.partition("=")
        variants[name] = base + sets.split(";")
    run_variants(args.work_dir, str(Path(args.config).resolve()), variants, args.seeds, args.json, args.first_seed)


def run_variants(work: Path, config: str, variants: dict, seeds: int, out: Path, first_seed: int = 42) -> dict:
    """Each variant over the seeds, the JSON (the machine, the date, the config, each run) rewritten after
    each run; the table printed at the end."""
    import datetime

    from cnnclf import device

    results: dict[str, list[dict]] = {}
    header = {"device": device.describe(), "date": f"{datetime.date.today()}", "config": config}
    for name, sets in variants.items():
        results[name] = []
        for seed in range(first_seed, first_seed + seeds):
            results[name].append(train(work, config, seed, sets))
            print(name, json.dumps(results[name][-1]), flush=True)
            out.write_text(json.dumps({**header, "variants": results}, indent=2) + "\n")
    print(HEADER)
    for name, rows in results.items():
        print(summary(name, rows))
    return results


if __name__ == "__main__":
    main()

"""The search benchmark (BENCHMARKS.md, "Hyperparameter search"): the quickstart space searched with and
without pruning, by one worker and by two, each a whole `cnnclf tune` process from spawn to exit:

    python bench/tune.py --trials 12

Reports each variant's wall time, trials per hour, the epochs pruning saved, and the best validation
accuracy. The study of each variant is new (its own runs folder); the data is the MNIST sample in data/.
"""

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "1 worker": ["--set", "tune.pruner=none"],
    "1 worker, median pruning": ["--set", "tune.pruner=median"],
    "2 workers": ["--workers", "2", "--set", "tune.pruner=none"],
    "2 workers, median pruning": ["--workers", "2", "--set", "tune.pruner=median"],
}


def measure(config: Path, trials: int, extra: list[str], work: Path) -> dict:
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "cnnclf", "tune", str(config), "--trials", str(trials),
                           "--set", f"output.runs_dir={work}", "--set", "output.plots=false", *extra],
                          capture_output=True, text=True)
    wall = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"cnnclf tune {' '.join(extra)}: {done.stderr.strip().splitlines()[-1]}")
    rows = list(csv.DictReader(next(work.glob("tune-*/trials.csv")).open()))
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    values = [float(r["val_accuracy"]) for r in rows if r["state"] == "COMPLETE"]
    return {"wall_seconds": round(wall, 1), "trials": len(finished), "pruned": sum(r["state"] == "PRUNED" for r in rows),
            "trials_per_hour": round(len(finished) * 3600 / wall, 1),
            "epochs_trained": sum(int(r["epochs"]) for r in rows),
            "epochs_saved": sum(int(r["epochs_saved"]) for r in rows), "best_val_accuracy": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/tune-quickstart.yaml"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "tune.json")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="cnnclf-tune-") as folder:
        for name, extra in VARIANTS.items():
            results[name] = measure(args.config.resolve(), args.trials, extra, Path(folder) / name.replace(" ", "-"))
            print(name, json.dumps(results[name]), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| variant | wall s | finished trials (pruned) | trials/hour | epochs trained | epochs saved | best val acc |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name, r in results.items():
        print(f"| {name} | {r['wall_seconds']} | {r['trials']} ({r['pruned']}) | {r['trials_per_hour']} | "
              f"{r['epochs_trained']} | {r['epochs_saved']} | {r['best_val_accuracy']:.4f} |")


if __name__ == "__main__":
    main()

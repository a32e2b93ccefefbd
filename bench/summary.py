"""BENCHMARKS.md's opening summary, generated from the JSON the benchmarks wrote (never by hand):

    python bench/summary.py            # rewrites the table between the summary markers

One row per config or variant measured: the machine's CPU class, the date, the seeds, the mean test
accuracy and the mean whole-process seconds, and the JSON file it came from. `cnnclf bench` writes
{"device", "date", "results": [...]}; bench/variants.py and bench/photos.py {"device", "date",
"variants": {name: [...]}}.
"""

import json
import statistics
from pathlib import Path

BENCH = Path(__file__).parent
TARGET = BENCH.parent / "BENCHMARKS.md"
START, END = "<!-- summary: bench/summary.py writes this table from bench/*.json -->", "<!-- end of summary -->"
SOURCES = [  # the JSON files the summary reads, newest first
    "budget-mnist.json",
    "budget-fashion.json",
    "augment-fashion.json",
    "budget-cifar10.json",
    "augment-photos.json",
    "recommended-seeds-amx.json",
    "recommended-cifar10-amx.json",
    "recommended-seeds.json",
]


def rows(path: Path) -> list[list[str]]:
    found = json.loads(path.read_text())
    cpu = (found.get("device") or {}).get("cpu_class", "?")
    date = found.get("date", "?")
    groups: dict[str, list[dict]] = {}
    if "variants" in found:
        config = Path(found.get("config", "")).name
        for name, runs in found["variants"].items():
            groups[f"{config}: {name}"] = runs
    for run in found.get("results", []):
        groups.setdefault(run.get("config") or run.get("name", "?"), []).append(run)
    table = []
    for name, runs in groups.items():
        accuracy = [r["test_accuracy"] for r in runs if r.get("test_accuracy") is not None]
        wall = [r["wall_seconds"] for r in runs if r.get("wall_seconds") is not None]
        if accuracy:
            table.append(
                [
                    name,
                    cpu,
                    date,
                    str(len(accuracy)),
                    f"{100 * statistics.mean(accuracy):.2f}%",
                    f"{statistics.mean(wall):.0f}" if wall else "",
                    path.name,
                ]
            )
    return table


def main() -> None:
    lines = [
        "| config | CPU | date | seeds | test accuracy (mean) | wall s (mean) | from |",
        "|---|---|---|--:|--:|--:|---|",
    ]
    for name in SOURCES:
        if (BENCH / name).exists():
            lines += ["| " + " | ".join(row) + " |" for row in rows(BENCH / name)]
    text = TARGET.read_text()
    table = "\n".join([START, *lines, END])
    if START in text:
        text = text[: text.index(START)] + table + text[text.index(END) + len(END) :]
    else:
        first = text.index("\n\n") + 2  # after the title
        text = text[:first] + table + "\n\n" + text[first:]
    TARGET.write_text(text)


if __name__ == "__main__":
    main()

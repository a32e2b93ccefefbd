"""cnnclf compare: what differs between runs' configs, their metrics side by side, and their
learning curves on one plot."""

import json

from cnnclf.config import flatten
from cnnclf.reporting.runs_table import TEST_SCORES
from cnnclf.rundir.directory import RunDir

METRICS = (*TEST_SCORES, "test_loss", "expected_calibration_error")
FACTS = ("epochs_done", "parameters", "wall_seconds", "train_images_per_second")


def compare(runs: list[RunDir], plot_path) -> dict:
    configs = [flatten(run.read_config().model_dump(mode="json")) for run in runs]
    keys = sorted(set().union(*configs))
    differences = {k: [c.get(k) for c in configs] for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1}
    numbers = {}
    for run in runs:
        metrics = run.read_metrics() or {}
        state = run.status()
        numbers[run.path.name] = {**{k: metrics.get(k) for k in METRICS}, **{k: state.get(k) for k in FACTS}}
    from cnnclf.reporting.plots import compared_curves  # matplotlib, configured once there

    compared_curves(runs, plot_path)
    return {
        "runs": [r.path.name for r in runs],
        "config_differences": differences,
        "metrics": numbers,
        "plot": str(plot_path),
    }


def describe(result: dict) -> str:
    from cnnclf.reporting.tables import aligned, short

    names = result["runs"]
    keys = list(next(iter(result["metrics"].values())))
    return "\n\n".join(
        [
            aligned(["config key", *names], [[k, *map(short, v)] for k, v in result["config_differences"].items()]),
            aligned(["", *names], [[k, *(short(result["metrics"][n][k]) for n in names)] for k in keys]),
            result["plot"],
        ]
    )

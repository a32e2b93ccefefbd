"""`cnnclf runs`: one row per run directory under a runs folder, and how a run's model is named in a
few words (runs, compare)."""

import socket
from pathlib import Path

from cnnclf.rundir.directory import RunDir

RUN_COLUMNS = (
    "id",
    "dataset",
    "model",
    "parameters",
    "epochs",
    "best_val_accuracy",
    "test_accuracy",
    "balanced_accuracy",
    "macro_f1",
    "wall_seconds",
    "status",
)


# how the table heads its columns (the JSON keeps the names above): short, so a row fits a terminal
HEADERS = {
    "parameters": "params",
    "best_val_accuracy": "best val acc",
    "test_accuracy": "test acc",
    "balanced_accuracy": "balanced acc",
    "macro_f1": "macro F1",
    "wall_seconds": "seconds",
}
TEST_SCORES = ("test_accuracy", "balanced_accuracy", "macro_f1")  # the last line of training, runs, compare


def model_name(model) -> str:
    """A model config in a few words: its preset, its backbone, or its number of layers."""
    if model.preset:
        return model.preset
    if model.backbone is not None:
        return model.backbone.name
    count = len(model.layers or [])
    return f"{count} layer{'' if count == 1 else 's'}"


def summarize(run: RunDir) -> dict:
    """One row of `cnnclf runs`: what the run trained and how it did; a run whose files are damaged
    is listed as damaged rather than stopping the listing."""
    row: dict = dict.fromkeys(RUN_COLUMNS)
    row["id"] = run.path.name
    try:
        state, config = run.status(), run.read_config()
        metrics = run.read_metrics() or {}
        validation = [r["val_accuracy"] for r in run.read_history() if "val_accuracy" in r]
    except Exception as e:  # noqa: BLE001 - any unreadable file makes the run damaged, not the listing
        row["status"] = f"damaged ({str(e).split(': ', 1)[-1][:60]})"
        return row
    status = state["status"]
    if status == "running" and state.get("host") == socket.gethostname() and not run.is_alive():
        status = "stopped (no process; resume it)"  # killed, or the machine went down
    if state.get("smoke"):
        status += " (smoke)"  # --smoke: a few images per class, one epoch; not a result
    row.update(
        dataset=config.data.dataset,
        model=model_name(config.model),
        parameters=state.get("parameters"),
        epochs=state.get("epochs_done"),
        best_val_accuracy=round(max(validation), 4) if validation else None,
        **{key: round(metrics[key], 4) if key in metrics else None for key in TEST_SCORES},
        wall_seconds=state.get("wall_seconds"),
        status=status,
    )
    return row


def list_runs(runs_dir, sort: str = "id", dataset: str | None = None) -> list[dict]:
    """Every run directory under runs_dir (of `dataset` only, where given), summarized and sorted
    (numbers: best first)."""
    from cnnclf.errors import ConfigError

    if sort not in RUN_COLUMNS:
        raise ConfigError(f"--sort {sort}: not a column; one of {', '.join(RUN_COLUMNS)}")
    rows = (
        [
            summarize(RunDir(p))
            for p in sorted(Path(runs_dir).iterdir())
            if (p / "run.json").is_file() and (p / "config.yaml").is_file()
        ]
        if Path(runs_dir).is_dir()
        else []
    )
    if dataset is not None:
        rows = [row for row in rows if row["dataset"] == dataset]
    numeric = sort not in ("id", "dataset", "model", "status")

    def key(row):
        value = row[sort]
        if value is None or (numeric and not isinstance(value, (int, float))):
            return (1, 0)
        return (0, -value if numeric else str(value))

    return sorted(rows, key=key)

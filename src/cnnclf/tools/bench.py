"""cnnclf bench: train configs on the full datasets of a data folder, each in its own process,
and measure time, throughput, memory and accuracy against each config's figure (bench_report.py
tabulates them).

Each config runs as `python -m cnnclf train`, so its wall time counts from process start to exit
(evaluation, plots and report included: that is when a user has the result) and its peak RSS is
its own (each process reports /proc/self/status VmHWM: wait4's ru_maxrss would include the
benchmark's own size, which exec carries over). Data paths are pointed at --data-dir; Kaggle-style
CSVs are written once from the IDX files into the work folder's cache/. The figures and the
tutorials' own code are read from the work folder (figures.yaml, tutorials.py): they are the
project's benchmark, not part of the tool.
"""

import datetime
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cnnclf.atomic import write_text
from cnnclf.config import load_config
from cnnclf.data.datasets import SHARED_COPIES
from cnnclf.errors import ConfigError, DataError
from cnnclf.rundir.directory import RunDir
from cnnclf.tools.flops import measure_peak_gflops, training_gflops_per_image

DATA_FOLDERS = {name: SHARED_COPIES[name][1] for name in ("mnist", "fashion_mnist")}
CIFAR_ZIP = SHARED_COPIES["cifar10"][1]


@dataclass
class Result:
    config: str  # path of the config, as given
    name: str
    dataset: str
    status: str
    run: str | None
    epochs: int | None
    wall_seconds: float
    time_to_first_step_seconds: float | None
    train_images_per_second: float | None
    peak_rss_mb: float | None
    test_accuracy: float | None
    figure: float | None
    seconds_to_figure: float | None  # cnnclf: its whole process, if it reached the figure; the tutorial's
    # own code: from its start to the end of the first epoch at or above the figure
    seed: int | None = None
    seconds_after_last_epoch: float | None = None  # evaluation, plots, report and exit
    train_gflops_per_image: float | None = None
    fraction_of_peak: float | None = None  # of the peak of the run's precision
    precision: str | None = None  # the run's, as auto resolved it


def run_bench(
    configs: list[str],
    data_dir: Path,
    work_dir: Path,
    limit: int | None,
    epochs: int | None,
    seeds: int = 1,
    tutorial_code: bool = False,
    log=print,
) -> dict:
    """Train each config in its own process, `seeds` times (the config's seed, then seed+1, ...), and,
    with tutorial_code, each tutorial's own code beside its seeds/ config; return the machine
    description and the results."""
    figures = _figures(work_dir)
    cache_dir, runs_dir = work_dir / "cache", work_dir / "runs"
    peaks = {precision: measure_peak_gflops(precision) for precision in ("float32", "bfloat16")}
    log(
        f"machine peaks: {peaks['float32']:.0f} GFLOP/s float32, {peaks['bfloat16']:.0f} GFLOP/s bfloat16 "
        f"(2048x2048 matmul, best of 10)"
    )
    quick = [a for key, value in (("--limit", limit), ("--epochs", epochs)) if value for a in (key, str(value))]
    results = []
    for path in configs:
        config = load_config(path)
        figure = figures.get(config.name, {})
        if tutorial_code and Path(path).parent.name == "seeds" and figure.get("tutorial"):
            _csv_copy(data_dir / DATA_FOLDERS["fashion_mnist"], cache_dir, DATA_FOLDERS["fashion_mnist"])
            command = [
                sys.executable,
                str(work_dir / "tutorials.py"),
                config.name,
                "--data-dir",
                str(data_dir),
                "--csv-dir",
                str(cache_dir),
                *quick,
            ]
            log(f"{config.name}: the tutorial's own code ...")
            results.append(
                _tutorial_result(
                    config, figure.get("figure"), _measure(command, runs_dir / "logs", f"tutorial-{config.name}")
                )
            )
        overrides = _data_overrides(config, data_dir, cache_dir) + [f"output.runs_dir={runs_dir}"]
        if limit:
            overrides += [f"data.limit_train={limit}", f"data.limit_test={limit}"]
        if epochs:
            overrides.append(f"train.epochs={epochs}")
        for seed in range(config.seed, config.seed + seeds):
            log(f"{path}: training (seed {seed}) ...")
            command = [sys.executable, "-m", "cnnclf", "train", path] + [
                a for o in overrides + [f"seed={seed}"] for a in ("--set", o)
            ]
            log_name = f"{Path(path).parent.name}-{config.name}-{seed}"  # configs/seeds and configs/fast share names
            result = _run_result(path, config, figure.get("figure"), _measure(command, runs_dir / "logs", log_name))
            result.seed = seed
            if result.run and result.status == "completed":
                gflops = training_gflops_per_image(RunDir(result.run))
                result.train_gflops_per_image = round(gflops, 4)
                if result.train_images_per_second:  # against the peak of the precision the run computed in
                    peak = peaks["bfloat16" if "bfloat16" in (result.precision or "") else "float32"]
                    result.fraction_of_peak = round(gflops * result.train_images_per_second / peak, 4)
            results.append(result)
    for result in results:
        log(
            f"{result.config}: {result.status}, test accuracy {result.test_accuracy}, {result.wall_seconds:.0f} s, "
            f"{result.peak_rss_mb} MB"
        )
    from cnnclf import device

    return {
        "device": device.describe(),
        "peak_gflops": {precision: round(value, 1) for precision, value in peaks.items()},
        "limit": limit,
        "epochs": epochs,
        "seeds": seeds,
        "date": datetime.date.today().isoformat(),
        "results": [asdict(r) for r in results],
    }


def _figures(work_dir: Path) -> dict:
    """figures.yaml in the work folder: {config name: {figure, source, tutorial}}; none if it is absent."""
    import yaml

    path = work_dir / "figures.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


@dataclass
class _Process:
    returncode: int
    stdout: str
    error: str  # the last line of stderr
    started: float  # Unix time of the spawn
    wall: float


def _measure(command: list[str], log_dir: Path, name: str) -> _Process:
    """Run a command, timing it from the spawn."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.log"
    started = time.time()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        returncode = subprocess.run(command, stdout=out, stderr=err).returncode
    error = (err_path.read_text().strip().splitlines() or ["no output"])[-1]
    return _Process(returncode, out_path.read_text(), error, started, time.time() - started)


def _run_result(path: str, config, figure: float | None, process: _Process) -> Result:
    lines = process.stdout.strip().splitlines()
    run = RunDir(lines[-1]) if process.returncode == 0 and lines else None
    if run is None:
        return _failed(path, config, figure, process)
    state = run.status()
    metrics = run.read_metrics() or {}
    history = run.read_history()
    compute = json.loads(run.env.read_text()).get("compute", {}) if run.env.exists() else {}
    return Result(
        config=path,
        name=config.name,
        dataset=config.data.dataset,
        status=state["status"],
        run=str(run.path),
        epochs=state["epochs_done"],
        wall_seconds=round(process.wall, 1),
        time_to_first_step_seconds=state.get("time_to_first_step_seconds"),
        train_images_per_second=state.get("train_images_per_second"),
        peak_rss_mb=state.get("peak_rss_mb"),
        test_accuracy=round(metrics["test_accuracy"], 4),
        figure=figure,
        seconds_to_figure=round(process.wall, 1) if figure and metrics["test_accuracy"] >= figure else None,
        seconds_after_last_epoch=round(process.started + process.wall - history[-1]["time"], 1) if history else None,
        precision=compute.get("mixed_precision"),
    )


def _failed(label: str, config, figure: float | None, process: _Process) -> Result:
    return Result(
        label,
        config.name,
        config.data.dataset,
        f"failed: {process.error}",
        None,
        None,
        round(process.wall, 1),
        None,
        None,
        None,
        None,
        figure,
        None,
    )


def _tutorial_result(config, figure: float | None, process: _Process) -> Result:
    """The tutorial's own code prints {epoch, val_accuracy, time} per epoch, then {test_accuracy}."""
    rows = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    history, final = [r for r in rows if "epoch" in r], next((r for r in rows if "test_accuracy" in r), None)
    label = f"tutorial code: {config.name}"
    if process.returncode != 0 or final is None:
        return _failed(label, config, figure, process)
    reached = next(
        (row["time"] - process.started for row in history if figure and row["val_accuracy"] >= figure), None
    )  # its validation set is the test set: the first epoch at the figure
    if reached is None and figure and final["test_accuracy"] >= figure:
        reached = process.wall
    return Result(
        label,
        config.name,
        config.data.dataset,
        "completed",
        None,
        len(history),
        round(process.wall, 1),
        None,
        None,
        final["peak_rss_mb"],
        round(final["test_accuracy"], 4),
        figure,
        None if reached is None else round(reached, 1),
    )


def _data_overrides(config, data_dir: Path, cache_dir: Path) -> list[str]:
    """Point the config's data at the copy in data_dir (writing CSVs into cache_dir when needed)."""
    data = config.data
    if data.source == "idx" and data.dataset in DATA_FOLDERS:
        return [f"data.path={data_dir / DATA_FOLDERS[data.dataset]}"]
    if data.source == "csv" and data.dataset in DATA_FOLDERS:
        train, test = _csv_copy(data_dir / DATA_FOLDERS[data.dataset], cache_dir, DATA_FOLDERS[data.dataset])
        return [f"data.path={train}", f"data.test_path={test}"]
    if data.source == "folder" and data.dataset == "cifar10":
        return [f"data.path={data_dir / CIFAR_ZIP}"]
    raise ConfigError(
        f"{config.name}: the benchmark reads mnist/fashion_mnist from idx or csv and cifar10 from "
        f"folder; this config has {data.dataset} from {data.source}"
    )


def _csv_copy(idx_folder: Path, cache_dir: Path, stem: str) -> tuple[Path, Path]:
    """Kaggle-style CSVs of an IDX folder, rewritten when the IDX files change."""
    from cnnclf.data.csv_files import write_csv
    from cnnclf.data.idx import read_idx
    from cnnclf.data.images import hash_files

    if not idx_folder.is_dir():
        raise DataError(f"{idx_folder}: no such folder; --data-dir must hold mnist/, fashion-mnist/ and cifar10/")
    sources = sorted(idx_folder.glob("*-ubyte*"))
    stamp = json.dumps(sorted(hash_files(sources).values()))
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = cache_dir / f"{stem}_train.csv", cache_dir / f"{stem}_test.csv"
    stamp_file = cache_dir / f"{stem}.source"
    if not (stamp_file.exists() and stamp_file.read_text() == stamp and all(p.exists() for p in paths)):
        for part, path in zip(("train", "t10k"), paths):
            images = read_idx(next(idx_folder.glob(f"{part}-images*")), "images")
            labels = read_idx(next(idx_folder.glob(f"{part}-labels*")), "labels")
            write_csv(path, images, labels)
        write_text(stamp_file, stamp)
    return paths

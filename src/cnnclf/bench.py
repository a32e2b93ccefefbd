"""cnnclf bench: train configs on the full datasets of a data folder, each in its own process,
and tabulate time, throughput, memory and accuracy against the tutorials' figures.

Each config runs as `python -m cnnclf train`, so its wall time counts from process start
and its peak RSS is its own (each process reports /proc/self/status VmHWM: wait4's
ru_maxrss would include the benchmark's own size, which exec carries over). Data paths are
pointed at --data-dir; Kaggle-style
CSVs are written once from the IDX files into --cache-dir.
"""

import datetime
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cnnclf.config import load_config
from cnnclf.errors import ConfigError, DataError
from cnnclf.runs import RunDir, read_history, write_text

# The figure each config is measured against (test accuracy), and where it comes from.
FIGURES = {
    "s000_fashion_csv": (0.869, "the tutorial's own code on the real data (no published figure)"),
    "s002_mnist": (0.986, "published"),
    "s002_cifar10": (0.69, "published 71.5% on lossless CIFAR-10; 69% on the JPEG copy"),
    "s003_fashion": (0.903, "published"),
    "s004_mnist": (0.9793, "published"),
    "mnist": (0.995, "target for the recommended config"),
    "fashion": (0.93, "target for the recommended config"),
    "cifar10": (0.88, "target for the recommended config (JPEG copy)"),
}

DATA_FOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}
CIFAR_ZIP = "cifar10/cifar10-jpg.zip"


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
    seconds_to_figure: float | None  # from process start to the first epoch at or above the figure
    train_gflops_per_image: float | None = None
    fraction_of_peak: float | None = None


def run_bench(configs: list[str], data_dir: Path, cache_dir: Path, runs_dir: Path, limit: int | None,
              epochs: int | None, tutorial_code: bool = False, log=print) -> dict:
    """Train each config in its own process (and, with tutorial_code, each seed tutorial's own
    code beside its config); return the machine description and the results."""
    from cnnclf.tutorials import TUTORIALS

    peak = measure_peak_gflops()
    log(f"machine peak: {peak:.1f} GFLOP/s (float32 matmul, 2048x2048, best of 10)")
    quick = [a for key, value in (("--limit", limit), ("--epochs", epochs)) if value for a in (key, str(value))]
    results = []
    for path in configs:
        config = load_config(path)
        if tutorial_code and Path(path).parent.name == "seeds" and config.name in TUTORIALS:
            _csv_copy(data_dir / "fashion-mnist", cache_dir, "fashion-mnist")
            command = [sys.executable, "-m", "cnnclf.tutorials", config.name, "--data-dir", str(data_dir),
                       "--csv-dir", str(cache_dir), *quick]
            log(f"{config.name}: the tutorial's own code ...")
            results.append(_tutorial_result(config, _measure(command, runs_dir / "logs", f"tutorial-{config.name}")))
        overrides = _data_overrides(config, data_dir, cache_dir) + [f"output.runs_dir={runs_dir}"]
        if limit:
            overrides += [f"data.limit_train={limit}", f"data.limit_test={limit}"]
        if epochs:
            overrides.append(f"train.epochs={epochs}")
        log(f"{path}: training ...")
        command = [sys.executable, "-m", "cnnclf", "train", path] + [a for o in overrides for a in ("--set", o)]
        log_name = f"{Path(path).parent.name}-{config.name}"  # configs/seeds and configs/fast share names
        result = _run_result(path, config, _measure(command, runs_dir / "logs", log_name))
        if result.run and result.status == "completed":
            gflops = training_gflops_per_image(RunDir(result.run))
            result.train_gflops_per_image = round(gflops, 4)
            if result.train_images_per_second:
                result.fraction_of_peak = round(gflops * result.train_images_per_second / peak, 4)
        results.append(result)
    for result in results:
        log(f"{result.config}: {result.status}, test accuracy {result.test_accuracy}, {result.wall_seconds:.0f} s, "
            f"{result.peak_rss_mb} MB")
    from cnnclf.runtime import describe_device

    return {"device": describe_device(), "peak_gflops": round(peak, 1), "limit": limit, "epochs": epochs,
            "date": datetime.date.today().isoformat(), "results": [asdict(r) for r in results]}


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


def _run_result(path: str, config, process: _Process) -> Result:
    lines = process.stdout.strip().splitlines()
    run = RunDir(lines[-1]) if process.returncode == 0 and lines else None
    figure = FIGURES.get(config.name, (None, ""))[0]
    if run is None:
        return Result(path, config.name, config.data.dataset, f"failed: {process.error}", None, None,
                      round(process.wall, 1), None, None, None, None, figure, None)
    state = run.status()
    metrics = json.loads(run.metrics.read_text())
    return Result(
        config=path, name=config.name, dataset=config.data.dataset, status=state["status"], run=str(run.path),
        epochs=state["epochs_done"], wall_seconds=round(process.wall, 1),
        time_to_first_step_seconds=state.get("time_to_first_step_seconds"),
        train_images_per_second=state.get("train_images_per_second"), peak_rss_mb=state.get("peak_rss_mb"),
        test_accuracy=round(metrics["test_accuracy"], 4), figure=figure,
        seconds_to_figure=_seconds_to_figure(config, read_history(run.history), metrics, figure, process.started,
                                             process.wall),
    )


def _tutorial_result(config, process: _Process) -> Result:
    """The tutorial's own code prints {epoch, val_accuracy, time} per epoch, then {test_accuracy}."""
    figure = FIGURES[config.name][0]
    rows = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    history, final = [r for r in rows if "epoch" in r], next((r for r in rows if "test_accuracy" in r), None)
    label = f"tutorial code: {config.name}"
    if process.returncode != 0 or final is None:
        return Result(label, config.name, config.data.dataset, f"failed: {process.error}", None, None,
                      round(process.wall, 1), None, None, None, None, figure, None)
    metrics = {"test_accuracy": final["test_accuracy"]}
    return Result(label, config.name, config.data.dataset, "completed", None, len(history), round(process.wall, 1),
                  None, None, final["peak_rss_mb"], round(final["test_accuracy"], 4), figure,
                  _seconds_to_figure(config, history, metrics, figure, process.started, process.wall))


def _seconds_to_figure(config, history, metrics, figure, started, wall):
    """From process start to the end of the first epoch whose test accuracy reached the figure.
    Per-epoch test accuracy is known when the test set is the validation set; otherwise only
    the final one is, and a run that reaches the figure counts its whole wall time."""
    if figure is None:
        return None
    if config.data.validation == "test":
        for row in history:
            if row.get("val_accuracy", 0) >= figure:
                return round(row["time"] - started, 1)
        return None
    return round(wall, 1) if metrics["test_accuracy"] >= figure else None


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
    raise ConfigError(f"{config.name}: the benchmark reads mnist/fashion_mnist from idx or csv and cifar10 from "
                      f"folder; this config has {data.dataset} from {data.source}")


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


def measure_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The machine's float32 peak as TensorFlow reaches it: a large matmul on all cores
    (2048 is the fastest size on the 2-core machine: 4096 falls out of cache)."""
    import tensorflow as tf

    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    matmul = tf.function(lambda a, b: tf.matmul(a, b))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def training_gflops_per_image(run: RunDir) -> float:
    """Forward FLOPs of one image (TensorFlow's profiler on the frozen graph), times 3 for a
    training step (the backward pass costs about twice the forward)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from cnnclf.evaluate import load_model

    model = load_model(run)
    forward = tf.function(lambda x: model(x, training=False))
    concrete = forward.get_concrete_function(tf.TensorSpec([1, *model.input_shape[1:]], tf.float32))
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    flops = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                          options=options).total_float_ops
    return 3 * flops / 1e9


# --- the report -------------------------------------------------------------------------


def report(bench: dict, command: str) -> str:
    """Markdown: the machine, the command, the results table and the side-by-side comparisons."""
    device = bench["device"]
    gpus = ", ".join(device["gpus"]) or "no GPU"
    quick = [f"--{key} {bench[key]}" for key in ("limit", "epochs") if bench[key]]
    lines = [
        f"Measured {bench['date']} on {device['cpu']} ({device['cpu_cores']} cores, {gpus}); "
        f"peak {bench['peak_gflops']} GFLOP/s (float32 2048x2048 matmul in TensorFlow, best of 10)"
        + (f"; quick pass ({' '.join(quick)})" if quick else "") + ".",
        "",
        "```", command, "```", "",
        "| config | dataset | epochs | wall s | to first step s | train img/s | peak RSS MB | test acc | figure "
        "| s to figure | train GFLOP/img | % of peak |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in bench["results"]:
        lines.append(
            f"| {r['config']} | {r['dataset']} | {_fmt(r['epochs'])} | {_fmt(r['wall_seconds'])} | "
            f"{_fmt(r['time_to_first_step_seconds'])} | {_fmt(r['train_images_per_second'], 0)} | "
            f"{_fmt(r['peak_rss_mb'], 0)} | {_pct(r['test_accuracy'])} | {_pct(r['figure'])} | "
            f"{_reach(r) if r['figure'] else ''} | "
            f"{_fmt(r['train_gflops_per_image'], 4)} | {_pct(r['fraction_of_peak'], 1)} |")
    pairs = _pairs(bench["results"])
    if pairs:
        lines += ["", "Time from process start to the tutorial's figure (test accuracy), and peak memory: the "
                      "tutorial's own code, cnnclf with the tutorial's settings (configs/seeds), and cnnclf's recipe "
                      "on the same architecture (configs/fast):", "",
                  "| tutorial | figure | own code: s | seeds: s | fast: s | fast vs seeds | fast vs own code "
                  "| own code: MB | seeds: MB | fast: MB | fast / own code memory |",
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for name, own, seed, fast in pairs:
            own = own or {"seconds_to_figure": None, "wall_seconds": None, "peak_rss_mb": None}
            lines.append(f"| {name} | {_pct(seed['figure'])} | {_reach(own)} | {_reach(seed)} | {_reach(fast)} | "
                         f"{_speedup(seed, fast)} | {_speedup(own, fast)} | {_fmt(own['peak_rss_mb'], 0)} | "
                         f"{_fmt(seed['peak_rss_mb'], 0)} | {_fmt(fast['peak_rss_mb'], 0)} | "
                         f"{_ratio(fast['peak_rss_mb'], own['peak_rss_mb'])} |")
    return "\n".join(lines) + "\n"


def _pairs(results):
    """(name, tutorial code or None, seeds, fast) for each tutorial run with both of its configs."""
    by_kind = {}
    for r in results:
        kind = "tutorial" if r["config"].startswith("tutorial code") else Path(r["config"]).parent.name
        by_kind[(kind, r["name"])] = r
    return [(name, by_kind.get(("tutorial", name)), seed, by_kind[("fast", name)])
            for (kind, name), seed in by_kind.items() if kind == "seeds" and ("fast", name) in by_kind]


def write_section(markdown_file: Path, section: str, body: str) -> None:
    """Replace (or append) the section between `<!-- bench:NAME -->` markers; the rest stays."""
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = markdown_file.read_text() if markdown_file.exists() else "# Benchmarks\n"
    block = f"{start}\n{body}{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + f"\n\n{block}\n"
    write_text(markdown_file, text)


def _reach(result) -> str:
    if result["wall_seconds"] is None:
        return ""
    return _fmt(result["seconds_to_figure"]) if result["seconds_to_figure"] else f"not reached ({result['wall_seconds']:.0f} s run)"


def _speedup(slow, fast) -> str:
    """How many times sooner `fast` reached the figure; against a run that never did, a lower bound."""
    if not fast["seconds_to_figure"] or slow["wall_seconds"] is None:
        return ""
    if slow["seconds_to_figure"]:
        return f"{slow['seconds_to_figure'] / fast['seconds_to_figure']:.2f}x"
    return f">{slow['wall_seconds'] / fast['seconds_to_figure']:.2f}x"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else ""


def _fmt(value, digits=1):
    if value is None:
        return ""
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def _pct(value, digits=2):
    return "" if value is None else f"{100 * value:.{digits}f}%"

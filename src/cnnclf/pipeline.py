"""The sequence of one run, above training, inference and reporting:

    prepare   the config checked, its data read (before TensorFlow starts, but for keras.datasets),
              --smoke's sizes applied, then TensorFlow started
    fit       training/: the run directory, epoch by epoch (train, resume)
    evaluate  the run's calibration fitted on its validation split (inference/calibration.py), then
              its best model on its test split: evaluate_run, exactly as `cnnclf evaluate` does it
    record    run.json completed, with the timings, before anything is drawn
    draw      every plot and report.html: draw, exactly as `cnnclf plot` does it

The command line, the Python API (api.py), `cnnclf tune` and `cnnclf bench` all go through these
functions; none of them prints (the CLI puts the log on stderr).
"""

import importlib
import logging
import threading
import time

from cnnclf import progress
from cnnclf.config import Config, override
from cnnclf.errors import DiskFull, first_line
from cnnclf.rundir.directory import RunDir, kept_description

log = logging.getLogger("cnnclf")


def start_tensorflow(train=None, debug: bool = False) -> None:
    """TensorFlow's quiet start with the process-wide settings of `train` (a TrainConfig)."""
    from cnnclf import startup

    with progress.step("starting TensorFlow"):
        startup.start(debug=debug, train=train)


def prepare(config: Config, smoke: bool = False, split_from=None, debug: bool = False):
    """The config's data, read and checked, and the config with what --smoke changed; then TensorFlow,
    started with the config's settings. `split_from`: a run's split.csv to split as it says."""
    from cnnclf.config.rules import check_weights_file
    from cnnclf.data.dataset import load

    check_weights_file(config.model)
    if config.data.source == "keras":  # keras.datasets downloads through TensorFlow
        start_tensorflow(debug=debug)
    with progress.step(f"reading the data ({config.data.source}: {config.data.path or config.data.dataset})"):
        data = load(config.data, config.seed, smoke, split_from)
    if smoke:
        config = override(
            config, {"data.limit_train": data.limits[0], "data.limit_test": data.limits[1], "train.epochs": 1}
        )
    start_tensorflow(config.train, debug)
    return config, data


def train(
    config: Config, data=None, started: float | None = None, watch: tuple = (), created=None, smoke: bool = False
) -> RunDir | None:
    """Train as `config` says (on `data`, or the data it names) into a new run directory, evaluate and
    record it, and draw it; the run (None on a multi-worker run's other workers). `watch` and `created`:
    as training.train.train's; `smoke`: the run is marked a smoke run (--smoke's few images)."""
    from cnnclf.training import train as training

    def made(run: RunDir) -> None:
        if smoke:
            run.set_status("running", smoke=True)
        if created is not None:
            created(run)

    return training.train(config, data, started or time.time(), watch, made, finish=_finish)


def resume(path, started: float | None = None, watch: tuple = ()) -> RunDir | None:
    """Continue an interrupted, failed or pruned run from its last finished epoch, then evaluate,
    record and draw it as train does."""
    from cnnclf.training import train as training

    return training.resume(path, started or time.time(), watch, finish=_finish)


def evaluate_run(run: RunDir, data=None, calibrate: bool = False) -> tuple[dict, object]:
    """The run's best model on its test split (`data`, or the test files its split.csv names, read
    again): metrics.json and predictions.npz written; the metrics, and the model evaluated. With
    `calibrate` (once a run is trained), its temperature and threshold for unknown answers are fitted
    on the validation split first."""
    from cnnclf.inference.evaluate import calibrate as fit_calibration
    from cnnclf.inference.evaluate import evaluate
    from cnnclf.inference.loading import load_model

    config = run.read_config()
    if data is None:
        from cnnclf.data.dataset import load

        data = load(config.data, config.seed, saved_split=run.saved_split(), need=("test",))
    with progress.step(f"evaluating {kept_description(run)} on the {len(data.splits.test):,} test images"):
        model = load_model(run, as_trained=True)
        if calibrate:
            fitted = fit_calibration(run, model, data.splits, config)
            log.info(
                f"calibrated on {fitted['fitted_on']}: temperature {fitted['temperature']:.3g}; answers below "
                f"{fitted['threshold']:.3f} top probability are marked unknown"
                if fitted["fitted_on"]
                else f"not calibrated: {fitted['why']}"
            )
        return evaluate(run, model, data.splits, config), model


def draw(run: RunDir) -> str | None:
    """Every plot and report.html, as `cnnclf plot` draws them. The run is trained and evaluated by now:
    a failure here is recorded and reported, never a reason to mark it failed."""
    from cnnclf.atomic import is_disk_full
    from cnnclf.reporting import plots  # matplotlib: 40 MB, not held during training

    try:
        with progress.step("drawing the plots and report.html"):
            plots.draw_all(run)
    except Exception as e:  # noqa: BLE001 - the model and metrics are kept whatever a plot does
        if is_disk_full(e):
            raise DiskFull(run.plots) from None
        message = first_line(f"{e.__class__.__name__}: {e}", 300)
        log.warning(
            f"drawing the plots failed ({message}); the model and metrics are kept; redraw them with "
            f"`cnnclf plot {run.path}`"
        )
        return message
    return None


def _finish(run: RunDir, data, config: Config, record: dict) -> tuple[dict, object]:
    """After the last epoch: evaluate, record the run completed (with `record`: the timings of its
    fitting), then draw; the metrics and the model evaluated."""
    from cnnclf.inference.evaluate import collapse_warning
    from cnnclf.training.memory import peak_rss_mb, release_memory

    release_memory()
    if config.output.plots:  # matplotlib (a second of imports) loads while TensorFlow evaluates
        threading.Thread(target=importlib.import_module, args=("cnnclf.reporting.plots",), daemon=True).start()
    metrics, model = evaluate_run(run, data, calibrate=True)
    warnings = run.status().get("warnings", [])
    collapsed = collapse_warning(metrics, config.train.class_weight)
    if collapsed:
        log.warning(f"warning: {collapsed}")
        warnings = [*warnings, collapsed]
    started = record.pop("started")
    run.set_status(
        "completed",
        **record,
        wall_seconds=round(time.time() - started, 2),
        peak_rss_mb=peak_rss_mb(),
        warnings=warnings,
    )
    release_memory()  # collect the functions TensorFlow freed while it is idle: amid plotting, that segfaulted
    if config.output.plots:
        drawn_at = time.time()
        failure = draw(run)
        run.set_status(
            "completed",
            **({"plots_error": failure} if failure else {"plots_seconds": round(time.time() - drawn_at, 2)}),
        )
    log.info(
        f"test accuracy {metrics['test_accuracy']:.4f}, balanced accuracy {metrics['balanced_accuracy']:.4f}, "
        f"macro F1 {metrics['macro_f1']:.4f}, test loss {metrics['test_loss']:.4f}"
    )
    return metrics, model

"""train(config) and resume(run): data -> model -> fit, in one run directory; pipeline.py evaluates,
records and draws the run it returns (through `finish`).

Everything that can be wrong with the config or the data is found before the run directory is
created, so a failed start leaves nothing that looks like a result. The run is locked while a
process trains it; its state after each epoch is in state.py.
"""

import hashlib
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cnnclf import device, progress
from cnnclf.atomic import write_json, write_text
from cnnclf.config import Config
from cnnclf.data.dataset import Dataset, load
from cnnclf.data.split import write_split
from cnnclf.errors import Interrupted, NotARunError, listing
from cnnclf.model.build import build_model
from cnnclf.model.whitening import whitening_weights
from cnnclf.rundir.directory import RunDir
from cnnclf.rundir.provenance import environment, resumed
from cnnclf.training import budget, distribute
from cnnclf.training.callbacks import EpochLines, LearningRate, Lookahead, StopOnNaN
from cnnclf.training.compute import Compute, resolve, with_data, with_model
from cnnclf.training.epoch_backup import TrainingState, publish_model
from cnnclf.training.fitting import class_weights, fit_phases
from cnnclf.training.optimization import compile_model
from cnnclf.training.outcome import how_it_ended, outcome_recorded, write_data_samples
from cnnclf.training.tracking import MlflowLogger, check_tensorboard, connect_mlflow, tensorboard

log = logging.getLogger("cnnclf")

# pipeline.py's last steps, once a run is fitted: (run, data, config, what the fit took) -> (metrics, the model)
Finish = Callable[[RunDir, Dataset, Config, dict], tuple[dict, Any]]


@dataclass
class Session:
    """A run's inputs, checked: the config, the data and the compiled model."""

    config: Config
    data: Dataset
    model: keras.Model
    strategy: object  # tf.distribute.Strategy
    compute: Compute
    class_weight: dict[int, float] | None = None  # train.class_weight, by class index
    budget: dict | None = None  # train.time_budget's decision (budget.py), where it planned the epochs

    @property
    def chief(self) -> bool:
        return distribute.is_chief(self.strategy)


def train(
    config: Config,
    data: Dataset | None = None,
    started: float | None = None,
    watch: tuple = (),
    created=None,
    *,
    finish: Finish,
) -> RunDir | None:
    """Train as `config` says, on `data` (loaded as the config says, if not given), into a new run
    directory and return it (None on a multi-worker run's other workers, which keep their state in
    a scratch directory). `watch`: Keras callbacks that see each epoch once it is saved (tune's
    pruning); `created(run)` is told of the run directory as soon as it exists; `finish` evaluates,
    records and draws the run once fitted (pipeline.py's)."""
    started = started or time.time()
    data = data or load(config.data, config.seed)
    session = prepare(config, data)
    runs_dir = session.config.output.runs_dir if session.chief else tempfile.mkdtemp(prefix="cnnclf-worker-")
    run = RunDir.create(runs_dir, session.config.name)
    if created is not None:
        created(run)
    with run.locked():
        with outcome_recorded(run, lambda: 0):  # a failure before the first epoch marks the run too
            log.info(f"run directory: {run.path}")
            run.set_status("running", epochs_done=0)
            write_text(run.config, session.config.to_yaml())
            fingerprint = dict(data.fingerprint)
            if data.splits.table is not None:
                split = write_split(data.splits.table)
                write_text(run.split, split)
                fingerprint["split_csv_sha256"] = hashlib.sha256(split.encode()).hexdigest()  # saved_split checks it
            write_json(run.env, environment(session.config, session.compute.as_dict(), fingerprint))
            lines: list[str] = []
            session.model.summary(print_fn=lambda text, *args, **kwargs: lines.append(text))
            write_text(run.summary, "\n".join(lines) + "\n")
            write_data_samples(run, data)
        return _fit_and_finish(run, session, started, watch, finish)


def resume(path, started: float | None = None, watch: tuple = (), *, finish: Finish) -> RunDir | None:
    """Continue an interrupted, failed or pruned run from its last finished epoch (`watch`, `finish`: as
    train's)."""
    started = started or time.time()
    run = RunDir.open(path)
    with run.locked():
        state = run.status()
        if state["status"] == "completed":
            raise NotARunError(f"{run.path}: this run completed; nothing to resume (`cnnclf train --from` reruns it)")
        config = run.read_config()
        data = load(config.data, config.seed, saved_split=run.saved_split())
        session = prepare(config, data, planned=False)  # a time budget's epochs are config.yaml's
        if not session.chief:  # a multi-worker run's other worker: continue from the chief's backup, in scratch
            scratch = RunDir(tempfile.mkdtemp(prefix="cnnclf-worker-"))
            shutil.copytree(run.path, scratch.path, dirs_exist_ok=True)
            run = scratch
        log.info(f"resuming {run.path} (status {state['status']})")
        if session.chief and run.env.exists():
            write_json(run.env, resumed(json.loads(run.env.read_text()), config, session.compute.as_dict()))
        return _fit_and_finish(run, session, started, watch, finish)


def prepare(config: Config, data: Dataset, planned: bool = True) -> Session:
    """Build and compile the model: every check that needs no run directory. With train.time_budget,
    the epochs are planned first (budget.py), unless `planned` is False (resume: config.yaml holds
    the plan)."""
    if config.train.tensorboard:
        check_tensorboard()
    if config.train.mlflow is not None:
        connect_mlflow(config.train.mlflow)  # an unreachable or refused store fails before the run exists
    splits = data.splits
    strategy = distribute.strategy(config.train.distribute)
    compute = with_data(resolve(config.train, strategy), len(splits.train), config.train)
    whitening = None
    if config.model.whiten is not None:
        settings = config.model.whiten
        images = splits.train.gather(np.arange(min(settings.images, len(splits.train))))
        scale = 1 / 255 if config.data.normalize == "scale" else 1.0
        whitening = whitening_weights(images, settings.patch, settings.epsilon, scale)

    def build(config: Config) -> keras.Model:
        steps = with_data(compute, len(splits.train), config.train).steps_per_epoch
        with strategy.scope():
            model = build_model(config, splits.shape, splits.num_classes, compute.mixed_precision, whitening)
            compile_model(model, config.train, config.data.labels, steps, compute)
        return model

    decision = None
    if config.train.time_budget is not None and planned:
        with progress.step("measuring this machine's speed for train.time_budget"):
            config, decision = budget.plan(config, data, build, compute)
        compute = with_data(compute, len(splits.train), config.train)
    with progress.step("building the model"):
        model = build(config)
    compute = with_model(compute, model, config.train)
    weights = class_weights(config.train.class_weight, splits.train.labels, splits.class_names)
    return Session(config, data, distribute.fit_model(model, strategy), strategy, compute, weights, decision)


def lookahead(train, steps: int) -> list:
    """The Lookahead callback where train.lookahead asks for it (its share follows the train phase's
    `steps` an epoch)."""
    if train.lookahead is None:
        return []
    return [Lookahead(train.lookahead.every_steps, train.lookahead.decay, steps, steps * train.epochs)]


def _fit_and_finish(run: RunDir, session: Session, started: float, watch: tuple, finish) -> RunDir | None:
    config, splits, model = session.config, session.data.splits, session.model
    train_cfg = config.train
    early_stopping = checkpoint = None
    if train_cfg.early_stopping is not None:
        early_stopping = keras.callbacks.EarlyStopping(**train_cfg.early_stopping.model_dump())
    state = TrainingState(run, early_stopping, phases=train_cfg.fine_tune is not None)
    if train_cfg.checkpoint is not None:
        checkpoint = keras.callbacks.ModelCheckpoint(
            state.candidate, save_best_only=True, **train_cfg.checkpoint.model_dump()
        )
        state.checkpoint = checkpoint
    first_epoch = state.first_epoch()
    if session.chief:
        log.info(what_runs(session.compute, train_cfg, splits.num_classes))
        if session.data.origins:
            log.info(session.data.origins)
        if session.class_weight:
            weights = ", ".join(f"{splits.class_names[i]} {w:.2g}" for i, w in session.class_weight.items())
            counts = np.bincount(splits.train.labels, minlength=splits.num_classes)
            log.info(
                f"class weights ({train_cfg.class_weight if isinstance(train_cfg.class_weight, str) else 'given'}): "
                f"{listing(weights.split(', '), 10)}; the classes have {counts.min():,} to {counts.max():,} "
                f"training images"
            )
    epoch_lines = EpochLines(train_cfg.epochs, started)
    run.set_status(
        "running",
        epochs_done=first_epoch,
        parameters=model.count_params(),
        class_names=splits.class_names,
        **({"time_budget": session.budget} if session.budget else {}),
    )
    trackers = [tensorboard(run)] if train_cfg.tensorboard and session.chief else []
    mlflow = MlflowLogger(train_cfg.mlflow, run, config) if train_cfg.mlflow and session.chief else None
    log_file = logging.FileHandler(run.log)
    log_file.addFilter(lambda record: not getattr(record, "transient", False))  # progress bars
    log.addHandler(log_file)
    outcome = "FAILED"
    try:
        with outcome_recorded(run, state.first_epoch):
            fit_started = time.time()
            callbacks = [
                *lookahead(train_cfg, session.compute.steps_per_epoch),
                LearningRate(),  # before the callbacks that record the epoch
                StopOnNaN(),
                epoch_lines,
                *filter(None, [early_stopping, checkpoint, mlflow]),
                *trackers,
                state,
                *watch,
            ]
            fit_phases(session, state, callbacks, epoch_lines)
            fit_seconds = time.time() - fit_started
            epochs_done = state.first_epoch()
            log.info(how_it_ended(run, train_cfg, early_stopping, epochs_done))
            if not session.chief:  # nothing collective remains: the chief evaluates and writes
                log.info("this worker is done; the chief writes the run directory")
                shutil.rmtree(run.path, ignore_errors=True)
                return None
            if not run.model.exists():  # no checkpoint configured: keep the final model
                run.backup.mkdir(exist_ok=True)
                model.save(run.backup / "final.keras")
                publish_model(run.backup / "final.keras", run.model)
            record = {
                "started": started,
                "epochs_done": epochs_done,
                "fit_seconds": round(fit_seconds, 2),
                "time_to_first_step_seconds": _round(epoch_lines.time_to_first_step),
                "train_images_per_second": round(
                    len(splits.train) * (epochs_done - first_epoch) / max(fit_seconds, 1e-9), 1
                ),
            }
            metrics, best = finish(run, session.data, config, record)
            if mlflow:
                mlflow.finish(metrics, best)
        outcome = "FINISHED"
    except Interrupted:
        outcome = "KILLED"
        raise
    finally:
        epoch_lines.close()
        log.removeHandler(log_file)
        log_file.close()
        if mlflow:
            mlflow.end(outcome)
    shutil.rmtree(run.backup, ignore_errors=True)
    return run


def what_runs(compute: Compute, train, classes: int) -> str:
    """The line that says what the machine is doing: the device, the precision and why, the steps per
    execution; and where label smoothing keeps the loss high, how high a perfect model's would be."""
    found = device.describe()
    where = ", ".join(found["gpus"]) or f"{found['cpu']} ({found['cpu_class']}, {found['cpu_cores']} cores)"
    line = (
        f"training on {where}: {compute.mixed_precision}, as {compute.precision_reason}; "
        f"{compute.steps_per_execution} steps per execution, batches of {compute.batch_size}"
    )
    smoothing = train.label_smoothing
    if smoothing:
        high, low = 1 - smoothing + smoothing / classes, smoothing / classes
        floor = -high * math.log(high) - (classes - 1) * low * math.log(low)
        line += (
            f"; with label smoothing {smoothing:g}, a perfect model's loss is {floor:.2f}, not 0: "
            f"accuracy says how training goes"
        )
    return line


def _round(value):
    return None if value is None else round(value, 2)

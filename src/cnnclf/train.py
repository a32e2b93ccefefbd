"""train(config) and resume(run): data -> model -> fit -> evaluate -> plots, in one run directory.

Everything that can be wrong with the config or the data is found before the run
directory is created, so a failed start leaves nothing that looks like a result.
"""

import contextlib
import io
import logging
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass

import keras
import numpy as np

from cnnclf import distribute
from cnnclf.callbacks import Progress, StopOnNaN, TrainingState
from cnnclf.config import Config, load_config
from cnnclf.data.images import load_images
from cnnclf.data.pipeline import evaluation_batches, training_batches
from cnnclf.data.split import Splits, split
from cnnclf.errors import CnnclfError, Interrupted, NotARunError
from cnnclf.evaluate import evaluate, load_model
from cnnclf.models import build_model, compile_model, eval_batch_size
from cnnclf.runs import RunDir, interrupts_raised, write_bytes, write_json, write_text
from cnnclf.runtime import compute_settings, environment, peak_rss_mb, release_memory
from cnnclf.tracking import MlflowLogger, check_tensorboard, connect_mlflow, tensorboard

log = logging.getLogger("cnnclf")

SMOKE_PER_CLASS = {"train": 20, "test": 10}  # images per class for --smoke, one epoch


@dataclass
class Session:
    """A run's inputs, checked: the config, the data split and the compiled model."""

    config: Config
    splits: Splits
    model: keras.Model
    strategy: object  # tf.distribute.Strategy
    compute: dict  # the compute levers, auto resolved, and the batch per step
    data_fingerprint: dict

    @property
    def chief(self) -> bool:
        return distribute.is_chief(self.strategy)


def train(config: Config, smoke: bool = False, started: float | None = None) -> RunDir | None:
    """Train as `config` says into a new run directory and return it (None on a multi-worker
    run's other workers, which keep their state in a scratch directory)."""
    started = started or time.time()
    session = prepare(config, smoke)
    runs_dir = session.config.output.runs_dir if session.chief else tempfile.mkdtemp(prefix="cnnclf-worker-")
    run = RunDir.create(runs_dir, session.config.name)
    log.info(f"run directory: {run.path}")
    write_text(run.config, session.config.to_yaml())
    write_json(run.env, environment(session.config, session.compute, session.data_fingerprint))
    lines = []
    session.model.summary(print_fn=lambda text, *args, **kwargs: lines.append(text))
    write_text(run.summary, "\n".join(lines) + "\n")
    write_data_samples(run, session.splits)
    return _fit_and_finish(run, session, started)


def resume(path, started: float | None = None) -> RunDir | None:
    """Continue an interrupted or failed run from its last finished epoch."""
    started = started or time.time()
    run = RunDir.open(path)
    state = run.status()
    if state["status"] == "completed":
        raise NotARunError(f"{run.path}: this run completed; nothing to resume (`cnnclf train --from` reruns it)")
    if run.is_alive():
        raise NotARunError(f"{run.path}: this run is still training (process {state['pid']}); wait or stop it first")
    session = prepare(load_config(run.config))
    if not session.chief:  # a multi-worker run's other worker: continue from the chief's backup, in scratch
        scratch = RunDir(tempfile.mkdtemp(prefix="cnnclf-worker-"))
        shutil.copytree(run.path, scratch.path, dirs_exist_ok=True)
        run = scratch
    log.info(f"resuming {run.path} (status {state['status']})")
    return _fit_and_finish(run, session, started)


def prepare(config: Config, smoke: bool = False) -> Session:
    """Load and split the data and build the model: every check that needs no run directory."""
    images = load_images(config.data)
    if images.skipped:
        log.warning(f"skipped {len(images.skipped)} unreadable image files (data.skip_bad_images), "
                    f"the first: {images.skipped[0]}")
    if smoke:
        k = images.num_classes
        config = config.with_overrides({"data.limit_train": SMOKE_PER_CLASS["train"] * k,
                                        "data.limit_test": SMOKE_PER_CLASS["test"] * k, "train.epochs": 1})
    if config.train.tensorboard:
        check_tensorboard()
    if config.train.mlflow is not None:
        connect_mlflow(config.train.mlflow)  # an unreachable or refused store fails before the run exists
    splits = split(images, config.data, config.seed)
    fingerprint = {**images.fingerprint(), "skipped_files": images.skipped, "split_sha256": splits.fingerprint,
                   "sizes": {"train": len(splits.y_train), "validation": len(splits.y_val),
                             "test": len(splits.y_test)}}
    del images  # the splits hold the only copies training needs
    strategy = distribute.strategy(config.train.distribute)
    replicas = strategy.num_replicas_in_sync
    compute = {**compute_settings(config.train, distribute.is_distributed(strategy)), "replicas": replicas,
               "batch_size": distribute.global_batch_size(config.train, strategy),
               "learning_rate_scale": replicas if config.train.scale_learning_rate else 1}
    with strategy.scope():
        model = build_model(config, splits.shape, splits.num_classes, compute["mixed_precision"])
        steps = -(-len(splits.y_train) // compute["batch_size"])
        compile_model(model, config.train, config.data.labels, steps, compute)
    compute["jit_compile"] = bool(model.jit_compile)  # as Keras resolved auto
    return Session(config, splits, distribute.fit_model(model, strategy), strategy, compute, fingerprint)


def write_data_samples(run: RunDir, splits: Splits, per_class: int = 8) -> None:
    """A few training images of each class, for the "look at your data" plot."""
    chosen = np.concatenate([np.flatnonzero(splits.y_train == c)[:per_class] for c in range(splits.num_classes)])
    out = io.BytesIO()
    np.savez_compressed(out, images=splits.x_train[chosen], labels=splits.y_train[chosen],
                        class_names=np.array(splits.class_names))
    write_bytes(run.data_samples, out.getvalue())


def _fit_and_finish(run: RunDir, session: Session, started: float) -> RunDir | None:
    config, splits, model = session.config, session.splits, session.model
    train_cfg, onehot = config.train, config.data.labels == "onehot"
    early_stopping = checkpoint = None
    if train_cfg.early_stopping is not None:
        early_stopping = keras.callbacks.EarlyStopping(**train_cfg.early_stopping.model_dump())
    if train_cfg.checkpoint is not None:
        checkpoint = keras.callbacks.ModelCheckpoint(run.backup / "best.keras", save_best_only=True,
                                                     **train_cfg.checkpoint.model_dump())
    state = TrainingState(run, early_stopping, checkpoint)
    first_epoch = state.first_epoch()
    progress = Progress(train_cfg.epochs, started)
    run.set_status("running", epochs_done=first_epoch, parameters=model.count_params(),
                   class_names=splits.class_names)
    trackers = [tensorboard(run)] if train_cfg.tensorboard and session.chief else []
    mlflow = MlflowLogger(train_cfg.mlflow, run, config) if train_cfg.mlflow and session.chief else None
    log_file = logging.FileHandler(run.log)
    log.addHandler(log_file)
    outcome = "FAILED"
    try:
        with _outcome_recorded(run, state):
            fit_started = time.time()
            if not state.finished():
                batches, _ = training_batches(splits.x_train, splits.y_train, session.compute["batch_size"],
                                              config.seed, model.optimizer.iterations, splits.num_classes, onehot)
                validation = evaluation_batches(splits.x_val, splits.y_val, eval_batch_size(model, train_cfg),
                                                splits.num_classes, onehot)
                callbacks = [StopOnNaN(), progress, *filter(None, [early_stopping, checkpoint, mlflow]), *trackers,
                             state.history, state]
                model.fit(distribute.sharded(batches), epochs=train_cfg.epochs,
                          validation_data=distribute.sharded(validation), callbacks=callbacks, shuffle=False,
                          verbose=0)
            fit_seconds = time.time() - fit_started
            if not session.chief:  # nothing collective remains: the chief evaluates and writes
                log.info("this worker is done; the chief writes the run directory")
                shutil.rmtree(run.path, ignore_errors=True)
                return None
            if not run.model.exists():  # no checkpoint configured: keep the final model
                model.save(run.backup / "final.keras")
                (run.backup / "final.keras").replace(run.model)
            release_memory()
            metrics = evaluate(run, load_model(run), splits, config)
            release_memory()
            from cnnclf import plots  # matplotlib: 40 MB, not held during training

            plots.draw_all(run)
            if mlflow:
                mlflow.finish(metrics)
        outcome = "FINISHED"
    except Interrupted:
        outcome = "KILLED"
        raise
    finally:
        log.removeHandler(log_file)
        log_file.close()
        if mlflow:
            mlflow.end(outcome)
    epochs_done = state.first_epoch()
    run.set_status("completed", epochs_done=epochs_done, wall_seconds=round(time.time() - started, 2),
                   peak_rss_mb=peak_rss_mb(),
                   fit_seconds=round(fit_seconds, 2),
                   time_to_first_step_seconds=_round(progress.time_to_first_step),
                   train_images_per_second=round(len(splits.y_train) * (epochs_done - first_epoch)
                                                 / max(fit_seconds, 1e-9), 1))
    shutil.rmtree(run.backup, ignore_errors=True)
    log.info(f"test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f}")
    return run


@contextlib.contextmanager
def _outcome_recorded(run: RunDir, state: TrainingState):
    """Ctrl-C or SIGTERM marks the run interrupted, any other failure marks it failed; both re-raise."""
    try:
        with interrupts_raised():
            yield
    except (Interrupted, KeyboardInterrupt) as e:
        epochs = state.first_epoch()
        run.set_status("interrupted", epochs_done=epochs)
        signal_number = e.exit_code - 128 if isinstance(e, Interrupted) else signal.SIGINT
        raise Interrupted(f"{e or 'stopped by SIGINT'} after {epochs} finished epochs; "
                          f"continue with: cnnclf resume {run.path}", signal_number) from None
    except Exception as e:
        message = str(e) if isinstance(e, CnnclfError) else f"{e.__class__.__name__}: {e}"
        run.set_status("failed", epochs_done=state.first_epoch(), error=message)
        if isinstance(e, CnnclfError):
            e.args = (f"{message} (run {run.path} is marked failed)",)
        raise


def _round(value):
    return None if value is None else round(value, 2)

"""cnnclf tune: hyperparameter search with Optuna over any config keys, on one machine or many.

Optuna, not KerasTuner: its define-by-run sampling maps directly onto config key paths, its
storages make one study shared by processes and machines (study.py), and each trial stays an
ordinary cnnclf run (run directory, resume, NaN handling, plots) named <name>-trialN, trial
numbers being the study's own: two machines never make the same name. Each trial records its run
directory, host and resolved config with the study, so trials.csv and best.yaml are the same
from any worker. With tune.pruner, each epoch's value of tune.metric is reported and a trial the
pruner stops ends as PRUNED, its run marked pruned. A trial that cannot finish (Ctrl-C, SIGTERM,
a worker killed) is asked again with the same parameters; the worker that takes it resumes its
run where it can reach it (the same machine, or a shared runs folder), else trains it afresh.
"""

import csv
import io
import logging
import os
import signal
import socket
from pathlib import Path

import keras

from cnnclf.atomic import write_text
from cnnclf.config import Config, override
from cnnclf.errors import (
    CnnclfError,
    ConfigError,
    DataError,
    Interrupted,
    NonFiniteLoss,
    NonFiniteWeights,
    Pruned,
)
from cnnclf.pipeline import resume, train
from cnnclf.rundir.directory import RunDir
from cnnclf.tools import study as studies

log = logging.getLogger("cnnclf")

# what fails a trial, and lets the study go on; anything else (Ctrl-C, a full disk) stops it
TRIAL_FAILURES = (ConfigError, DataError, NonFiniteLoss, NonFiniteWeights)


def tune(config: Config, trials: int | None = None, storage: str | None = None) -> dict:
    """Work on the study until it has `trials` finished trials (with other workers, if any); write
    trials.csv and best.yaml; return a summary."""
    settings = studies.settings(config)
    optuna = _optuna()
    folder = studies.folder_of(config, storage)
    folder.mkdir(parents=True, exist_ok=True)
    url = studies.storage_url(config, storage)
    study = studies.create(config, storage)
    study.sampler = optuna.samplers.TPESampler(seed=_sampler_seed(config.seed, len(study.get_trials(deepcopy=False))))
    studies.fail_abandoned(study)
    target = trials or settings.trials
    log.info(f"study {config.name} in {studies.shown(url)}: {studies.counted(study)} of {target} trials finished")

    def enough(study, _trial) -> None:
        if studies.counted(study) >= target:
            study.stop()

    with studies.database_errors(url):
        if studies.counted(study) < target:
            study.optimize(lambda trial: _objective(study, trial, config), callbacks=[enough], catch=TRIAL_FAILURES)
        return summarize(study, config, folder)


def _sampler_seed(seed: int, trials: int) -> int:
    """The sampler's seed: the config's, mixed (not added: consecutive process ids would cancel a trial
    count's difference) with the study's progress, this process and this machine, so that a continued
    study and every worker draw apart."""
    import zlib

    import numpy as np

    host = zlib.crc32(socket.gethostname().encode())
    return int(np.random.SeedSequence([seed, trials, os.getpid(), host]).generate_state(1)[0])


def _objective(study, trial, config: Config) -> float:
    import optuna

    settings = config.tune
    assert settings is not None
    params = {key: _suggest(trial, key, dimension) for key, dimension in settings.space.items()}
    earlier = trial.user_attrs.get("run")  # a trial asked again keeps the run of its first try
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    watch = (_Report(trial, settings.metric),)
    try:
        if earlier and (Path(earlier) / "run.json").is_file():
            log.info(f"trial {trial.number}: resuming {earlier}")
            for row in RunDir(earlier).read_history():  # the epochs of its first try, for the pruner too
                trial.report(row[settings.metric], row["epoch"] - 1)
            run = resume(earlier, watch=watch)
        else:
            log.info(f"trial {trial.number}: {', '.join(f'{k}={v}' for k, v in params.items())}")
            trial_config = override(config, {**params, "name": f"{config.name}-trial{trial.number}", "tune": None})
            trial.set_user_attr("config", trial_config.to_yaml())
            run = train(trial_config, watch=watch, created=lambda made: trial.set_user_attr("run", str(made.path)))
    except Pruned as e:
        log.info(f"trial {trial.number}: {e}")
        raise optuna.TrialPruned(str(e)) from None
    except Interrupted as e:  # asked again, to be resumed by the next `cnnclf tune` (not by `cnnclf resume`)
        studies.ask_again(study, next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number))
        raise Interrupted(
            f"stopped by {signal.Signals(e.signal_number).name} in trial {trial.number}; run the same `cnnclf tune` "
            f"command again to continue the study (it resumes the trial's run)",
            e.signal_number,
        ) from None
    except CnnclfError as e:
        log.warning(f"trial {trial.number} failed: {e}")
        raise
    if run is None:  # a multi-worker run's other worker
        raise ConfigError("tune trains each trial on one machine: set train.distribute to none or mirrored")
    values = [row[settings.metric] for row in run.read_history()]
    value = max(values) if settings.direction == "maximize" else min(values)
    log.info(f"trial {trial.number}: {settings.metric} {value:.4f} ({run.path})")
    return value


class _Report(keras.callbacks.Callback):
    """Each epoch's value of the tuned metric to the trial (after the epoch is saved); the run stops
    as pruned where the pruner says so."""

    def __init__(self, trial, metric: str):
        super().__init__()
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {})[self.metric])
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise Pruned(epoch + 1, self.metric, value)


def _suggest(trial, key: str, dimension: dict):
    ((kind, spec),) = dimension.items()
    if kind == "choice":
        return trial.suggest_categorical(key, spec)
    if kind == "int":
        return trial.suggest_int(key, *spec)
    return trial.suggest_float(key, *spec, log=kind == "log_uniform")


def summarize(study, config: Config, folder: Path) -> dict:
    """trials.csv and best.yaml, from the study alone (the same from any worker), and a summary."""
    settings = config.tune
    assert settings is not None
    epochs = config.train.epochs
    rows = []
    for t in study.get_trials(deepcopy=False):
        done = len(t.intermediate_values)
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                settings.metric: t.value,
                **{k: t.params.get(k) for k in settings.space},
                "epochs": done,
                "epochs_saved": max(epochs - done, 0) if t.state.name == "PRUNED" else 0,  # by pruning
                "host": t.user_attrs.get("host", ""),
                "run": t.user_attrs.get("run", ""),
            }
        )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["trial"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / "trials.csv", out.getvalue())
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not completed:
        raise CnnclfError(f"no trial of study {config.name} completed; see {folder / 'trials.csv'}")
    best = study.best_trial
    write_text(folder / "best.yaml", best.user_attrs.get("config", ""))
    saved = sum(r["epochs_saved"] for r in rows)
    return {
        "rows": rows,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "epochs_saved": saved,
        "epochs_trained": sum(r["epochs"] for r in rows),
        "trials_csv": str(folder / "trials.csv"),
        "best_config": str(folder / "best.yaml"),
    }


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("cnnclf tune needs Optuna: pip install 'cnnclf[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna

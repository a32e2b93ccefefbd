"""cnnclf tune: hyperparameter search with Optuna over any config keys.

Optuna, not KerasTuner: its define-by-run sampling maps directly onto config key paths,
its SQLite storage makes a study resumable across processes, and its ask/tell interface
lets every trial be an ordinary cnnclf run (run directory, resume, NaN handling, plots)
instead of a HyperModel that owns model building. Trial N's run is named <name>-trialN, so
re-running `tune` after an interruption resumes that run and goes on with the study.
"""

import csv
import io
import logging
import shutil
from pathlib import Path

from cnnclf.atomic import write_text
from cnnclf.config import Config, override
from cnnclf.errors import CnnclfError, ConfigError
from cnnclf.rundir.directory import RunDir
from cnnclf.training.train import resume, train

log = logging.getLogger("cnnclf")


def tune(config: Config, trials: int | None = None) -> dict:
    """Run the study to `trials` finished trials; write trials.csv and best.yaml; return a summary."""
    if config.tune is None:
        raise ConfigError(
            "the config has no tune: section; add one with a space: {key.path: {choice: [...]}} "
            "mapping (see README, Hyperparameter search)"
        )
    optuna = _optuna()
    settings = config.tune
    folder = Path(config.output.runs_dir) / f"tune-{config.name}"
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'study.db'}"
    study = optuna.create_study(
        study_name=config.name, storage=storage, direction=settings.direction, load_if_exists=True
    )
    # Seeded, yet a continued study must not replay the draws of its first session.
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + len(study.get_trials(deepcopy=False)))
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        _finish_interrupted(study, trial, config)
    target = trials or settings.trials
    while len([t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]) < target:
        trial = study.ask()
        params = {key: _suggest(trial, key, dimension) for key, dimension in settings.space.items()}
        log.info(f"trial {trial.number}: {', '.join(f'{k}={v}' for k, v in params.items())}")
        try:
            run = train(override(config, {**params, "name": _trial_name(config, trial.number), "tune": None}))
        except CnnclfError as e:
            if e.exit_code > 128:  # interrupted: the trial stays running, to be resumed next time
                raise
            log.warning(f"trial {trial.number} failed: {e}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        if run is not None:
            _record(study, trial, run, settings)
    return _summarize(study, config, folder)


def _finish_interrupted(study, trial, config: Config) -> None:
    """A trial left running by an interrupted `tune`: resume its run, or count it as failed."""
    import optuna

    run = _trial_run(config, trial.number)
    try:
        if run is None:
            raise ConfigError("its run never started")
        log.info(f"trial {trial.number}: resuming {run}")
        resumed = resume(run)
        if resumed is not None and config.tune is not None:
            _record(study, trial, resumed, config.tune)
    except CnnclfError as e:
        if e.exit_code > 128:
            raise
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _record(study, trial, run: RunDir, settings) -> None:
    values = [row[settings.metric] for row in run.read_history()]
    value = max(values) if settings.direction == "maximize" else min(values)
    study.tell(trial.number, value)
    log.info(f"trial {trial.number}: {settings.metric} {value:.4f} ({run.path})")


def _suggest(trial, key: str, dimension: dict):
    ((kind, spec),) = dimension.items()
    if kind == "choice":
        return trial.suggest_categorical(key, spec)
    if kind == "int":
        return trial.suggest_int(key, *spec)
    return trial.suggest_float(key, *spec, log=kind == "log_uniform")


def _summarize(study, config: Config, folder: Path) -> dict:
    assert config.tune is not None  # tune() refuses a config without it
    keys = list(config.tune.space)
    rows = [
        {
            "trial": t.number,
            "state": t.state.name,
            config.tune.metric: t.value,
            **{k: t.params.get(k) for k in keys},
            "run": str(_trial_run(config, t.number) or ""),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / "trials.csv", out.getvalue())
    best = study.best_trial
    best_run = _trial_run(config, best.number)
    if best_run is not None:
        shutil.copyfile(best_run / "config.yaml", folder / "best.yaml")
    return {
        "rows": rows,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "trials_csv": str(folder / "trials.csv"),
        "best_config": str(folder / "best.yaml"),
    }


def _trial_name(config: Config, number: int) -> str:
    return f"{config.name}-trial{number}"


def _trial_run(config: Config, number: int) -> Path | None:
    """The run directory of trial `number` (the latest, should a name repeat)."""
    found = sorted(Path(config.output.runs_dir).glob(f"*-{_trial_name(config, number)}"))
    return found[-1] if found else None


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("cnnclf tune needs Optuna: pip install 'cnnclf[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna

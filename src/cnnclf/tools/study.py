"""The Optuna study `cnnclf tune` works on: where it is stored, how it prunes, what it records.

Storage (tune.storage, or --storage): null is a SQLite file in the runs folder; a database URL
(postgresql://user@host/db, mysql://...) or journal:PATH (Optuna's journal file on a shared file
system) is a study that `cnnclf tune` processes on several machines work on at once. A password
is never written: psycopg takes PGPASSWORD or ~/.pgpass itself, and CNNCLF_TUNE_PASSWORD is put
into any database URL that has a user and no password; wherever a URL is shown its password is
masked. A database study keeps each running trial's heartbeat: a trial whose worker died (kill -9,
a lost machine) is failed once its heartbeat is twice tune.heartbeat_seconds old, and asked again
with the same parameters. A journal has no heartbeat: a new `cnnclf tune` on the machine of a
dead worker fails and asks again that worker's trials.
"""

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

from cnnclf.errors import ConfigError, first_line
from cnnclf.signals import alive

PASSWORD_VARIABLE = "CNNCLF_TUNE_PASSWORD"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def folder_of(config) -> Path:
    return Path(config.output.runs_dir) / f"tune-{config.name}"


def storage_url(config, storage: str | None = None) -> str:
    """--storage, else tune.storage, else the SQLite file in the runs folder."""
    assert config.tune is not None
    return storage or config.tune.storage or f"sqlite:///{folder_of(config) / 'study.db'}"


def shown(url: str) -> str:
    """A storage URL as it may be shown or logged: any password masked."""
    if url.startswith("journal:") or "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse: show only its scheme
        return url.split("://", 1)[0] + "://..."


def open_storage(url: str, heartbeat_seconds: int):
    """The Optuna storage at `url`, connected (an unreachable one, or refused credentials, is one line)."""
    import optuna

    # heartbeats and retries are experimental in Optuna 5; cnnclf relies on them knowingly
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url.removeprefix("journal:")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except OSError as e:
            raise ConfigError(f"tune.storage {url}: the journal file cannot be opened ({e}); check the path") from None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"tune.storage {shown(url)}: not a database URL; use postgresql://user@host/db, mysql://..., "
            f"sqlite:///PATH or journal:PATH"
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, the driver cnnclf installs
    if parsed.username and parsed.password is None and os.environ.get(PASSWORD_VARIABLE):
        parsed = parsed.set(password=os.environ[PASSWORD_VARIABLE])
    engine = {"connect_args": {"timeout": 60}} if parsed.drivername.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            parsed.render_as_string(hide_password=False),
            engine_kwargs=engine,
            heartbeat_interval=heartbeat_seconds,
            grace_period=2 * heartbeat_seconds,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
        )
    except (SQLAlchemyError, ImportError, ValueError) as e:
        reason = first_line(getattr(e, "orig", None) or e)
        raise ConfigError(
            f"tune.storage {shown(url)}: cannot open the study there ({reason}); check the address, the "
            f"database and its password (PGPASSWORD, ~/.pgpass or {PASSWORD_VARIABLE})"
        ) from None


def pruner(name: str, epochs: int):
    import optuna

    if name == "median":  # a trial is stopped below the median of the others at the same epoch
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def counted(study) -> int:
    """Finished trials toward tune.trials: completed, pruned, and failed ones not asked again."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(t)}
    return sum(1 for t in trials if t.state.name in FINISHED and t.number not in retried)


def fail_abandoned(study) -> None:
    """A journal study's running trials whose worker was a process of this machine that is gone:
    failed, and asked again (a database study does this by heartbeat)."""
    import optuna

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("host") == host and not alive(trial.user_attrs.get("pid")):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            ask_again(study, trial)


def ask_again(study, trial) -> None:
    """Queue a trial that could not finish (its worker interrupted or gone) with the same parameters
    and what it recorded (its run, which the worker that takes it resumes where it can reach it)."""
    import optuna

    history = [*optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial), trial.number]
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=trial.user_attrs,
            system_attrs={"failed_trial": history[0], "retry_history": history},
        )
    )


def run_workers(arguments: list[str], workers: int) -> int:
    """`cnnclf tune` in `workers` processes on this machine, each with its share of the cores
    (train.threads); their exit code (the first that is not 0)."""
    share = max(1, (os.cpu_count() or 1) // workers)
    command = [sys.executable, "-m", "cnnclf", "tune", *arguments, "--set", f"train.threads={share}"]
    processes = [subprocess.Popen(command) for _ in range(workers)]
    codes = [p.wait() for p in processes]
    return next((code for code in codes if code), 0)


def create(config, storage: str | None = None):
    """The study, created where it does not exist yet (before several workers race to create it)."""
    import optuna

    assert config.tune is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=config.name,
        storage=open_storage(storage_url(config, storage), config.tune.heartbeat_seconds),
        direction=config.tune.direction,
        pruner=pruner(config.tune.pruner, config.train.epochs),
        load_if_exists=True,
    )

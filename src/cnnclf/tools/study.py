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

import contextlib
import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path

from cnnclf.errors import ConfigError, RunError, first_line, listing
from cnnclf.redaction import masked
from cnnclf.signals import alive

log = logging.getLogger("cnnclf")

PASSWORD_VARIABLE = "CNNCLF_TUNE_PASSWORD"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


CONNECT_SECONDS = 15  # a database that accepts the connection but never answers is given up after this
# keys a study's workers may set apart (their runs folder, their share of the cores) or that only steer
# the search (how many trials, where the study is, how often a worker says it lives, what it prunes)
WORKER_KEYS = ("output.", "train.threads", "tune.trials", "tune.storage", "tune.heartbeat_seconds", "tune.pruner")


def settings(config):
    """The config's tune: section; a config without one is refused."""
    if config.tune is None:
        raise ConfigError(
            "the config has no tune: section; add one with a space: {key.path: {choice: [...]}} "
            "mapping (see README, Hyperparameter search)"
        )
    return config.tune


def folder_of(config, storage: str | None = None) -> Path:
    """Where trials.csv and best.yaml go: runs/tune-<name>/, beside the default SQLite study; a study
    stored elsewhere gets runs/tune-<name>-<8 hex digits of its storage>/, so that two studies of one
    config (SQLite, then PostgreSQL) never write over each other's."""
    assert config.tune is not None
    folder = Path(config.output.runs_dir) / f"tune-{config.name}"
    given = storage or config.tune.storage
    if given is None:
        return folder
    return folder.with_name(f"{folder.name}-{hashlib.sha256(masked(given).encode()).hexdigest()[:8]}")


def storage_url(config, storage: str | None = None) -> str:
    """--storage, else tune.storage, else the SQLite file in the runs folder."""
    assert config.tune is not None
    return storage or config.tune.storage or f"sqlite:///{folder_of(config) / 'study.db'}"


def identity(config) -> dict:
    """The config as a study records it: every key but those its workers may set apart (WORKER_KEYS)."""
    from cnnclf.config import flatten

    return {k: v for k, v in flatten(config.model_dump(mode="json")).items() if not k.startswith(WORKER_KEYS)}


def check_identity(study, config, url: str) -> None:
    """Refuse to work on a study that another config made (two configs of one name would share it
    silently, and best.yaml could hand back the other's trial); a study made before cnnclf recorded
    its config is adopted."""
    assert config.tune is not None
    direction = study.direction.name.lower()
    if direction != config.tune.direction:
        raise ConfigError(
            f"study {config.name} in {shown(url)} {direction}s its metric, this config {config.tune.direction}s "
            f"{config.tune.metric}; give this config its own name: (or --set name=...)"
        )
    mine = identity(config)
    recorded = study.user_attrs.get("config")
    if recorded is None:
        study.set_user_attr("config", mine)
        return
    differing = sorted(k for k in mine.keys() | recorded.keys() if mine.get(k) != recorded.get(k))
    if differing:
        raise ConfigError(
            f"study {config.name} in {shown(url)} belongs to another config ({listing(differing, 4)} "
            f"{'differs' if len(differing) == 1 else 'differ'}); give this config its own name: "
            f"(or --set name=...), or use the config that made the study"
        )


def shown(url: str) -> str:
    """A storage URL as it may be shown or logged: any password masked, in any of the places a URL
    can carry one."""
    return masked(url)


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
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            f"tune.storage {shown(url)}: not a database URL; use postgresql://user@host/db, mysql://..., "
            f"sqlite:///PATH or journal:PATH"
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, the driver cnnclf installs
    if parsed.username and parsed.password is None and os.environ.get(PASSWORD_VARIABLE):
        parsed = parsed.set(password=os.environ[PASSWORD_VARIABLE])
    if parsed.drivername.startswith("sqlite"):
        engine: dict = {"connect_args": {"timeout": 60}}
    else:  # a server that takes the connection and never answers is given up, not waited on forever
        timeout = {"connect_timeout": CONNECT_SECONDS} if parsed.drivername.startswith(("postgresql", "mysql")) else {}
        engine = {"pool_pre_ping": True, "connect_args": timeout}
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


@contextlib.contextmanager
def database_errors(url: str):
    """A study's database that stops answering while the study runs (stopped, restarted, unreachable)
    is one line, exit 1: the study continues once it is back."""
    from sqlalchemy.exc import SQLAlchemyError

    def quiet_heartbeat(args):  # Optuna's heartbeat thread meets the lost database too: the line below says it
        if any(isinstance(c, SQLAlchemyError) for c in _chain(args.exc_value)):
            log.debug(
                "%s lost the study's database",
                args.thread.name if args.thread else "a thread",
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )
        else:
            default(args)

    default, threading.excepthook = threading.excepthook, quiet_heartbeat
    try:
        yield
    except Exception as e:
        cause = next((c for c in _chain(e) if isinstance(c, SQLAlchemyError)), None)
        if cause is None:  # Optuna 5 can fail in its own cleanup while a lost connection's error is handled
            raise
        raise RunError(
            f"the study's database {shown(url)} stopped answering ({first_line(getattr(cause, 'orig', None) or cause)}"
            f"); once it is back, run the same command again to continue the study"
        ) from None
    finally:
        threading.excepthook = default


def _chain(error: BaseException | None):
    """An exception and those it was raised from or during, in turn."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


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
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is cnnclf's own line, not a traceback
    url = storage_url(config, storage)
    if not (storage or config.tune.storage):  # the default SQLite file's folder
        folder_of(config).mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=config.name,
        storage=open_storage(url, config.tune.heartbeat_seconds),
        direction=config.tune.direction,
        pruner=pruner(config.tune.pruner, config.train.epochs),
        load_if_exists=True,
    )
    check_identity(study, config, url)
    study.set_metric_names([config.tune.metric])  # the dashboard names the objective by its metric
    return study


def dashboard(config, storage: str | None, sock) -> None:
    """optuna-dashboard for the study on `sock` (bound to 127.0.0.1), until Ctrl-C: served as `cnnclf serve`
    serves a model (inference/server.py), so it answers only loopback names (no web page can reach it
    by DNS rebinding) and holds its connections within bounds."""
    heartbeat = settings(config).heartbeat_seconds
    try:
        import optuna_dashboard
        from a2wsgi import WSGIMiddleware
    except ImportError:
        raise ConfigError("the dashboard needs optuna-dashboard: pip install 'cnnclf[tune]'") from None
    from cnnclf.inference.server import serve_app, served_hosts

    url = storage_url(config, storage)
    opened = open_storage(url, heartbeat)
    log.info(f"dashboard of {shown(url)} on http://127.0.0.1:{sock.getsockname()[1]}/dashboard")
    serve_app(WSGIMiddleware(optuna_dashboard.wsgi(opened)), sock, served_hosts(sock), access_log=False)

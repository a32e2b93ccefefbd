"""The click group, its error handling, and the options several commands share."""

import logging
import sys
import time
from pathlib import Path

import click

from cnnclf import __version__, progress
from cnnclf.errors import CnnclfError, ConfigError, DiskFull
from cnnclf.redaction import masked


class _Cli(click.Group):
    """Turns domain errors into `Error: ...` on stderr and their exit code (no traceback unless --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except CnnclfError as e:
            if ctx.obj.get("debug"):
                raise
            if isinstance(e, DiskFull):
                ctx.obj["disk_full"] = True
            click.echo(f"Error: {_one_line(str(e))}", err=True)
            if ctx.obj.get("disk_full") and ctx.obj.get("console"):
                _silence_stderr()  # h5py prints the files it could not close as it frees them: the same error
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            if ctx.obj.get("debug"):
                raise
            click.echo("Error: stopped by SIGINT", err=True)
            ctx.exit(130)
        except Exception as e:
            if ctx.obj.get("debug"):
                raise
            click.echo(
                f"Error: internal error ({e.__class__.__name__}: {_one_line(str(e))[:300]}); rerun with "
                f"--debug for the traceback and report it",
                err=True,
            )
            ctx.exit(1)


def _silence_stderr() -> None:
    import os

    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


def _one_line(text: str) -> str:
    return masked(" ".join(text.split("\n")))


def _debug(ctx, param, value):
    if value:
        ctx.ensure_object(dict)
        ctx.find_root().obj["debug"] = True
    return value


debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    callback=_debug,
    is_eager=True,
    help="Show tracebacks and TensorFlow's own log.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set train.epochs=3 (repeatable).",
)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnnclf")
@debug_option
@click.pass_context
def cli(ctx):
    """Train Keras convolutional image classifiers from one YAML config.

    \b
    Example:
      cnnclf train configs/quickstart.yaml
      cnnclf evaluate runs/<id>
    """
    ctx.ensure_object(dict)
    ctx.obj.setdefault("started", time.time())
    ctx.obj.setdefault("debug", False)
    logger = logging.getLogger("cnnclf")
    if not any(isinstance(h, progress.StderrHandler) for h in logger.handlers):
        logger.addHandler(progress.StderrHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a library that configures the root logger (TFLite's converter) would say it again


def command(group=cli, name=None):
    """A subcommand of `group` that also takes --debug after its name."""

    def decorate(function):
        return group.command(name)(debug_option(function))

    return decorate


def start_tensorflow(ctx, train=None):
    from cnnclf import pipeline

    pipeline.start_tensorflow(train, ctx.obj["debug"])


def prepare(ctx, config, smoke: bool = False, split_from=None):
    """pipeline.prepare: the config's data read, --smoke applied, TensorFlow started."""
    from cnnclf import pipeline

    return pipeline.prepare(config, smoke, split_from, ctx.obj["debug"])


def writable_folder(path: Path, what: str) -> Path:
    """Create `path` (a folder to write into) if needed, and check that files can be written there,
    before anything is loaded."""
    import tempfile

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(
            f"{what} {path}: cannot write there ({e.strerror or e.__class__.__name__}); choose another folder"
        ) from None
    return path


def output_file(path: Path | None, what: str) -> Path | None:
    """An output file's folder, created if missing and checked writable."""
    if path is not None:
        writable_folder(Path(path).parent, f"{what}'s folder")
    return path

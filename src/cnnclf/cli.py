"""The command line. Each command parses, calls one library function, and prints.

TensorFlow is imported only by commands that need it, so --help and config checks stay fast.
"""

import logging
import sys
import time
from pathlib import Path

import click

from cnnclf import __version__
from cnnclf.errors import CnnclfError


class _StderrHandler(logging.Handler):
    """Log lines to whatever sys.stderr is now (click's test runner swaps it)."""

    def emit(self, record):
        sys.stderr.write(self.format(record) + "\n")


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
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except Exception as e:
            if ctx.obj.get("debug"):
                raise
            click.echo(f"Error: internal error ({e.__class__.__name__}: {e}); rerun with --debug for the "
                       f"traceback and report it", err=True)
            ctx.exit(1)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnnclf")
@click.option("--debug", is_flag=True, help="Show tracebacks and TensorFlow's own log.")
@click.pass_context
def cli(ctx, debug):
    """Train Keras convolutional image classifiers from one YAML config.

    \b
    Example:
      cnnclf train configs/quickstart.yaml
      cnnclf evaluate runs/<id>
    """
    ctx.ensure_object(dict)
    ctx.obj.setdefault("started", time.time())
    ctx.obj["debug"] = debug
    logger = logging.getLogger("cnnclf")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)


def _start_tensorflow(ctx, train=None):
    from cnnclf import runtime

    runtime.start(debug=ctx.obj["debug"], train=train)


@cli.command()
@click.argument("config_path", metavar="CONFIG")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set train.epochs=3 (repeatable).")
@click.option("--name", help="Run-name prefix (default: the config's name, or its file name).")
@click.option("--runs-dir", help="Where run directories go (default: output.runs_dir, runs/).")
@click.option("--smoke", is_flag=True, help="A quick check: 20 images per class, one epoch.")
@click.pass_context
def train(ctx, config_path, overrides, name, runs_dir, smoke):
    """Train a classifier as CONFIG says; the run directory is the last line printed.

    \b
    Example:
      cnnclf train configs/quickstart.yaml --set train.epochs=3
    """
    from cnnclf.config import load_config

    overrides += tuple(f"{key}={value}" for key, value in (("name", name), ("output.runs_dir", runs_dir)) if value)
    config = load_config(config_path, overrides)
    _start_tensorflow(ctx, config.train)
    from cnnclf.train import train as train_run

    run = train_run(config, smoke=smoke, started=ctx.obj["started"])
    click.echo(run.path)


@cli.command()
@click.argument("run_path", metavar="RUN")
@click.pass_context
def resume(ctx, run_path):
    """Continue an interrupted or failed run from its last finished epoch.

    \b
    Example:
      cnnclf resume runs/20261121T101500Z-fashion
    """
    from cnnclf.config import load_config
    from cnnclf.runs import RunDir

    config = load_config(RunDir.open(run_path).config)
    _start_tensorflow(ctx, config.train)
    from cnnclf.train import resume as resume_run

    click.echo(resume_run(run_path, started=ctx.obj["started"]).path)


@cli.command()
@click.argument("run_path", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.pass_context
def evaluate(ctx, run_path, as_json):
    """Evaluate a run's best model on its test data again; print and rewrite the metrics.

    \b
    Example:
      cnnclf evaluate runs/20261121T101500Z-fashion --json
    """
    import json

    from cnnclf.runs import RunDir

    run = RunDir.open(run_path, need_model=True)
    _start_tensorflow(ctx)
    from cnnclf.evaluate import evaluate_run, report

    metrics = evaluate_run(run)
    click.echo(json.dumps(metrics, indent=2) if as_json else report(metrics))


@cli.command()
@click.argument("run_path", metavar="RUN")
def plot(run_path):
    """Redraw a run's plots from its directory alone; print their paths.

    \b
    Example:
      cnnclf plot runs/20261121T101500Z-fashion
    """
    from cnnclf import plots
    from cnnclf.errors import NotARunError
    from cnnclf.runs import RunDir

    run = RunDir.open(run_path)
    drawn = plots.draw_all(run)
    if not drawn:
        raise NotARunError(f"{run.path}: nothing to plot yet (no history.csv: no epoch has finished); "
                           f"`cnnclf resume {run.path}` continues its training")
    for path in drawn:
        click.echo(path)


@cli.command()
@click.argument("configs", nargs=-1, required=True)
@click.option("--data-dir", default="../shared/data", show_default=True, type=click.Path(path_type=Path),
              help="Folder with mnist/, fashion-mnist/ (IDX) and cifar10/cifar10-jpg.zip.")
@click.option("--limit", type=click.IntRange(1), help="Quick pass: this many training and test images.")
@click.option("--epochs", type=click.IntRange(1), help="Quick pass: this many epochs.")
@click.option("--section", default="latest", show_default=True, help="Name of the table's section in --out.")
@click.option("--out", default="BENCHMARKS.md", show_default=True, type=click.Path(path_type=Path),
              help="Markdown file whose section gets the table (the rest of it is kept).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Results as JSON [bench/SECTION.json].")
@click.option("--work-dir", default="bench", show_default=True, type=click.Path(path_type=Path),
              help="Where runs, logs and the CSV cache go.")
@click.pass_context
def bench(ctx, configs, data_dir, limit, epochs, section, out, json_path, work_dir):
    """Train CONFIGS on the full datasets, each in its own process, and tabulate wall time,
    time to the tutorial's figure, images/s, peak memory and test accuracy.

    \b
    Example:
      cnnclf bench configs/seeds/*.yaml configs/fast/*.yaml --section cpu
      cnnclf bench configs/seeds/s002_mnist.yaml --limit 2000 --epochs 1 --section quick
    """
    import json
    import shlex

    from cnnclf.errors import DataError

    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder; pass --data-dir with mnist/, fashion-mnist/ and cifar10/")
    _start_tensorflow(ctx)
    from cnnclf import bench as benchmark

    results = benchmark.run_bench(list(configs), data_dir.resolve(), work_dir / "cache", work_dir / "runs",
                                  limit, epochs, log=logging.getLogger("cnnclf").info)
    json_path = json_path or work_dir / f"{section}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    command = "cnnclf bench " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("bench") + 1:]) \
        if "bench" in sys.argv else "cnnclf bench " + " ".join(configs)
    benchmark.write_section(out, section, benchmark.report(results, command))
    click.echo(out)
    click.echo(json_path)


def main():
    cli(prog_name="cnnclf", obj={"started": time.time()})

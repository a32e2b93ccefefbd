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
@click.argument("config_path", metavar="CONFIG", required=False)
@click.option("--from", "from_run", metavar="RUN", help="Rerun RUN's resolved config (with any --set changes).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set train.epochs=3 (repeatable).")
@click.option("--name", help="Run-name prefix (default: the config's name, or its file name).")
@click.option("--runs-dir", help="Where run directories go (default: output.runs_dir, runs/).")
@click.option("--smoke", is_flag=True, help="A quick check: 20 images per class, one epoch.")
@click.pass_context
def train(ctx, config_path, from_run, overrides, name, runs_dir, smoke):
    """Train a classifier as CONFIG says; the run directory is the last line printed.

    \b
    Example:
      cnnclf train configs/quickstart.yaml --set train.epochs=3
      cnnclf train --from runs/20261121T101500Z-fashion --set train.batch_size=256
    """
    from cnnclf.config import load_config
    from cnnclf.runs import RunDir

    if (config_path is None) == (from_run is None):
        raise click.UsageError("give a CONFIG file or --from RUN (one of them)")
    config_path = config_path or RunDir.open(from_run).config
    overrides += tuple(f"{key}={value}" for key, value in (("name", name), ("output.runs_dir", runs_dir)) if value)
    config = load_config(config_path, overrides)
    _start_tensorflow(ctx, config.train)
    from cnnclf.train import train as train_run

    run = train_run(config, smoke=smoke, started=ctx.obj["started"])
    if run is not None:  # None: another worker of a multi-worker run; the chief prints the path
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

    run = resume_run(run_path, started=ctx.obj["started"])
    if run is not None:
        click.echo(run.path)


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
@click.argument("run_path", metavar="RUN", required=False)
@click.option("--data", "config_path", metavar="CONFIG", help="Instead: a grid of CONFIG's training images per class.")
@click.pass_context
def plot(ctx, run_path, config_path):
    """Redraw a run's plots and report.html from its directory alone; print their paths.

    \b
    Example:
      cnnclf plot runs/20261121T101500Z-fashion
      cnnclf plot --data configs/fashion.yaml
    """
    from cnnclf import plots
    from cnnclf.errors import NotARunError
    from cnnclf.runs import RunDir

    if (run_path is None) == (config_path is None):
        raise click.UsageError("give a RUN directory or --data CONFIG (one of them)")
    if config_path:
        from cnnclf.config import load_config
        from cnnclf.data.inspect import sample_grid

        click.echo(sample_grid(load_config(config_path)))
        return
    run = RunDir.open(run_path)
    drawn = plots.draw_all(run)
    if not drawn:
        raise NotARunError(f"{run.path}: nothing to plot yet (no history.csv: no epoch has finished); "
                           f"`cnnclf resume {run.path}` continues its training")
    for path in drawn:
        click.echo(path)


@cli.command()
@click.argument("run_path", metavar="RUN")
@click.argument("paths", metavar="IMAGE_OR_FOLDER...", nargs=-1, required=True)
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(1), help="How many classes to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table here.")
@click.pass_context
def predict(ctx, run_path, paths, top_k, as_json, csv_path):
    """Classify PNG/JPEG files (or folders of them) with RUN's best model.

    \b
    Example:
      cnnclf predict runs/20261121T101500Z-fashion shoe.png photos/ --top-k 3
    """
    import csv
    import io
    import json

    from cnnclf.runs import RunDir, write_text
    from cnnclf.tables import aligned

    run = RunDir.open(run_path, need_model=True)
    _start_tensorflow(ctx)
    from cnnclf.predict import predict as predict_images, table

    rows = predict_images(run, list(paths), top_k)
    header = ["file", "class", "probability"] + [f"top {i + 1}" for i in range(min(top_k, len(rows[0]["top_k"])))]
    if csv_path:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header] + table(rows))
        write_text(csv_path, out.getvalue())
    click.echo(json.dumps(rows, indent=2) if as_json else aligned(header, table(rows)))


@cli.command("runs")
@click.argument("runs_dir", default="runs", required=False)
@click.option("--sort", default="id", show_default=True, help="Column to sort by (numbers: best first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_runs(runs_dir, sort, as_json):
    """List the runs in RUNS_DIR (default runs/) as a table.

    \b
    Example:
      cnnclf runs --sort test_accuracy
    """
    import json

    from cnnclf.runs import RUN_COLUMNS, list_runs as summaries
    from cnnclf.tables import aligned

    rows = summaries(runs_dir, sort)
    click.echo(json.dumps(rows, indent=2) if as_json else
               aligned(list(RUN_COLUMNS), [[r[c] for c in RUN_COLUMNS] for r in rows]))


@cli.command()
@click.argument("run_paths", metavar="RUN RUN...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The learning-curves plot [<runs dir>/compare-<first>-<last>.png].")
def compare(run_paths, as_json, out):
    """Config differences and metrics of runs side by side; their learning curves on one plot.

    \b
    Example:
      cnnclf compare runs/20261121T101500Z-fashion runs/20261121T120000Z-fashion
    """
    import json

    from cnnclf.compare import compare as compare_runs, describe
    from cnnclf.runs import RunDir

    if len(run_paths) < 2:
        raise click.UsageError("compare needs at least two runs")
    runs = [RunDir.open(p) for p in run_paths]
    out = out or runs[0].path.parent / f"compare-{runs[0].path.name}-{runs[-1].path.name}.png"
    result = compare_runs(runs, out)
    click.echo(json.dumps(result, indent=2) if as_json else describe(result))


@cli.command()
@click.argument("run_path", metavar="RUN")
@click.option("--format", "fmt", required=True, type=click.Choice(["savedmodel", "tflite", "onnx"]))
@click.option("--out", type=click.Path(path_type=Path), help="Where to write it [RUN/export/model.<format>].")
@click.pass_context
def export(ctx, run_path, fmt, out):
    """Export RUN's best model; the model takes 0-255 pixels (its scaling is built in).

    \b
    Example:
      cnnclf export runs/20261121T101500Z-fashion --format tflite
    """
    from cnnclf.runs import RunDir

    run = RunDir.open(run_path, need_model=True)
    _start_tensorflow(ctx)
    from cnnclf.export import export as export_model

    click.echo(export_model(run, fmt, out))


@cli.group()
def config():
    """Show, check and list what a config can hold.

    \b
    Example:
      cnnclf config show configs/fashion.yaml --set train.epochs=3
    """


@config.command("show")
@click.argument("config_path", metavar="CONFIG")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a value (repeatable).")
def config_show(config_path, overrides):
    """Print CONFIG fully resolved, every default filled in.

    \b
    Example:
      cnnclf config show configs/fashion.yaml
    """
    from cnnclf.config import load_config

    click.echo(load_config(config_path, overrides).to_yaml(), nl=False)


@config.command("validate")
@click.argument("config_path", metavar="CONFIG")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a value (repeatable).")
def config_validate(config_path, overrides):
    """Check CONFIG without training: exit 0 if it is valid, 2 with the reason if not.

    \b
    Example:
      cnnclf config validate configs/fashion.yaml
    """
    from cnnclf.config import load_config

    load_config(config_path, overrides)
    click.echo(f"{config_path}: valid")


@config.command("presets")
def config_presets():
    """List the built-in architectures (model.preset).

    \b
    Example:
      cnnclf config presets
    """
    from cnnclf.presets import PRESETS

    for name, layers in PRESETS.items():
        click.echo(f"{name}: {' > '.join(next(iter(layer)) for layer in layers)}")


@cli.command()
@click.option("--dataset", default="mnist", show_default=True,
              type=click.Choice(["mnist", "fashion_mnist", "cifar10", "digits", "custom"]))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="The file to write [DATASET.yaml].")
def init(dataset, out):
    """Write a commented starter config for DATASET (never over an existing file).

    \b
    Example:
      cnnclf init --dataset fashion_mnist && cnnclf train fashion_mnist.yaml
    """
    from cnnclf.errors import ConfigError
    from cnnclf.starter import starter_config

    out = out or Path(f"{dataset}.yaml")
    if out.exists():
        raise ConfigError(f"{out}: already exists; choose another --out or remove it")
    out.write_text(starter_config(dataset))
    click.echo(out)


@cli.group()
def data():
    """Look at a dataset before training on it.

    \b
    Example:
      cnnclf data inspect configs/fashion.yaml
    """


@data.command("inspect")
@click.argument("config_path", metavar="CONFIG")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def data_inspect(config_path, as_json):
    """Class balance, image shape and value range, train/test duplicates, unreadable files,
    and a grid of training images per class.

    \b
    Example:
      cnnclf data inspect configs/fashion.yaml
    """
    import json

    from cnnclf.config import load_config
    from cnnclf.data.inspect import describe, inspect

    found = inspect(load_config(config_path))
    click.echo(json.dumps(found, indent=2) if as_json else describe(found))


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
@click.option("--tutorial-code", is_flag=True, help="Also run each seed tutorial's own code, for comparison.")
@click.pass_context
def bench(ctx, configs, data_dir, limit, epochs, section, out, json_path, work_dir, tutorial_code):
    """Train CONFIGS on the full datasets, each in its own process, and tabulate wall time,
    time to the tutorial's figure, images/s, peak memory and test accuracy.

    \b
    Example:
      cnnclf bench configs/seeds/*.yaml configs/fast/*.yaml --tutorial-code --section cpu
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
                                  limit, epochs, tutorial_code, log=logging.getLogger("cnnclf").info)
    json_path = json_path or work_dir / f"{section}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    command = "cnnclf bench " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("bench") + 1:]) \
        if "bench" in sys.argv else "cnnclf bench " + " ".join(configs)
    benchmark.write_section(out, section, benchmark.report(results, command))
    click.echo(out)
    click.echo(json_path)


@cli.command()
@click.argument("config_path", metavar="CONFIG")
@click.option("--trials", type=click.IntRange(1), help="Finished trials the study should reach [tune.trials].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable).")
@click.pass_context
def tune(ctx, config_path, trials, overrides):
    """Search the config keys in CONFIG's tune: section with Optuna; each trial is a run.
    Run it again to continue the study (an interrupted trial is resumed).

    \b
    Example:
      cnnclf tune configs/tune-quickstart.yaml --trials 8
    """
    from cnnclf.config import load_config
    from cnnclf.tables import aligned

    config = load_config(config_path, overrides)
    _start_tensorflow(ctx, config.train)
    from cnnclf.tune import tune as run_study

    found = run_study(config, trials)
    rows = found["rows"]
    click.echo(aligned(list(rows[0]), [[_short(v) for v in r.values()] for r in rows]))
    click.echo(f"\nbest: trial {found['best_trial']}, {found['best_value']:.4f}")
    click.echo(found["trials_csv"])
    click.echo(found["best_config"])


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value


def main():
    cli(prog_name="cnnclf", obj={"started": time.time()})

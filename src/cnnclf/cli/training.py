"""Commands that train: train, resume, tune, bench."""

import logging
import sys
from pathlib import Path

import click

from cnnclf.cli.options import command, prepare, set_option, start_tensorflow, writable_folder


@command()
@click.argument("config_path", metavar="CONFIG", required=False)
@click.option(
    "--from", "from_run", metavar="RUN", help="Rerun RUN's resolved config and split (with any --set changes)."
)
@set_option
@click.option("--name", help="Run-name prefix (default: the config's name, or its file name).")
@click.option("--runs-dir", help="Where run directories go (default: output.runs_dir, runs/).")
@click.option("--smoke", is_flag=True, help="A quick check: a few images per class, one epoch.")
@click.pass_context
def train(ctx, config_path, from_run, overrides, name, runs_dir, smoke):
    """Train a classifier as CONFIG says; the run directory is the last line printed.

    \b
    Example:
      cnnclf train configs/quickstart.yaml --set train.epochs=3
      cnnclf train --from runs/20261121T101500Z-fashion --set train.batch_size=256
    """
    from cnnclf.config import load_config
    from cnnclf.rundir.directory import RunDir

    if (config_path is None) == (from_run is None):
        raise click.UsageError("give a CONFIG file or --from RUN (one of them)")
    split_from = None
    if from_run:
        source = RunDir.open(from_run)
        config_path, split_from = source.config, source.saved_split()
    values = {key: value for key, value in (("name", name), ("output.runs_dir", runs_dir)) if value is not None}
    config = load_config(config_path, overrides, values)
    writable_folder(Path(config.output.runs_dir), "output.runs_dir")
    config, data = prepare(ctx, config, smoke, split_from)
    from cnnclf import pipeline

    run = pipeline.train(config, data, started=ctx.obj["started"], smoke=smoke)
    if run is not None:  # None: another worker of a multi-worker run; the chief prints the path
        click.echo(run.path)


@command()
@click.argument("run_path", metavar="RUN")
@click.pass_context
def resume(ctx, run_path):
    """Continue an interrupted or failed run from its last finished epoch.

    \b
    Example:
      cnnclf resume runs/20261121T101500Z-fashion
    """
    from cnnclf.rundir.directory import RunDir

    run = RunDir.open(run_path)
    config = run.read_config()
    run.check_free()  # a run another process trains is refused before TensorFlow starts
    start_tensorflow(ctx, config.train)
    from cnnclf import pipeline

    resumed = pipeline.resume(run_path, started=ctx.obj["started"])
    if resumed is not None:
        click.echo(resumed.path)


@command()
@click.argument("config_path", metavar="CONFIG")
@click.option("--trials", type=click.IntRange(1), help="Finished trials the study should reach [tune.trials].")
@click.option(
    "--storage",
    metavar="URL",
    help="The study's storage [tune.storage: SQLite in the runs folder]: postgresql://user@host/db, mysql://..., "
    "or journal:PATH; the password from PGPASSWORD, ~/.pgpass or CNNCLF_TUNE_PASSWORD.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Trial processes on this machine, each with its share of the cores; more machines run the same command.",
)
@click.option("--dashboard", is_flag=True, help="Serve optuna-dashboard for the study on 127.0.0.1 (no trials run).")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="With --dashboard (0: a free one)."
)
@set_option
@click.pass_context
def tune(ctx, config_path, trials, storage, workers, dashboard, port, overrides):
    """Search the config keys in CONFIG's tune: section with Optuna; each trial is a run. Run it again,
    or on more machines against one --storage, to continue the study (a trial whose worker stopped is
    asked again, its run resumed).

    \b
    Example:
      cnnclf tune configs/tune-quickstart.yaml --trials 8 --workers 2
      cnnclf tune configs/tune-quickstart.yaml --storage postgresql://cnnclf@db.example/studies
      cnnclf tune configs/tune-quickstart.yaml --dashboard
    """
    from cnnclf.config import load_config
    from cnnclf.reporting.tables import aligned, short

    config = load_config(config_path, overrides)
    from cnnclf.tools import study

    study.settings(config)  # a config without a tune: section is refused here
    writable_folder(Path(config.output.runs_dir), "output.runs_dir")
    if dashboard:  # the port taken first; no TensorFlow: the dashboard only reads the study
        from cnnclf.inference.server import listen

        sock = listen("127.0.0.1", port)
        study.create(config, storage)
        study.dashboard(config, storage, sock)
        return
    study.create(config, storage)  # the storage reached and the study made before anything slow starts
    if workers > 1:
        given = [("--trials", trials), ("--storage", storage)] + [("--set", o) for o in overrides]
        ctx.exit(study.run_workers([str(config_path), *(str(a) for pair in given if pair[1] for a in pair)], workers))
    start_tensorflow(ctx, config.train)
    from cnnclf.tools import tune as tuning

    found = tuning.tune(config, trials, storage)
    rows = found["rows"]
    click.echo(aligned(list(rows[0]), [[short(v) for v in r.values()] for r in rows]))
    click.echo(
        f"\nbest: trial {found['best_trial']}, {found['best_value']:.4f}; pruning saved {found['epochs_saved']} "
        f"of {found['epochs_saved'] + found['epochs_trained']} epochs"
    )
    click.echo(found["trials_csv"])
    click.echo(found["best_config"])


@command()
@click.argument("configs", nargs=-1, required=True)
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder with mnist/, fashion-mnist/ (IDX) and cifar10/cifar10-jpg.zip (this project's: ../shared/data).",
)
@click.option("--limit", type=click.IntRange(1), help="Quick pass: this many training and test images.")
@click.option("--epochs", type=click.IntRange(1), help="Quick pass: this many epochs.")
@click.option(
    "--seeds",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Train each config this many times (seeds seed, seed+1, ...); accuracy is their mean.",
)
@click.option("--section", default="latest", show_default=True, help="Name of the table's section in --out.")
@click.option(
    "--out",
    default="BENCHMARKS.md",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Markdown file whose section gets the table (the rest of it is kept).",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Results as JSON [bench/SECTION.json].")
@click.option(
    "--work-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Where runs, logs and the CSV cache go; its figures.yaml names each config's target "
    "figure, and its tutorials.py holds the tutorials' own code (this project's: bench/).",
)
@click.option("--tutorial-code", is_flag=True, help="Also run each seed tutorial's own code (WORK_DIR/tutorials.py).")
@click.pass_context
def bench(ctx, configs, data_dir, limit, epochs, seeds, section, out, json_path, work_dir, tutorial_code):
    """Train CONFIGS on the full datasets, each in its own process, and tabulate wall time,
    time to the target figure, images/s, peak memory and test accuracy.

    \b
    Example:
      cnnclf bench configs/seeds/*.yaml configs/fast/*.yaml --tutorial-code --section cpu \\
          --data-dir ../shared/data --work-dir bench
      cnnclf bench configs/seeds/s002_mnist.yaml --limit 2000 --epochs 1 --section quick \\
          --data-dir ../shared/data --work-dir bench
    """
    import json
    import shlex

    from cnnclf.errors import DataError

    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder; pass --data-dir with mnist/, fashion-mnist/ and cifar10/")
    start_tensorflow(ctx)
    from cnnclf.tools import bench as benchmark
    from cnnclf.tools import bench_report

    results = benchmark.run_bench(
        list(configs),
        data_dir.resolve(),
        work_dir,
        limit,
        epochs,
        seeds,
        tutorial_code,
        log=logging.getLogger("cnnclf").info,
    )
    json_path = json_path or work_dir / f"{section}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    command_line = (
        "cnnclf bench " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("bench") + 1 :])
        if "bench" in sys.argv
        else "cnnclf bench " + " ".join(configs)
    )
    bench_report.write_section(out, section, bench_report.markdown(results, command_line))
    click.echo(out)
    click.echo(json_path)


@command(name="lr-find")
@click.argument("config_path", metavar="CONFIG")
@click.option("--steps", default=200, show_default=True, type=click.IntRange(10, 10_000), help="Steps of the sweep.")
@click.option("--low", default=1e-7, show_default=True, type=click.FloatRange(0, min_open=True), help="First rate.")
@click.option("--high", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True), help="Last rate.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The plot [<config name>-lr-find.png, in the working folder].",
)
@set_option
@click.pass_context
def lr_find(ctx, config_path, steps, low, high, out, overrides):
    """Sweep the learning rate over a few hundred steps of CONFIG's training: the plot of loss against
    rate, and a suggested rate with the --set that uses it. Leaves no run behind.

    \b
    Example:
      cnnclf lr-find configs/fashion.yaml --steps 300
    """
    from cnnclf.config import load_config
    from cnnclf.reporting.figures import picture_path

    config = load_config(config_path, overrides)
    if low >= high:
        raise click.UsageError(f"--low {low:g} must be below --high {high:g}")
    path = picture_path(Path(out or f"{config.name}-lr-find.png"))
    config, data = prepare(ctx, config)
    from cnnclf.reporting.plots import lr_find as draw
    from cnnclf.tools import lr_find as finder

    rates, losses = finder.sweep(config, data, steps, low, high)
    suggested = finder.suggest(rates, losses)
    click.echo(f"suggested learning rate: {suggested:.3g} (the loss falls fastest there)")
    click.echo(f"  cnnclf train {config_path} --set train.optimizer.learning_rate={suggested:.3g}")
    click.echo(draw(rates, losses, suggested, path))

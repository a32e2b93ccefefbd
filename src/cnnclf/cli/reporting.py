"""Commands that report on runs: plot, runs, compare."""

from pathlib import Path

import click

from cnnclf.cli.options import command, json_option, output_file, set_option, start_tensorflow


@command()
@click.argument("run_path", metavar="RUN", required=False)
@click.option("--data", "config_path", metavar="CONFIG", help="Instead: a grid of CONFIG's training images per class.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --data: where the grid goes [<config name>-data.png, in the working folder].",
)
@set_option
@click.pass_context
def plot(ctx, run_path, config_path, out, overrides):
    """Redraw a run's plots and report.html from its directory alone; print their paths.

    \b
    Example:
      cnnclf plot runs/20261121T101500Z-fashion
      cnnclf plot --data configs/fashion.yaml
    """
    from cnnclf.errors import NotARunError
    from cnnclf.rundir.directory import RunDir

    if (run_path is None) == (config_path is None):
        raise click.UsageError("give a RUN directory or --data CONFIG (one of them)")
    if config_path:
        from cnnclf.config import load_config
        from cnnclf.reporting.inspection import grid_path, sample_grid

        config = load_config(config_path, overrides)
        path = grid_path(config, out)
        if config.data.source == "keras":
            start_tensorflow(ctx)
        click.echo(sample_grid(config, path))
        return
    if out is not None:
        raise click.UsageError("--out goes with --data; a run's plots go into the run directory")
    from cnnclf.reporting import plots

    run = RunDir.open(run_path)
    drawn = plots.draw_all(run)
    if not drawn:
        raise NotARunError(
            f"{run.path}: nothing to plot yet (no history.csv: no epoch has finished); "
            f"`cnnclf resume {run.path}` continues its training"
        )
    for path in drawn:
        click.echo(path)


@command(name="runs")
@click.argument("runs_dir", default="runs", required=False)
@click.option("--sort", default="id", show_default=True, help="Column to sort by (numbers: best first).")
@click.option("--dataset", help="Only the runs of this dataset (mnist, fashion_mnist, cifar10, custom, ...).")
@json_option
def runs_table(runs_dir, sort, dataset, as_json):
    """List the runs in RUNS_DIR (default runs/) as a table.

    \b
    Example:
      cnnclf runs --sort test_accuracy --dataset fashion_mnist
    """
    import json

    from cnnclf.reporting import runs_table
    from cnnclf.reporting.tables import aligned

    rows = runs_table.list_runs(runs_dir, sort, dataset)
    columns = runs_table.RUN_COLUMNS
    header = [runs_table.HEADERS.get(c, c) for c in columns]
    click.echo(json.dumps(rows, indent=2) if as_json else aligned(header, [[r[c] for c in columns] for r in rows]))


@command()
@click.argument("run_paths", metavar="RUN RUN...", nargs=-1, required=True)
@json_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The learning-curves plot [<runs dir>/compare/<first>-<last>.png].",
)
def compare(run_paths, as_json, out):
    """Config differences and metrics of runs side by side; their learning curves on one plot.

    \b
    Example:
      cnnclf compare runs/20261121T101500Z-fashion runs/20261121T120000Z-fashion
    """
    import json

    from cnnclf.reporting import compare as comparison
    from cnnclf.rundir.directory import RunDir

    if len(run_paths) < 2:
        raise click.UsageError("compare needs at least two runs")
    runs = [RunDir.open(p) for p in run_paths]
    out = out or runs[0].path.parent / "compare" / f"{runs[0].path.name}-{runs[-1].path.name}.png"
    output_file(out, "--out")
    result = comparison.compare(runs, out)
    click.echo(json.dumps(result, indent=2) if as_json else comparison.describe(result))

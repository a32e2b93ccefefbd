"""Commands on run directories: evaluate, plot, predict, runs, compare, export."""

from pathlib import Path

import click

from cnnclf.cli.options import command, json_option, output_file, set_option, start_tensorflow, writable_folder
from cnnclf.errors import ConfigError


@command()
@click.argument("run_path", metavar="RUN")
@json_option
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
    run.read_config()
    start_tensorflow(ctx)
    from cnnclf.evaluate import evaluate_run, metrics_table

    metrics = evaluate_run(run)
    click.echo(json.dumps(metrics, indent=2) if as_json else metrics_table(metrics))


@command()
@click.argument("run_path", metavar="RUN", required=False)
@click.option("--data", "config_path", metavar="CONFIG", help="Instead: a grid of CONFIG's training images per class.")
@set_option
@click.pass_context
def plot(ctx, run_path, config_path, overrides):
    """Redraw a run's plots and report.html from its directory alone; print their paths.

    \b
    Example:
      cnnclf plot runs/20261121T101500Z-fashion
      cnnclf plot --data configs/fashion.yaml
    """
    from cnnclf.errors import NotARunError
    from cnnclf.runs import RunDir

    if (run_path is None) == (config_path is None):
        raise click.UsageError("give a RUN directory or --data CONFIG (one of them)")
    if config_path:
        from cnnclf.config import load_config
        from cnnclf.inspection import sample_grid

        config = load_config(config_path, overrides)
        if config.data.source == "keras":
            start_tensorflow(ctx)
        click.echo(sample_grid(config))
        return
    from cnnclf import plots

    run = RunDir.open(run_path)
    drawn = plots.draw_all(run)
    if not drawn:
        raise NotARunError(
            f"{run.path}: nothing to plot yet (no history.csv: no epoch has finished); "
            f"`cnnclf resume {run.path}` continues its training"
        )
    for path in drawn:
        click.echo(path)


@command()
@click.argument("run_path", metavar="RUN")
@click.argument("paths", metavar="IMAGE_OR_FOLDER...", nargs=-1, required=True)
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(1), help="How many classes to list.")
@json_option
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table here (a new file): file, class, probability, then each top-k class and probability.",
)
@click.option(
    "--explain",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a Grad-CAM picture of each image here (where the model found its class).",
)
@click.option("--layer", help="With --explain: the feature map to explain [the last one].")
@click.pass_context
def predict(ctx, run_path, paths, top_k, as_json, csv_path, explain, layer):
    """Classify PNG/JPEG files (or folders of them) with RUN's best model.

    \b
    Example:
      cnnclf predict runs/20261121T101500Z-fashion shoe.png photos/ --top-k 3
      cnnclf predict runs/20261121T101500Z-fashion shoe.png --explain explained/
    """
    import csv
    import io
    import json

    from cnnclf.fileio import write_text
    from cnnclf.runs import RunDir
    from cnnclf.tables import aligned

    run = RunDir.open(run_path, need_model=True)
    output_file(csv_path, "--csv")
    if csv_path is not None and csv_path.exists():
        raise ConfigError(f"--csv {csv_path}: already exists; choose another file or remove it")
    if explain is not None:
        writable_folder(explain, "--explain")
    elif layer is not None:
        raise click.UsageError("--layer goes with --explain")
    start_tensorflow(ctx)
    from cnnclf import predict as prediction

    rows = prediction.predict(run, list(paths), top_k, explain, layer)
    ranks = range(1, min(top_k, len(rows[0]["top_k"])) + 1)
    if csv_path:
        out = io.StringIO()
        header = ["file", "class", "probability"] + [
            f"top{i}_{what}" for i in ranks for what in ("class", "probability")
        ]
        csv.writer(out, lineterminator="\n").writerows([header] + prediction.table(rows, columns=True))
        write_text(csv_path, out.getvalue())
    header = ["file", "class", "probability"] + [f"top {i}" for i in ranks]
    click.echo(json.dumps(rows, indent=2) if as_json else aligned(header, prediction.table(rows)))


@command(name="runs")
@click.argument("runs_dir", default="runs", required=False)
@click.option("--sort", default="id", show_default=True, help="Column to sort by (numbers: best first).")
@json_option
def runs_table(runs_dir, sort, as_json):
    """List the runs in RUNS_DIR (default runs/) as a table.

    \b
    Example:
      cnnclf runs --sort test_accuracy
    """
    import json

    from cnnclf import runs
    from cnnclf.tables import aligned

    rows = runs.list_runs(runs_dir, sort)
    click.echo(
        json.dumps(rows, indent=2)
        if as_json
        else aligned(list(runs.RUN_COLUMNS), [[r[c] for c in runs.RUN_COLUMNS] for r in rows])
    )


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

    from cnnclf import compare as comparison
    from cnnclf.runs import RunDir

    if len(run_paths) < 2:
        raise click.UsageError("compare needs at least two runs")
    runs = [RunDir.open(p) for p in run_paths]
    out = out or runs[0].path.parent / "compare" / f"{runs[0].path.name}-{runs[-1].path.name}.png"
    output_file(out, "--out")
    result = comparison.compare(runs, out)
    click.echo(json.dumps(result, indent=2) if as_json else comparison.describe(result))


@command()
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
    output_file(out, "--out")
    start_tensorflow(ctx)
    from cnnclf import export as exporting

    click.echo(exporting.export(run, fmt, out))


@command()
@click.argument("run_path", metavar="RUN")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; the default lets only this machine connect (0.0.0.0: the network, with "
    "no authentication).",
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--max-batch",
    default=32,
    show_default=True,
    type=click.IntRange(1),
    help="Images classified together at most (from concurrent requests).",
)
@click.option(
    "--batch-wait-ms",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    help="How long the first request of a batch waits for others (0: no batching).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests addressed to this host name (a loopback server answers only 127.0.0.1, "
    "localhost and [::1], against DNS rebinding).",
)
@click.option("--quiet", is_flag=True, help="Do not log each request (method, path, status, milliseconds).")
@click.pass_context
def serve(ctx, run_path, host, port, max_batch, batch_wait_ms, allow_hosts, quiet):
    """Serve RUN's model over HTTP: POST images to /predict, GET /metadata and /health.

    \b
    Example:
      cnnclf serve runs/20261121T101500Z-fashion --port 8000
      curl --data-binary @shoe.png http://127.0.0.1:8000/predict
      curl -F file=@shoe.png -F file=@boot.png 'http://127.0.0.1:8000/predict?top_k=3'
    """
    from cnnclf import server
    from cnnclf.runs import RunDir

    run = RunDir.open(run_path, need_model=True)
    run.read_config()
    sock = server.listen(host, port)  # a port in use is found before TensorFlow starts
    start_tensorflow(ctx)
    server.serve(run, sock, max_batch, batch_wait_ms, allow_hosts, access_log=not quiet)

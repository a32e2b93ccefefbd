"""Commands that use a run's model: evaluate, predict, export, serve."""

from pathlib import Path

import click

from cnnclf.cli.options import command, json_option, output_file, start_tensorflow, writable_folder
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

    from cnnclf.rundir.directory import RunDir

    run = RunDir.open(run_path, need_model=True)
    run.read_config()
    _say_if_training(run, "evaluating")
    start_tensorflow(ctx)
    from cnnclf.inference.evaluate import metrics_table
    from cnnclf.pipeline import evaluate_run

    metrics, _ = evaluate_run(run)
    click.echo(json.dumps(metrics, indent=2) if as_json else metrics_table(metrics))


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
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1),
    help="Mark answers below this probability unknown [the run's threshold, fitted on its validation split].",
)
@click.pass_context
def predict(ctx, run_path, paths, top_k, as_json, csv_path, explain, layer, min_confidence):
    """Classify PNG/JPEG files (or folders of them) with RUN's best model.

    \b
    Example:
      cnnclf predict runs/20261121T101500Z-fashion shoe.png photos/ --top-k 3
      cnnclf predict runs/20261121T101500Z-fashion shoe.png --explain explained/
    """
    import csv
    import io
    import json

    from cnnclf.atomic import write_text
    from cnnclf.reporting.tables import aligned
    from cnnclf.rundir.directory import RunDir

    run = RunDir.open(run_path, need_model=True)
    output_file(csv_path, "--csv")
    if csv_path is not None and csv_path.exists():
        raise ConfigError(f"--csv {csv_path}: already exists; choose another file or remove it")
    if explain is not None:
        writable_folder(explain, "--explain")
    elif layer is not None:
        raise click.UsageError("--layer goes with --explain")
    start_tensorflow(ctx)
    from cnnclf.inference import predict as prediction

    rows = prediction.predict(run, list(paths), top_k, explain is not None, layer, min_confidence)
    if explain is not None:
        _draw_explanations(rows, explain)
    ranks = range(1, min(top_k, len(rows[0]["top_k"])) + 1)
    if csv_path:
        out = io.StringIO()
        header = ["file", "class", "probability", "unknown"] + [
            f"top{i}_{what}" for i in ranks for what in ("class", "probability")
        ]
        csv.writer(out, lineterminator="\n").writerows([header] + prediction.table(rows, columns=True))
        write_text(csv_path, out.getvalue())
    header = ["file", "class", "probability", "unknown"] + [f"top {i}" for i in ranks]
    click.echo(json.dumps(rows, indent=2) if as_json else aligned(header, prediction.table(rows)))


@command()
@click.argument("run_path", metavar="RUN")
@click.option("--format", "fmt", required=True, type=click.Choice(["savedmodel", "tflite", "onnx"]))
@click.option("--out", type=click.Path(path_type=Path), help="Where to write it [RUN/export/model.<format>].")
@click.option(
    "--quantize",
    "method",
    type=click.Choice(["float16", "int8"]),
    help="Quantize it (tflite: float16 or int8; onnx: int8), checked against predict on the test split.",
)
@click.option(
    "--representative-images",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="With --quantize int8: training images that set the int8 ranges.",
)
@click.option("--strict", is_flag=True, help="With --quantize: refuse an export that agrees with predict too rarely.")
@click.pass_context
def export(ctx, run_path, fmt, out, method, representative_images, strict):
    """Export RUN's best model; the model takes 0-255 pixels (its scaling is built in).

    \b
    Example:
      cnnclf export runs/20261121T101500Z-fashion --format tflite
      cnnclf export runs/20261121T101500Z-fashion --format tflite --quantize int8
    """
    from cnnclf.inference.quantize import check_method
    from cnnclf.rundir.directory import RunDir

    check_method(fmt, method)
    run = RunDir.open(run_path, need_model=True)
    output_file(out, "--out")
    _say_if_training(run, "exporting")
    start_tensorflow(ctx)
    from cnnclf.inference import export as exporting

    click.echo(exporting.export(run, fmt, out, method, representative_images, strict))


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
    from cnnclf.inference import server
    from cnnclf.rundir.directory import RunDir

    run = RunDir.open(run_path, need_model=True)
    run.read_config()
    sock = server.listen(host, port)  # a port in use is found before TensorFlow starts
    start_tensorflow(ctx)
    server.serve(run, sock, max_batch, batch_wait_ms, allow_hosts, access_log=not quiet)


def _say_if_training(run, doing: str) -> None:
    """A warning where RUN is being trained now: what is used is its best epoch so far, not its final model."""
    import logging

    training = run.in_training()
    if training:
        logging.getLogger("cnnclf").warning(f"warning: {training}; {doing} that, not the final model")


def _draw_explanations(rows: list[dict], folder: Path) -> None:
    """Each image beside its Grad-CAM heatmap, as <folder>/<file name>.gradcam.png, titled with its class
    and probability; the row keeps the picture's path in place of the arrays."""
    from cnnclf.reporting.image_grids import explanations

    used: set[str] = set()
    for i, row in enumerate(rows):
        stem = Path(row["file"]).stem
        name = f"{stem}.gradcam.png" if f"{stem}.gradcam.png" not in used else f"{stem}-{i}.gradcam.png"
        used.add(name)
        title = f"{Path(row['file']).name}\n{row['class']} {row['probability']:.0%}"
        pixels, heat = row.pop("pixels"), row.pop("heatmap")
        row["explanation"] = str(explanations(pixels[None], heat[None], [title], folder / name))

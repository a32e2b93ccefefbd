"""Commands before training: config show/validate/presets, init, data inspect."""

from pathlib import Path

import click

from cnnclf.cli.options import cli, command, json_option, output_file, prepare, set_option, start_tensorflow


@cli.group()
def config():
    """Show, check and list what a config can hold.

    \b
    Example:
      cnnclf config show configs/fashion.yaml --set train.epochs=3
    """


@command(config, "show")
@click.argument("config_path", metavar="CONFIG")
@set_option
def config_show(config_path, overrides):
    """Print CONFIG fully resolved, every default filled in.

    \b
    Example:
      cnnclf config show configs/fashion.yaml
    """
    from cnnclf.config import load_config

    click.echo(load_config(config_path, overrides).to_yaml(), nl=False)


@command(config, "validate")
@click.argument("config_path", metavar="CONFIG")
@set_option
@click.option("--deep", is_flag=True, help="Also load the data and build the model (no training).")
@click.pass_context
def config_validate(ctx, config_path, overrides, deep):
    """Check CONFIG without training: its keys, the paths it names, and with --deep its data and model.
    Exit 0 if it is valid, 2 with the reason if not.

    \b
    Example:
      cnnclf config validate configs/fashion.yaml --deep
    """
    from cnnclf.config import load_config
    from cnnclf.config.rules import check_weights_file
    from cnnclf.data.dataset import check_paths

    config = load_config(config_path, overrides)
    check_paths(config.data)
    check_weights_file(config.model)
    if deep:
        config, data = prepare(ctx, config)
        from cnnclf.training.train import prepare as build

        session = build(config, data)
        sizes = ", ".join(f"{n:,} {part}" for part, n in data.splits.sizes().items())
        click.echo(
            f"{config_path}: valid; data: {sizes} images of {list(data.splits.shape)} in "
            f"{data.splits.num_classes} classes; model: {session.model.count_params():,} parameters"
        )
        return
    click.echo(f"{config_path}: valid")


@command(config, "presets")
def config_presets():
    """List the built-in architectures (model.preset) and the pretrained backbones (model.backbone.name),
    with their parameters and smallest input.

    \b
    Example:
      cnnclf config presets
    """
    from cnnclf.model.keras_names import BACKBONES
    from cnnclf.model.presets import PRESETS

    for name, layers in PRESETS.items():
        click.echo(f"{name}: {' > '.join(next(iter(layer)) for layer in layers)}")
    click.echo("\nbackbones (model.backbone.name; parameters without the classifier, smallest input):")
    for name, backbone in BACKBONES.items():
        click.echo(f"{name}: {backbone.parameters:,} parameters, at least {backbone.min_side}x{backbone.min_side}")


@command()
@click.option(
    "--dataset",
    default="mnist",
    show_default=True,
    type=click.Choice(["mnist", "fashion_mnist", "cifar10", "digits", "custom"]),
)
@click.option(
    "--path",
    "data_path",
    type=click.Path(exists=True, path_type=Path),
    help="custom: your images (a folder of class folders, a zip, or a CSV manifest), looked at to choose "
    "the image size, batch, epochs and augmentation.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="The file to write [DATASET.yaml].")
def init(dataset, data_path, out):
    """Write a commented starter config for DATASET (never over an existing file), fitted to the
    data it finds; what it chose goes to stderr.

    \b
    Example:
      cnnclf init --dataset fashion_mnist && cnnclf train fashion_mnist.yaml
      cnnclf init --dataset custom --path photos/ && cnnclf train custom.yaml
    """
    import logging

    from cnnclf.atomic import write_text
    from cnnclf.errors import ConfigError
    from cnnclf.tools.starter import starter_config

    if data_path is not None and dataset != "custom":
        raise click.UsageError("--path is for --dataset custom (your own images)")
    out = out or Path(f"{dataset}.yaml")
    if out.exists():
        raise ConfigError(f"{out}: already exists; choose another --out or remove it")
    output_file(out, "--out")
    text, notes = starter_config(dataset, data_path)
    write_text(out, text)
    for note in notes:
        logging.getLogger("cnnclf").info(f"chose: {note}")
    click.echo(out)


@cli.group()
def data():
    """Look at a dataset before training on it.

    \b
    Example:
      cnnclf data inspect configs/fashion.yaml
    """


@command(data, "inspect")
@click.argument("config_path", metavar="CONFIG")
@set_option
@json_option
@click.pass_context
def data_inspect(ctx, config_path, overrides, as_json):
    """Class balance, image sizes and colour modes, train/test duplicates, unreadable files,
    and a grid of training images per class.

    \b
    Example:
      cnnclf data inspect configs/fashion.yaml
    """
    import json

    from cnnclf.config import load_config
    from cnnclf.reporting import inspection

    config = load_config(config_path, overrides)
    grid = inspection.grid_path(config)
    if config.data.source == "keras":
        start_tensorflow(ctx)
    found = inspection.inspect(config, grid)
    click.echo(json.dumps(found, indent=2) if as_json else inspection.describe(found))


@command(data, "issues")
@click.argument("config_path", metavar="CONFIG")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2, 20), help="Models trained, one per fold.")
@click.option("--epochs", type=click.IntRange(1), help="Shorten each model's training to this many epochs [CONFIG's].")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CSV, ranked most suspect first [<runs dir>/<time>-<name>-label-issues.csv]; a picture beside it.",
)
@set_option
@click.pass_context
def data_issues(ctx, config_path, folds, epochs, out, overrides):
    """The images most likely labelled wrong: K models trained on folds of the data (CONFIG's model and
    recipe), each image judged by the one that never saw it, ranked by cleanlab.

    \b
    Example:
      cnnclf data issues configs/quickstart.yaml --folds 5 --epochs 3
    """
    from cnnclf.config import load_config
    from cnnclf.tools import label_issues

    label_issues.require_cleanlab()
    config = load_config(config_path, overrides)
    out = label_issues.out_path(config, out)
    output_file(out, "--out")
    config, loaded = prepare(ctx, config)
    found = label_issues.find(config, loaded, folds, epochs, out)
    click.echo(f"{found['flagged']:,} of {found['images']:,} labels flagged by confident learning")
    click.echo(found["csv"])
    click.echo(found["picture"])

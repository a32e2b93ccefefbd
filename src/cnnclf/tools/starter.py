"""`cnnclf init`: a commented starter config for a dataset, fitted to the data it finds.

For MNIST, Fashion-MNIST and CIFAR-10 it points at a local copy where one is found (keras's
download needs the internet). For the user's own images (--path) it looks at them first and
chooses what depends on their number and size, and says why in the config's comments:

- the image size: the typical photo's shorter side, but at most 64 pixels below 2,000 images, 96
  below 10,000 and 128 above (more pixels than images can teach a model only overfits and slows
  it), in the cifar10_bn preset;
- the batch (so that an epoch has ~25 steps or more), the epochs, and the augmentation;
- which model is kept: below 10,000 images, the last epoch's, with neither early stopping nor a
  checkpoint, since a validation set of a few dozen images picks a lucky epoch rather than a good
  one (bench/photos.py: 4 classes of 400/200/80/40 photos, BENCHMARKS.md), and the cosine schedule
  ends where the model is best; above, the epoch of least validation loss, with early stopping;
- class weights where the classes are imbalanced, and test-time flips.
The config holds only what differs from the defaults (`cnnclf config show` prints the rest).
"""

import json
import os
from pathlib import Path

import numpy as np

from cnnclf.data.datasets import SHARED_COPIES, SHARED_DATA
from cnnclf.data.images import IMBALANCED

# Where a copy of each dataset is often found: (source, path), the first that exists is used.
LOCAL_COPIES = {
    "mnist": [
        ("idx", "data/mnist-sample"),
        (SHARED_COPIES["mnist"][0], f"{SHARED_DATA}/{SHARED_COPIES['mnist'][1]}"),
        ("keras", "~/.keras/datasets/mnist.npz"),
    ],
    "fashion_mnist": [
        ("idx", "data/fashion-mnist-sample"),
        (SHARED_COPIES["fashion_mnist"][0], f"{SHARED_DATA}/{SHARED_COPIES['fashion_mnist'][1]}"),
        ("keras", "~/.keras/datasets/fashion-mnist"),
    ],
    "cifar10": [
        (SHARED_COPIES["cifar10"][0], f"{SHARED_DATA}/{SHARED_COPIES['cifar10'][1]}"),
        ("cifar", "~/.keras/datasets/cifar-10-batches-py"),
    ],
}
PRESET = {"mnist": "mnist_bn", "fashion_mnist": "fashion_bn", "cifar10": "cifar10_bn", "digits": "s003_fashion"}
SIDE_CAPS = ((2_000, 64), (10_000, 96))  # (images below, largest side); above them all, 128
LARGEST_SIDE = 128
SMALL = 10_000  # images: below, the last epoch's model is kept (no validation-picked epoch)
PRETRAINED_BELOW = 1_000  # training images per class below which init suggests a pretrained backbone


def starter_config(dataset: str, path: Path | None = None) -> tuple[str, list[str]]:
    """The config's text, and what was chosen (one line each), for the user to read."""
    if dataset == "custom":
        return _custom(path)
    notes: list[str] = []
    data = f"  dataset: {dataset}\n"
    if dataset in LOCAL_COPIES:
        found = next(
            ((source, where) for source, where in LOCAL_COPIES[dataset] if Path(os.path.expanduser(where)).exists()),
            None,
        )
        if found is None or found[0] == "keras":
            data += (
                "  source: keras                # downloads on first use (needs the internet); offline, put the\n"
                "                               # files there or set source: idx/folder/cifar and path:\n"
            )
            notes.append(
                f"{dataset}: no local copy found; source keras downloads it on first use"
                if found is None
                else f"{dataset}: in Keras's download cache"
            )
        else:
            data += f"  source: {found[0]}\n  path: {found[1]}\n"
            notes.append(f"{dataset}: the local copy at {found[1]}")
    return _template(data, PRESET[dataset], epochs=15, batch=128, small=False), notes


def _custom(path: Path | None) -> tuple[str, list[str]]:
    if path is None:
        data = (
            "  dataset: custom\n  source: folder               # <path>/<class>/*.jpg, or train/ and test/ inside; "
            "or manifest (a CSV)\n  path: my-images              # a folder or a .zip, relative to where you run "
            "cnnclf\n  image_shape: [64, 64, 3]     # [height, width, channels]: images are resized to it\n"
            "  resize: pad                  # stretch | crop | pad: how another aspect is brought to it\n"
            "  skip_bad_images: true        # files that do not decode are skipped, counted and the first named\n"
            "  augment: {flip: horizontal, translate: 0.1, zoom: 0.1, test_flip: true}\n"
        )
        return _template(data, "cifar10_bn", epochs=40, batch=16, small=True), ["custom: set data.path to your images"]
    from cnnclf.config import DataConfig
    from cnnclf.data.dataset import list_and_split

    source = "manifest" if path.suffix.lower() == ".csv" else "folder"
    files, parts, _ = list_and_split(DataConfig(dataset="custom", source=source, path=str(path)), seed=42)
    counts = np.bincount(files.labels, minlength=len(files.class_names))
    train = int(np.sum(np.isin(parts, ("train", "validation"))))
    typical, channels = _typical_size(files)
    cap = next((side for below, side in SIDE_CAPS if len(files) < below), LARGEST_SIDE)
    side = min(typical, cap)
    why_side = (
        f"the typical photo's shorter side ({typical} px)"
        if side == typical
        else f"at most {cap} px for {len(files):,} images; the photos' shorter side is {typical} px or more"
    )
    batch = int(2 ** np.clip(np.floor(np.log2(max(train / 25, 1))), 3, 7))  # at least ~25 steps an epoch, 8-128
    epochs = 40 if train < 1000 else 25 if train < SMALL else 15
    flips = ", test_flip: true" if train < SMALL else ""
    augment = (
        f"{{flip: horizontal, translate: 0.1, zoom: 0.1{flips}}}"
        if train < 5000
        else f"{{flip: horizontal, translate: 0.05{flips}}}"
    )
    imbalanced = counts.max() / max(counts.min(), 1) > IMBALANCED
    shown = json.dumps(path.as_posix())  # quoted: a name may hold ': ' or '#'
    if not path.is_absolute():
        shown += f"   # relative to {Path.cwd()}, where cnnclf runs"
    data = (
        f"  dataset: custom\n  source: {source}\n  path: {shown}\n"
        f"  image_shape: [{side}, {side}, {channels}]   # {why_side}\n"
        f"  resize: pad                  # stretch | crop | pad: how another aspect is brought to it\n"
        f"  skip_bad_images: true        # files that do not decode are skipped, counted and the first named\n"
        f"  augment: {augment}\n"
    )
    notes = [
        f"{len(files):,} images in {len(files.class_names)} classes ({', '.join(files.class_names[:6])}"
        f"{', ...' if len(files.class_names) > 6 else ''}), {train:,} to train on",
        f"image_shape [{side}, {side}, {channels}]: {why_side}",
        f"preset cifar10_bn, batch {batch} "
        f"({-(-train // batch)} steps an epoch), {epochs} epochs, augmentation {augment}",
        "the last epoch's model is kept (a validation set this small would pick a lucky epoch)"
        if train < SMALL
        else "the epoch of least validation loss is kept, with early stopping",
    ]
    per_class = train / len(files.class_names)
    if per_class < PRETRAINED_BELOW:
        notes.append(
            f"{per_class:,.0f} training images per class: a pretrained backbone usually does better with this few "
            f"(model: {{backbone: {{name: MobileNetV3Small, weights: imagenet}}}} instead of the preset; README, "
            f"Transfer learning)"
        )
    extra = ""
    if imbalanced:
        extra = (
            f"  class_weight: balanced       # the largest class has over {IMBALANCED:g} times the images of "
            f"the smallest\n"
        )
        notes.append(
            f"class_weight balanced: {counts.max()} images of the largest class, {counts.min()} of the smallest"
        )
    return _template(data, "cifar10_bn", epochs=epochs, batch=batch, small=train < SMALL, extra=extra), notes


def _typical_size(files) -> tuple[int, int]:
    """The median shorter side of up to 200 of the images, within 32-LARGEST_SIDE and a multiple of 16;
    and 1 channel if they are all grayscale."""
    from cnnclf.data.decoding import DECODE_ERRORS, GRAY_MODES, image_header

    sides, gray = [], True
    for i in np.linspace(0, len(files) - 1, min(len(files), 200)).astype(int):
        try:
            with files.reader.open(files.names[i]) as stream:
                height, width, mode = image_header(stream)
        except DECODE_ERRORS:
            continue
        sides.append(min(height, width))
        gray = gray and mode in GRAY_MODES
    side = int(np.clip(16 * round(float(np.median(sides or [96])) / 16), 32, LARGEST_SIDE))
    return side, 1 if gray and sides else 3


def _template(data: str, preset: str, epochs: int, batch: int, small: bool, extra: str = "") -> str:
    kept = (
        "  early_stopping: false        # a few hundred images validate too noisily to stop on: the schedule\n"
        "  checkpoint: false            # decides the length, and the last epoch's model is kept\n"
        if small
        else "  early_stopping: {monitor: val_loss, patience: 5}   # epochs without improvement\n"
        "  # the model of least val_loss is kept as model.keras (train.checkpoint's default)\n"
    )
    return f"""\
# A cnnclf config: what differs from the defaults. `cnnclf config show` prints all of them.
# Train with: cnnclf train <this file>
data:
{data}model:
  preset: {preset}           # `cnnclf config presets` lists the built-in architectures and backbones
train:
  optimizer: {{name: adam, learning_rate: 0.001}}
  lr_schedule: cosine          # decays to 0 by the last epoch
  warmup_epochs: 1             # linear warm-up first
  epochs: {epochs}
  batch_size: {batch}
{extra}{kept}"""

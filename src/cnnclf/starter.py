"""`cnnclf init`: a commented starter config for a dataset, fitted to the data it finds.

For MNIST, Fashion-MNIST and CIFAR-10 it points at a local copy where one is found (keras's
download needs the internet). For the user's own images (--path) it looks at them first and
chooses what depends on their number and size: the image shape, the batch (so that an epoch has
enough steps), the epochs, the augmentation, and class weights where the classes are imbalanced;
and it says what it chose.
"""

import os
from pathlib import Path

import numpy as np

# Where a copy of each dataset is often found: (source, path), the first that exists is used.
LOCAL_COPIES = {
    "mnist": [("idx", "data/mnist-sample"), ("idx", "../shared/data/mnist"), ("keras", "~/.keras/datasets/mnist.npz")],
    "fashion_mnist": [
        ("idx", "data/fashion-mnist-sample"),
        ("idx", "../shared/data/fashion-mnist"),
        ("keras", "~/.keras/datasets/fashion-mnist"),
    ],
    "cifar10": [
        ("folder", "../shared/data/cifar10/cifar10-jpg.zip"),
        ("cifar", "~/.keras/datasets/cifar-10-batches-py"),
    ],
}
PRESET = {"mnist": "mnist_bn", "fashion_mnist": "fashion_bn", "cifar10": "cifar10_bn", "digits": "s003_fashion"}
SMALL_CNN = """\
  layers:                      # any keras.layers class by name, with its arguments
    - Conv2D: {filters: 32, kernel_size: 3, padding: same, use_bias: false}
    - BatchNormalization: {momentum: 0.9}
    - ReLU: {}
    - MaxPooling2D: {pool_size: 2}
    - Conv2D: {filters: 64, kernel_size: 3, padding: same, use_bias: false}
    - BatchNormalization: {momentum: 0.9}
    - ReLU: {}
    - MaxPooling2D: {pool_size: 2}
    - Conv2D: {filters: 128, kernel_size: 3, padding: same, use_bias: false}
    - BatchNormalization: {momentum: 0.9}
    - ReLU: {}
    - GlobalAveragePooling2D: {}
    - Dropout: {rate: 0.3}
    # the classifier, Dense(number of classes, softmax), is added for you
    # With ImageNet weights in Keras's cache (~/.keras/models), a pretrained backbone does better on a few
    # hundred photos per class; replace the layers above with:
    # backbone: {name: MobileNetV3Small, weights: imagenet, trainable: false}
"""


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
    model = f"  preset: {PRESET[dataset]}            # `cnnclf config presets` lists the built-in architectures\n"
    return _template(data, model, epochs=15, batch=128), notes


def _custom(path: Path | None) -> tuple[str, list[str]]:
    if path is None:
        data = (
            "  dataset: custom\n  source: folder               # <path>/<class>/*.jpg, or train/ and test/ inside; "
            "or manifest (a CSV)\n  path: my-images              # a folder or a .zip, relative to where you run "
            "cnnclf\n  image_shape: [96, 96, 3]     # [height, width, channels]: images are resized to it\n"
            "  resize: pad                  # stretch | crop | pad: how another aspect is brought to it\n"
        )
        return _template(data, SMALL_CNN, epochs=20, batch=32), ["custom: set data.path to your images"]
    from cnnclf.config import DataConfig
    from cnnclf.data.dataset import list_and_split

    source = "manifest" if path.suffix.lower() == ".csv" else "folder"
    files, parts, _ = list_and_split(DataConfig(dataset="custom", source=source, path=str(path)), seed=42)
    counts = np.bincount(files.labels, minlength=len(files.class_names))
    train = int(np.sum(np.isin(parts, ("train", "validation"))))
    side, channels = _typical_size(files)
    batch = int(2 ** np.clip(np.floor(np.log2(max(train / 25, 1))), 3, 7))  # at least ~25 steps an epoch, 8-128
    epochs = 40 if train < 1000 else 25 if train < 10_000 else 15
    augment = "{flip: horizontal, translate: 0.1, zoom: 0.1}" if train < 5000 else "{flip: horizontal, translate: 0.05}"
    imbalanced = counts.max() / max(counts.min(), 1) > 3
    shown = str(path) if path.is_absolute() else path.as_posix()
    data = (
        f"  dataset: custom\n  source: {source}\n  path: {shown}\n"
        f"  image_shape: [{side}, {side}, {channels}]   # the typical size of the images, squared\n"
        f"  resize: pad                  # stretch | crop | pad: how another aspect is brought to it\n"
        f"  skip_bad_images: true        # files that do not decode are skipped, counted and the first named\n"
        f"  augment: {augment}\n"
    )
    notes = [
        f"{len(files):,} images in {len(files.class_names)} classes ({', '.join(files.class_names[:6])}"
        f"{', ...' if len(files.class_names) > 6 else ''}), {train:,} to train on",
        f"image_shape [{side}, {side}, {channels}], batch {batch} ({-(-train // batch)} steps an epoch), "
        f"{epochs} epochs, augmentation {augment}",
    ]
    extra = ""
    if imbalanced:
        extra = "  class_weight: balanced       # the largest class has over 3 times the images of the smallest\n"
        notes.append(
            f"class_weight balanced: {counts.max()} images of the largest class, {counts.min()} of the smallest"
        )
    return _template(data, SMALL_CNN, epochs=epochs, batch=batch, extra=extra), notes


def _typical_size(files) -> tuple[int, int]:
    """The median shorter side of up to 200 of the images, within 32-160 and a multiple of 16; and 1
    channel if they are all grayscale."""
    from cnnclf.data.files import DECODE_ERRORS, GRAY_MODES, image_header

    sides, gray = [], True
    for i in np.linspace(0, len(files) - 1, min(len(files), 200)).astype(int):
        try:
            with files.reader.open(files.names[i]) as stream:
                height, width, mode = image_header(stream)
        except DECODE_ERRORS:
            continue
        sides.append(min(height, width))
        gray = gray and mode in GRAY_MODES
    side = int(np.clip(16 * round(float(np.median(sides or [96])) / 16), 32, 160))
    return side, 1 if gray and sides else 3


def _template(data: str, model: str, epochs: int, batch: int, extra: str = "") -> str:
    return f"""\
# A cnnclf config: what differs from the defaults. `cnnclf config show` prints all of them.
# Train with: cnnclf train <this file>
seed: 42
data:
{data}  validation: split            # hold out validation_split of train (stratified, seeded)
  validation_split: 0.1
model:
{model}train:
  optimizer: {{name: adam, learning_rate: 0.001}}
  lr_schedule: cosine          # decays to 0 by the last epoch
  warmup_epochs: 1             # linear warm-up first
  epochs: {epochs}
  batch_size: {batch}
{extra}  early_stopping: {{monitor: val_loss, patience: 5}}   # epochs without improvement
  checkpoint: {{monitor: val_accuracy}}               # the best model is kept as model.keras
output:
  runs_dir: runs
"""

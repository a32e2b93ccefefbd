"""`cnnclf init`: a commented starter config for a dataset."""

from cnnclf.data.datasets import DATASETS

PRESET = {"mnist": "mnist_bn", "fashion_mnist": "fashion_bn", "cifar10": "cifar10_bn", "digits": "s003_fashion"}

DATA = {
    "custom": """\
  dataset: custom
  source: folder               # folder: train/<class>/*.png and test/<class>/*; or idx | csv | npz | cifar
  path: my-images              # a folder or a .zip, relative to where you run cnnclf
  image_shape: [64, 64, 3]     # [height, width, channels]: images are converted and resized to it
""",
    "digits": """\
  dataset: digits              # scikit-learn's 8x8 digits: no download, for a first try
""",
}

MODEL = {
    "custom": """\
  layers:                      # any keras.layers class by name, with its arguments
    - Conv2D: {filters: 32, kernel_size: 3, activation: relu}
    - MaxPooling2D: {pool_size: 2}
    - Conv2D: {filters: 64, kernel_size: 3, activation: relu}
    - MaxPooling2D: {pool_size: 2}
    - GlobalAveragePooling2D: {}
    # the classifier, Dense(number of classes, softmax), is added for you
""",
}


def starter_config(dataset: str) -> str:
    assert dataset in DATASETS
    data = DATA.get(dataset, f"""\
  dataset: {dataset}
  source: keras                # downloads once; or idx/csv/folder with `path:` for local files
""")
    model = MODEL.get(dataset, f"""\
  preset: {PRESET.get(dataset)}            # `cnnclf config presets` lists the built-in architectures
""")
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
  epochs: 15
  batch_size: 128
  early_stopping: {{monitor: val_loss, patience: 3}}   # epochs without improvement
  checkpoint: {{monitor: val_accuracy}}               # the best model is kept as model.keras
output:
  runs_dir: runs
"""

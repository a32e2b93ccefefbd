"""The five seed tutorials' own training code, as they wrote it, for the benchmark to measure
beside cnnclf on the same machine: plain Keras, whole datasets as numpy float arrays,
model.fit(x, y). Data comes from the same files as cnnclf's (IDX, Kaggle CSV, the CIFAR-10
JPEG zip), decoded the way cnnclf decodes them.

    python bench/tutorials.py s002_mnist --data-dir ../shared/data --csv-dir bench/cache

Not part of the installed package: `cnnclf bench --tutorial-code` runs it from its --work-dir.

Prints one JSON line per epoch ({"epoch", "val_accuracy", "time"}) and a last one with
{"test_accuracy", "peak_rss_mb"}.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/tutorials.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(TUTORIALS))
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--csv-dir", type=Path, default=Path("bench/cache"), help="s000's Kaggle CSVs")
    parser.add_argument("--epochs", type=int, help="Fewer epochs, for a quick pass.")
    parser.add_argument("--limit", type=int, help="Fewer training and test images, for a quick pass.")
    args = parser.parse_args(argv)
    from cnnclf import startup

    startup.start(lean=False)  # TensorFlow and Keras imported as the tutorials import them
    TUTORIALS[args.name](args)


def _epoch_lines():
    """A Keras callback printing each epoch's validation accuracy and when it ended."""
    import keras

    return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print(json.dumps(
        {"epoch": epoch + 1, "val_accuracy": float(logs["val_accuracy"]), "time": time.time()}), flush=True))


def _idx(args, folder):
    from cnnclf.data.idx import read_idx

    root = args.data_dir / folder
    arrays = [read_idx(next(root.glob(f"{part}-{kind}*")), kind)
              for part in ("train", "t10k") for kind in ("images", "labels")]
    return [a[: args.limit] for a in arrays] if args.limit else arrays


def _epochs(args, default):
    return args.epochs or default


def _report(model, x_test, y_test):
    from cnnclf.training.memory import peak_rss_mb

    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(json.dumps({"test_accuracy": float(accuracy), "peak_rss_mb": peak_rss_mb()}), flush=True)


def s000_fashion_csv(args):
    """Fashion-MNIST from the Kaggle CSVs; rmsprop, one-hot labels, 30% held out, batch 512, 15 epochs."""
    import keras
    import pandas as pd
    from sklearn.model_selection import train_test_split

    train_df = pd.read_csv(args.csv_dir / "fashion-mnist_train.csv", nrows=args.limit)
    test_df = pd.read_csv(args.csv_dir / "fashion-mnist_test.csv", nrows=args.limit)
    x = train_df.iloc[:, 1:].values.reshape(-1, 28, 28, 1) / 255.0
    y = keras.utils.to_categorical(train_df.iloc[:, 0].values, 10)
    x_test = test_df.iloc[:, 1:].values.reshape(-1, 28, 28, 1) / 255.0
    y_test = keras.utils.to_categorical(test_df.iloc[:, 0].values, 10)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=42)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile("rmsprop", "categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=512, epochs=_epochs(args, 15), validation_data=(x_val, y_val),
              callbacks=[_epoch_lines()], verbose=0)
    _report(model, x_test, y_test)


def s002_mnist(args):
    """MNIST; he_uniform, dropout; adam; EarlyStopping(2) and ModelCheckpoint; batch 128; test as validation."""
    import keras

    x_train, y_train, x_test, y_test = _idx(args, "mnist")
    x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer="he_uniform"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu", kernel_initializer="he_uniform"), keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    best = Path(tempfile.mkdtemp()) / "best.keras"
    model.fit(x_train, y_train, batch_size=128, epochs=_epochs(args, 10), validation_data=(x_test, y_test),
              callbacks=[keras.callbacks.EarlyStopping(patience=2), keras.callbacks.ModelCheckpoint(best, save_best_only=True),
                         _epoch_lines()], verbose=0)
    _report(keras.saving.load_model(best), x_test, y_test)


def s002_cifar10(args):
    """CIFAR-10 (the JPEG copy); two conv blocks, dropout; adam; EarlyStopping(5); batch 32, up to 100 epochs."""
    import keras

    from cnnclf.config import DataConfig
    from cnnclf.data.dataset import load

    splits = load(DataConfig(dataset="cifar10", source="folder", path=str(args.data_dir / "cifar10/cifar10-jpg.zip"),
                             validation="test"), seed=0).splits
    limit = slice(args.limit)
    x_train, x_test = splits.train.x[limit].astype("float32") / 255, splits.test.x[limit].astype("float32") / 255
    y_train, y_test = splits.train.labels[limit], splits.test.labels[limit]
    del splits
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer="he_uniform"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer="he_uniform"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu", kernel_initializer="he_uniform"), keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=_epochs(args, 100), validation_data=(x_test, y_test),
              callbacks=[keras.callbacks.EarlyStopping(patience=5), _epoch_lines()], verbose=0)
    _report(model, x_test, y_test)


def s003_fashion(args):
    """Fashion-MNIST, the Keras basic CNN; adam; 10 epochs, batch 32; test as validation."""
    import keras
    import numpy as np

    x_train, y_train, x_test, y_test = _idx(args, "fashion-mnist")
    x_train, x_test = np.expand_dims(x_train / 255.0, -1), np.expand_dims(x_test / 255.0, -1)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=_epochs(args, 10), validation_data=(x_test, y_test),
              callbacks=[_epoch_lines()], verbose=0)
    _report(model, x_test, y_test)


def s004_mnist(args):
    """MNIST, three convolutions without pooling, raw pixels, one-hot labels, one epoch, batch 32."""
    import keras

    x_train, y_train, x_test, y_test = _idx(args, "mnist")
    x_train, x_test = x_train.reshape(-1, 28, 28, 1), x_test.reshape(-1, 28, 28, 1)
    y_train, y_test = keras.utils.to_categorical(y_train, 10), keras.utils.to_categorical(y_test, 10)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=_epochs(args, 1),
              callbacks=[_epoch_lines()], verbose=0)
    _report(model, x_test, y_test)


TUTORIALS = {f.__name__: f for f in (s000_fashion_csv, s002_mnist, s002_cifar10, s003_fashion, s004_mnist)}

if __name__ == "__main__":
    main(sys.argv[1:])

"""keras.datasets: downloads on first use and caches in ~/.keras/datasets. Importing Keras starts
TensorFlow: the command line starts it first, quietly (startup.py)."""

import importlib

import numpy as np

from cnnclf.data.images import Images, with_channels
from cnnclf.errors import DataError


def load(cfg) -> Images:
    module = importlib.import_module(f"keras.datasets.{cfg.dataset}")
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as e:  # noqa: BLE001 - the download: no network, a proxy, a damaged cache file
        raise DataError(
            f"keras.datasets.{cfg.dataset}.load_data() failed ({e.__class__.__name__}: {e}); "
            f"check the network, or point data.source/data.path at local files"
        ) from None
    return Images(
        x_train=with_channels(x_train.astype(np.uint8)),
        y_train=y_train.reshape(-1).astype(np.int64),
        x_test=with_channels(x_test.astype(np.uint8)),
        y_test=y_test.reshape(-1).astype(np.int64),
    )

"""scikit-learn's bundled 8x8 digits: 1,797 images, no download, for quick offline demos."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from cnnclf.data.images import Images

TEST_FRACTION = 0.2  # the dataset has no official test split; this one is fixed (seed 0)


def load(cfg) -> Images:
    digits = load_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]  # 0-16 -> 0-255
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_FRACTION, stratify=y, random_state=0)
    return Images(x_train, y_train, x_test, y_test)

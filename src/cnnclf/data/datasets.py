"""The datasets cnnclf knows by name: their image shape, class names and default source."""

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownDataset:
    shape: tuple[int, int, int]  # (height, width, channels)
    class_names: tuple[str, ...]
    default_source: str


DIGIT_NAMES = tuple(str(d) for d in range(10))

KNOWN = {
    "mnist": KnownDataset((28, 28, 1), DIGIT_NAMES, "keras"),
    "fashion_mnist": KnownDataset(
        (28, 28, 1),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "keras",
    ),
    "cifar10": KnownDataset(
        (32, 32, 3),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "keras",
    ),
    "digits": KnownDataset((8, 8, 1), DIGIT_NAMES, "sklearn"),
}

DATASETS = (*KNOWN, "custom")

# This project's copies of the datasets (../shared/data; its README gives them): source and path
# within that folder. `cnnclf init` finds them, `cnnclf bench` reads them.
SHARED_DATA = "../shared/data"
SHARED_COPIES = {
    "mnist": ("idx", "mnist"),
    "fashion_mnist": ("idx", "fashion-mnist"),
    "cifar10": ("folder", "cifar10/cifar10-jpg.zip"),
}

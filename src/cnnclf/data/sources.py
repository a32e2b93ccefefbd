"""The data sources: the one table to extend with a new source.

A source is a module of this package with `load(cfg) -> Images` (whole arrays: idx, csv, npz, ...)
or `list_files(cfg) -> ImageFiles` (image files, decoded later: folder, manifest). Adding one means
writing that module and adding its row here; the config's checks, `cnnclf init` and the loaders all
read this table.
"""

from dataclasses import dataclass

MNIST_LIKE = ("mnist", "fashion_mnist", "cifar10")
# Keys that every source of image files reads (resize policy, storage, cache; see DataConfig).
IMAGE_FILE_KEYS = frozenset({"resize", "storage", "memory_budget_mb", "cache", "skip_bad_images", "test_split"})


@dataclass(frozen=True)
class Source:
    module: str  # cnnclf.data.<module>
    datasets: tuple[str, ...]  # which datasets it can hold (custom: the user's own classes)
    reads: frozenset[str]  # the data keys it reads beyond those every source reads
    image_files: bool = False  # lists image files (list_files) rather than loading arrays (load)


SOURCES = {
    "keras": Source("keras_download", MNIST_LIKE, frozenset()),
    "sklearn": Source("sklearn_digits", ("digits",), frozenset()),
    "idx": Source("idx", ("mnist", "fashion_mnist", "custom"), frozenset({"path"})),
    "csv": Source("csv_files", (*MNIST_LIKE, "custom"), frozenset({"path", "test_path", "label_column"})),
    "npz": Source("npz", (*MNIST_LIKE, "custom"), frozenset({"path"})),
    "cifar": Source("cifar_pickles", ("cifar10", "custom"), frozenset({"path"})),
    "folder": Source(
        "image_folder", (*MNIST_LIKE, "custom"), frozenset({"path", "test_path"}) | IMAGE_FILE_KEYS, image_files=True
    ),
    "manifest": Source(
        "manifest",
        (*MNIST_LIKE, "custom"),
        frozenset({"path", "path_column", "label_column", "split_column"}) | IMAGE_FILE_KEYS,
        image_files=True,
    ),
}

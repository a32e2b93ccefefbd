"""`cnnclf data issues`: the images most likely labelled wrong, by confident learning (cleanlab,
Northcutt et al.) on out-of-fold probabilities.

Every image of the data (train, validation and test: a wrong test label spoils the evaluation as a
wrong training label spoils the model) is dealt into K folds, stratified by a seeded shuffle; K
models are trained, each an ordinary run of the config's model and recipe (in a folder of its own,
<out>.folds/, so a fold can be looked at or resumed) on the other folds, and each gives its
held-out fold's probabilities: every image is judged by a model that never saw it. cleanlab ranks
the images by the quality of their given label (the self-confidence: the probability of the given
class), flags the label issues it finds, and scores outliers from the same probabilities. Written:
a CSV ranked most suspect first (file, given, suggested, score, flagged, outlier) and a picture of
the top suspects beside their given and suggested class.
"""

import csv
import io
import logging
import time
from pathlib import Path

import numpy as np

from cnnclf.config import Config, override
from cnnclf.errors import ConfigError, plural

log = logging.getLogger("cnnclf")

PICTURED = 24  # the top suspects drawn


def require_cleanlab() -> None:
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        raise ConfigError("cnnclf data issues needs cleanlab: pip install 'cnnclf[issues]'") from None


def out_path(config: Config, out: Path | None) -> Path:
    """The CSV's path (a new one in the runs folder by default); it and its picture must not exist."""
    import datetime

    if out is None:
        stamp = f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}"
        out = Path(config.output.runs_dir) / f"{stamp}-{config.name}-label-issues.csv"
    for path in (Path(out), Path(out).with_suffix(".png")):
        if path.exists():
            raise ConfigError(f"{path}: already exists; choose another --out or remove it")
    return Path(out)


def find(config: Config, data, folds: int, epochs: int | None, out: Path) -> dict:
    """Train the folds, rank the images, write the CSV and the picture; what was found."""
    images, labels, names, probabilities = out_of_fold(config, data, folds, epochs, out.with_suffix(".folds"))
    verdicts = rank(labels, probabilities)
    classes = data.splits.class_names
    order = write(out, names, labels, probabilities, verdicts, classes)
    drawn = picture(out.with_suffix(".png"), images, labels, probabilities, order, classes)
    return {"images": len(labels), "flagged": int(verdicts["flagged"].sum()), "csv": out, "picture": drawn}


def out_of_fold(config: Config, data, folds: int, epochs: int | None, folder: Path):
    """Every image, its given label, a name for it, and the probabilities of a model trained on the
    other folds."""
    from cnnclf.data.dataset import Dataset
    from cnnclf.data.parts import InMemory
    from cnnclf.data.split import Splits
    from cnnclf.pipeline import train

    splits = data.splits
    images = np.concatenate([part.gather(np.arange(len(part))) for part in _parts(config, splits)])
    labels = np.concatenate([part.labels for part in _parts(config, splits)])
    names = _names(config, splits)
    fold_of = _folds(labels, folds, config.seed)
    per_fold = override(
        config,
        {
            "data.validation": "test",  # the held-out fold is the fold's test set; nothing is picked on it
            "train.early_stopping": None,
            "train.checkpoint": None,
            "output.plots": False,
            "output.runs_dir": str(folder),
            **({"train.epochs": epochs} if epochs else {}),
        },
    )
    log.info(
        f"{plural(folds, 'model')} of {per_fold.train.epochs} epochs, each on {len(labels) - len(labels) // folds:,} "
        f"of the {len(labels):,} images; their runs go into {folder}"
    )
    probabilities = np.zeros((len(labels), splits.num_classes), np.float32)
    started = time.time()
    for k in range(folds):
        held = fold_of == k
        test = InMemory(images[held], labels[held])
        fold = Splits(InMemory(images[~held], labels[~held]), test, test, splits.class_names, f"fold {k}")
        run = train(override(per_fold, {"name": f"{config.name}-fold{k + 1}"}), Dataset(fold, data.fingerprint))
        if run is None:
            raise ConfigError("data issues trains each fold on one machine: set train.distribute to none or mirrored")
        with np.load(run.predictions) as saved:
            probabilities[held] = saved["probabilities"]
        done = time.time() - started
        left = f"; about {done / (k + 1) * (folds - k - 1) / 60:.1f} min left" if k + 1 < folds else ""
        log.info(f"fold {k + 1} of {folds} done in {done / (k + 1):.0f} s{left}")
    return images, labels, names, probabilities


def rank(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """cleanlab's verdicts: each image's label quality (low: suspect), whether confident learning flags
    its label, and its outlier score (high: unlike the rest), from the out-of-fold probabilities."""
    from cleanlab.filter import find_label_issues
    from cleanlab.outlier import OutOfDistribution
    from cleanlab.rank import get_label_quality_scores

    flagged = find_label_issues(labels, probabilities, filter_by="prune_by_noise_rate")
    outlier = 1 - OutOfDistribution().fit_score(pred_probs=probabilities, labels=labels)
    return {"score": get_label_quality_scores(labels, probabilities), "flagged": flagged, "outlier": outlier}


def write(out: Path, names: list[str], labels: np.ndarray, probabilities: np.ndarray, verdicts: dict, classes) -> list:
    """The CSV, most suspect first; the order."""
    from cnnclf.atomic import write_text

    order = np.argsort(verdicts["score"], kind="stable")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["file", "given", "suggested", "score", "flagged", "outlier"])
    for i in order:
        writer.writerow(
            [
                names[i],
                classes[labels[i]],
                classes[int(probabilities[i].argmax())],
                f"{verdicts['score'][i]:.4f}",
                str(bool(verdicts["flagged"][i])).lower(),
                f"{verdicts['outlier'][i]:.4f}",
            ]
        )
    write_text(out, text.getvalue())
    return list(order)


def picture(path: Path, images: np.ndarray, labels, probabilities, order: list, classes) -> Path:
    from cnnclf.reporting.image_grids import suspects

    top = order[:PICTURED]
    titles = [
        f"given {classes[labels[i]]}\nsuggested {classes[int(probabilities[i].argmax())]} {probabilities[i].max():.0%}"
        for i in top
    ]
    return suspects(images[top], titles, path)


def _parts(config: Config, splits) -> list:
    """Every image the data holds: a wrong label in the test split spoils the evaluation as one in train
    spoils the model."""
    return (
        [splits.train, splits.test]
        if config.data.validation == "test"
        else [splits.train, splits.validation, splits.test]
    )


def _names(config: Config, splits) -> list[str]:
    """Each image's name: its file (split.csv's), or its split and index there."""
    parts = ("train", "test") if config.data.validation == "test" else ("train", "validation", "test")
    if splits.table is not None:
        return [f for part in parts for f, _, p in splits.table if p == part]
    return [f"{part}[{i}]" for part in parts for i in range(len(getattr(splits, part)))]


def _folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each image's fold: each class dealt round the folds in a seeded order (stratified)."""
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold_of[members] = np.arange(len(members)) % folds
    return fold_of

"""Pictures made of images: test samples, Grad-CAM explanations and the training-data grid, each
drawn as one mosaic (one axes for the lot: a fraction of the time of an axes per image)."""

import math

import numpy as np

from cnnclf.reporting.figures import MAX_INCHES, RIGHT, WRONG, plt, save, show
from cnnclf.rundir.directory import RunDir

GRID_CLASSES = 20  # rows of the data grid: a picture a page tall, however many classes


def test_samples(run: RunDir):
    """Sample test images, misclassified first: true label, prediction and its probability."""
    return _answers(run, "sample", "Test samples (misclassified first): true → predicted", "test_samples.png")


def top_losses(run: RunDir):
    """The test images of highest loss (the model surest and wrong, or a label to check): the given
    class, the predicted one and its probability, and the loss."""
    title = "Highest-loss test images: given → predicted (a mistake, or a label to check)"
    return _answers(run, "loss", title, "top_losses.png", with_loss=True)


def _answers(run: RunDir, kept: str, title: str, name: str, with_loss: bool = False):
    """Test images kept in predictions.npz (`kept`: sample or loss) with their true class, the predicted
    one and its probability (and the loss), right ones green, wrong ones red."""
    names = (run.read_metrics() or {})["class_names"]
    with np.load(run.predictions) as f:
        images, index = f[f"{kept}_images"], f[f"{kept}_index"]
        truth, probabilities = f["y_true"][index], f["probabilities"][index]
    titles, colors = [], []
    for true, p in zip(truth, probabilities):
        predicted = int(p.argmax())
        loss = f"\nloss {-np.log(max(p[true], 1e-12)):.2f}" if with_loss else ""
        separator = " " if with_loss else "\n"
        titles.append(f"{names[true]}{separator}→ {names[predicted]} {p[predicted]:.0%}{loss}")
        colors.append(RIGHT if predicted == true else WRONG)
    return _grid(images, titles, colors, title, run.plots / name)


def suspects(images: np.ndarray, titles: list[str], path):
    """`cnnclf data issues`'s picture: the training images most likely labelled wrong, most suspect first."""
    title = "Most likely labelled wrong (cleanlab, out-of-fold): given, and what the models suggest"
    return _grid(images, titles, [WRONG] * len(images), title, path)


def gradcam_samples(run: RunDir):
    """The first test samples (misclassified ones first) with their Grad-CAM heatmaps."""
    names = (run.read_metrics() or {})["class_names"]
    with np.load(run.predictions) as f:
        maps = f["gradcam"].astype(np.float32)
        index = f["sample_index"][: len(maps)]
        images, truth, probabilities = f["sample_images"][: len(maps)], f["y_true"][index], f["probabilities"][index]
    titles = [f"{names[t]}\n→ {names[int(p.argmax())]} {p.max():.0%}" for t, p in zip(truth, probabilities)]
    return explanations(
        images,
        maps,
        titles,
        run.plots / "gradcam.png",
        "Where the model looked (Grad-CAM), misclassified test images first: true → predicted",
    )


def explanations(images: np.ndarray, maps: np.ndarray, titles: list[str], path, title: str = ""):
    """Each image beside its Grad-CAM heatmap laid over it."""
    fig, axes = plt.subplots(2, len(images), figsize=(max(2.2 * len(images), 3), 4.8), squeeze=False)
    for column, (image, heat, text) in enumerate(zip(images, maps, titles)):
        top, bottom = axes[0, column], axes[1, column]
        for ax in (top, bottom):
            ax.axis("off")
            show(ax, image)
        bottom.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        top.set_title(text, fontsize=9)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def data_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], path):
    """Training images, one row per class (the first GRID_CLASSES classes): the "look at your data" plot."""
    shown = class_names[:GRID_CLASSES]
    rows = [images[labels == c] for c in range(len(shown))]
    per_class = max(len(r) for r in rows)
    cells = [list(r) + [None] * (per_class - len(r)) for r in rows]
    captions = [[str(name)] + [""] * (per_class - 1) for name in shown]
    title = "Training images per class" + (
        f" (the first {len(shown)} of {len(class_names):,} classes)" if len(shown) < len(class_names) else ""
    )
    return _mosaic(cells, captions, None, title, path, caption_left=True)


def _grid(images, titles, colors, title, path):
    columns = min(6, len(images))
    rows = math.ceil(len(images) / columns)
    pad = [None] * (rows * columns - len(images))
    cells = [list(images[i * columns : (i + 1) * columns]) + (pad if i == rows - 1 else []) for i in range(rows)]
    texts = [list(titles[i * columns : (i + 1) * columns]) for i in range(rows)]
    tints = [list(colors[i * columns : (i + 1) * columns]) for i in range(rows)]
    return _mosaic(cells, texts, tints, title, path)


def _mosaic(cells: list[list], captions: list[list[str]], colors, title: str, path, caption_left: bool = False):
    """Images in a grid drawn as one picture with captions above each: one axes for the lot, which
    draws in a fraction of the time of an axes per image."""
    first = next(cell for row in cells for cell in row if cell is not None)
    height, width, channels = first.shape
    gap, band = max(2, width // 8), max(height // 2, 14)  # pixels between images; above each, for its caption
    rows, columns = len(cells), max(len(row) for row in cells)
    canvas = np.full((rows * (height + band + gap), columns * (width + gap), channels), 255, np.uint8)
    for r, row in enumerate(cells):
        for c, image in enumerate(row):
            if image is not None:
                top, left = r * (height + band + gap) + band, c * (width + gap)
                canvas[top : top + height, left : left + width] = image
    # inches per pixel: each image about 1.9 inches wide, the picture at most MAX_INCHES on a side
    scale = min(1.9 / max(width + gap, 1), MAX_INCHES / max(canvas.shape[:2]))
    fig = plt.figure(figsize=(max(canvas.shape[1] * scale, 4), canvas.shape[0] * scale + 0.6))
    ax = fig.add_axes((0, 0, 1, canvas.shape[0] * scale / (canvas.shape[0] * scale + 0.6)))
    ax.axis("off")
    show(ax, canvas)
    for r, row in enumerate(captions):
        for c, text in enumerate(row):
            if text:
                x = c * (width + gap) + (0 if caption_left else width / 2)
                ax.text(
                    x,
                    r * (height + band + gap) + band - 2,
                    text,
                    fontsize=10,
                    va="bottom",
                    ha="left" if caption_left else "center",
                    color=colors[r][c] if colors else "black",
                )
    fig.suptitle(title)
    return save(fig, path, tight=False)

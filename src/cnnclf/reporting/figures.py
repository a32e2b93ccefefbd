"""matplotlib as cnnclf draws with it: the Agg backend (nothing is shown), class names drawn as
text (never as math), and one way to save a figure."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # class names are text: "price_$5_$10" is not mathematics
matplotlib.rcParams["text.usetex"] = False
import matplotlib.pyplot as plt  # noqa: E402

WRONG, RIGHT = "#c0392b", "#1e8449"
MAX_INCHES = 24  # a figure's longest side (at 100 dpi: 2,400 pixels), however many classes or images


def show(ax, image):
    ax.imshow(
        image[..., 0] if image.shape[-1] == 1 else image,
        cmap="gray" if image.shape[-1] == 1 else None,
        vmin=0,
        vmax=255,
    )


SOFTWARE = "cnnclf"  # in every PNG cnnclf draws: a picture of that name is one it may draw again


def save(fig, path, tight: bool = True):
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": SOFTWARE})
    plt.close(fig)
    return path


def picture_path(path: Path) -> Path:
    """A picture's path outside a run directory (a data grid, an lr-find plot): its folder made, and a
    file there that cnnclf did not draw (SOFTWARE in its metadata) refused, never replaced."""
    from PIL import Image

    from cnnclf.errors import ConfigError

    if path.exists():
        try:
            with Image.open(path) as image:
                ours = image.info.get("Software") == SOFTWARE
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise ConfigError(f"{path}: exists, and cnnclf did not draw it; choose another --out or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path

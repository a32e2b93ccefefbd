"""Make the small real samples in data/ from the full datasets (default ../shared/data).

    python data/make_samples.py [SHARED_DATA_DIR]

Stratified and seeded (seed 0): 5,000 training and 1,000 test images per dataset,
written as gzipped IDX files, the format of the originals.
"""

import sys
from pathlib import Path

from sklearn.model_selection import train_test_split

from cnnclf.data.idx import read_idx, write_idx

SIZES = {"train": 5000, "t10k": 1000}


def main(shared: Path) -> None:
    here = Path(__file__).parent
    for name in ("mnist", "fashion-mnist"):
        out = here / f"{name}-sample"
        out.mkdir(exist_ok=True)
        for part, size in SIZES.items():
            images = read_idx(shared / name / f"{part}-images-idx3-ubyte.gz", "images")
            labels = read_idx(shared / name / f"{part}-labels-idx1-ubyte.gz", "labels")
            chosen, _ = train_test_split(range(len(labels)), train_size=size, stratify=labels, random_state=0)
            chosen = sorted(chosen)
            write_idx(out / f"{part}-images-idx3-ubyte.gz", images[chosen], "images")
            write_idx(out / f"{part}-labels-idx1-ubyte.gz", labels[chosen], "labels")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / ".." / "shared" / "data"))

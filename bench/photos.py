"""A new user's photos, trained with what `cnnclf init` writes (BENCHMARKS.md, "A few hundred photos"):

    python bench/photos.py --data-dir ../shared/data --seeds 3

Builds a photos/<class>/ folder from the CIFAR-10 JPEG zip the way a user's would come (4 classes of
400/200/80/40 images, 48-320 px of mixed aspect, some PNG, one grayscale, one CMYK, one EXIF-rotated,
one truncated JPEG, .DS_Store, Thumbs.db, notes.txt), runs `cnnclf init` on it, and trains the
config untouched with each seed (`--set seed=N`, which also moves the split), beside the variants
given with --variant "NAME=KEY=VALUE;KEY=VALUE" (--reference: issue 27's, cifar10_bn at 64 px
without early stopping, the epoch of best validation accuracy kept, no test-time flips). Each training is a whole `python -m cnnclf train` process. The table gives the
mean and the spread of test accuracy and balanced accuracy over the seeds, and the seconds.
"""

import argparse
import io
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from variants import run_variants  # bench/variants.py: one runner for both

COUNTS = {"airplane": 400, "cat": 200, "ship": 80, "frog": 40}
REFERENCE = (
    "reference=model.preset=cifar10_bn;model.layers=null;data.image_shape=[64,64,3];"
    "train.early_stopping=false;train.checkpoint={monitor: val_accuracy};data.augment.test_flip=false"
)


def make_photos(zip_path: Path, out: Path, seed: int = 0) -> None:
    from PIL import Image

    rng = random.Random(seed)
    archive = zipfile.ZipFile(zip_path)
    names = archive.namelist()
    k = 0
    for name, count in COUNTS.items():
        folder = out / name
        folder.mkdir(parents=True)
        members = [m for m in names if m.startswith(f"train/{name}/") and m.endswith(".jpg")]
        for member in rng.sample(members, count):
            image = Image.open(io.BytesIO(archive.read(member))).convert("RGB")
            side = rng.randint(48, 320)
            image = image.resize((side, int(side * rng.uniform(0.75, 1.33))), Image.Resampling.BILINEAR)
            k += 1
            stem = Path(member).stem
            if k % 7 == 0:
                image.save(folder / f"{stem}.png")
            elif k == 5:
                image.convert("L").save(folder / f"{stem}-gray.jpg")
            elif k == 11:
                image.convert("CMYK").save(folder / f"{stem}-cmyk.jpg")
            elif k == 17:
                exif = Image.Exif()
                exif[0x0112] = 6  # shown rotated: stored turned the other way
                image.transpose(Image.Transpose.ROTATE_90).save(folder / f"{stem}-exif.jpg", exif=exif)
            else:
                image.save(folder / f"{stem}.jpg", quality=90)
    victim = sorted((out / "cat").glob("*.jpg"))[3]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    (out / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (out / "cat" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (out / "notes.txt").write_text("my photos\n")


def cnnclf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "cnnclf", *args], capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise SystemExit(f"cnnclf {' '.join(args)}: {done.stderr.strip().splitlines()[-1]}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[], help="NAME=KEY=VALUE;KEY=VALUE (--set each)")
    parser.add_argument("--reference", action="store_true", help="also the issue's reference: " + REFERENCE)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "photos.json")
    args = parser.parse_args()
    zip_path = (args.data_dir / "cifar10" / "cifar10-jpg.zip").resolve()
    variants = {"init, untouched": []}
    for spec in args.variant + ([REFERENCE] if args.reference else []):
        name, _, sets = spec.partition("=")
        variants[name] = sets.split(";")
    with tempfile.TemporaryDirectory(prefix="cnnclf-photos-") as folder:
        work = Path(folder)
        make_photos(zip_path, work / "photos")
        init = cnnclf("init", "--dataset", "custom", "--path", "photos", "--out", "photos.yaml", cwd=work)
        print(init.stderr, (work / "photos.yaml").read_text(), sep="\n", flush=True)
        run_variants(work, "photos.yaml", variants, args.seeds, args.out, first_seed=0)


if __name__ == "__main__":
    main()

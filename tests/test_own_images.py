"""A user's own photos: a flat folder of classes (or a zip of one, or a CSV manifest), mixed sizes and
colour modes, imbalanced; split by file, the split kept with the run; resized by the chosen
policy everywhere; held in memory or streamed from files or a pixel cache."""

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnclf.config import DataConfig
from cnnclf.data.dataset import list_and_split, load
from cnnclf.data.decoding import decode_image
from helpers import COLOURS, MODES, cnnclf, photo, photos, write_config


def data(path, **kwargs) -> dict:
    return {"dataset": "custom", "source": "folder", "path": str(path), "image_shape": [24, 24, 3], **kwargs}


def train(tmp, data_config: dict, *args, **train_config):
    tmp.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp / "own.yaml", {
        "data": data_config, "model": {"layers": [{"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}},
                                                  {"GlobalAveragePooling2D": {}}]},
        "train": {"epochs": 2, "batch_size": 16, "optimizer": {"name": "adam", "learning_rate": 0.01},
                  **train_config}, "output": {"runs_dir": str(tmp / "runs"), "plots": False}})
    result = cnnclf("train", config, *args)
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1]), result


@pytest.mark.slow
def test_a_flat_folder_of_mixed_photos_trains_and_its_split_is_kept(tmp_path):
    root = photos(tmp_path / "photos", suffix=".png")
    run, result = train(tmp_path, data(root, resize="crop", test_split=0.25))
    with open(run / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 72 and {r["split"] for r in rows} == {"train", "validation", "test"}
    test_files = sorted(r["file"] for r in rows if r["split"] == "test")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_images"] == len(test_files) and metrics["class_names"] == ["cat", "dog", "fox"]
    assert json.loads((run / "env.json").read_text())["data"]["storage"] == "memory"
    again = cnnclf("evaluate", run, "--json")  # the same test files, by split.csv
    assert json.loads(again.stdout)["test_images"] == len(test_files)
    photo(COLOURS["dog"], (30, 30), seed=99).save(root / "dog" / "new.png")  # a file added later
    rerun = cnnclf("train", "--from", run, "--set", "train.epochs=1")
    assert rerun.exit_code == 0, rerun.stderr
    rerun_rows = list(csv.DictReader(open(Path(rerun.stdout.split()[-1]) / "split.csv", newline="")))
    assert rerun_rows == rows  # train --from keeps the run's split; the new file is not in it


def test_the_split_is_stable_and_stratified_in_expectation(tmp_path):
    root = photos(tmp_path / "photos", counts={"cat": 300, "dog": 100}, suffix=".jpg")
    cfg = DataConfig(**data(root, test_split=0.2))
    files, parts, _ = list_and_split(cfg, seed=7)
    again = list_and_split(cfg, seed=7)[1]
    other_seed = list_and_split(cfg, seed=8)[1]
    assert (parts == again).all() and (parts != other_seed).any()
    for label in (0, 1):  # each class split in about the same proportion
        share = np.mean(parts[files.labels == label] == "test")
        assert 0.12 < share < 0.28
    photo(COLOURS["cat"], (32, 32)).save(root / "cat" / "zz-new.jpg")
    files2, parts2, _ = list_and_split(cfg, seed=7)
    before = dict(zip(files.names, parts))
    assert all(before[name] == part for name, part in zip(files2.names, parts2) if name in before)  # none moved
    assert len(files2) == len(files) + 1


def test_validation_never_takes_a_class_s_only_training_image(tmp_path):
    """40 classes of 2 images each: one goes to test (train/ and test/ folders), the other must stay in
    training, though validation_split 0.5 would take about half of them."""
    for i in range(40):
        for part in ("train", "test"):
            (tmp_path / "photos" / part / f"c{i:02d}").mkdir(parents=True)
            photo((i * 6, 0, 0), (8, 8), seed=i).save(tmp_path / "photos" / part / f"c{i:02d}" / "x.png")
    files, parts, _ = list_and_split(DataConfig(**data(tmp_path / "photos", validation_split=0.5)), seed=0)
    assert all(np.sum((parts == "train") & (files.labels == label)) == 1 for label in range(40))
    assert not np.any(parts == "validation")  # each class's one image is its training image


@pytest.mark.parametrize("policy, rows, columns", [
    ("stretch", slice(0, 8), slice(2, 6)),  # every column of the wide image kept, squeezed: the red half
    ("crop", slice(0, 8), slice(0, 8)),     # the centre 8x8 of the 16x8 image: the red middle
    ("pad", slice(2, 6), slice(2, 6)),      # letterboxed to 8x4, black bars of 2 rows above and below
])
def test_resize_policies(policy, rows, columns):
    wide = np.zeros((8, 16, 3), np.uint8)
    wide[:, 4:12] = (255, 0, 0)  # red in the middle half of a 16-wide, 8-high picture
    out = io.BytesIO()
    Image.fromarray(wide).save(out, format="PNG")
    pixels = decode_image(out.getvalue(), (8, 8, 3), policy)
    expected = np.zeros((8, 8), bool)
    expected[rows, columns] = True
    assert pixels.shape == (8, 8, 3)
    np.testing.assert_array_equal(pixels[..., 0] > 128, expected)


def test_a_zip_of_a_flat_folder_and_a_manifest_list_the_same_files(tmp_path):
    root = photos(tmp_path / "photos", counts={"cat": 6, "dog": 6})
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as archive:
        for path in sorted(root.rglob("*.jpg")):
            archive.write(path, "photos/" + str(path.relative_to(root)))
    with open(tmp_path / "photos" / "list.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for path in sorted(root.rglob("*.jpg")):
            writer.writerow([str(path.relative_to(root)), path.parent.name])
    zipped = list_and_split(DataConfig(**data(tmp_path / "photos.zip")), seed=1)
    listed = list_and_split(DataConfig(**data(root / "list.csv", source="manifest")), seed=1)
    assert zipped[0].names == listed[0].names and (zipped[1] == listed[1]).all()
    assert zipped[0].class_names == listed[0].class_names == ["cat", "dog"]


def test_a_manifest_s_split_column_keeps_each_row_in_its_part_as_the_folder_layout_names_them(tmp_path):
    root = photos(tmp_path / "photos", counts={"cat": 8, "dog": 8})
    written = {"train": "train", "Val": "validation", "valid": "validation", "validation": "validation", "test": "test"}
    rows = {str(p.relative_to(tmp_path)): (p.parent.name, list(written)[i % 5])
            for i, p in enumerate(sorted(root.rglob("*.jpg")))}
    with open(tmp_path / "list.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split"], *([name, *row] for name, row in rows.items())])
    files, parts, _ = list_and_split(DataConfig(**data(tmp_path / "list.csv", source="manifest")), seed=1)
    assert {name: part for name, part in zip(files.names, parts)} == {n: written[s] for n, (_, s) in rows.items()}


@pytest.mark.slow
def test_a_manifest_with_string_labels_and_a_split_column_trains(tmp_path):
    root = photos(tmp_path / "imgs", counts={"cat": 12, "dog": 12})
    with open(tmp_path / "list.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "kind", "part"])
        for i, path in enumerate(sorted(root.rglob("*.jpg"))):
            writer.writerow([str(path.relative_to(tmp_path)), path.parent.name, "test" if i % 4 == 0 else "train"])
    run, _ = train(tmp_path, data(tmp_path / "list.csv", source="manifest", path_column="file", label_column="kind",
                                  split_column="part", validation="test"))
    assert json.loads((run / "metrics.json").read_text())["test_images"] == 6


@pytest.mark.slow
def test_streamed_and_cached_give_the_same_run_as_in_memory(tmp_path):
    root = photos(tmp_path / "photos", counts={"cat": 20, "dog": 20})
    runs = {}
    for storage, extra in (("memory", {}), ("stream", {}), ("cached", {"cache": str(tmp_path / "cache")})):
        settings = data(root, storage="stream" if storage == "cached" else storage, **extra)
        runs[storage], result = train(tmp_path / storage, settings, deterministic=True)
        if storage == "cached":
            assert "filling the cache" in result.stderr
    metrics = {k: json.loads((r / "metrics.json").read_text()) for k, r in runs.items()}
    assert metrics["memory"] == metrics["stream"] == metrics["cached"]
    assert json.loads((runs["cached"] / "env.json").read_text())["data"]["storage"] == "cache"
    again = cnnclf("evaluate", runs["cached"], "--json")
    assert json.loads(again.stdout)["test_accuracy"] == metrics["cached"]["test_accuracy"]


def test_the_cache_is_reused_and_rebuilt_when_stale(tmp_path, caplog):
    root = photos(tmp_path / "photos", counts={"cat": 6, "dog": 6})
    cfg = DataConfig(**data(root, storage="stream", cache=str(tmp_path / "cache"), validation="test"))
    first = load(cfg, seed=0).splits
    assert any("filling the cache" in r.getMessage() for r in caplog.records)
    caplog.clear()
    second = load(cfg, seed=0).splits
    assert any("from the cache" in r.getMessage() for r in caplog.records)
    index = np.arange(len(first.train))
    np.testing.assert_array_equal(first.train.gather(index), second.train.gather(index))
    photo(COLOURS["cat"], (32, 32), seed=5).save(next((root / "cat").glob("*.jpg")))  # rewritten: stale
    caplog.clear()
    load(cfg, seed=0)
    assert any("filling the cache" in r.getMessage() for r in caplog.records)


def test_auto_storage_streams_past_the_memory_budget(tmp_path, caplog):
    root = photos(tmp_path / "photos", counts={"cat": 6, "dog": 6})
    big = load(DataConfig(**data(root, memory_budget_mb=1, image_shape=[300, 300, 3])), seed=0)
    assert big.fingerprint["storage"] == "stream"
    small = load(DataConfig(**data(root, memory_budget_mb=1)), seed=0)
    assert small.fingerprint["storage"] == "memory"


def test_smoke_decodes_only_its_few_files_per_class(tmp_path, monkeypatch):
    from cnnclf.data import parts

    root = photos(tmp_path / "photos", counts={"cat": 80, "dog": 80})
    decoded = []
    real = parts.decode_image
    monkeypatch.setattr(parts, "decode_image", lambda *a, **k: decoded.append(1) or real(*a, **k))
    loaded = load(DataConfig(**data(root)), seed=0, smoke=True)
    assert loaded.limits == (40, 20) and len(decoded) == 60
    assert len(loaded.splits.train) + len(loaded.splits.validation) == 40


def test_mixed_sizes_need_an_image_shape(tmp_path):
    root = photos(tmp_path / "photos", counts={"cat": 4, "dog": 4})
    for storage in ("memory", "stream"):
        config = write_config(tmp_path / "c.yaml", {"data": {**data(root, storage=storage), "image_shape": None},
                                                    "model": {"layers": [{"Flatten": {}}]},
                                                    "output": {"runs_dir": str(tmp_path / "runs"), "plots": False}})
        result = cnnclf("train", config)
        assert result.exit_code == 2 and "but the first image is" in result.stderr, result.stderr
        assert "set data.image_shape: [height, width, channels]" in result.stderr


def test_data_inspect_reports_sizes_modes_balance_and_duplicates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data inspect draws its grid in the working folder
    root = photos(tmp_path / "photos", counts={"cat": 40, "dog": 10}, suffix=".png")
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    config = write_config(tmp_path / "c.yaml", {"data": data(root, test_split=0.3), "model": {"layers": [{"Flatten": {}}]},
                                                "output": {"runs_dir": str(tmp_path / "runs"), "plots": False}})
    result = cnnclf("data", "inspect", config, "--json")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["image_sizes"] == {"40x30": 13, "32x32": 13, "24x48": 12, "64x40": 12}
    assert set(found["colour_modes"]) == set(MODES) and "1.33" in found["aspect_ratios"]
    assert found["unreadable_files"] == [str(root / "dog" / "broken.png")]
    assert found["warnings"] and "imbalanced: cat has" in found["warnings"][0]
    assert found["warnings"][0].endswith("; consider train.class_weight: balanced")
    balanced = cnnclf("data", "inspect", config, "--json", "--set", "train.class_weight=balanced")
    assert json.loads(balanced.stdout)["warnings"][0].endswith(")")  # no advice to set what is set
    assert sum(c["train"] + c.get("validation", 0) + c["test"] for c in found["class_balance"].values()) == 50
    text = cnnclf("data", "inspect", config).stdout
    assert "warning: classes are imbalanced" in text and "colour modes" in text


def test_decoding_progress_is_reported(caplog, monkeypatch):
    import logging

    from cnnclf.data import parts

    clock = iter(range(0, 100, 2))
    monkeypatch.setattr(parts.time, "time", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="cnnclf"):
        progress = parts._Progress(1000)
        for _ in range(4):
            progress.done(250)
        progress.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("decoding images: 500/1,000 (") and lines[-1].startswith("decoded 1,000 images in")


def test_streaming_skips_and_counts_unreadable_files_as_memory_does(tmp_path):
    """A file that is not an image and a truncated JPEG (its header reads, its pixels do not)."""
    from cnnclf.errors import DataError

    root = photos(tmp_path / "photos", counts={"cat": 6, "dog": 6})
    (root / "dog" / "bad.jpg").write_bytes(b"not a jpeg")
    whole = (root / "cat" / "000.jpg").read_bytes()
    (root / "cat" / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(DataError, match=r"cat/cut.jpg: not a readable image \(OSError: "):
        load(DataConfig(**data(root, storage="stream", validation="test", test_split=0.5)), seed=0)
    loaded = {storage: load(DataConfig(**data(root, storage=storage, validation="test", test_split=0.5,
                                              skip_bad_images=True)), seed=0)
              for storage in ("memory", "stream")}
    assert loaded["stream"].skipped == loaded["memory"].skipped == [str(root / "cat" / "cut.jpg"),
                                                                     str(root / "dog" / "bad.jpg")]
    assert loaded["stream"].splits.sizes() == loaded["memory"].splits.sizes()
    assert sum(loaded["stream"].splits.sizes().values()) - len(loaded["stream"].splits.test) == 12


@pytest.mark.slow
def test_a_skipped_file_is_in_no_split_and_may_be_removed(tmp_path):
    root = photos(tmp_path / "photos", counts={"cat": 8, "dog": 8})
    (root / "dog" / "bad.jpg").write_bytes(b"not a jpeg")
    run, result = train(tmp_path, data(root, storage="stream", skip_bad_images=True), epochs=1)
    assert "skipped 1 unreadable image file (data.skip_bad_images), the first: " in result.stderr
    assert "dog/bad.jpg" not in (run / "split.csv").read_text()
    (root / "dog" / "bad.jpg").unlink()  # as the error advised
    evaluated = cnnclf("evaluate", run)
    assert evaluated.exit_code == 0, evaluated.stderr


def test_a_class_folder_that_is_a_symlink_is_followed_and_a_loop_is_not(tmp_path):
    root = photos(tmp_path / "photos", counts={"cat": 4, "dog": 4})
    (root / "dog").rename(tmp_path / "dogs-elsewhere")
    (root / "dog").symlink_to(tmp_path / "dogs-elsewhere", target_is_directory=True)
    (root / "cat" / "loop").symlink_to(root, target_is_directory=True)  # a link back up: not walked again
    files, _, _ = list_and_split(DataConfig(**data(root)), seed=0)
    assert files.class_names == ["cat", "dog"] and np.bincount(files.labels).tolist() == [4, 4]


def layout(root: Path, validation: str | None = "val", test: bool = True) -> Path:
    """photos in the train/ val/ test/ layout (Ultralytics, Kaggle; Roboflow's valid/)."""
    photos(root / "train", counts={"cat": 24, "dog": 16})
    if validation:
        photos(root / validation, counts={"cat": 6, "dog": 4})
    if test:
        photos(root / "test", counts={"cat": 8, "dog": 5})
    return root


def zipped(folder: Path) -> Path:
    with zipfile.ZipFile(folder.with_suffix(".zip"), "w") as archive:
        for path in sorted(folder.rglob("*.jpg")):
            archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return folder.with_suffix(".zip")


@pytest.mark.parametrize("validation", ["val", "valid", "validation"])
def test_a_train_val_test_layout_keeps_every_image_in_its_own_split(tmp_path, validation):
    from cnnclf.data.split import origins

    root = layout(tmp_path / "ds", validation)
    for where in (root, zipped(root)):
        cfg = DataConfig(**data(where))
        files, parts, _ = list_and_split(cfg, seed=1)
        split_of = {name.removeprefix(f"{root.name}/"): part for name, part in zip(files.names, parts)}
        assert len(split_of) == 63  # none dropped
        assert all(part == name.split("/")[0].replace(validation, "validation") for name, part in split_of.items())
        assert origins(files, parts, cfg) == f"splits: train 40 (train/), validation 10 ({validation}/), test 13 (test/)"


def test_without_test_the_test_set_is_carved_from_train_and_said_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from cnnclf.data.split import origins

    root = layout(tmp_path / "ds", "valid", test=False)
    cfg = DataConfig(**data(root))
    files, parts, _ = list_and_split(cfg, seed=1)
    assert {p for n, p in zip(files.names, parts) if n.startswith("valid/")} == {"validation"}
    carved = [n for n, p in zip(files.names, parts) if p == "test"]
    assert carved and all(n.startswith("train/") for n in carved)
    said = origins(files, parts, cfg)
    assert "validation 10 (valid/)" in said and "(carved by file name: data.test_split 0.2 of train/)" in said
    refused = cnnclf("data", "inspect", write_config(tmp_path / "c.yaml", {"data": data(root, validation="test"),
                                                                        "model": {"preset": "s002_mnist"}}))
    assert refused.exit_code == 2 and "the data has its own validation part (valid/); remove data.validation: test" \
        in refused.stderr


@pytest.mark.slow
def test_the_layout_trains_with_inits_config_untouched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layout(tmp_path / "ds", "valid")
    assert cnnclf("init", "--dataset", "custom", "--path", "ds", "--out", "ds.yaml").exit_code == 0
    result = cnnclf("train", "ds.yaml", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.split()[-1])
    with open(run / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 63 and all(r["split"] == {"valid": "validation"}.get(r["file"].split("/")[0],
                                                                           r["file"].split("/")[0]) for r in rows)
    assert "splits: train 40 (train/), validation 10 (valid/), test 13 (test/)" in result.stderr

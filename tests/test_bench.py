"""The benchmark's quick pass, on the small samples in data/ standing in for the full datasets."""

import json
import shutil

import pytest

from cnnclf.tools.bench_report import markdown, write_section
from helpers import ROOT, cnnclf


@pytest.mark.slow  # trains for real, in subprocesses
def test_quick_pass_tabulates_each_config(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "mnist").symlink_to(ROOT / "data" / "mnist-sample")
    (data_dir / "fashion-mnist").symlink_to(ROOT / "data" / "fashion-mnist-sample")
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nNotes that must survive.\n")
    (tmp_path / "work").mkdir()
    shutil.copy(ROOT / "bench" / "figures.yaml", tmp_path / "work")
    result = cnnclf("bench", ROOT / "configs/seeds/s002_mnist.yaml", ROOT / "configs/seeds/s000_fashion_csv.yaml",
                    "--data-dir", data_dir, "--limit", 400, "--epochs", 1, "--section", "quick", "--out", out,
                    "--work-dir", tmp_path / "work")
    assert result.exit_code == 0, result.stderr
    results = json.loads((tmp_path / "work" / "quick.json").read_text())
    assert results["limit"] == 400 and results["peak_gflops"]["float32"] > 1 and results["peak_gflops"]["bfloat16"] > 0
    rows = results["results"]
    assert [r["name"] for r in rows] == ["s002_mnist", "s000_fashion_csv"]
    for row in rows:
        assert row["status"] == "completed" and row["epochs"] == 1
        assert 0.05 < row["test_accuracy"] <= 1 and row["peak_rss_mb"] > 100 and row["wall_seconds"] > 1
        assert row["train_images_per_second"] > 0 and row["train_gflops_per_image"] > 0
        assert row["precision"] in ("float32", "mixed_bfloat16")  # as auto resolved it on this CPU
        peak = results["peak_gflops"]["bfloat16" if row["precision"] == "mixed_bfloat16" else "float32"]
        assert row["fraction_of_peak"] == pytest.approx(
            row["train_gflops_per_image"] * row["train_images_per_second"] / peak, abs=1e-3)
    assert rows[0]["train_gflops_per_image"] == 0.0053  # s002_mnist: about 1.7 MFLOP forward, x3
    assert rows[1]["figure"] == 0.869 and rows[1]["seconds_to_figure"] is None  # 400 images: far from it
    header = (tmp_path / "work" / "cache" / "fashion-mnist_train.csv").read_text()[:20]
    assert header == "label,pixel1,pixel2,"
    text = out.read_text()
    assert "Notes that must survive." in text and text.count("<!-- bench:quick -->") == 1
    assert f"| configs/seeds/s002_mnist.yaml | mnist | {rows[0]['precision']} | 1 |" in text.replace(str(ROOT) + "/", "")
    assert "GFLOP/s float32, " in text and "GFLOP/s bfloat16 (2048x2048 matmul" in text


def test_a_section_is_replaced_in_place(tmp_path):
    out = tmp_path / "B.md"
    write_section(out, "a", "first\n")
    write_section(out, "b", "other\n")
    write_section(out, "a", "second\n")
    text = out.read_text()
    assert "second" in text and "first" not in text and text.index("second") < text.index("other")


def test_seeds_are_summarized_by_their_mean_and_spread():
    row = {"config": "configs/mnist.yaml", "dataset": "mnist", "epochs": 3, "time_to_first_step_seconds": 6.0,
           "seconds_after_last_epoch": 4.0, "train_images_per_second": 1200.0, "peak_rss_mb": 900.0,
           "figure": 0.995, "train_gflops_per_image": 0.05, "fraction_of_peak": 0.5, "name": "mnist"}
    runs = [{**row, "seed": 42 + i, "test_accuracy": acc, "wall_seconds": wall, "seconds_to_figure": reached}
            for i, (acc, wall, reached) in enumerate([(0.9952, 140.0, 140.0), (0.9946, 150.0, None),
                                                       (0.9954, 145.0, 145.0)])]
    bench = {"device": {"cpu": "CPU", "cpu_cores": 2, "gpus": []}, "date": "2026-12-02", "peak_gflops": 100.0,
             "limit": None, "epochs": None, "seeds": 3, "results": runs}
    text = markdown(bench, "cnnclf bench configs/mnist.yaml --seeds 3")
    assert "| configs/mnist.yaml (seed 43) | mnist |  | 3 | 150.0 | 6.0 | 4.0 | 1,200 |" in text
    assert "| configs/mnist.yaml | 42, 43, 44 | 99.51% | 99.46% to 99.54% | 99.50% | 2 of 3 | 145.0 | 150.0 |" in text

"""benchmarks/bench_training.py (#20 item 1) on a tiny phantom run: one row per bundle with the figures it
prints; the ratio is iteration / floor. Timings themselves are not asserted (a benchmark, not a timed test)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bundle_utils import PYTHON, clean_env

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_training.py"


def test_bench_training_prints_and_writes_one_row_per_bundle(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [PYTHON, str(SCRIPT), "--bundles", "unet_us_2d_segmentation", "--image-size", "32", "32", "--batch-size",
           "2", "--epochs", "1", "--skip", "0", "--warmup", "1", "--threads", "1",
           "--output", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "unet_us_2d_segmentation" in r.stdout and "ratio" in r.stdout
    result = json.loads(out.read_text())
    assert result["machine"]["threads"] == 1
    (row,) = result["rows"]
    assert row["bundle"] == "unet_us_2d_segmentation" and row["image_size"] == [32, 32] and row["batch_size"] == 2
    assert row["iterations_timed"] >= 1
    assert row["iteration_ms"] > 0 and row["floor_ms"] > 0 and row["startup_s"] > row["import_monai_s"] > 0
    # the ratio pairs each iteration with the floor step after it: inside its quartiles, near the medians' ratio
    assert row["ratio_iqr"][0] <= row["ratio"] <= row["ratio_iqr"][1]
    assert {"data", "forward", "loss", "backward", "step", "after"} <= set(row["phases_ms"])
    assert all(v >= 0 for v in row["phases_ms"].values()) and row["data_ms"] == row["phases_ms"]["data"]


def test_bench_training_names_an_unknown_bundle():
    r = subprocess.run([PYTHON, str(SCRIPT), "--bundles", "no_such_bundle"], capture_output=True, text=True,
                       env=clean_env(), timeout=120)
    assert r.returncode == 2 and "no bundle 'no_such_bundle'" in r.stderr

"""A real bundle training killed with SIGKILL mid-run resumes from its last complete epoch (#19 item 1).

``python -m monai.bundle run`` trains in a subprocess; once ``checkpoint.pt`` holds a completed epoch the process
gets SIGKILL (no handler runs: what a kill -9, an OOM kill or a power cut does). ``--resume True`` then continues
from the epoch in the checkpoint: the resumed run logs only the remaining epochs, and the final checkpoint holds
``max_epochs`` epochs of iterations.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from bundle_utils import BUNDLES_DIR, PYTHON, clean_env, make_tiny_dataset

MAX_EPOCHS = 4


def _cmd(bundle: Path, work: Path, dataset: Path, *extra: str) -> list[str]:
    return [
        PYTHON, "-m", "monai.bundle", "run",
        "--config_file", str(bundle / "configs" / "train.json"),
        "--bundle_root", str(work), "--dataset_dir", str(dataset),
        "--image_size", "[64, 64]", "--batch_size", "2", "--max_epochs", str(MAX_EPOCHS),
        "--progress_bar", "False", "--val_interval", "2", *extra,
    ]  # fmt: skip


def _saved_epoch(ckpt: Path) -> tuple[int, int] | None:
    """(epoch, iteration) of a complete checkpoint, or None while none exists (written atomically: never partial)."""
    if not ckpt.is_file():
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["trainer"]
    return state["iteration"] // state["epoch_length"], state["iteration"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unet_us_2d_segmentation", "crbnet_us_2d_segmentation"])
def test_sigkill_then_resume(name, tmp_path):
    bundle = BUNDLES_DIR / name
    dataset = make_tiny_dataset(tmp_path / "data", spatial_dims=2, counts=(24, 2, 0), shape=(64, 64))
    work = tmp_path / "work"
    ckpt = work / "models" / "checkpoint.pt"
    log1 = open(tmp_path / "run1.log", "w")
    proc = subprocess.Popen(_cmd(bundle, work, dataset), env=clean_env(), stdout=log1, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        saved = None
        while time.time() < deadline and proc.poll() is None:
            saved = _saved_epoch(ckpt)
            if saved is not None and saved[0] >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be killed: " + (tmp_path / "run1.log").read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log1.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _saved_epoch(ckpt)  # the last complete epoch on disk after the kill
    assert killed_at is not None and 1 <= killed_at[0] < MAX_EPOCHS
    epoch_length = killed_at[1] // killed_at[0]
    assert epoch_length == 12  # 24 images, batch 2

    r = subprocess.run(
        _cmd(bundle, work, dataset, "--resume", "True"), env=clean_env(), capture_output=True, text=True, timeout=600
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert f"resume: restored epoch {killed_at[0]} (iteration {killed_at[1]})" in out
    logged = sorted({int(m) for m in re.findall(rf"Epoch: (\d+)/{MAX_EPOCHS}, Iter:", out)})
    assert logged == list(range(killed_at[0] + 1, MAX_EPOCHS + 1))  # only the remaining epochs were trained
    assert _saved_epoch(ckpt) == (MAX_EPOCHS, MAX_EPOCHS * epoch_length)
    assert (work / "models" / "model.pt").is_file()
    assert not [p.name for p in (work / "models").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_resume_without_checkpoint_names_the_file(tmp_path):
    bundle = BUNDLES_DIR / "unet_us_2d_segmentation"
    dataset = make_tiny_dataset(tmp_path / "data", spatial_dims=2, counts=(2, 1, 0), shape=(64, 64))
    work = tmp_path / "work"
    r = subprocess.run(
        _cmd(bundle, work, dataset, "--resume", "True"), env=clean_env(), capture_output=True, text=True, timeout=600
    )
    assert r.returncode != 0
    assert f"no checkpoint {work / 'models' / 'checkpoint.pt'}" in r.stdout + r.stderr
    assert "train without --resume" in r.stdout + r.stderr
    assert json.loads((bundle / "configs" / "train.json").read_text())["checkpoint_interval"] == 1

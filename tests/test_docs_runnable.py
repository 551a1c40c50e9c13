"""Docs that run (#17): the shell blocks marked ``<!-- runnable -->`` in README.md and the bundle READMEs.

Each block runs, as written apart from its epoch counts, in a fresh copy of the repository's tracked files, one
command after another (``set -e``), so a README whose commands drift from the code, or whose paths do not follow
from the previous command, fails here. ``--max_epochs N`` is shifted to a smoke length (the first becomes 1, the
others keep their differences, so a resume still trains further).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- runnable -->"
DOCS = [ROOT / "README.md", *sorted((ROOT / "bundles").glob("*/docs/README.md"))]


def runnable_blocks(text: str) -> list[str]:
    """The bodies of the fenced ``bash`` blocks that directly follow a ``<!-- runnable -->`` line."""
    return [m.group(1) for m in re.finditer(re.escape(MARK) + r"\n```bash\n(.*?)\n```", text, flags=re.S)]


def smoke_epochs(block: str) -> str:
    """Shift every ``--max_epochs N`` so that the first is 1 and the differences between them are kept."""
    values = [int(v) for v in re.findall(r"--max_epochs (\d+)", block)]
    if not values:
        return block
    offset = values[0] - 1
    return re.sub(r"--max_epochs (\d+)", lambda m: f"--max_epochs {max(1, int(m.group(1)) - offset)}", block)


def test_block_extraction_and_epoch_shift() -> None:
    text = f"intro\n{MARK}\n```bash\na --max_epochs 10\nb --max_epochs 12\n```\n```bash\nnot marked\n```\n"
    assert runnable_blocks(text) == ["a --max_epochs 10\nb --max_epochs 12"]
    assert smoke_epochs(runnable_blocks(text)[0]) == "a --max_epochs 1\nb --max_epochs 3"


def _blocks() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for i, block in enumerate(runnable_blocks(doc.read_text())):
            out.append((f"{doc.relative_to(ROOT)}#{i}", block))
    return out


def test_the_reference_bundle_readmes_have_a_runnable_block() -> None:
    names = [name for name, _ in _blocks()]
    for bundle in ("unet_us_2d_segmentation", "unet_us_3d_segmentation"):
        assert any(n.startswith(f"bundles/{bundle}/") for n in names), bundle


@pytest.mark.slow
@pytest.mark.parametrize("name,block", _blocks(), ids=[n for n, _ in _blocks()])
def test_runnable_block_runs_in_a_fresh_copy(name: str, block: str, tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's tracked files")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    copy = tmp_path / "repo"
    for rel in files:
        if (ROOT / rel).is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, copy / rel)
    env = dict(os.environ, USSEG_MONAI_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` is this environment's
    script = "set -euo pipefail\n" + smoke_epochs(block)
    proc = subprocess.run(["bash", "-c", script], cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for bundle, mask in (("unet_us_2d_segmentation", "*_seg.png"), ("unet_us_3d_segmentation", "*_seg.nii.gz")):
        if name.startswith(f"bundles/{bundle}/"):
            models = copy / "outputs" / bundle / "models"
            assert {p.name for p in models.iterdir()} >= {"model.pt", "checkpoint.pt", "model.ts", "model.pt2"}
            eval_dir = copy / "outputs" / bundle / "eval"
            assert (eval_dir / "dice_raw.csv").read_text().startswith("filename,lesion,mean")
            assert list(eval_dir.glob(mask)) and (eval_dir / "measurements.csv").is_file()

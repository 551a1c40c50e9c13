"""Docs that run (#17): the shell blocks marked ``<!-- runnable -->`` in README.md and the bundle READMEs.

Each block runs, as written apart from its epoch counts, in a fresh copy of the repository's tracked files, one
command after another (``set -e``), so a README whose commands drift from the code, or whose paths do not follow
from the previous command, fails here. ``--max_epochs N`` is shifted to a smoke length (the first becomes 1, the
others keep their differences, so a resume still trains further).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_shared

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


def test_readme_and_every_bundle_readme_have_a_runnable_block() -> None:
    names = [name for name, _ in _blocks()]
    assert "README.md#0" in names
    for bundle in sorted(p.parent.parent.name for p in DOCS[1:]):
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
    if "../shared/data" in block:  # the real files beside the project, as in a checkout (../shared/data)
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "data").symlink_to(require_shared().resolve(), target_is_directory=True)
    if ".venv/" in block or "scripts/main.sh" in block:  # this environment stands in for the checkout's .venv
        if sys.prefix == sys.base_prefix:
            pytest.skip("the block uses the project's .venv; these tests do not run in a virtual environment")
        # scripts/setup.sh reinstalls (re-pointing the editable install at the copy) unless the stamp matches
        if _install_stamp(Path(sys.prefix)) != _setup_hash(copy):
            pytest.skip(f"{sys.prefix} was not installed by scripts/setup.sh from these setup.cfg / pyproject.toml")
        (copy / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = dict(os.environ, USSEG_MONAI_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` is this environment's
    script = "set -euo pipefail\n" + smoke_epochs(block)
    proc = subprocess.run(["bash", "-c", script], cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "[setup] installing" not in proc.stdout, "the block reinstalled the package into the test environment"
    if name.startswith("bundles/"):  # a bundle's block: trained, exported, evaluated and run where it says
        bundle = name.split("/")[1]
        models = copy / "outputs" / bundle / "models"
        expected = {"model.pt", "checkpoint.pt"}
        expected |= {"model.ts"} if "ckpt_export" in block else set()
        expected |= {"model.pt2"} if "usseg_monai.export" in block else set()
        assert {p.name for p in models.iterdir()} >= expected
        eval_dir = copy / "outputs" / bundle / "eval"
        assert (eval_dir / "dice_raw.csv").read_text().startswith("filename,lesion,mean")
        mask = "*_seg.nii.gz" if "_3d_" in bundle else "*_seg.png"
        assert list(eval_dir.glob(mask)) and (eval_dir / "measurements.csv").is_file()
    # every `usseg infer ... --output DIR` of the block ran all its inputs and wrote their masks
    for out in re.findall(r"usseg infer .*?--output (\S+)", block.replace("\\\n", " ")):
        out_dir = copy / out.replace("$R", _variable(block, "R") or "$R")
        summary = json.loads((out_dir / "summary.json").read_text())
        assert summary["n_failed"] == 0 and summary["n_images"] >= 1, (name, summary)
        assert all(o["mask"] and o["overlay"] for o in summary["outputs"]), summary["outputs"]


def _setup_hash(root: Path) -> str:
    """What scripts/setup.sh writes to its stamp: the content hash of setup.cfg + pyproject.toml (16 hex digits)."""
    return hashlib.sha256((root / "setup.cfg").read_bytes() + (root / "pyproject.toml").read_bytes()).hexdigest()[:16]


def _install_stamp(venv: Path) -> str | None:
    stamp = venv / ".usseg-installed"
    return stamp.read_text().strip() if stamp.is_file() else None


def _variable(block: str, name: str) -> str | None:
    """The value a block assigns to a shell variable (``R=outputs/...``), if it does."""
    m = re.search(rf"^{name}=(\S+)", block, flags=re.M)
    return m.group(1) if m else None

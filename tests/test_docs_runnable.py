"""Docs that run (#17): the shell blocks marked ``<!-- runnable -->`` in README.md and the bundle READMEs.

Every block is checked twice:

- **Linted** (fast, every block): the commands are followed one after another as a file-state model. Each config,
  metadata and input file a command names must exist, each ``--key`` override of ``monai.bundle run`` must be a
  key of the merged configs, ``usseg infer`` must parse with the real CLI parser, and every model a command reads
  (``model.pt``, ``checkpoint.pt``, ``model.ts``, ``model.pt2``) must be written by an earlier command of the same
  block, at that path. So a README whose paths do not follow from the previous command fails here.
- **Run** in a fresh copy of the repository's tracked files, one command after another (``set -e``), as written
  apart from its epoch counts (``--max_epochs N`` shifted so the first is 1, the differences kept). In CI this is
  README.md's block and one bundle block per kind of command sequence (:data:`RUN_BY_DEFAULT`: the 2D reference
  bundle's, which has every kind of command, and a 3D caliper bundle's); ``USSEG_DOCS_RUN_ALL=1`` runs every
  block. Every bundle's train / evaluate / inference / export commands also run in ``tests/test_bundles.py`` and
  ``tests/test_export.py``; running the remaining blocks as well cost ~13 minutes of CI (measured 2026-12-03).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
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


# ---------------------------------------------------------------------------------------------------------------
# the lint: a file-state model of a block
# ---------------------------------------------------------------------------------------------------------------
#: what ``scripts/main.sh`` writes (it trains the 2D reference bundle into outputs/, then evaluates and infers)
MAIN_SH_WRITES = ("outputs/unet_us_2d_segmentation/models/model.pt", "outputs/unet_us_2d_segmentation/models/checkpoint.pt")
#: bundle-run options that are not config keys
_RUN_OPTIONS = {"config_file", "meta_file", "logging_file", "args_file"}


def _commands(block: str) -> tuple[list[list[str]], dict[str, str]]:
    """The block's commands as argument lists (continuations joined, comments dropped, ``$VAR`` substituted)."""
    variables: dict[str, str] = {}
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if len(words) == 1 and re.fullmatch(r"[A-Za-z_]\w*=\S+", words[0]):
            key, value = words[0].split("=", 1)
            variables[key] = value
            continue
        commands.append([re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), w) for w in words])
    return commands, variables


def _options(args: list[str]) -> dict[str, str]:
    """``--key value`` pairs of an argument list (the last wins)."""
    out = {}
    for i, a in enumerate(args):
        if a.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("--"):
            out[a[2:]] = args[i + 1]
    return out


def _config_files(value: str) -> list[str]:
    """``--config_file`` as a path or a Python list of paths (MONAI's form)."""
    return list(ast.literal_eval(value)) if value.startswith("[") else [value]


def lint_block(block: str, root: Path) -> list[str]:
    """Problems of a block (empty: every file it reads exists or was written before, every override is a key)."""
    from monai.bundle import ConfigParser

    from usseg_monai.cli import build_parser

    commands, _ = _commands(block)
    written: set[str] = set()
    problems: list[str] = []

    def need_file(path: str, what: str, cmd: str) -> None:
        if not (root / path).exists():
            problems.append(f"{cmd}: {what} {path} does not exist")

    def need_written(path: str, what: str, cmd: str) -> None:
        if os.path.normpath(path) not in written:
            problems.append(f"{cmd}: reads {what} {path}, which no earlier command of the block writes")

    for args in commands:
        cmd = " ".join(args)[:120]
        opts = _options(args)
        if args[:2] == ["bash", "scripts/main.sh"]:
            written |= {os.path.normpath(p) for p in MAIN_SH_WRITES}
        elif args[:4] == ["python", "-m", "monai.bundle", "run"]:
            files = _config_files(opts["config_file"])
            for f in files + ([opts["meta_file"]] if "meta_file" in opts else []):
                need_file(f, "config", cmd)
            if any(not (root / f).exists() for f in files):
                continue
            parser = ConfigParser()
            parser.read_config([str(root / f) for f in files])
            for key in set(opts) - _RUN_OPTIONS:
                if key not in parser.config:
                    problems.append(f"{cmd}: --{key} is not a key of {', '.join(files)}")
            models = os.path.join(opts.get("bundle_root", ""), "models")
            names = {Path(f).name for f in files}
            if names == {"train.json"}:
                if opts.get("resume") == "True":
                    need_written(os.path.join(models, "checkpoint.pt"), "the checkpoint", cmd)
                written |= {os.path.join(models, "model.pt"), os.path.join(models, "checkpoint.pt")}
            elif "inference_export.json" in names:
                need_written(os.path.join(models, "model.pt2"), "the exported program", cmd)
            else:  # evaluate / inference: the best model
                need_written(os.path.join(models, "model.pt"), "the model", cmd)
        elif args[:4] == ["python", "-m", "monai.bundle", "ckpt_export"]:
            for key in ("meta_file", "config_file"):
                need_file(opts[key], key, cmd)
            need_written(opts["ckpt_file"], "the checkpoint", cmd)
            written.add(os.path.normpath(opts["filepath"]))
        elif Path(args[0]).name == "usseg" and args[1:2] == ["export"]:
            for key in ("meta_file", "config_file"):
                need_file(opts[key], key, cmd)
            need_written(opts["ckpt_file"], "the checkpoint", cmd)
            written.add(os.path.normpath(opts["output"]))
        elif Path(args[0]).name == "usseg" and args[1:2] == ["infer"]:
            try:
                ns = build_parser(args[1:]).parse_args(args[1:])
            except SystemExit:
                problems.append(f"{cmd}: usseg infer does not parse these arguments")
                continue
            bundle = ns.bundle if (root / ns.bundle).is_dir() else f"bundles/{ns.bundle}"
            need_file(bundle, "bundle", cmd)
            for item in ns.inputs:
                if item.startswith("../shared/data/"):
                    require_shared(item[len("../shared/data/"):])
                else:
                    need_file(item, "input", cmd)
            if ns.model:
                need_written(ns.model, "the model", cmd)
        else:
            problems.append(f"{cmd}: a command the lint does not know (teach lint_block what it reads and writes)")
    return problems


@pytest.mark.parametrize("name,block", _blocks(), ids=[n for n, _ in _blocks()])
def test_runnable_block_lints(name: str, block: str) -> None:
    assert lint_block(block, ROOT) == [], name


def test_lint_catches_paths_that_do_not_follow() -> None:
    """The drift of #17: an export from bundles/ after training into outputs/, a typo'd key, an unknown command."""
    b = "bundles/unet_us_2d_segmentation"
    block = (
        f"python -m monai.bundle run --config_file {b}/configs/train.json --bundle_root outputs/u --max_epoch 1\n"
        f"python -m monai.bundle ckpt_export network_def --filepath {b}/models/model.ts --ckpt_file {b}/models/model.pt"
        f" --meta_file {b}/configs/metadata.json --config_file {b}/configs/inference.json --bundle_root {b}\n"
        f"python -m monai.bundle run --config_file {b}/configs/inference.json --bundle_root outputs/u\n"
        f"usseg infer {b} README.md --output o --model outputs/u/models/model.ts\n"
        "make everything\n"
    )
    problems = lint_block(block, ROOT)
    assert any("--max_epoch is not a key" in p for p in problems), problems
    assert any(f"reads the checkpoint {b}/models/model.pt, which no earlier" in p for p in problems), problems
    assert any("reads the model outputs/u/models/model.ts" in p for p in problems), problems
    assert any("make everything: a command the lint does not know" in p for p in problems), problems
    assert not any("inference.json --bundle_root outputs/u: reads" in p for p in problems), problems  # model.pt was trained
    assert len(problems) == 4, problems


#: the blocks that run in CI (the others are linted; USSEG_DOCS_RUN_ALL=1 runs them all)
RUN_BY_DEFAULT = (
    "README.md#0",
    "bundles/unet_us_2d_segmentation/docs/README.md#0",
    "bundles/crbnet_us_3d_segmentation/docs/README.md#0",
)
RUN_ALL = os.environ.get("USSEG_DOCS_RUN_ALL", "") == "1"


# each block is a unit of work of its own on the xdist workers (tests/conftest.py: xdist_scope)
@pytest.mark.slow
@pytest.mark.parametrize("name,block", _blocks(), ids=[n for n, _ in _blocks()])
def test_runnable_block_runs_in_a_fresh_copy(name: str, block: str, tmp_path: Path) -> None:
    if not RUN_ALL and name not in RUN_BY_DEFAULT:
        pytest.skip(f"{name} is linted, not run (USSEG_DOCS_RUN_ALL=1 runs it; see the module docstring)")
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
        expected |= {"model.pt2"} if "usseg export" in block else set()
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

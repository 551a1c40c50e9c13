"""The model-zoo's checks of a trained bundle folder, with MONAI's own bundle functions (#18).

Project-MONAI/model-zoo runs ``ci/verify_bundle.py`` on every bundle it ships. This module runs the same checks
through the same MONAI functions, so a bundle of this project that passes here passes there (the zoo script itself
was also run on our trained bundles; docs/bundles.md, "Model-zoo checks"):

1. ``layout``: ``LICENSE``, ``configs/metadata.json``, ``models/model.pt`` and ``configs/inference.json`` exist.
2. ``version``: metadata ``version`` is a key of ``changelog``.
3. ``metadata``: :func:`monai.bundle.verify_metadata` against a JSON schema (the file given, else the URL in the
   metadata's ``schema``, downloaded; needs ``jsonschema``).
4. ``shapes``: :func:`monai.bundle.verify_net_in_out` of ``network_def`` from ``configs/inference.json`` with the
   shapes of ``network_data_format``.
5. ``torchscript``: :func:`monai.bundle.ckpt_export` of ``network_def`` + ``models/model.pt`` by scripting into
   ``models/verify_model.ts``, loaded back with :func:`torch.jit.load`.

Then the conventions the zoo's reviewers check by reading (the project's own, named ``zoo-review``):

6. ``supported_apps`` is declared and ``eval_metrics`` holds numbers only (no placeholder text).
7. ``handlers``: ``configs/train.json``'s ``initialize`` attaches no handler (every trainer handler is in
   ``train#handlers``).
8. ``dataset_dir``: evaluating ``dataset_dir`` of ``configs/train.json`` writes nothing (checked in an empty cache).
9. ``readme``: ``docs/README.md`` has the sections of the zoo's ``docs/readme_template.md``.

``mode="min"`` runs 1-3 (the zoo's CPU premerge checks); ``"full"`` runs all.

    python -m usseg_monai.bundle_checks RUN_FOLDER [RUN_FOLDER ...] --schema meta_schema_20240725.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import monai.apps.utils  # noqa: F401  (creates the loggers main() quietens)
import monai.bundle.scripts  # noqa: F401
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from usseg_monai.data.io import CACHE_ENV

__all__ = ["README_SECTIONS", "CheckResult", "check_bundle", "main"]

#: Section headings of the model-zoo's docs/readme_template.md (bold markers and "(Optional)" aside; the
#: template's "Additinal" typo corrected).
README_SECTIONS = (
    "Authors",
    "Tags",
    "Model Description",
    "Data",
    "Preprocessing",
    "Performance",
    "Additional Usage Steps",
    "System Configuration",
    "Limitations",
    "Citation Info",
    "References",
)
ZOO_CHECKS = ("layout", "version", "metadata", "shapes", "torchscript")
REVIEW_CHECKS = ("metadata_values", "handlers", "dataset_dir", "readme")


@dataclass
class CheckResult:
    """One check of one bundle: ``name``, whether it passed and what was found (the error when it failed)."""

    bundle: str
    name: str
    passed: bool
    message: str = ""

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.bundle}: {self.name}" + (
            f" ({self.message})" if self.message else ""
        )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read JSON ({e})") from e


def check_layout(bundle: Path, **_: object) -> str:
    missing = [
        rel
        for rel in ("LICENSE", "configs/metadata.json", "models/model.pt", "configs/inference.json")
        if not (bundle / rel).is_file()
    ]
    if missing:
        raise ValueError(f"missing {missing} in {bundle}")
    return "LICENSE, metadata, model.pt, inference.json"


def check_version(bundle: Path, **_: object) -> str:
    meta = _read_json(bundle / "configs" / "metadata.json")
    for key in ("version", "changelog"):
        if key not in meta:
            raise ValueError(f"configs/metadata.json has no {key!r}")
    if meta["version"] not in meta["changelog"]:
        raise ValueError(f"version {meta['version']!r} is not a key of changelog {sorted(meta['changelog'])}")
    return f"version {meta['version']}"


def check_metadata(bundle: Path, schema: Path | None = None, **_: object) -> str:
    meta_file = bundle / "configs" / "metadata.json"
    if schema is not None:
        verify_metadata(meta_file=str(meta_file), filepath=str(schema))
        return f"valid against {Path(schema).name}"
    with tempfile.TemporaryDirectory() as tmp:  # MONAI downloads the schema of the metadata's URL
        verify_metadata(meta_file=str(meta_file), filepath=os.path.join(tmp, "schema.json"))
    return f"valid against {_read_json(meta_file)['schema']}"


def check_shapes(bundle: Path, **_: object) -> str:
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
        device="cpu",
    )
    return "network_def in/out shapes match network_data_format"


def check_torchscript(bundle: Path, **_: object) -> str:
    ts = bundle / "models" / "verify_model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(bundle / "models" / "model.pt"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
    )
    torch.jit.load(str(ts), map_location="cpu")
    provided = bundle / "models" / "model.ts"
    if provided.is_file():
        torch.jit.load(str(provided), map_location="cpu")
    return f"scripted to {ts.relative_to(bundle)} and loaded" + (", model.ts loads" if provided.is_file() else "")


def check_metadata_values(bundle: Path, **_: object) -> str:
    meta = _read_json(bundle / "configs" / "metadata.json")
    if not isinstance(meta.get("supported_apps"), dict):
        raise ValueError("metadata has no supported_apps object")
    metrics = meta.get("eval_metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("metadata has no eval_metrics")
    bad = {k: v for k, v in metrics.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
    if bad:
        raise ValueError(f"eval_metrics values must be measured numbers, got {bad}")
    return f"supported_apps {sorted(meta['supported_apps'])}, {len(metrics)} eval_metrics"


def check_handlers(bundle: Path, **_: object) -> str:
    for name in ("train.json", "multi_gpu_train.json"):
        path = bundle / "configs" / name
        if not path.is_file():
            continue
        init = _read_json(path).get("initialize", [])
        attached = [s for s in init if isinstance(s, str) and ".attach(" in s]
        if attached:
            raise ValueError(f"configs/{name} initialize attaches handlers outside train#handlers: {attached}")
    return "no handler attached in initialize"


def check_dataset_dir(bundle: Path, **_: object) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        saved = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = str(cache)
        try:
            parser = ConfigParser()
            parser.read_config(str(bundle / "configs" / "train.json"))
            value = parser.get_parsed_content("dataset_dir")
        finally:
            if saved is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = saved
        written = sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*"))
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"dataset_dir is not a path: {value!r}")
    if written:
        raise ValueError(f"reading dataset_dir wrote {written[:5]}")
    return "a path; reading it writes nothing"


def _heading_text(line: str) -> str:
    text = line.lstrip("#").strip().replace("*", "")
    return re.sub(r"\(optional\)", "", text, flags=re.IGNORECASE).strip()


def check_readme(bundle: Path, **_: object) -> str:
    readme = bundle / "docs" / "README.md"
    if not readme.is_file():
        raise ValueError("docs/README.md is missing")
    headings, fenced = [], False
    for line in readme.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            headings.append(_heading_text(line))
    missing = [s for s in README_SECTIONS if s not in headings]
    if missing:
        raise ValueError(f"docs/README.md lacks the zoo template's sections {missing}")
    order = [headings.index(s) for s in README_SECTIONS]
    if order != sorted(order):
        raise ValueError(f"docs/README.md sections are not in the template's order {list(README_SECTIONS)}")
    return f"{len(README_SECTIONS)} template sections in order"


CHECKS: dict[str, Callable[..., str]] = {
    "layout": check_layout,
    "version": check_version,
    "metadata": check_metadata,
    "shapes": check_shapes,
    "torchscript": check_torchscript,
    "metadata_values": check_metadata_values,
    "handlers": check_handlers,
    "dataset_dir": check_dataset_dir,
    "readme": check_readme,
}


def check_bundle(bundle: str | os.PathLike, schema: str | os.PathLike | None = None, mode: str = "full") -> list[CheckResult]:
    """Run the checks of ``mode`` on the bundle folder ``bundle`` (holding ``models/model.pt`` for "full").

    Args:
        bundle: the bundle folder: ``configs/``, ``docs/``, ``LICENSE`` and, trained, ``models/model.pt``.
        schema: a local copy of the metadata JSON schema; ``None`` downloads the metadata's ``schema`` URL.
        mode: ``"min"`` (layout, version, metadata) or ``"full"`` (every check).

    Raises:
        ValueError: ``bundle`` has no ``configs/`` folder, ``schema`` does not exist, an unknown ``mode``.

    Returns:
        One :class:`CheckResult` per check, in order; a check that raised has ``passed=False`` and the error.
        ``layout`` failing stops the rest (as the zoo script does).
    """
    if mode not in ("min", "full"):
        raise ValueError(f"mode must be 'min' or 'full', got {mode!r}")
    path = Path(bundle)
    if not (path / "configs").is_dir():
        raise ValueError(f"{path} is not a bundle folder (no configs/)")
    if schema is not None and not Path(schema).is_file():
        raise ValueError(f"schema file {schema} does not exist")
    names = ZOO_CHECKS[:3] if mode == "min" else ZOO_CHECKS + REVIEW_CHECKS
    results = []
    for name in names:
        try:
            results.append(CheckResult(path.name, name, True, CHECKS[name](path, schema=schema)))
        except Exception as e:  # every failure is reported with its message
            results.append(CheckResult(path.name, name, False, f"{type(e).__name__}: {e}"))
            if name == "layout":
                break
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m usseg_monai.bundle_checks", description=__doc__.split("\n\n")[0])
    ap.add_argument("bundles", nargs="+", help="trained bundle folders (with models/model.pt)")
    ap.add_argument("--schema", default=None, help="local metadata schema JSON (default: download the URL)")
    ap.add_argument("--mode", choices=("min", "full"), default="full")
    ap.add_argument("-v", "--verbose", action="store_true", help="keep MONAI's input summaries in the output")
    args = ap.parse_args(argv)
    if not args.verbose:  # MONAI logs an input summary per call at INFO: one PASS/FAIL line per check is the report
        for name in list(logging.root.manager.loggerDict):
            if name.startswith(("monai.bundle", "monai.apps")):
                logging.getLogger(name).setLevel(logging.WARNING)
    failed = 0
    for b in args.bundles:
        for r in check_bundle(b, schema=args.schema, mode=args.mode):
            print(r.line())
            failed += not r.passed
    print(f"{failed} check(s) failed" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

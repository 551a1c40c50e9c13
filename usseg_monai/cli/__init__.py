"""The ``usseg`` command line: the top layer, where every subcommand's argument parsing lives.

Subcommands by module: :mod:`usseg_monai.cli.data` (``prepare``, ``split``, ``calipers``),
:mod:`usseg_monai.cli.evaluation` (``benchmark``, ``report``), :mod:`usseg_monai.cli.models` (``infer``,
``export``); shared options in :mod:`usseg_monai.cli.options`. ``python -m usseg_monai.cli`` is ``usseg``.

Examples::

    usseg prepare busi  ~/data/Dataset_BUSI_with_GT --output ~/data/busi_prepared
    usseg prepare ddti  ~/data/DDTI --output ~/data/ddti_prepared --test-fraction 0.2 --n-folds 5 --fold 0
    usseg prepare dicom ~/data/us_dicom --output ~/data/us_prepared
    usseg prepare volumes ~/data/volumes --output ~/data/vol_prepared --label-value 1
    usseg prepare phantom --output ~/data/phantom --n-images 40 --spatial-dims 2
    usseg prepare busi  ~/data/Dataset_BUSI_with_GT --output ~/data/busi_calipers --calipers
    usseg infer unet_us_2d_segmentation scan.dcm images/ --output masks --model outputs/unet_us_2d_segmentation/models/model.pt
    usseg calipers ~/data/ddti_prepared --output ~/data/ddti_calipers --jitter-mm 0.5
    usseg split --datalist ~/data/busi_prepared/datalist.json --labeled 0.04 \\
        --output ~/data/busi_prepared/datalist_4pct.json

Adding a subcommand: write ``add_<name>_parser(subparsers)`` (in a module of this package) that calls
``subparsers.add_parser(...)`` and ``set_defaults(func=<callable(args) -> int>)``, then add its
``"module:function"`` to :data:`SUBCOMMANDS` (or ``(name, help, "module:function")`` to import the module
only when that subcommand runs, for modules that import torch or MONAI at the top). A
:class:`~usseg_monai.data.io.DatasetError` or ``ValueError`` raised by ``func`` ends the command with exit
code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

import usseg_monai
from usseg_monai.data.io import DatasetError
from usseg_monai.logs import filter_known_warnings

__all__ = [
    "SUBCOMMANDS",
    "build_parser",
    "main",
]

logger = logging.getLogger("usseg_monai.cli")


#: Subcommands. Each entry names a function ``add(subparsers)`` that adds one subcommand, either as
#: ``"module:function"`` (imported whenever ``usseg`` starts) or as ``(name, help, "module:function")``
#: (lazy: imported only when ``usseg <name> ...`` runs, for modules that import torch/MONAI at the top).
SUBCOMMANDS: list[str | tuple[str, str, str]] = [
    "usseg_monai.cli.data:add_prepare_parser",
    "usseg_monai.cli.data:add_split_parser",
    (
        "benchmark",
        "train a bundle at a named budget, score it on a test datalist, write results.json",
        "usseg_monai.cli.evaluation:add_benchmark_parser",
    ),
    (
        "infer",
        "run a trained bundle on image, DICOM or volume files and folders (no datalist needed)",
        "usseg_monai.cli.models:add_infer_parser",
    ),
    ("export", "export a bundle checkpoint with torch.export to a .pt2 file", "usseg_monai.cli.models:add_export_parser"),
    (
        "calipers",
        "derive caliper JSON files from a dataset's masks into a new dataset folder",
        "usseg_monai.cli.data:add_calipers_parser",
    ),
    (
        "report",
        "write the results report (Markdown + PNG figures) from a suite's results.json",
        "usseg_monai.cli.evaluation:add_report_parser",
    ),
]


# ---------------------------------------------------------------- main
def _command_name(argv: Sequence[str] | None) -> str | None:
    """The subcommand named on the command line (first token that is not a top-level option)."""
    for token in sys.argv[1:] if argv is None else argv:
        if token in ("-v", "--verbose", "-q", "--quiet", "--version"):
            continue
        return None if token.startswith("-") else token
    return None


def _version_line() -> str:
    """``usseg-monai X (MONAI Y, torch Z, python W)``, without importing MONAI or torch (package metadata)."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"usseg-monai {usseg_monai.__version__} (MONAI {version('monai')}, torch {version('torch')}, "
        f"python {platform.python_version()})"
    )


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``usseg`` parser with the subcommands of :data:`SUBCOMMANDS` (lazy ones fully only if named in ``argv``)."""
    parser = argparse.ArgumentParser(
        prog="usseg",
        description="usseg-monai: MONAI bundles for annotation-efficient ultrasound lesion segmentation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--version", action="version", version=_version_line(), help="print the versions and exit")
    parser.set_defaults(verbose=False, quiet=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _command_name(argv)
    for entry in SUBCOMMANDS:
        if isinstance(entry, tuple):
            name, help_text, entry = entry
            if name != chosen:  # listed in the help; its module is imported only when it runs
                stub = subparsers.add_parser(name, help=help_text, add_help=False)
                stub.add_argument("args", nargs=argparse.REMAINDER)
                continue
        module, _, func = entry.partition(":")
        try:
            add = getattr(importlib.import_module(module), func)
        except ImportError as e:  # an optional subcommand whose dependencies are missing: the others still work
            logger.warning("usseg: subcommand %s is unavailable: %s", entry, e)
            continue
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``usseg``; returns the exit code (0 ok, 2 bad input, usage or an OS error, with a one-line message)."""
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("usseg_monai").setLevel(level)
    filter_known_warnings(own_configs=True)  # MONAI's known-harmless notices only; see usseg_monai/logs.py
    try:
        return int(args.func(args) or 0)
    except (DatasetError, ValueError) as e:
        msg = " ".join(str(e).split())
    except OSError as e:  # unwritable output, full disk, a file vanished: the path and the reason, no traceback
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        msg = f"{where}: {e.strerror}" if where and e.strerror else " ".join(str(e).split())
    print(f"usseg {args.command}: error: {msg}", file=sys.stderr)
    return 2

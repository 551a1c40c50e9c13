"""The ``usseg`` command line: prepare datasets, re-split datalists (and more, registered below).

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

Adding a subcommand: write ``add_<name>_parser(subparsers)`` (in any module) that calls
``subparsers.add_parser(...)`` and ``set_defaults(func=<callable(args) -> int>)``, then add its
``"module:function"`` to :data:`SUBCOMMANDS` (or ``(name, help, "module:function")`` to import the module
only when that subcommand runs, for modules that import torch or MONAI at the top). A
:class:`~usseg_monai.data.io.DatasetError` or ``ValueError`` raised by ``func`` ends the command with exit
code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from usseg_monai.data.io import DatasetError
from usseg_monai.data.splits import SplitOptions
from usseg_monai.logs import filter_known_warnings

__all__ = [
    "SUBCOMMANDS",
    "build_parser",
    "main",
    "count_or_fraction",
    "add_split_options",
    "add_caliper_options",
    "common_options",
    "parse_value",
    "parse_set_options",
]

logger = logging.getLogger("usseg_monai.cli")

#: Subcommands. Each entry names a function ``add(subparsers)`` that adds one subcommand, either as
#: ``"module:function"`` (imported whenever ``usseg`` starts) or as ``(name, help, "module:function")``
#: (lazy: imported only when ``usseg <name> ...`` runs, for modules that import torch/MONAI at the top).
SUBCOMMANDS: list[str | tuple[str, str, str]] = [
    "usseg_monai.cli:add_prepare_parser",
    "usseg_monai.cli:add_split_parser",
    (
        "benchmark",
        "train a bundle at a named budget, score it on a test datalist, write results.json",
        "usseg_monai.benchmark:add_benchmark_parser",
    ),
    (
        "infer",
        "run a trained bundle on image, DICOM or volume files and folders (no datalist needed)",
        "usseg_monai.infer:add_infer_parser",
    ),
    ("export", "export a bundle checkpoint with torch.export to a .pt2 file", "usseg_monai.export:add_export_parser"),
    (
        "calipers",
        "derive caliper JSON files from a dataset's masks into a new dataset folder",
        "usseg_monai.data.caliper_files:add_calipers_parser",
    ),
    (
        "report",
        "write the results report (Markdown + PNG figures) from a suite's results.json",
        "usseg_monai.report:add_report_parser",
    ),
]


def common_options() -> argparse.ArgumentParser:
    """Parent parser with ``-v/--verbose`` and ``-q/--quiet``, so they also work after a subcommand.

    Use as ``subparsers.add_parser(name, parents=[common_options()], ...)``.
    """
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="warnings and errors only")
    return p


def count_or_fraction(text: str) -> int | float | str:
    """Parse ``--labeled``/``--class-only``: ``"20"`` is 20 items, ``"0.04"`` a fraction, ``"rest"`` all others."""
    if text == "rest":
        return text
    try:
        if any(c in text for c in ".eE"):
            value: int | float = float(text)
            if not 0.0 <= value <= 1.0:
                raise argparse.ArgumentTypeError(f"a fraction must be in [0, 1], got {text}")
            return value
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (e.g. 20), a fraction (e.g. 0.04) or 'rest', got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"a count must not be negative, got {text}")
    return value


def parse_value(text: str) -> Any:
    """A command-line value as JSON where it parses (``[256,256]``, ``0.5``, ``true``), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set_options(items: Sequence[str] | None, option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` options (values by :func:`parse_value`) as a dict of config overrides.

    Raises:
        ValueError: an item without ``=`` or with an empty key, named with the option.
    """
    out: dict[str, Any] = {}
    for text in items or ():
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} {text!r}: expected KEY=VALUE (a JSON value, e.g. image_size=[256,256])")
        out[key] = parse_value(value)
    return out


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def add_split_options(p: argparse.ArgumentParser, partition: bool = True) -> None:
    """Options shared by every converter and ``usseg split``: split fractions, folds, seed, partition."""
    g = p.add_argument_group("split (stratified by class, grouped by case)")
    g.add_argument(
        "--val-fraction", type=_fraction, default=0.2, help="fraction of all images for validation (default 0.2)"
    )
    g.add_argument(
        "--test-fraction", type=_fraction, default=0.0, help="fraction of all images held out as 'test' (default 0)"
    )
    g.add_argument(
        "--n-folds", type=int, default=None, help="k-fold mode: after the test set, deal the rest into K folds"
    )
    g.add_argument("--fold", type=int, default=0, help="k-fold mode: the fold used as validation (0..K-1, default 0)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the split and partition (default 0)")
    if partition:
        g = p.add_argument_group("training supervision (semi-supervised bundles)")
        g.add_argument(
            "--labeled",
            type=count_or_fraction,
            default=None,
            help="training images that keep their mask: a count (468) or a fraction (0.04); default all",
        )
        g.add_argument(
            "--class-only",
            type=count_or_fraction,
            default=None,
            help="training images that keep only their class label: count, fraction or 'rest'; the others "
            "become unlabeled (supervision 'none'); their masks are dropped from the datalist",
        )


def _split_options(args: argparse.Namespace) -> SplitOptions:
    """The :class:`~usseg_monai.data.splits.SplitOptions` of the split (and partition) options in ``args``."""
    return SplitOptions(
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        n_folds=args.n_folds,
        fold=args.fold,
        labeled=getattr(args, "labeled", None),
        class_only=getattr(args, "class_only", None),
    )


def _report(summary: dict[str, Any], what: str) -> int:
    per = summary.get("per_split", {})
    extra = f", {summary['skipped']} skipped" if summary.get("skipped") else ""
    cal = summary.get("calipers")
    cal_text = (
        f", {cal['files']} caliper files ({cal['lesions']} lesions, {cal['empty_annotations']} without lesion)"
        if cal
        else ""
    )
    print(
        f"{what}: {summary.get('n_items', 0)} images ("
        + ", ".join(f"{k} {v}" for k, v in per.items())
        + f"{extra}){cal_text} -> {summary.get('output')}"
    )
    return 0


# ---------------------------------------------------------------- prepare
def add_caliper_options(p: argparse.ArgumentParser, always: bool = False) -> None:
    """``--calipers`` / ``--caliper-jitter-mm`` / ``--caliper-min-voxels`` of ``usseg prepare <dataset>``."""
    from usseg_monai.data.prepared import DEFAULT_CALIPER_MIN_VOXELS

    g = p.add_argument_group("calipers (caliper-supervised bundles)")
    g.add_argument(
        "--calipers",
        action="store_true",
        help="(always on for the phantom) also write calipers/<id>.json, the calipers a clinician would draw "
        "on each mask (an empty mask: no lesion), and the datalist key 'calipers'"
        if always
        else "also write calipers/<id>.json, the calipers a clinician would draw on each mask (an empty mask: "
        "no lesion), and the datalist key 'calipers'",
    )
    g.add_argument(
        "--caliper-jitter-mm",
        type=float,
        default=0.0,
        help="simulated reader variability: std (mm) of the caliper endpoint moves, seeded by --seed "
        "(default 0, exact)",
    )
    g.add_argument(
        "--caliper-min-voxels",
        type=int,
        default=DEFAULT_CALIPER_MIN_VOXELS,
        help="mask components smaller than this are speckle and get no calipers "
        f"(default {DEFAULT_CALIPER_MIN_VOXELS})",
    )


def _caliper_context(args: argparse.Namespace, always: bool = False) -> Any:
    """The :func:`~usseg_monai.data.prepared.caliper_defaults` block of the caliper options in ``args``."""
    from usseg_monai.data.prepared import caliper_defaults

    return caliper_defaults(
        always or args.calipers,
        jitter_mm=args.caliper_jitter_mm,
        seed=args.seed,
        min_voxels=args.caliper_min_voxels,
    )


def _prepare(what: str, prepare: Callable[..., dict[str, Any]], args: argparse.Namespace, **options: Any) -> int:
    """Run converter ``prepare`` with the source, output, overwrite, split and caliper options of ``args``."""
    with _caliper_context(args):
        summary = prepare(args.source, args.output, overwrite=args.overwrite, split=_split_options(args), **options)
    return _report(summary, what)


def _run_busi(args: argparse.Namespace) -> int:
    from usseg_monai.data.busi import prepare_busi

    return _prepare("BUSI", prepare_busi, args)


def _run_ddti(args: argparse.Namespace) -> int:
    from usseg_monai.data.ddti import prepare_ddti

    return _prepare("DDTI", prepare_ddti, args, missing_class=args.missing_class)


def _run_dicom(args: argparse.Namespace) -> int:
    from usseg_monai.data.dicom import prepare_dicom

    return _prepare("DICOM", prepare_dicom, args, group_by=args.group_by)


def _run_volumes(args: argparse.Namespace) -> int:
    from usseg_monai.data.volumes import prepare_volumes

    return _prepare("volumes", prepare_volumes, args, label_value=args.label_value)


def _run_phantom(args: argparse.Namespace) -> int:
    try:
        from usseg_monai.data.phantom import prepare_phantom
    except ImportError as e:
        raise DatasetError(f"the phantom generator is not available in this installation: {e}") from e
    kw: dict[str, Any] = {
        "overwrite": args.overwrite,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "seed": args.seed,
    }
    if args.n_images is not None:
        kw["n_images"] = args.n_images
    if args.spatial_dims is not None:
        kw["spatial_dims"] = args.spatial_dims
    if args.size is not None:
        # one value applies to every axis of the requested (default 2D) grid
        dims = args.spatial_dims or (len(args.size) if len(args.size) > 1 else 2)
        if len(args.size) not in (1, dims):
            raise ValueError(f"--size needs 1 or {dims} numbers for {dims}D, got {args.size}")
        kw["image_size"] = tuple(args.size) * dims if len(args.size) == 1 else tuple(args.size)
    with _caliper_context(args, always=True):
        summary = prepare_phantom(args.output, **kw)
    return _report(summary if isinstance(summary, dict) else {"output": args.output}, "phantom")


def _converter(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable,
    help_text: str,
    description: str,
    source_help: str,
    nargs: str | None = None,
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help=help_text,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options()],
    )
    if nargs:
        p.add_argument("source", nargs=nargs, help=source_help)
    else:
        p.add_argument("source", help=source_help)
    p.add_argument("-o", "--output", required=True, help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder (replaces files)")
    add_split_options(p)
    add_caliper_options(p)
    p.set_defaults(func=func)
    return p


_LAYOUT = (
    "Writes <output>/datalist.json (MONAI decathlon-style, paths relative to <output>, sections training/"
    "validation/test), summary.json (counts per class and split, empty masks, skipped files), images/ and "
    "labels/. Arrays are in MONAI (x, y[, z]) order; the source is never modified."
)


def add_prepare_parser(subparsers: argparse._SubParsersAction) -> None:
    """``usseg prepare <dataset>``: convert a public dataset to a prepared MONAI datalist folder."""
    p = subparsers.add_parser(
        "prepare",
        help="convert a dataset (BUSI, DDTI, DICOM, 3D volumes, phantom) into images/labels + datalist.json",
        description="Convert a dataset into a prepared folder for the usseg-monai bundles. " + _LAYOUT,
    )
    sub = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    _converter(
        sub,
        "busi",
        _run_busi,
        "Breast Ultrasound Images (Al-Dhabyani et al. 2020)",
        "BUSI: <class>/<class> (N).png with _mask.png, _mask_1.png, ... (union). Classes benign, malignant, "
        "normal (normal masks are empty). Images are converted to grayscale. Identical pictures are kept "
        "in one split group.\n\n" + _LAYOUT,
        "the Dataset_BUSI_with_GT folder or the folder containing it",
    )
    q = _converter(
        sub,
        "ddti",
        _run_ddti,
        "Digital Database of Thyroid Ultrasound Images (Pedraza et al. 2015)",
        "DDTI: one folder of <case>.xml and <case>_<img>.jpg. Masks are the union of the XML polygons; "
        "class = TI-RADS grade; a case's images stay in one split.\n\n" + _LAYOUT,
        "the folder of <case>.xml and <case>_<img>.jpg files",
    )
    q.add_argument("--missing-class", default=None, help="class for cases without a TI-RADS grade (default: no class)")
    q = _converter(
        sub,
        "dicom",
        _run_dicom,
        "ultrasound DICOM files/folders to 8-bit grayscale PNG with pixel spacing (mm)",
        "DICOM: RGB, YBR_FULL(_422), YBR_RCT/ICT (JPEG 2000), PALETTE COLOR and MONOCHROME1/2 to 8-bit "
        "grayscale; one image per frame. Spacing (mm) from the Sequence of Ultrasound Regions (cm units), "
        "else PixelSpacing, else unknown (no 'spacing' key). No masks.\n\n" + _LAYOUT,
        "DICOM files or folders (searched recursively)",
        nargs="+",
    )
    q.add_argument(
        "--group-by",
        choices=("patient", "study", "series", "file"),
        default="patient",
        help="keep images of one patient/study/series/file in one split (default patient)",
    )
    q = _converter(
        sub,
        "volumes",
        _run_volumes,
        "3D image + label pairs (NIfTI, NRRD) to NIfTI keeping spacing, origin and direction",
        "Volumes: pairs <name>_image/<name>_label, <name>/<name>-label or <name>/<name>_seg (.nii.gz, .nii, "
        ".nrrd, .mha). Labels are binarised (> 0) unless --label-value is given.\n\n" + _LAYOUT,
        "folder of image/label volume pairs",
    )
    q.add_argument(
        "--label-value",
        type=int,
        nargs="+",
        default=None,
        help="label value(s) that count as lesion (default: any > 0)",
    )
    ph = sub.add_parser(
        "phantom",
        parents=[common_options()],
        help="generate the synthetic ultrasound lesion phantom dataset (2D or 3D)",
        description="Generate a synthetic ultrasound phantom dataset (speckle, lesions, known spacing). " + _LAYOUT,
    )
    ph.add_argument("-o", "--output", required=True, help="output folder")
    ph.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    ph.add_argument("--n-images", type=int, default=None, help="number of images/volumes to generate")
    ph.add_argument("--spatial-dims", type=int, choices=(2, 3), default=None, help="2 (images) or 3 (volumes)")
    ph.add_argument(
        "--size", type=int, nargs="+", default=None, help="image size in pixels, (x, y[, z]) or one value for all"
    )
    ph.add_argument("--val-fraction", type=_fraction, default=0.2, help="fraction for validation (default 0.2)")
    ph.add_argument("--test-fraction", type=_fraction, default=0.0, help="fraction held out as test (default 0)")
    ph.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_caliper_options(ph, always=True)
    ph.set_defaults(func=_run_phantom)


# ---------------------------------------------------------------- split
def _run_split(args: argparse.Namespace) -> int:
    from usseg_monai.data.prepared import split_datalist

    summary = split_datalist(
        args.datalist, args.output, resplit=args.resplit, overwrite=args.overwrite, split=_split_options(args)
    )
    sup = summary.get("training_supervision")
    print(
        f"{args.output}: "
        + ", ".join(f"{k} {v}" for k, v in summary["per_split"].items())
        + (f"; training supervision: mask {sup['mask']}, class {sup['class']}, none {sup['none']}" if sup else "")
    )
    return 0


def add_split_parser(subparsers: argparse._SubParsersAction) -> None:
    """``usseg split``: re-split a prepared datalist and/or partition its training set into a new file."""
    p = subparsers.add_parser(
        "split",
        parents=[common_options()],
        help="re-split a prepared datalist and/or keep masks for only some training images",
        description="Write a new datalist from a prepared datalist.json. By default the training/validation/"
        "test sections are kept and only the training set is partitioned into images with masks "
        "(--labeled), with class labels only (--class-only) and unlabeled ones; --resplit pools all "
        "sections and splits again. Masks of class-only/unlabeled images are removed from the new "
        "datalist, so training never reads them.",
    )
    p.add_argument("--datalist", required=True, help="a prepared datalist.json (from 'usseg prepare')")
    p.add_argument("-o", "--output", required=True, help="the new datalist JSON (paths are rewritten relative to it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--resplit", action="store_true", help="pool all sections and split again with the options below")
    add_split_options(p)
    p.set_defaults(func=_run_split)


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
    import platform
    from importlib import metadata

    import usseg_monai

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


if __name__ == "__main__":
    sys.exit(main())

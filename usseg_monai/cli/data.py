"""``usseg prepare``, ``usseg split`` and ``usseg calipers``: datasets into prepared MONAI datalist folders."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from usseg_monai.cli.options import (
    add_caliper_options,
    add_split_options,
    caliper_context,
    common_options,
    fraction,
    print_summary,
    split_options,
)
from usseg_monai.data.busi import prepare_busi
from usseg_monai.data.caliper_files import derive_dataset_calipers
from usseg_monai.data.ddti import prepare_ddti
from usseg_monai.data.dicom import prepare_dicom
from usseg_monai.data.io import DATALIST_SECTIONS
from usseg_monai.data.phantom import prepare_phantom
from usseg_monai.data.caliper_derivation import DEFAULT_CALIPER_MIN_VOXELS
from usseg_monai.data.resplit import split_datalist
from usseg_monai.data.volumes import prepare_volumes

__all__ = ["add_prepare_parser", "add_split_parser", "add_calipers_parser"]


def _prepare(what: str, prepare: Callable[..., dict[str, Any]], args: argparse.Namespace, **options: Any) -> int:
    """Run converter ``prepare`` with the source, output, overwrite, split and caliper options of ``args``."""
    with caliper_context(args):
        summary = prepare(args.source, args.output, overwrite=args.overwrite, split=split_options(args), **options)
    return print_summary(summary, what)


def _run_busi(args: argparse.Namespace) -> int:
    return _prepare("BUSI", prepare_busi, args)


def _run_ddti(args: argparse.Namespace) -> int:
    return _prepare("DDTI", prepare_ddti, args, missing_class=args.missing_class)


def _run_dicom(args: argparse.Namespace) -> int:
    return _prepare("DICOM", prepare_dicom, args, group_by=args.group_by)


def _run_volumes(args: argparse.Namespace) -> int:
    return _prepare("volumes", prepare_volumes, args, label_value=args.label_value)


def _run_phantom(args: argparse.Namespace) -> int:
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
    with caliper_context(args, always=True):
        summary = prepare_phantom(args.output, **kw)
    return print_summary(summary if isinstance(summary, dict) else {"output": args.output}, "phantom")


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
    ph.add_argument("--val-fraction", type=fraction, default=0.2, help="fraction for validation (default 0.2)")
    ph.add_argument("--test-fraction", type=fraction, default=0.0, help="fraction held out as test (default 0)")
    ph.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_caliper_options(ph, always=True)
    ph.set_defaults(func=_run_phantom)


# ---------------------------------------------------------------- split
def _run_split(args: argparse.Namespace) -> int:
    summary = split_datalist(
        args.datalist, args.output, resplit=args.resplit, overwrite=args.overwrite, split=split_options(args)
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


def _run_calipers(args: argparse.Namespace) -> int:
    summary = derive_dataset_calipers(
        args.dataset_dir,
        args.output,
        datalist=args.datalist,
        jitter_mm=args.jitter_mm,
        seed=args.seed,
        min_voxels=args.min_voxels,
        sections=args.sections,
        absolute_paths=args.absolute_paths,
        overwrite=args.overwrite,
    )
    c = summary["calipers"]
    print(
        f"calipers: {c['files']} files ({c['lesions']} lesions, {c['empty_annotations']} without lesion, "
        f"{c['small_components_ignored']} speckle components ignored) -> {summary['output']}"
    )
    return 0


def add_calipers_parser(subparsers: argparse._SubParsersAction) -> None:
    """``usseg calipers DATASET_DIR --output OUT_DIR``: caliper JSON files derived from a dataset's masks."""
    p = subparsers.add_parser(
        "calipers",
        parents=[common_options()],
        help="derive caliper JSON files from a dataset's masks into a new dataset folder",
        description="Derive, for every item with a mask, the calipers a clinician would draw (long and short "
        "axis; 3D: and the third axis) and write OUT_DIR/calipers/<id>.json plus OUT_DIR/datalist.json, whose "
        "items keep the source's image/label files and add 'calipers'. An empty mask gives an annotation "
        "without lesions. The source folder is never written to.",
    )
    p.add_argument("dataset_dir", help="a prepared dataset folder (or any folder with a datalist of masks)")
    p.add_argument("-o", "--output", required=True, help="the new dataset folder (created; must be empty)")
    p.add_argument("--datalist", default=None, help="datalist to read (default DATASET_DIR/datalist.json)")
    p.add_argument(
        "--jitter-mm", type=float, default=0.0, help="simulated reader variability, std of endpoint moves (mm)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter (default 0)")
    p.add_argument(
        "--min-voxels",
        type=int,
        default=DEFAULT_CALIPER_MIN_VOXELS,
        help=f"mask components smaller than this are speckle, not lesions (default {DEFAULT_CALIPER_MIN_VOXELS})",
    )
    p.add_argument(
        "--sections",
        nargs="+",
        choices=DATALIST_SECTIONS,
        default=None,
        help="sections whose items get calipers (default all; the others are copied)",
    )
    p.add_argument("--absolute-paths", action="store_true", help="absolute image/label paths in the new datalist")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.set_defaults(func=_run_calipers)

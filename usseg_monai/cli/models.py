"""``usseg infer`` (a trained bundle on image, DICOM or volume files) and ``usseg export`` (a checkpoint to a
``torch.export`` ``.pt2`` file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import usseg_monai.export
from usseg_monai.cli.options import common_options, parse_set_options, parse_value
from usseg_monai.data.io import DatasetError
from usseg_monai.export import export_bundle_checkpoint
from usseg_monai.infer import run_infer

__all__ = ["add_infer_parser", "add_export_parser"]

_EXPORT_DOC = (usseg_monai.export.__doc__ or "").split("\n\n")[0]


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config_file", required=True, nargs="+", help="bundle config file(s), e.g. configs/inference.json")
    p.add_argument("--ckpt_file", required=True, help="checkpoint: the network state_dict (models/model.pt)")
    p.add_argument("--output", required=True, help="the .pt2 file to write (atomically)")
    p.add_argument("--bundle_root", default=None, help="the bundle folder (default: the config file's parent's parent)")
    p.add_argument("--meta_file", default=None, help="metadata.json (default <bundle_root>/configs/metadata.json)")
    p.add_argument("--net_id", default="network_def", help="network id in the config (default network_def)")
    p.add_argument("--key_in_ckpt", default="", help="key of the weights in a nested checkpoint (default: none)")
    p.add_argument(
        "--input_shape", type=int, nargs="+", default=None, help="example input [B, C, *spatial] (default from config)"
    )
    p.add_argument("--static_batch", action="store_true", help="do not make the batch size dynamic")
    p.add_argument("--static_spatial", action="store_true", help="do not make the spatial sizes dynamic")
    p.add_argument(
        "--override",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        default=[],
        help="config override, VALUE parsed as JSON when possible (e.g. --override image_size '[64, 64]')",
    )


def _run_export(args: argparse.Namespace) -> int:
    try:
        out = _export_from_args(args)
    except FileNotFoundError as e:  # ``usseg`` reports DatasetError/ValueError as a one-line message
        raise DatasetError(str(e)) from e
    print(f"exported {args.net_id} to {out}")
    return 0


def _export_from_args(args: argparse.Namespace) -> Path:
    return export_bundle_checkpoint(
        args.config_file if len(args.config_file) > 1 else args.config_file[0],
        args.ckpt_file,
        args.output,
        meta_file=args.meta_file,
        bundle_root=args.bundle_root,
        net_id=args.net_id,
        key_in_ckpt=args.key_in_ckpt,
        input_shape=args.input_shape,
        dynamic_batch=not args.static_batch,
        dynamic_spatial=not args.static_spatial,
        **{k: parse_value(v) for k, v in args.override},
    )


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    """``usseg export``: a bundle checkpoint to a ``torch.export`` ``.pt2`` file (dynamic batch and spatial size)."""
    p = subparsers.add_parser(
        "export",
        parents=[common_options()],
        help="export a bundle checkpoint with torch.export to a .pt2 file (dynamic batch and spatial size)",
        description=_EXPORT_DOC,
    )
    _add_arguments(p)
    p.set_defaults(func=_run_export)


def _run_infer(args: argparse.Namespace) -> int:
    summary = run_infer(
        args.bundle,
        args.inputs,
        args.output,
        model=args.model,
        calipers=args.calipers,
        batch_size=args.batch_size,
        device=args.device,
        spacing=args.spacing,
        exclude=args.exclude or (),
        overrides=parse_set_options(args.set),
    )
    print(
        f"usseg infer: {len(summary.items)} images from {summary.n_files} inputs in {summary.seconds:.1f} s: "
        f"{summary.n_with_lesion} with a lesion ({summary.n_lesions} lesions measured), {len(summary.failures)} failed; "
        f"masks, overlays and measurements.csv in {summary.output_dir}"
    )
    for f in summary.failures:
        print(f"usseg infer: failed: {f.source}: {f.reason}", file=sys.stderr)
    return 0 if summary.ok else 1


def add_infer_parser(subparsers: argparse._SubParsersAction) -> None:
    """``usseg infer BUNDLE INPUT... --output DIR``."""
    p = subparsers.add_parser(
        "infer",
        parents=[common_options()],
        help="run a trained bundle on image, DICOM or volume files and folders (no datalist needed)",
        description="Run a trained bundle's inference.json on image, DICOM or volume files and folders, with no "
        "datalist and no prepare step: masks in the inputs' own size, overlays, measurements.csv, summary.json.",
        epilog="Exit code: 0 every input ran, 1 some failed (the others ran), 2 bad usage.",
    )
    p.add_argument("bundle", help="a bundle folder or a name under bundles/ (e.g. unet_us_2d_segmentation)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image / DICOM / volume files and folders")
    p.add_argument("--output", "-o", required=True, help="folder for masks, overlays, measurements.csv, summary.json")
    p.add_argument("--model", help="a .pt / .pth checkpoint, .ts (TorchScript) or .pt2 (torch.export) file "
                   "(default: the bundle's models/model.pt)")
    p.add_argument("--calipers", help="a caliper JSON (one image) or a folder of <name>.json: constrain the masks")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default 8 in 2D, 1 in 3D)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the GPU where there is one)")
    p.add_argument("--spacing", type=float, nargs=2, metavar=("SX", "SY"),
                   help="mm per pixel of plain images (PNG / JPEG ... carry none; DICOM and volumes use their own)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="leave out files matching this name pattern "
                   "(repeatable), e.g. --exclude '*_mask*.png' for a BUSI folder")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override an inference.json key (repeatable), e.g. --set image_size=[256,256]")
    p.set_defaults(func=_run_infer)

"""``usseg infer``: run a trained bundle on one's own files, with no datalist and no prepare step.

::

    usseg infer unet_us_2d_segmentation scan1.png scans/ us.dcm --output masks \\
        --model outputs/unet_us_2d_segmentation/models/model.pt
    usseg infer unet_us_3d_segmentation volume.nrrd --output masks --model model.pt2
    usseg infer crbnet_us_2d_segmentation images/ --output masks --calipers calipers/

BUNDLE is a bundle folder or a name under the repository's ``bundles/``; its ``configs/inference.json`` runs
unchanged (the same preprocessing, network, ``Invertd``, ``SaveImaged``, measurements and overlays as
``python -m monai.bundle run --config_file .../inference.json``): this module only writes the datalist and the
overrides (``datalist``, ``output_dir``, the model, the batch size, the device). The model is the bundle's
``models/model.pt`` or ``--model``: a checkpoint (``.pt`` / ``.pth``, the trained ``model.pt`` or a training
checkpoint), a TorchScript file (``.ts``, ``python -m monai.bundle ckpt_export``) or a ``torch.export`` program
(``.pt2``, ``usseg export``).

Inputs (files and folders, folders searched recursively; other files in folders are skipped and counted):

- 2D bundles: PNG / JPEG / BMP / TIFF images (no spacing: lengths in pixels, unless ``--spacing``), and
  ultrasound DICOM files (``.dcm`` or a ``DICM`` preamble), single- or multi-frame (one image per frame),
  converted as ``usseg prepare dicom`` does (:func:`usseg_monai.data.dicom.read_ultrasound_dicom`: grayscale,
  spacing from the Sequence of Ultrasound Regions or Pixel Spacing).
- 3D bundles: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``)
  volumes, spacing and orientation from the header.

Per input image, in ``--output``: the mask in the input's own size and orientation (``<name>_seg.png``, 0/255,
for images and DICOM frames; a DICOM-derived PNG records the spacing in its ``pHYs`` chunk;
``<name>_seg.nii.gz`` for volumes, with the input's affine), an overlay ``<name>_overlay.png`` (contour and the
measured calipers) and its rows in ``measurements.csv`` (``unit`` says ``mm`` or ``px``). ``summary.json`` maps
every output name to its source file (and frame) and lists the inputs that failed. ``<name>`` is the input's
file stem (``_f0003`` added for frame 3 of a multi-frame DICOM; parent folder names prefixed where two inputs
share a stem).

A file that cannot be read (or whose calipers do not fit it) is reported by name and the others still run; the
exit code is 0 when every input ran, 1 when any failed, 2 for bad usage (no model, no input at all).

With ``--calipers FILE_OR_FOLDER`` (a caliper JSON, :mod:`usseg_monai.calipers.annotation`, or a folder of
``<name>.json`` files), the mask of each image that has calipers is constrained to lie between their
conservative and radical labels (:class:`usseg_monai.transforms.calipers.ConstrainToCalipersd`, the bundles'
``constrain_to_calipers`` switch).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Events
from monai.bundle import ConfigParser

import usseg_monai.export  # noqa: F401  (the .pt2 model override's expression names usseg_monai.export)
from usseg_monai.bundle_paths import resolve_bundle
from usseg_monai.calipers.annotation import load_calipers
from usseg_monai.data.io import DatasetError, atomic_path, atomic_write_json, ensure_not_inside
from usseg_monai.infer_inputs import (
    IMAGE_SUFFIXES,
    VOLUME_SUFFIXES,
    InferFailure,
    InferItem,
    collect_inputs,
    glob_escape,
    input_kind,
    match_calipers,
    stage_inputs,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "VOLUME_SUFFIXES",
    "MODEL_SUFFIXES",
    "InferItem",
    "InferFailure",
    "InferSummary",
    "input_kind",
    "collect_inputs",
    "model_overrides",
    "run_infer",
]

logger = logging.getLogger(__name__)


#: model file suffixes and what they are
MODEL_SUFFIXES = {".pt": "checkpoint", ".pth": "checkpoint", ".ts": "torchscript", ".pt2": "exported program"}


@dataclass
class InferSummary:
    """What a :func:`run_infer` call did (also written to ``<output>/summary.json``)."""

    bundle: str
    model: str
    output_dir: str
    n_files: int = 0
    items: list[InferItem] = field(default_factory=list)
    failures: list[InferFailure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    n_lesions: int = 0
    n_with_lesion: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and bool(self.items)

    def outputs(self) -> list[dict[str, Any]]:
        out_dir = Path(self.output_dir)
        rows = []
        for it in self.items:
            mask = next(iter(sorted(out_dir.glob(f"{glob_escape(it.name)}_seg.*"))), None)
            overlay = out_dir / f"{it.name}_overlay.png"
            rows.append(
                {
                    "name": it.name,
                    "source": str(it.source),
                    "frame": it.frame,
                    "mask": mask.name if mask is not None else None,
                    "overlay": overlay.name if overlay.is_file() else None,
                    "spacing_mm": it.spacing,
                    "spacing_source": it.spacing_source,
                    "calipers": str(it.calipers) if it.calipers is not None else None,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "model": self.model,
            "n_files": self.n_files,
            "n_images": len(self.items),
            "n_failed": len(self.failures),
            "n_lesions": self.n_lesions,
            "n_images_with_lesion": self.n_with_lesion,
            "seconds": round(self.seconds, 2),
            "outputs": self.outputs(),
            "failed": [{"file": f.source, "reason": f.reason} for f in self.failures],
            "skipped": self.skipped,
        }


def model_overrides(model: str | os.PathLike) -> dict[str, Any]:
    """Config overrides that make ``inference.json`` run ``model`` (a checkpoint, TorchScript or ``.pt2`` file).

    Raises:
        DatasetError: the file is missing or its suffix is none of :data:`MODEL_SUFFIXES`.
    """
    p = Path(model)
    if not p.is_file():
        raise DatasetError(f"model file not found: {p}")
    kind = MODEL_SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise DatasetError(f"model {p}: unknown suffix {p.suffix!r}; use {', '.join(f'{k} ({v})' for k, v in MODEL_SUFFIXES.items())}")
    path = str(p.resolve())
    if kind == "checkpoint":
        return {"ckpt_path": path, "load_pretrain": True}
    if kind == "torchscript":
        return {"usseg_model_path": path, "load_pretrain": False,
                "network": "$torch.jit.load(@usseg_model_path, map_location=@device).eval()"}
    return {"export_path": path, "load_pretrain": False,
            "network": "$usseg_monai.export.load_exported_network(@export_path, device=@device)"}


def _reason(e: BaseException) -> str:
    """One line: the error a transform raised (unwrapped from MONAI's 'applying transform ...'); our own
    :class:`DatasetError` messages as they are, others with their type."""
    while e.__cause__ is not None and not isinstance(e, DatasetError) and str(e).startswith("applying transform"):
        e = e.__cause__
    text = " ".join(str(e).split())
    return (text if isinstance(e, DatasetError) else f"{type(e).__name__}: {text}")[:600]


def _preflight(preprocessing: Any, items: Sequence[InferItem], image_key: str) -> tuple[list[InferItem], list[InferFailure]]:
    """Run the bundle's own preprocessing on each item (and check its calipers fit); keep the items that pass."""
    good: list[InferItem] = []
    failures: list[InferFailure] = []
    for it in items:
        try:
            out = preprocessing(it.datalist_item())
            if it.calipers is not None:
                ann = load_calipers(it.calipers)
                shape = [int(s) for s in out[image_key].meta.get("spatial_shape", [])]
                if shape and [int(s) for s in ann.image_shape] != shape:
                    raise DatasetError(
                        f"calipers {it.calipers} were made for an image of shape {list(ann.image_shape)}, "
                        f"the image has shape {shape}"
                    )
        except Exception as e:  # any reader / transform error fails this input only
            failures.append(InferFailure(it.label, _reason(e)))
            continue
        good.append(it)
    return good, failures


def _keep_dicom_spacing(summary_items: Sequence[InferItem], output_dir: Path, output_ext: str) -> None:
    """Write each DICOM-derived PNG mask again with its spacing in the PNG ``pHYs`` chunk (pixels per metre)."""
    from PIL import Image

    if output_ext.lower() != ".png":
        return
    for it in summary_items:
        if it.kind != "dicom" or it.spacing is None:
            continue
        mask = output_dir / f"{it.name}_seg.png"
        if not mask.is_file():
            continue
        with Image.open(mask) as im:
            im.load()
            img = im.copy()
        with atomic_path(mask) as tmp:
            img.save(tmp, format="PNG", dpi=(25.4 / it.spacing[0], 25.4 / it.spacing[1]))


def _attach_progress(evaluator: Any, n_batches: int, n_images: int) -> None:
    """A tqdm progress bar on a terminal; otherwise a log line at every 10% (and at the end)."""
    if sys.stderr.isatty():
        try:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=True, desc="usseg infer").attach(evaluator)
            return
        except ImportError:  # no tqdm: fall back to log lines
            pass
    every = max(1, n_batches // 10)
    start = time.perf_counter()

    logged = [0]

    @evaluator.on(Events.ITERATION_COMPLETED(every=every) | Events.COMPLETED)
    def _log(engine: Any) -> None:
        done = min(engine.state.iteration, n_batches)
        if done != logged[0]:
            logged[0] = done
            logger.info("infer: batch %d/%d (%d images), %.1f s", done, n_batches, n_images, time.perf_counter() - start)


def _count_lesions(csv_path: Path) -> tuple[int, int]:
    """(lesions measured, images with a lesion) in a ``measurements.csv``."""
    if not csv_path.is_file():
        return 0, 0
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    found = [r for r in rows if str(r.get("lesion_found", "")).lower() == "true"]
    return len(found), len({r["image"] for r in found})


def run_infer(
    bundle: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    calipers: str | os.PathLike | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    spacing: Sequence[float] | None = None,
    exclude: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> InferSummary:
    """Run a bundle's ``inference.json`` on files and folders; see the module docstring.

    Args:
        bundle: a bundle folder or a name under ``bundles/``.
        inputs: files and folders.
        output_dir: where masks, overlays, ``measurements.csv`` and ``summary.json`` go (created; never inside an
            input folder).
        model: a ``.pt`` / ``.pth`` checkpoint, ``.ts`` or ``.pt2`` file; default ``<bundle>/models/model.pt``.
        calipers: a caliper JSON (one image) or a folder of ``<name>.json``: constrain those images' masks.
        batch_size: images per forward pass (default 8 for 2D bundles, 1 for 3D).
        device: e.g. ``"cpu"`` or ``"cuda:0"`` (default: the bundle's, the GPU where there is one).
        spacing: mm per pixel ``(x, y)`` for plain images (PNG / JPEG ...; they carry none): lengths in mm.
        exclude: file-name patterns left out (e.g. ``"*_mask*.png"``).
        overrides: further config overrides (e.g. ``{"image_size": [256, 256]}`` for a model trained at 256).

    Returns:
        The summary (also in ``summary.json``). Inputs that failed are in ``failures``; the others ran.

    Raises:
        DatasetError: no model, an output folder inside an input folder, a calipers path that is missing, or
            bad options.
    """
    start = time.perf_counter()
    bundle_dir = resolve_bundle(bundle)
    config_file = bundle_dir / "configs" / "inference.json"
    model_path = Path(model) if model is not None else bundle_dir / "models" / "model.pt"
    if model is None and not model_path.is_file():
        raise DatasetError(
            f"bundle {bundle_dir.name} has no trained model at {model_path}: train it (the bundle README's commands, "
            f"and scripts/main.sh for the 2D reference, train into outputs/{bundle_dir.name}) and pass --model "
            f"outputs/{bundle_dir.name}/models/model.pt, or a .ts / .pt2 file"
        )
    model_cfg = model_overrides(model_path)
    if batch_size is not None and int(batch_size) < 1:
        raise DatasetError(f"--batch-size must be at least 1, got {batch_size}")
    if spacing is not None and (len(spacing) != 2 or not all(np.isfinite(s) and s > 0 for s in spacing)):
        raise DatasetError(f"--spacing takes two positive numbers (mm per pixel, x then y), got {list(spacing)}")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--output {out} exists and is not a folder")
    for raw in inputs:
        if Path(raw).is_dir():
            # a later run over the same folder would take the masks for inputs; sources are never written to
            ensure_not_inside(out, raw)
    parser = ConfigParser()
    parser.read_config(str(config_file))
    if (bundle_dir / "configs" / "metadata.json").is_file():
        parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    spatial_dims = int(parser["spatial_dims"])
    summary = InferSummary(bundle=bundle_dir.name, model=str(model_path), output_dir=str(out.resolve()))
    files, failures, summary.skipped = collect_inputs(inputs, exclude)
    summary.n_files = len(files) + len(failures)
    if not files and not failures:
        raise DatasetError(f"no input image found in {', '.join(str(i) for i in inputs)}")
    if summary.skipped:
        logger.info("infer: %d files in the input folders are not images and were skipped", len(summary.skipped))
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".usseg-infer-", dir=out))
    try:
        items, staged_failures = stage_inputs(files, spatial_dims, staging, spacing, bundle_dir.name)
        failures += staged_failures
        if calipers is not None:
            match_calipers(items, calipers)
        run_cfg: dict[str, Any] = {
            "bundle_root": str(bundle_dir),
            "output_dir": str(out.resolve()),
            "dataloader#batch_size": int(batch_size or (8 if spatial_dims == 2 else 1)),
            "constrain_to_calipers": calipers is not None,
            "create_phantom": False,  # the user's own files: inference.json's initialize must not make a phantom
            **model_cfg,
            **dict(overrides or {}),
        }
        if device is not None:
            run_cfg["device"] = f"$torch.device({str(device)!r})"
            run_cfg["amp"] = str(device).startswith("cuda")
        parser.update(run_cfg)
        image_key = parser["image_key"]
        items, pre_failures = _preflight(parser.get_parsed_content("preprocessing"), items, image_key)
        failures += pre_failures
        for f in failures:
            logger.error("infer: %s: %s", f.source, f.reason)
        summary.items, summary.failures = items, failures
        if items:
            logger.info(
                "infer: %d images from %d files with bundle %s, model %s", len(items), len(files), bundle_dir.name, model_path
            )
            # a fresh parser: the preflight above instantiated the preprocessing, the run gets its own objects
            run = ConfigParser()
            run.read_config(str(config_file))
            if (bundle_dir / "configs" / "metadata.json").is_file():
                run.read_meta(str(bundle_dir / "configs" / "metadata.json"))
            run.update({**run_cfg, "datalist": [it.datalist_item(calipers is not None) for it in items]})
            run.get_parsed_content("initialize")
            evaluator = run.get_parsed_content("evaluator")
            n_batches = len(run.get_parsed_content("dataloader"))
            _attach_progress(evaluator, n_batches, len(items))
            run.get_parsed_content("run")
            if "finalize" in run:
                run.get_parsed_content("finalize")
            _keep_dicom_spacing(items, out, str(run["output_ext"]))
            summary.n_lesions, summary.n_with_lesion = _count_lesions(out / "measurements.csv")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary.seconds = time.perf_counter() - start
    atomic_write_json(out / "summary.json", summary.to_dict())
    return summary

"""3D image + label volume pairs (NIfTI, NRRD, MetaImage) to a prepared 3D dataset.

Images and labels are read with ITK (``usseg_monai.data.io.load_volume``) in ``(x, y, z)`` order and
written as ``.nii.gz`` keeping spacing (mm), origin and direction, so that MONAI's ``LoadImage`` with
``ITKReader`` gives the same arrays and affine. Labels are binarised (``> 0``) or, with
``label_value``, reduced to the chosen label value(s).

Pairing rules in the source folder (the label's extension may differ from the image's):

=============================  =================================
image                          label
=============================  =================================
``<name>_image.<ext>``         ``<name>_label.<ext>``
``<name>.<ext>``               ``<name>-label.<ext>``
``<name>.<ext>``               ``<name>_seg.<ext>``
=============================  =================================
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.data.io import DatasetError, load_volume
from usseg_monai.data.prepared import PreparedDatasetWriter, safe_item_id
from usseg_monai.data.splits import SplitOptions

__all__ = ["VOLUME_EXTENSIONS", "LABEL_SUFFIXES", "pair_volumes", "prepare_volumes"]

logger = logging.getLogger(__name__)

VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LABEL_SUFFIXES = ("_label", "-label", "_seg")


def _split_ext(name: str) -> tuple[str, str] | None:
    low = name.lower()
    for ext in VOLUME_EXTENSIONS:
        if low.endswith(ext):
            return name[: -len(ext)], name[-len(ext) :]
    return None


def pair_volumes(folder: str | os.PathLike) -> tuple[list[tuple[str, Path, Path]], list[tuple[Path, str]]]:
    """Find ``(name, image, label)`` pairs in ``folder`` (not recursive) by the pairing rules.

    Returns:
        ``(pairs, unpaired)``: pairs sorted by name; ``(file, reason)`` for volumes without a partner.

    Raises:
        DatasetError: two files claim the same role for one name (e.g. ``a.nrrd`` and ``a.nii.gz``).
    """
    folder = Path(folder)
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        parts = _split_ext(f.name) if f.is_file() else None
        if parts is None:
            continue
        base = parts[0]
        target = images
        for suf in LABEL_SUFFIXES:
            if base.endswith(suf) and len(base) > len(suf):
                base, target = base[: -len(suf)], labels
                break
        else:
            if base.endswith("_image") and len(base) > len("_image"):
                base = base[: -len("_image")]
        if base in target:
            raise DatasetError(f"two volumes claim the same role for '{base}': {target[base]} and {f}")
        target[base] = f
    pairs, unpaired = [], []
    for name in sorted(set(images) | set(labels)):
        if name in images and name in labels:
            pairs.append((name, images[name], labels[name]))
        elif name in images:
            unpaired.append((images[name], f"no label file ({name}_label / -label / _seg) beside it"))
        else:
            unpaired.append((labels[name], "label file without its image"))
    return pairs, unpaired


def _check_alignment(img_path: Path, lab_path: Path, img: np.ndarray, lab: np.ndarray, gi: dict, gl: dict) -> None:
    if img.shape != lab.shape:
        raise DatasetError(f"label {lab_path} has size {lab.shape} but image {img_path} has size {img.shape} (x, y, z)")
    if not np.allclose(gi["spacing"], gl["spacing"], rtol=1e-4, atol=1e-6):
        raise DatasetError(
            f"label {lab_path} has spacing {gl['spacing'].tolist()} mm but image {img_path} has "
            f"{gi['spacing'].tolist()} mm"
        )
    if not np.allclose(gi["direction"], gl["direction"], atol=1e-4):
        raise DatasetError(f"label {lab_path} and image {img_path} have different directions (axes orientation)")
    if not np.allclose(gi["origin"], gl["origin"], atol=1e-3 * float(np.min(gi["spacing"])) + 1e-4):
        raise DatasetError(
            f"label {lab_path} has origin {gl['origin'].tolist()} mm but image {img_path} has "
            f"{gi['origin'].tolist()} mm"
        )


def prepare_volumes(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    label_value: int | Sequence[int] | None = None,
    split: SplitOptions | None = None,
    **split_kwargs: Any,
) -> dict[str, Any]:
    """Convert 3D image/label pairs to ``.nii.gz`` with their geometry, plus datalist and summary.

    Args:
        source: folder of volume pairs (see the module docstring). Never written to.
        output_dir: output folder (empty unless ``overwrite``).
        overwrite: allow a non-empty output folder.
        label_value: keep only voxels whose label equals this value (or one of these values) as
            lesion; default: every non-zero label.
        split, **split_kwargs: split (one group per pair) and optional partition of the training set,
            see :class:`usseg_monai.data.splits.SplitOptions` (no classes here, so ``class_only`` must
            stay ``None``).

    Returns:
        The summary written to ``summary.json`` (``label_values`` lists each pair's label values).

    Raises:
        DatasetError: missing source, no pairs, an unreadable file, or image and label that differ in
            size, spacing, direction or origin (naming both files).
    """
    opts = SplitOptions.resolve(split, **split_kwargs)
    src = Path(source)
    if not src.is_dir():
        raise DatasetError(f"volume source folder not found: {src}")
    pairs, unpaired = pair_volumes(src)
    if not pairs:
        raise DatasetError(
            f"no image/label volume pairs found in {src} (expected <name>_image/<name>_label, <name>/<name>-label "
            f"or <name>/<name>_seg with extensions {', '.join(VOLUME_EXTENSIONS)})"
        )
    values = None if label_value is None else np.atleast_1d(np.asarray(label_value, dtype=np.int64))
    with PreparedDatasetWriter(
        output_dir,
        source=src,
        overwrite=overwrite,
        spatial_dims=3,
        name="volumes",
        description="3D image/label pairs converted to NIfTI with spacing, origin and direction kept",
        modality="",
    ) as writer:
        for f, why in unpaired:
            writer.skip(f, why)
        label_values: dict[str, list[int]] = {}
        for name, img_path, lab_path in pairs:
            img, gi = load_volume(img_path)
            lab, gl = load_volume(lab_path)
            if img.ndim != 3:
                raise DatasetError(f"{img_path} is {img.ndim}D, expected a 3D volume")
            _check_alignment(img_path, lab_path, img, lab, gi, gl)
            present = np.unique(lab)
            label_values[name] = [int(v) for v in present if v != 0]
            mask = np.isin(lab, values) if values is not None else lab > 0
            item_id = safe_item_id(name)
            writer.add(
                item_id,
                img,
                mask,
                case_id=item_id,
                geometry=gi,
                source_files=[img_path, lab_path],
                source_image=img_path.name,
                source_label=lab_path.name,
            )
            logger.info("volumes: %s %s spacing %s mm", item_id, img.shape, np.round(gi["spacing"], 4).tolist())
        return writer.finalize(
            split=opts,
            summary_extra={
                "label_values": label_values,
                "label_value": None if values is None else values.tolist(),
            },
        )

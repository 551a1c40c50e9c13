"""Measure lesions in a mask the way a sonographer reports them (methods.md section 0).

Per connected lesion (largest first):

==================== =====================================================================================
``lesion``           index (0 = largest)
``voxels``           voxel count
``area_mm2``         2D: voxel count x pixel area; 3D: ``volume_mm3`` instead
``long_axis_mm``     maximum Feret diameter (centre to centre of the extreme voxels)
``short_axis_mm``    longest chord perpendicular to the long axis
``third_axis_mm``    3D only: longest chord perpendicular to both
``aspect_ratio``     long / short
``width_mm``         extent across the beam, spatial axis 0 (x): ``(max - min + 1) * sx``
``depth_mm``         extent along the beam, spatial axis 1 (y): ``(max - min + 1) * sy``
``elevation_mm``     3D only: extent along axis 2 (z)
``depth_width_ratio`` depth / width (the clinical "aspect ratio" of TI-RADS / BI-RADS)
``taller_than_wide`` ``depth_mm > width_mm`` (TI-RADS: suspicious)
``centroid``         mean voxel coordinate ``(x, y[, z])``
``calipers``         the derived calipers, ``(nd, 2, nd)`` voxel coordinates (nested lists)
==================== =====================================================================================

The calipers of a lesion are derived from it with its holes filled (``scipy.ndimage.binary_fill_holes``): a
sonographer measures a rim-like lesion (or a predicted mask with a hole) across its outer boundary, not across its
wall; ``voxels`` and the area / volume count the mask as it is.

Extents cover whole voxels (a lesion ``n`` voxels across is ``n * s`` wide) whereas caliper lengths run
between voxel centres (``(n - 1) * s``); both conventions are the usual ones for each quantity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from usseg_monai.calipers.annotation import CaliperAnnotation
from usseg_monai.calipers.derive import _as_mask, _spacing, label_lesions, lesion_calipers

__all__ = ["measure_mask", "measure_calipers", "AXIS_KEYS"]

AXIS_KEYS = ("long_axis_mm", "short_axis_mm", "third_axis_mm")


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("inf")


def measure_mask(
    mask: np.ndarray,
    spacing: Sequence[float] | None = None,
    connectivity: int | None = None,
    min_voxels: int = 1,
    chord_step: float | None = None,
) -> list[dict[str, Any]]:
    """Per-lesion measurements of a binary mask (see the module docstring for the fields).

    Args:
        mask: ``(x, y[, z])`` array, lesion where ``> 0``.
        spacing: mm per voxel (``None``: pixel units, 1.0).
        connectivity: neighbourhood rank for connected lesions (default: full).
        min_voxels: ignore lesions smaller than this (speckle in a prediction).
        chord_step: chord sampling step as a fraction of the smallest spacing (default 0.5 in 2D, 1.0 in 3D).

    Returns:
        A list of JSON-serialisable dicts, largest lesion first; empty for an empty mask.
    """
    m = _as_mask(mask)
    nd = m.ndim
    sp = _spacing(spacing, nd)
    labels, boxes, sizes = label_lesions(m, connectivity)
    out: list[dict[str, Any]] = []
    for i, (box, size) in enumerate(zip(boxes, sizes)):
        if size < min_voxels:
            continue
        crop = ndimage.binary_fill_holes(labels[box] == (i + 1))
        offset = np.asarray([b.start for b in box], dtype=np.float64)
        seg = lesion_calipers(crop, sp, chord_step) + offset
        lengths = np.linalg.norm((seg[:, 1] - seg[:, 0]) * sp, axis=-1)
        extent = np.asarray([b.stop - b.start for b in box], dtype=np.float64) * sp
        centroid = np.argwhere(labels[box] == (i + 1)).mean(axis=0) + offset
        item: dict[str, Any] = {"lesion": len(out), "voxels": int(size)}
        item["area_mm2" if nd == 2 else "volume_mm3"] = float(size * np.prod(sp))
        for k in range(nd):
            item[AXIS_KEYS[k]] = float(lengths[k])
        item["aspect_ratio"] = _ratio(lengths[0], lengths[1])
        item["width_mm"] = float(extent[0])
        item["depth_mm"] = float(extent[1])
        if nd == 3:
            item["elevation_mm"] = float(extent[2])
        item["depth_width_ratio"] = _ratio(extent[1], extent[0])
        item["taller_than_wide"] = bool(extent[1] > extent[0])
        item["centroid"] = centroid.tolist()
        item["calipers"] = seg.tolist()
        out.append(item)
    return out


def measure_calipers(annotation: CaliperAnnotation) -> list[dict[str, Any]]:
    """Per-lesion lengths (mm) and aspect ratio of a caliper annotation (what a report states).

    Returns dicts with ``lesion``, ``long_axis_mm``, ``short_axis_mm`` (``third_axis_mm`` in 3D),
    ``aspect_ratio`` and ``calipers``, comparable key by key with :func:`measure_mask`.
    """
    out = []
    for i, les in enumerate(annotation.lesions):
        lengths = les.lengths_mm(annotation.spacing)
        item: dict[str, Any] = {"lesion": i}
        for k in range(min(len(lengths), 3)):
            item[AXIS_KEYS[k]] = float(lengths[k])
        item["aspect_ratio"] = _ratio(lengths[0], lengths[1]) if len(lengths) > 1 else float("nan")
        item["calipers"] = les.segments.tolist()
        out.append(item)
    return out

"""Carry a datalist item's ``spacing`` (mm) into a loaded MetaTensor's affine.

PNG and JPEG files have no physical spacing: MONAI loads them with an identity affine (``pixdim`` 1.0).
Where the datalist knows the spacing (DICOM ultrasound regions, phantom, volumes) its ``spacing`` field,
a list in MONAI index order ``(sx, sy[, sz])`` mm (``docs/conventions.md``), is written into the affine
here, so that every later transform (calipers, measurements, SaveImage) sees physical units.

The affine's spatial columns are rescaled to the new spacing, keeping their directions and the origin;
``original_affine`` (used by SaveImage/Invertd to restore the file's geometry) is rescaled alike. This is a
metadata correction, not a resampling: the array is untouched and nothing is pushed to the transform stack.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = ["ApplySpacing", "ApplySpacingd", "ApplySpacingD", "ApplySpacingDict", "set_affine_spacing"]


def set_affine_spacing(affine: torch.Tensor | np.ndarray, spacing: Sequence[float]) -> torch.Tensor:
    """Return ``affine`` with its first ``len(spacing)`` columns rescaled to norms ``spacing`` (mm).

    A column of zero norm (degenerate affine) is replaced by the matching axis direction.
    """
    aff = torch.as_tensor(affine, dtype=torch.float64).clone()
    sp = torch.as_tensor(np.asarray(spacing, dtype=np.float64))
    nd = len(sp)
    if aff.shape[0] - 1 < nd:
        raise ValueError(f"affine of shape {tuple(aff.shape)} cannot hold {nd} spatial dimensions")
    for j in range(nd):
        col = aff[:-1, j]
        norm = torch.linalg.norm(col)
        if norm <= 0:
            col = torch.zeros_like(col)
            col[j] = 1.0
            norm = torch.tensor(1.0, dtype=torch.float64)
        aff[:-1, j] = col / norm * sp[j]
    return aff


def _check_spacing(spacing: Any, nd: int, where: str) -> list[float]:
    try:
        sp = [float(s) for s in spacing]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: 'spacing' must be a list of numbers (mm), got {spacing!r}") from e
    if len(sp) != nd:
        raise ValueError(f"{where}: 'spacing' {sp} has {len(sp)} values but the image has {nd} spatial dimensions")
    if not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"{where}: 'spacing' {sp} must be positive finite numbers (mm)")
    return sp


class ApplySpacing(Transform):
    """Set a channel-first MetaTensor's spacing (``pixdim``) to ``spacing`` mm; ``None`` leaves it unchanged.

    Args:
        spacing: default spacing used when the call gives none.
    """

    def __init__(self, spacing: Sequence[float] | None = None) -> None:
        self.spacing = spacing

    def __call__(self, img: torch.Tensor, spacing: Sequence[float] | None = None, where: str = "image") -> MetaTensor:
        spacing = self.spacing if spacing is None else spacing
        out = img if isinstance(img, MetaTensor) else MetaTensor(img)
        if spacing is None:
            return out
        nd = out.ndim - 1
        sp = _check_spacing(spacing, nd, where)
        out = out.clone() if out is img else out
        out.affine = set_affine_spacing(out.affine, sp)
        # the affine setter re-derives spatial_ndim from metadata (a PNG loaded without channel reads as 3D
        # from a 4x4 affine); this transform works on channel-first data, so fix it to nd
        out.spatial_ndim = nd
        if "original_affine" in out.meta and out.meta["original_affine"] is not None:
            orig = out.meta["original_affine"]
            new = set_affine_spacing(orig, sp)
            out.meta["original_affine"] = new.numpy() if isinstance(orig, np.ndarray) else new
        return out


class ApplySpacingd(MapTransform):
    """Dictionary form of :class:`ApplySpacing`: use the item's ``spacing_key`` field where present.

    Args:
        keys: image-like keys to update (e.g. ``["image", "label"]``).
        spacing_key: item field holding the spacing list (mm, ``(x, y[, z])`` order).
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, spacing_key: str = "spacing", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spacing_key = spacing_key
        self.op = ApplySpacing()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        spacing = d.get(self.spacing_key)
        if isinstance(spacing, torch.Tensor):
            spacing = spacing.tolist()
        for key in self.key_iterator(d):
            d[key] = self.op(d[key], spacing, where=f"item field {self.spacing_key!r} for key {key!r}")
        return d


ApplySpacingD = ApplySpacingDict = ApplySpacingd

"""What the inference output writers read from a prediction: its file name, stem, spacing and lesion mask.

Shared by :mod:`usseg_monai.transforms.overlay` and :mod:`usseg_monai.transforms.measurements`. Arrays are
``(x, y[, z])``; spacing is in mm from a ``MetaTensor``'s affine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing

from usseg_monai.calipers.measure import measure_mask

__all__ = ["PLAIN_IMAGE_SUFFIXES", "image_stem", "to_numpy", "spatial_mask", "spacing_of", "filename_of", "measure_lesions"]


#: 2D image formats that carry no pixel spacing: an identity affine on such a file means "unknown", not 1 mm
PLAIN_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".mha", ".mhd")


def image_stem(filename: str | os.PathLike) -> str:
    """File name without folder and image suffix (``.nii.gz`` kept whole): ``/a/b/case_1.nii.gz`` -> ``case_1``."""
    name = Path(str(filename)).name
    for s in _SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return Path(name).stem


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def spatial_mask(pred: Any, spatial_dims: int | None = None) -> np.ndarray:
    """Binary ``(x, y[, z])`` lesion mask from a label map with or without a channel, or a 2-channel one-hot."""
    arr = to_numpy(pred)
    nd = spatial_dims
    if nd is None:
        nd = arr.ndim - 1 if arr.ndim in (3, 4) and arr.shape[0] in (1, 2) else arr.ndim
    if arr.ndim == nd + 1:
        if arr.shape[0] == 1:
            arr = arr[0]
        elif arr.shape[0] == 2:
            return np.asarray(arr[1] > 0.5)
        else:
            raise ValueError(f"prediction has {arr.shape[0]} channels; expected a label map, one channel or two (one-hot)")
    if arr.ndim not in (2, 3):
        raise ValueError(f"prediction must be a 2D or 3D mask, got shape {arr.shape}")
    return np.asarray(arr > 0)


def spacing_of(*tensors: Any, nd: int) -> list[float] | None:
    """Spacing (mm, ``(x, y[, z])``) from the first MetaTensor's affine, or ``None``."""
    for t in tensors:
        if isinstance(t, MetaTensor):
            sp = affine_to_spacing(t.affine, r=nd)
            return [float(s) for s in to_numpy(sp)]
    return None


def filename_of(*tensors: Any, meta: Mapping | None = None) -> str | None:
    for t in tensors:
        if isinstance(t, MetaTensor) and t.meta.get("filename_or_obj"):
            return str(t.meta["filename_or_obj"])
    if meta and meta.get("filename_or_obj"):
        return str(meta["filename_or_obj"])
    return None


def measure_lesions(mask: np.ndarray, spacing: Sequence[float] | None, min_voxels: int) -> list[dict[str, Any]]:
    return measure_mask(mask, spacing=spacing, min_voxels=min_voxels)

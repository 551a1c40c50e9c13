"""Per-case segmentation metrics in physical units, computed with MONAI's metric functions.

One call gives every number a benchmark reports for one binary lesion prediction: Dice, IoU, the 95th
percentile Hausdorff distance and the average symmetric surface distance (both in mm, from the image
spacing), and the confusion-matrix rates recall (sensitivity), precision, specificity and accuracy.
Nothing is re-implemented: the values come from ``monai.metrics.compute_dice``, ``compute_iou``,
``compute_hausdorff_distance(percentile=95)``, ``compute_average_surface_distance(symmetric=True)``,
``get_confusion_matrix`` and ``compute_confusion_matrix_metric``.

Conventions for empty masks (MONAI's choice with ``ignore_empty=False``): Dice and IoU are 1 when both
prediction and ground truth are empty and 0 when only one is; distances are ``nan`` when either mask is
empty (no surface to measure), and summaries leave them out (:func:`usseg_monai.metrics.bootstrap_ci`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    get_confusion_matrix,
)

__all__ = ["SEGMENTATION_METRICS", "case_metrics", "as_binary_mask"]

SEGMENTATION_METRICS = ("dice", "iou", "hd95_mm", "asd_mm", "recall", "precision", "specificity", "accuracy")


def as_binary_mask(mask: Any, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a boolean ``(x, y[, z])`` array.

    Accepts a spatial array, a one-channel ``[1, x, y(, z)]`` array, or a two-channel one-hot / probability
    ``[2, x, y(, z)]`` array (the lesion channel 1 is taken); values are binarised with ``> 0`` (one channel)
    or ``> 0.5`` (two channels).

    Raises:
        ValueError: more than two channels or fewer than two spatial dimensions.
    """
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.ndim >= 3 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim >= 3 and arr.shape[0] == 2 and arr.ndim in (3, 4):
        return np.asarray(arr[1] > 0.5)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a 2D/3D mask, [1, ...] or [2, ...] channel-first array, got shape {arr.shape}")
    return np.asarray(arr > 0)


def _onehot(mask: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(mask.astype(np.float32))
    return torch.stack([1.0 - t, t])[None]  # [B=1, C=2, *spatial]


def case_metrics(pred: Any, label: Any, spacing: Sequence[float] | None = None) -> dict[str, float]:
    """Every benchmark metric for one case.

    Args:
        pred: predicted lesion mask (see :func:`as_binary_mask` for accepted shapes).
        label: ground-truth lesion mask of the same spatial shape.
        spacing: millimetres per pixel (voxel) in ``(x, y[, z])`` order; ``None`` means 1 (pixel units).

    Returns:
        ``{"dice", "iou", "hd95_mm", "asd_mm", "recall", "precision", "specificity", "accuracy"}`` as floats
        (``nan`` where undefined, e.g. distances with an empty mask, precision with an empty prediction).

    Raises:
        ValueError: shapes differ, or ``spacing`` has the wrong length.
    """
    p = as_binary_mask(pred, "pred")
    y = as_binary_mask(label, "label")
    if p.shape != y.shape:
        raise ValueError(f"case_metrics: prediction shape {p.shape} differs from label shape {y.shape}")
    sp = [1.0] * p.ndim if spacing is None else [float(s) for s in spacing]
    if len(sp) != p.ndim:
        raise ValueError(f"case_metrics: spacing {sp} does not match a {p.ndim}D mask")
    yp, yy = _onehot(p), _onehot(y)
    out: dict[str, float] = {
        "dice": float(compute_dice(yp, yy, include_background=False, ignore_empty=False)[0, 0]),
        "iou": float(compute_iou(yp, yy, include_background=False, ignore_empty=False)[0, 0]),
    }
    if p.any() and y.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["hd95_mm"] = float(compute_hausdorff_distance(yp, yy, percentile=95, spacing=sp)[0, 0])
            out["asd_mm"] = float(compute_average_surface_distance(yp, yy, symmetric=True, spacing=sp)[0, 0])
    else:
        out["hd95_mm"] = float("nan")
        out["asd_mm"] = float("nan")
    cm = get_confusion_matrix(yp, yy, include_background=False)
    for key, name in (("recall", "sensitivity"), ("precision", "precision"), ("specificity", "specificity"), ("accuracy", "accuracy")):
        out[key] = float(compute_confusion_matrix_metric(name, cm)[0, 0])
    return out

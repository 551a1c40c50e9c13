"""Caliper measurement error: how far the model's report is from the report of the ground-truth mask.

Both masks are measured with the same geometry (:func:`usseg_monai.calipers.measure.measure_mask`: long axis =
maximum Feret diameter, short axis = longest perpendicular chord, depth/width extents, TI-RADS
taller-than-wide = depth > width; methods.md section 0), and the **largest** lesion of each mask is
compared, as a report states the index lesion. Per case: signed and absolute errors of the long axis, short
axis (mm) and aspect ratio (long / short), and whether the taller-than-wide flags agree. A case whose
prediction (or ground truth) holds no lesion has no measurement: it is counted in ``n_missed`` (or
``n_no_truth``) and left out of the errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from usseg_monai.calipers.measure import measure_mask
from usseg_monai.metrics.bootstrap import bootstrap_ci
from usseg_monai.metrics.segmentation import as_binary_mask

__all__ = ["MEASUREMENT_ERROR_KEYS", "case_measurement_error", "measurement_error_summary"]

MEASUREMENT_ERROR_KEYS = ("long_axis_abs_err_mm", "short_axis_abs_err_mm", "aspect_ratio_abs_err", "taller_than_wide_agree")


def case_measurement_error(pred: Any, label: Any, spacing: Sequence[float] | None = None, min_voxels: int = 1) -> dict[str, Any]:
    """Measurement errors of one case (largest lesion of prediction vs. largest lesion of ground truth).

    Args:
        pred, label: lesion masks (see :func:`usseg_monai.metrics.as_binary_mask`), same spatial shape.
        spacing: mm per voxel ``(x, y[, z])``; ``None`` means pixel units.
        min_voxels: lesions smaller than this are ignored in both masks.

    Returns:
        ``{"status": "ok" | "missed" | "no_truth" | "both_empty", "pred": {...} | None, "truth": {...} | None}``
        plus, when ``status == "ok"``: ``long_axis_err_mm``, ``short_axis_err_mm``, ``aspect_ratio_err``
        (prediction minus truth), their absolute values (:data:`MEASUREMENT_ERROR_KEYS`) and
        ``taller_than_wide_agree`` (1.0 or 0.0).
    """
    p = as_binary_mask(pred, "pred")
    y = as_binary_mask(label, "label")
    if p.shape != y.shape:
        raise ValueError(f"case_measurement_error: prediction shape {p.shape} differs from label shape {y.shape}")
    mp = measure_mask(p, spacing=spacing, min_voxels=min_voxels)
    my = measure_mask(y, spacing=spacing, min_voxels=min_voxels)
    keep = ("long_axis_mm", "short_axis_mm", "aspect_ratio", "depth_mm", "width_mm", "taller_than_wide")
    out: dict[str, Any] = {
        "pred": {k: mp[0][k] for k in keep} if mp else None,
        "truth": {k: my[0][k] for k in keep} if my else None,
    }
    if not my:
        out["status"] = "both_empty" if not mp else "no_truth"
        return out
    if not mp:
        out["status"] = "missed"
        return out
    out["status"] = "ok"
    a, b = mp[0], my[0]
    for name, key in (("long_axis", "long_axis_mm"), ("short_axis", "short_axis_mm")):
        err = float(a[key] - b[key])
        out[f"{name}_err_mm"] = err
        out[f"{name}_abs_err_mm"] = abs(err)
    err = float(a["aspect_ratio"] - b["aspect_ratio"])
    out["aspect_ratio_err"] = err
    out["aspect_ratio_abs_err"] = abs(err)
    out["taller_than_wide_agree"] = float(bool(a["taller_than_wide"]) == bool(b["taller_than_wide"]))
    return out


def measurement_error_summary(
    cases: Sequence[dict[str, Any]], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Mean absolute errors (with bootstrap CIs) and taller-than-wide agreement over cases.

    Args:
        cases: outputs of :func:`case_measurement_error`.
        n_resamples, confidence, seed: see :func:`usseg_monai.metrics.bootstrap_ci`.

    Returns:
        ``{"long_axis_mae_mm", "short_axis_mae_mm", "aspect_ratio_mae", "taller_than_wide_agreement"}`` (each a
        :func:`bootstrap_ci` dict over the measured cases), ``"n_measured"``, ``"n_missed"`` (lesion in the
        truth, none predicted), ``"n_no_truth"`` (lesion predicted on an empty truth), ``"n_both_empty"``.
    """
    ok = [c for c in cases if c.get("status") == "ok"]
    names = {
        "long_axis_mae_mm": "long_axis_abs_err_mm",
        "short_axis_mae_mm": "short_axis_abs_err_mm",
        "aspect_ratio_mae": "aspect_ratio_abs_err",
        "taller_than_wide_agreement": "taller_than_wide_agree",
    }
    out: dict[str, Any] = {
        name: bootstrap_ci(np.asarray([c[key] for c in ok], dtype=np.float64), n_resamples, confidence, seed)
        for name, key in names.items()
    }
    out["n_measured"] = len(ok)
    for status in ("missed", "no_truth", "both_empty"):
        out[f"n_{status}"] = sum(c.get("status") == status for c in cases)
    return out

"""How much of a mask the caliper pseudo-labels recover: the ceiling of caliper-only supervision.

For a reference mask: derive its calipers (:func:`calipers_from_mask`), rasterise the pseudo-labels
(:func:`rasterize_calipers`) and compare them with the mask. A model trained on calipers alone can at best
reproduce the pseudo-labels, so these figures bound what caliper supervision can reach on a dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from usseg_monai.calipers.derive import calipers_from_mask
from usseg_monai.calipers.measure import measure_mask
from usseg_monai.calipers.rasterize import CaliperFallbackWarning, rasterize_calipers

__all__ = ["caliper_ceiling", "dice"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean arrays (1.0 when both are empty)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def caliper_ceiling(
    mask: np.ndarray, spacing: Sequence[float] | None = None, warn: bool = False
) -> dict[str, Any] | None:
    """Compare the pseudo-labels of a mask's own calipers with the mask.

    Returns ``None`` for an empty mask, else a dict with

    - ``dice_radical``, ``dice_conservative``: Dice with the mask;
    - ``precision_conservative``: fraction of the conservative label inside the mask;
    - ``recall_radical``, ``precision_radical``: fraction of the mask inside the radical label and of the
      radical label inside the mask;
    - ``long_abs_err_mm``, ``short_abs_err_mm``, ``aspect_abs_err``: absolute difference between measuring the
      radical label (what a perfect caliper-trained model would output) and the mask's calipers, largest
      lesion (``nan`` when the radical label's lesions merged into a different number of lesions);
    - ``lesions``, ``fallback``: number of lesions, and how many needed the fallback ellipse.
    """
    m = np.asarray(mask) > 0
    if not m.any():
        return None
    sp = tuple(np.ones(m.ndim)) if spacing is None else tuple(float(s) for s in spacing)
    ann = calipers_from_mask(m, sp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CaliperFallbackWarning)
        labels = rasterize_calipers(ann, warn=True)
    n_fallback = sum(issubclass(w.category, CaliperFallbackWarning) for w in caught)
    if warn:
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=2)
    rad, cons = labels["radical_label"], labels["conservative_label"]
    out: dict[str, Any] = {
        "dice_radical": dice(rad, m),
        "dice_conservative": dice(cons, m),
        "precision_conservative": float((cons & m).sum() / max(cons.sum(), 1)),
        "recall_radical": float((rad & m).sum() / m.sum()),
        "precision_radical": float((rad & m).sum() / max(rad.sum(), 1)),
        "lesions": len(ann.lesions),
        "fallback": n_fallback,
    }
    meas = measure_mask(rad, sp)
    ref = ann.lesions[0].lengths_mm(sp)
    if len(meas) == len(ann.lesions):
        out["long_abs_err_mm"] = abs(meas[0]["long_axis_mm"] - float(ref[0]))
        out["short_abs_err_mm"] = abs(meas[0]["short_axis_mm"] - float(ref[1]))
        out["aspect_abs_err"] = abs(meas[0]["aspect_ratio"] - float(ref[0] / ref[1]))
    else:
        out["long_abs_err_mm"] = out["short_abs_err_mm"] = out["aspect_abs_err"] = float("nan")
    return out

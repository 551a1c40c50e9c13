"""What each paper claims, as the results suite's protocols, rows and targets.

:data:`PROTOCOLS` are the three annotation settings (calipers: CRBNet; class labels: SemiSeg-CAW; few masks:
CRII-Net). :data:`CLAIMS` names, per protocol, the method and the rows it is compared with in the report's "at a
glance" table; :data:`TARGETS` the #16 targets (a margin on the paired per-image Dice difference, decided by its
95% bootstrap CI: :func:`target_verdict`). :func:`paired_dice_difference` is that difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from usseg_monai.metrics import bootstrap_ci

__all__ = [
    "PROTOCOLS", "CRBNET_BRANCHES", "BACKBONES", "CLAIMS", "TARGETS", "protocol_key", "paired_dice_difference",
    "target_verdict",
]


PROTOCOLS = ("calipers", "class_labels", "few_masks")


#: CRBNet's extra test passes: each branch alone (the reference code's test script scores one branch)
CRBNET_BRANCHES: dict[str, dict[str, str]] = {
    "radical": {"inference_mode": "radical"},
    "conservative": {"inference_mode": "conservative"},
}


BACKBONES = (("malunet", "MALUNet"), ("unext", "UNeXt"))


#: per protocol: the paper's claim and, for each method it is about, the rows it is compared with (method names as
#: :func:`plan_suite` gives them); the report's "at a glance" table tests each pair on the same test images
CLAIMS: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {
    "calipers": (
        "CRBNet from calipers alone reaches full supervision and beats a UNet on either pseudo-label (Zhao et al. 2024)",
        [("CRBNet (calipers only)", ["UNet, full masks", "UNet, radical labels", "UNet, conservative labels"])],
    ),
    "class_labels": (
        "SemiSeg-CAW beats its backbone on the reduced masks and reaches it on all masks (Barzegar & Khan 2025)",
        [(f"SemiSeg-CAW ({name})", [f"{name}, reduced masks", f"{name}, full masks"]) for _, name in BACKBONES],
    ),
    "few_masks": (
        "CRII-Net beats semi-supervised baselines with few masks (+7.49% Dice at 4%, Du et al. 2023)",
        [("CRII-Net", ["labeled only", "mean teacher", "cross pseudo supervision"])],
    ),
}


#: per protocol, the targets of #16 the report tests (paired per-image Dice difference, method minus the row(s) it
#: is compared with): ``(method, rows, margin, strict)``; with several rows the best of them (highest mean Dice in
#: the table) is the one compared with. ``strict``: the difference must exceed the margin (else reach it).
TARGETS: dict[str, list[tuple[str, list[str], float, bool]]] = {
    "calipers": [
        ("CRBNet (calipers only)", ["UNet, full masks"], 0.0, False),
        ("CRBNet (calipers only)", ["UNet, radical labels"], 0.0, True),
    ],
    "class_labels": [(f"SemiSeg-CAW ({name})", [f"{name}, reduced masks"], 0.02, False) for _, name in BACKBONES],
    "few_masks": [
        ("CRII-Net", ["mean teacher", "cross pseudo supervision"], 0.07, False),
        ("CRII-Net", ["labeled only"], 0.0, True),
    ],
}


def protocol_key(protocol: str) -> str:
    """The protocol a table title belongs to: ``"class_labels (100 class-only)"`` -> ``"class_labels"``."""
    return protocol.split(" (", 1)[0]


def paired_dice_difference(run: Mapping[str, Any], reference: Mapping[str, Any], seed: int = 0) -> dict[str, Any] | None:
    """Paired percentile bootstrap of the per-image Dice difference ``run - reference`` over the test images both
    scored (finite values); ``None`` when they share none."""
    ref = {c["image"]: c.get("dice") for c in reference.get("cases", []) if "image" in c}
    diffs = []
    for c in run.get("cases", []):
        a, b = c.get("dice"), ref.get(c.get("image"))
        if a is not None and b is not None and math.isfinite(float(a)) and math.isfinite(float(b)):
            diffs.append(float(a) - float(b))
    if not diffs:
        return None
    return bootstrap_ci(diffs, n_resamples=1000, seed=seed)


def target_verdict(diff: Mapping[str, Any], margin: float, strict: bool) -> str:
    """``met`` where the whole 95% CI of the paired difference is at or above ``margin`` (above, if ``strict``),
    ``missed`` where it is all below, ``not decided`` where it straddles the margin."""
    low, high = float(diff["ci_low"]), float(diff["ci_high"])
    if low > margin or (not strict and low >= margin):
        return "met"
    if high < margin or (strict and high <= margin):
        return "missed"
    return "not decided"

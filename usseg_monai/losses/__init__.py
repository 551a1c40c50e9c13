"""Losses of the project's methods.

- :mod:`usseg_monai.losses.crbnet`: CRBNet (CRBS, CAP, IDMPS, their schedules and the total), re-exported here.

Other methods' losses live in their own submodules and are imported from there (importing this package never
depends on them): ``usseg_monai.losses.semiseg`` (SemiSeg-CAW), ``usseg_monai.losses.ranked`` and
``usseg_monai.losses.consistency`` (CRII-Net).
"""

from __future__ import annotations

from .crbnet import (
    CAP_PROJECTIONS,
    CAPLoss,
    CRBNetLoss,
    CRBSLoss,
    IDMPSLoss,
    cap_active,
    estimate_caliper_frame,
    idmps_weight,
    soft_dice_loss,
)

__all__ = [
    "CAP_PROJECTIONS",
    "CAPLoss",
    "CRBNetLoss",
    "CRBSLoss",
    "IDMPSLoss",
    "cap_active",
    "estimate_caliper_frame",
    "idmps_weight",
    "soft_dice_loss",
]

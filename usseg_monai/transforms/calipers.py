"""MONAI transforms over :mod:`usseg_monai.calipers`: array forms ``Foo`` and dictionary forms ``Food``.

Defined in :mod:`usseg_monai.transforms.caliper_annotations` (read, derive, jitter, resample) and
:mod:`usseg_monai.transforms.caliper_masks` (pseudo-labels, constraint, measurement); gathered here under the
names the bundles' configs use (``usseg_monai.transforms.calipers.CaliperPseudoLabelsd``, ...).

They take channel-first tensors ``[C, x, y(, z)]`` (MetaTensors), 2D and 3D alike, and read the spacing
(mm) from the image metadata (``MetaTensor.pixdim``); use :class:`~usseg_monai.transforms.ApplySpacingd`
first for PNGs whose spacing is in the datalist. Typical training chain for caliper supervision::

    LoadImaged(["image"]), EnsureChannelFirstd(["image"]), ApplySpacingd(["image"]),
    LoadCalipersd("calipers"),                      # or, for a public dataset with masks:
    #   LoadImaged("label"), EnsureChannelFirstd("label"), ApplySpacingd("label"), CalipersFromMaskd("label"),
    CaliperPseudoLabelsd("calipers", ref_key="image"),  # -> conservative_label, radical_label, caliper_axes
    DeleteItemsd("calipers"),                       # the annotation object does not collate into batches
    RandFlipd / RandRotate90d / RandAffined(keys=["image", "conservative_label", "radical_label", "caliper_axes"])

and at inference ``MeasureLesiond("pred")`` writes ``pred_measurements``, a list of per-lesion dicts
(:func:`usseg_monai.calipers.measure_mask`).
"""

from __future__ import annotations

from usseg_monai.transforms.caliper_annotations import (
    CalipersFromMask,
    CalipersFromMaskD,
    CalipersFromMaskd,
    CalipersFromMaskDict,
    CalipersFromPoints,
    CalipersFromPointsD,
    CalipersFromPointsd,
    CalipersFromPointsDict,
    image_spacing,
    LoadCalipers,
    LoadCalipersD,
    LoadCalipersd,
    LoadCalipersDict,
    RandCaliperJitter,
    RandCaliperJitterD,
    RandCaliperJitterd,
    RandCaliperJitterDict,
    resample_calipers,
    ResampleCalipers,
    ResampleCalipersD,
    ResampleCalipersd,
    ResampleCalipersDict,
    spatial_mask,
)
from usseg_monai.transforms.caliper_masks import (
    CaliperPseudoLabels,
    CaliperPseudoLabelsD,
    CaliperPseudoLabelsd,
    CaliperPseudoLabelsDict,
    ConstrainToCalipers,
    ConstrainToCalipersD,
    ConstrainToCalipersd,
    ConstrainToCalipersDict,
    MeasureLesion,
    MeasureLesionD,
    MeasureLesiond,
    MeasureLesionDict,
)

__all__ = [
    "image_spacing",
    "spatial_mask",
    "LoadCalipers",
    "LoadCalipersd",
    "CalipersFromMask",
    "CalipersFromMaskd",
    "RandCaliperJitter",
    "RandCaliperJitterd",
    "CalipersFromPoints",
    "CalipersFromPointsd",
    "resample_calipers",
    "ResampleCalipers",
    "ResampleCalipersd",
    "LoadCalipersD",
    "LoadCalipersDict",
    "CalipersFromMaskD",
    "CalipersFromMaskDict",
    "RandCaliperJitterD",
    "RandCaliperJitterDict",
    "CalipersFromPointsD",
    "CalipersFromPointsDict",
    "ResampleCalipersD",
    "ResampleCalipersDict",
    "CaliperPseudoLabels",
    "CaliperPseudoLabelsd",
    "MeasureLesion",
    "MeasureLesiond",
    "ConstrainToCalipers",
    "ConstrainToCalipersd",
    "CaliperPseudoLabelsD",
    "CaliperPseudoLabelsDict",
    "MeasureLesionD",
    "MeasureLesionDict",
    "ConstrainToCalipersD",
    "ConstrainToCalipersDict",
]

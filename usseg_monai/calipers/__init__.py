"""Caliper geometry (pure numpy/scipy, 2D and 3D): annotations and their JSON form, calipers derived from
masks, the conservative / radical / axis pseudo-labels, and lesion measurements. See docs/calipers.md."""

from usseg_monai.calipers.annotation import (
    CALIPER_FORMAT,
    CALIPER_VERSION,
    DEFAULT_ANGLE_TOLERANCE,
    CaliperAnnotation,
    CaliperLesion,
    calipers_from_points,
    load_calipers,
    save_calipers,
)
from usseg_monai.calipers.ceiling import caliper_ceiling, dice
from usseg_monai.calipers.derive import (
    calipers_from_mask,
    jitter_calipers,
    label_lesions,
    lesion_calipers,
    longest_chord,
    max_feret,
)
from usseg_monai.calipers.measure import AXIS_KEYS, measure_calipers, measure_mask
from usseg_monai.calipers.rasterize import (
    LABEL_NAMES,
    CaliperFallbackWarning,
    caliper_frame,
    radical_ellipsoid,
    rasterize_calipers,
    rasterize_lesion,
)

__all__ = [
    "CALIPER_FORMAT",
    "CALIPER_VERSION",
    "DEFAULT_ANGLE_TOLERANCE",
    "CaliperAnnotation",
    "CaliperLesion",
    "calipers_from_points",
    "load_calipers",
    "save_calipers",
    "caliper_ceiling",
    "dice",
    "calipers_from_mask",
    "jitter_calipers",
    "label_lesions",
    "lesion_calipers",
    "longest_chord",
    "max_feret",
    "AXIS_KEYS",
    "measure_calipers",
    "measure_mask",
    "LABEL_NAMES",
    "CaliperFallbackWarning",
    "caliper_frame",
    "radical_ellipsoid",
    "rasterize_calipers",
    "rasterize_lesion",
]

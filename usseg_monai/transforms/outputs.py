"""Inference outputs a sonographer reads: an overlay PNG and a measurements CSV (the names the bundles' configs use).

The writers live in :mod:`usseg_monai.transforms.overlay` and :mod:`usseg_monai.transforms.measurements`, what they
read from a prediction in :mod:`usseg_monai.transforms.output_meta`; this module gathers them under the names the
bundles' ``inference.json`` files give (``usseg_monai.transforms.outputs.SaveOverlayd``, ``SaveMeasurementsd``).

Both are MONAI transforms for a bundle's inference postprocessing, placed after ``Invertd`` so that the
prediction is on the input image's own grid (original resolution):

- :class:`SaveOverlay` / :class:`SaveOverlayd`: one RGB PNG per image: the grayscale input, the predicted
  lesion contour and the measured calipers (long and short axis segments from
  :func:`usseg_monai.calipers.measure.measure_mask`). 3D inputs show the axial slice (along z, spatial
  axis 2) with the largest predicted lesion area.
- :class:`MeasurementsWriter` + :class:`SaveMeasurementsd`: a CSV with one row per lesion per image (long /
  short axis, aspect ratio, depth, width in mm, taller-than-wide, area mm^2 or volume mm^3); an image
  without lesion gets one row with ``lesion_found`` false. The whole CSV is rewritten atomically after each
  image, so it is complete and valid at any moment, whether a ``SupervisedEvaluator`` runs many images or
  MONAI Label runs one.

Axis order (``docs/conventions.md``): arrays are ``(x, y[, z])``, caliper endpoints ``[x, y(, z)]`` voxel
coordinates. PIL draws in ``(column, row)`` = ``(x, y)`` coordinates as well, so endpoints are drawn as they
are, and the array is transposed to the PNG's ``(row, column)`` layout only when the image is built, which
makes the PNG look like the input file. Depth (the beam) is spatial axis 1 (image rows).
"""

from usseg_monai.transforms.measurements import (
    MEASUREMENT_COLUMNS,
    MeasurementsWriter,
    SaveMeasurementsd,
    SaveMeasurementsD,
    SaveMeasurementsDict,
)
from usseg_monai.transforms.output_meta import image_stem
from usseg_monai.transforms.overlay import (
    CONTOUR_COLOR,
    LONG_AXIS_COLOR,
    SHORT_AXIS_COLOR,
    SaveOverlay,
    SaveOverlayd,
    SaveOverlayD,
    SaveOverlayDict,
    largest_lesion_slice,
    overlay_image,
)

__all__ = [
    "CONTOUR_COLOR",
    "LONG_AXIS_COLOR",
    "SHORT_AXIS_COLOR",
    "MEASUREMENT_COLUMNS",
    "SaveOverlay",
    "SaveOverlayd",
    "SaveOverlayD",
    "SaveOverlayDict",
    "MeasurementsWriter",
    "SaveMeasurementsd",
    "SaveMeasurementsD",
    "SaveMeasurementsDict",
    "overlay_image",
    "largest_lesion_slice",
    "image_stem",
]

"""The measurements CSV of an inference run: one row per lesion per image.

:class:`MeasurementsWriter` + :class:`SaveMeasurementsd` write long / short axis, aspect ratio, depth, width in
mm, taller-than-wide, area mm^2 or volume mm^3 (an image without lesion gets one row with ``lesion_found`` false).
The whole CSV is rewritten atomically after each image, so it is complete and valid at any moment, whether a
``SupervisedEvaluator`` runs many images or MONAI Label runs one. Depth (the beam) is spatial axis 1 (image rows).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

from usseg_monai.data.io import atomic_write_text
from usseg_monai.transforms.output_meta import (
    PLAIN_IMAGE_SUFFIXES,
    filename_of,
    measure_lesions,
    spacing_of,
    spatial_mask,
    to_numpy,
)

logger = logging.getLogger(__name__)

__all__ = ["MEASUREMENT_COLUMNS", "MeasurementsWriter", "SaveMeasurementsd", "SaveMeasurementsD", "SaveMeasurementsDict"]


MEASUREMENT_COLUMNS = (
    "image",
    "lesion_index",
    "lesion_found",
    "long_axis_mm",
    "short_axis_mm",
    "third_axis_mm",
    "aspect_ratio",
    "depth_mm",
    "width_mm",
    "depth_width_ratio",
    "taller_than_wide",
    "area_mm2",
    "volume_mm3",
    "voxels",
    "spacing_mm",
    "unit",
)


class MeasurementsWriter:
    """Collect per-lesion measurement rows and keep ``path`` rewritten whole and atomically.

    Rows are keyed by image: measuring the same image again replaces its rows. ``add`` returns the rows
    written for the image. Used by :class:`SaveMeasurementsd`; usable directly from a script or handler.

    Args:
        path: the CSV file. An existing file is replaced by this run's rows (not appended to).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._said_pixels = False

    @staticmethod
    def rows_for(image: str, measurements: Sequence[Mapping[str, Any]], spacing: Sequence[float] | None) -> list[dict[str, Any]]:
        """CSV rows of one image: one per lesion, or one row with ``lesion_found`` false when there is none.

        ``unit`` is ``mm`` where ``spacing`` is known, else ``px``: then the ``*_mm`` columns hold pixels (``*_mm2``
        / ``*_mm3`` pixel areas / volumes) and ``spacing_mm`` says ``none (pixel units)``."""
        sp = "x".join(f"{float(s):g}" for s in spacing) if spacing is not None else "none (pixel units)"
        unit = "mm" if spacing is not None else "px"
        if not measurements:
            row = {c: "" for c in MEASUREMENT_COLUMNS}
            row.update(image=image, lesion_index="", lesion_found=False, spacing_mm=sp, unit=unit)
            return [row]
        rows = []
        for i, m in enumerate(measurements):
            row = {c: "" for c in MEASUREMENT_COLUMNS}
            for c in MEASUREMENT_COLUMNS:
                if c in m:
                    v = m[c]
                    row[c] = f"{v:.4f}" if isinstance(v, float) else v
            row.update(image=image, lesion_index=i, lesion_found=True, spacing_mm=sp, unit=unit)
            rows.append(row)
        return rows

    def add(
        self, image: str, measurements: Sequence[Mapping[str, Any]], spacing: Sequence[float] | None = None
    ) -> list[dict[str, Any]]:
        """Record the measurements of ``image`` (a path; its file name goes into the CSV) and rewrite the CSV."""
        rows = self.rows_for(Path(str(image)).name, measurements, spacing)
        if spacing is None and not self._said_pixels:
            logger.info(
                "%s: %s has no known pixel spacing: its lengths are in pixels (unit column 'px'); give the datalist "
                "item a 'spacing' (mm), or `usseg infer --spacing SX SY`, to measure in millimetres", self.path.name, Path(str(image)).name,
            )
            self._said_pixels = True
        self._rows[str(image)] = rows
        self.write()
        return rows

    def write(self) -> Path:
        """Rewrite the CSV atomically with every row collected so far (header only if none)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(MEASUREMENT_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for rows in self._rows.values():
            writer.writerows(rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(self.path, buf.getvalue())

    def reset(self) -> None:
        """Forget collected rows (the file is rewritten at the next ``add``)."""
        self._rows.clear()


class SaveMeasurementsd(MapTransform):
    """Measure the predicted lesions of each image and keep one CSV of all images up to date.

    Place after ``Invertd`` in inference postprocessing: the prediction must be on the input's grid so that
    lengths are in the input's millimetres. Each call measures ``pred`` (or takes ``measurements_key`` if
    present, e.g. from ``MeasureLesiond``), stores the list under ``measurements_key`` (so a following
    :class:`SaveOverlayd` draws the same calipers) and rewrites ``<output_dir>/<filename>`` atomically.

    Args:
        keys: the prediction key (one key).
        output_dir: folder of the CSV.
        filename: CSV file name (default ``measurements.csv``).
        image_key: key whose ``filename_or_obj`` names the image (the prediction's is used if absent).
        spacing_key: datalist key with the spacing (mm); default from the MetaTensor affine (for a plain 2D image
            file, PNG / JPEG / BMP / TIFF, only a non-identity one: such files carry no spacing), else pixel units
            (the ``unit`` column says ``px``, logged once).
        measurements_key: where measurements are read from if present and written to (``None``: neither).
        min_voxels: lesions smaller than this are ignored (speckle).
        measure_fn: ``(mask, spacing, min_voxels) -> list of dicts``; default ``measure_mask``.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        output_dir: str | os.PathLike = "./eval",
        filename: str = "measurements.csv",
        image_key: str = "image",
        spacing_key: str | None = "spacing",
        measurements_key: str | None = "measurements",
        min_voxels: int = 1,
        measure_fn: Callable[..., list[dict[str, Any]]] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.writer = MeasurementsWriter(Path(output_dir) / filename)
        self.image_key = image_key
        self.spacing_key = spacing_key
        self.measurements_key = measurements_key
        self.min_voxels = int(min_voxels)
        self.measure_fn = measure_fn or measure_lesions

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            image = d.get(self.image_key)
            filename = filename_of(image, pred, meta=d.get(f"{self.image_key}_meta_dict"))
            if not filename:
                raise ValueError(f"SaveMeasurementsd: neither '{self.image_key}' nor '{key}' has 'filename_or_obj' metadata")
            nd = (to_numpy(image).ndim - 1) if image is not None else None
            mask = spatial_mask(pred, nd)
            spacing = d.get(self.spacing_key) if self.spacing_key else None
            if spacing is None:
                spacing = spacing_of(pred, image, nd=mask.ndim)
                # a PNG / JPEG ... carries no spacing: its identity affine is "unknown", not 1 mm
                if spacing is not None and filename.lower().endswith(PLAIN_IMAGE_SUFFIXES) and all(s == 1.0 for s in spacing):
                    spacing = None
            measurements = d.get(self.measurements_key) if self.measurements_key else None
            if measurements is None:
                measurements = self.measure_fn(mask, spacing, self.min_voxels)
            if self.measurements_key:
                d[self.measurements_key] = measurements
            self.writer.add(filename, measurements, spacing)
        return d


SaveMeasurementsD = SaveMeasurementsDict = SaveMeasurementsd

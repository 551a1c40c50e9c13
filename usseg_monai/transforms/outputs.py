"""Inference outputs a sonographer reads: an overlay PNG and a measurements CSV.

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

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import EnsureChannelFirst, LoadImage, MapTransform, Transform
from scipy import ndimage

from usseg_monai.calipers.measure import measure_mask
from usseg_monai.data.io import atomic_path, atomic_write_text

logger = logging.getLogger("usseg_monai.transforms.outputs")

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

#: RGB colours of the overlay (pure colours, which a grayscale input never contains)
CONTOUR_COLOR = (255, 0, 0)
LONG_AXIS_COLOR = (0, 255, 0)
SHORT_AXIS_COLOR = (0, 255, 255)

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

#: 2D image formats that carry no pixel spacing: an identity affine on such a file means "unknown", not 1 mm
_PLAIN_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".mha", ".mhd")


def image_stem(filename: str | os.PathLike) -> str:
    """File name without folder and image suffix (``.nii.gz`` kept whole): ``/a/b/case_1.nii.gz`` -> ``case_1``."""
    name = Path(str(filename)).name
    for s in _SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return Path(name).stem


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _spatial_mask(pred: Any, spatial_dims: int | None = None) -> np.ndarray:
    """Binary ``(x, y[, z])`` lesion mask from a label map with or without a channel, or a 2-channel one-hot."""
    arr = _to_numpy(pred)
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


def _spacing_of(*tensors: Any, nd: int) -> list[float] | None:
    """Spacing (mm, ``(x, y[, z])``) from the first MetaTensor's affine, or ``None``."""
    for t in tensors:
        if isinstance(t, MetaTensor):
            sp = affine_to_spacing(t.affine, r=nd)
            return [float(s) for s in _to_numpy(sp)]
    return None


def _filename_of(*tensors: Any, meta: Mapping | None = None) -> str | None:
    for t in tensors:
        if isinstance(t, MetaTensor) and t.meta.get("filename_or_obj"):
            return str(t.meta["filename_or_obj"])
    if meta and meta.get("filename_or_obj"):
        return str(meta["filename_or_obj"])
    return None


def largest_lesion_slice(mask_xyz: np.ndarray) -> int:
    """Index along z (spatial axis 2) of the slice with the largest lesion area; the middle slice if empty."""
    m = np.asarray(mask_xyz) > 0
    if m.ndim != 3:
        raise ValueError(f"largest_lesion_slice needs an (x, y, z) mask, got shape {m.shape}")
    areas = m.sum(axis=(0, 1))
    if areas.max() == 0:
        return m.shape[2] // 2
    return int(np.argmax(areas))


def _grayscale_u8(image_xy: np.ndarray) -> np.ndarray:
    """Display intensities in [0, 255]: kept as they are if already in that range (8-bit input), else min-max."""
    img = np.asarray(image_xy, dtype=np.float64)
    finite = img[np.isfinite(img)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 255.0 and hi > 1.0:
        out = img
    elif hi > lo:
        out = (img - lo) / (hi - lo) * 255.0
    else:
        out = np.zeros_like(img)
    return np.clip(np.nan_to_num(out), 0, 255).round().astype(np.uint8)


def overlay_image(
    image_xy: np.ndarray,
    mask_xy: np.ndarray,
    measurements: Sequence[Mapping[str, Any]] = (),
    contour_color: Sequence[int] = CONTOUR_COLOR,
    long_axis_color: Sequence[int] = LONG_AXIS_COLOR,
    short_axis_color: Sequence[int] = SHORT_AXIS_COLOR,
    line_width: int = 1,
) -> np.ndarray:
    """Draw the lesion contour and the calipers on a grayscale image.

    Args:
        image_xy: ``(x, y)`` grayscale image (any range; see :func:`_grayscale_u8`).
        mask_xy: ``(x, y)`` predicted lesion mask (``> 0``), same shape.
        measurements: per-lesion dicts with ``calipers`` = ``[[p, q], [p, q], ...]`` voxel coordinates
            ``[x, y(, z)]`` (segment 0 long axis, 1 short axis), as from ``measure_mask``. Only ``x, y`` are
            drawn (a 3D caliper is projected onto the slice).
        contour_color, long_axis_color, short_axis_color: RGB colours.
        line_width: caliper line width in pixels.

    Returns:
        ``(rows, cols, 3)`` = ``(y, x, 3)`` uint8 RGB array, ready for ``PIL.Image.fromarray``.
    """
    from PIL import Image, ImageDraw

    img = np.asarray(image_xy)
    mask = np.asarray(mask_xy) > 0
    if img.shape != mask.shape or img.ndim != 2:
        raise ValueError(f"overlay_image: image {img.shape} and mask {mask.shape} must be equal 2D (x, y) shapes")
    gray = _grayscale_u8(img).T  # (y, x): PNG rows are y
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    # contour: lesion pixels with a background 4-neighbour (or on the image border)
    padded = np.pad(mask, 1, constant_values=False)
    contour = mask & ~ndimage.binary_erosion(padded, structure=ndimage.generate_binary_structure(2, 1))[1:-1, 1:-1]
    rgb[contour.T] = np.asarray(contour_color, dtype=np.uint8)
    pil = Image.fromarray(rgb, mode="RGB")
    draw = ImageDraw.Draw(pil)
    for m in measurements:
        segs = m.get("calipers")
        if segs is None:
            continue
        for k, seg in enumerate(segs[:2]):
            (x0, y0), (x1, y1) = (float(seg[0][0]), float(seg[0][1])), (float(seg[1][0]), float(seg[1][1]))
            color = tuple(int(c) for c in (long_axis_color if k == 0 else short_axis_color))
            draw.line([(x0, y0), (x1, y1)], fill=color, width=int(line_width))
            for px, py in ((x0, y0), (x1, y1)):  # endpoint ticks, like a caliper's "+"
                draw.line([(px - 2, py), (px + 2, py)], fill=color, width=1)
                draw.line([(px, py - 2), (px, py + 2)], fill=color, width=1)
    return np.asarray(pil)


def _measure(mask: np.ndarray, spacing: Sequence[float] | None, min_voxels: int) -> list[dict[str, Any]]:
    return measure_mask(mask, spacing=spacing, min_voxels=min_voxels)


class SaveOverlay(Transform):
    """Write ``<output_dir>/<image stem><output_postfix>.png``: the input with contour and calipers drawn.

    Args:
        output_dir: folder for the PNGs (created).
        output_postfix: appended to the image's file stem (default ``"_overlay"``).
        line_width: caliper line width in pixels.
        min_voxels: lesions smaller than this are not measured (speckle).
        measure_fn: ``(mask, spacing, min_voxels) -> list of measurement dicts``; default
            :func:`usseg_monai.calipers.measure.measure_mask`.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        output_postfix: str = "_overlay",
        line_width: int = 1,
        min_voxels: int = 1,
        measure_fn: Callable[..., list[dict[str, Any]]] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.output_postfix = output_postfix
        self.line_width = int(line_width)
        self.min_voxels = int(min_voxels)
        self.measure_fn = measure_fn or _measure

    def __call__(
        self,
        image: Any,
        pred: Any,
        filename: str | None = None,
        spacing: Sequence[float] | None = None,
        measurements: Sequence[Mapping[str, Any]] | None = None,
    ) -> Path:
        """Draw and save; return the PNG path.

        Args:
            image: the input, channel-first ``[C, x, y(, z)]`` (C = 1, or 3/4 colour averaged), on the same grid
                as ``pred``.
            pred: predicted lesion mask on the input grid: ``[x, y(, z)]``, ``[1, ...]`` or one-hot ``[2, ...]``.
            filename: source file name (default: ``filename_or_obj`` of ``image`` or ``pred``).
            spacing: mm per voxel (default: from the MetaTensor affine, else 1).
            measurements: precomputed ``measure_mask`` output for ``pred`` (computed when ``None``).
        """
        img = _to_numpy(image)
        if img.ndim < 3:
            raise ValueError(f"SaveOverlay: image must be channel-first [C, x, y(, z)], got shape {img.shape}")
        nd = img.ndim - 1
        img = img.mean(axis=0) if img.shape[0] > 1 else img[0]
        mask = _spatial_mask(pred, nd)
        if mask.shape != img.shape:
            raise ValueError(
                f"SaveOverlay: prediction shape {mask.shape} differs from image shape {img.shape}; "
                "place the transform after Invertd so both are on the input's grid"
            )
        filename = filename or _filename_of(image, pred)
        if not filename:
            raise ValueError("SaveOverlay: no file name given and the image has no 'filename_or_obj' metadata")
        if spacing is None:
            spacing = _spacing_of(image, pred, nd=nd)
        if measurements is None:
            measurements = self.measure_fn(mask, spacing, self.min_voxels)
        if nd == 3:
            z = largest_lesion_slice(mask)
            img2, mask2 = img[:, :, z], mask[:, :, z]
            # calipers of lesions that cross this slice, projected onto it
            drawn = [m for m in measurements if _touches_slice(m, z)]
        else:
            img2, mask2, drawn = img, mask, list(measurements)
        rgb = overlay_image(img2, mask2, drawn, line_width=self.line_width)
        from PIL import Image

        out = self.output_dir / f"{image_stem(filename)}{self.output_postfix}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG")
        return out


def _touches_slice(m: Mapping[str, Any], z: int) -> bool:
    segs = np.asarray(m.get("calipers", []), dtype=np.float64)
    if segs.size == 0 or segs.shape[-1] < 3:
        return True
    zs = segs[..., 2]
    return bool(zs.min() - 0.5 <= z <= zs.max() + 0.5)


class SaveOverlayd(MapTransform):
    """Dictionary form of :class:`SaveOverlay`; the data are returned unchanged (the path under ``overlay_key``).

    Args:
        keys: the prediction key (one key, e.g. ``"pred"``), after ``Invertd`` (input grid).
        image_key: the input image. If its spatial shape differs from the prediction's (e.g. it is still the
            resized network input), the original file named by ``filename_or_obj`` is loaded with
            ``monai.transforms.LoadImage`` instead, so the overlay is always at the input's resolution.
        output_dir, output_postfix, line_width, min_voxels, measure_fn: see :class:`SaveOverlay`.
        measurements_key: if the data hold precomputed measurements under this key (a list of
            ``measure_mask`` dicts, e.g. from ``MeasureLesiond`` or :class:`SaveMeasurementsd`), they are
            drawn; else they are computed and stored there.
        spacing_key: datalist key with the spacing (mm); default from the MetaTensor affine.
        overlay_key: key receiving the written PNG path (``None``: not stored).
        image_reader: reader for reloading the original image (``None``: MONAI's choice by suffix).
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        image_key: str = "image",
        output_dir: str | os.PathLike = "./overlays",
        output_postfix: str = "_overlay",
        line_width: int = 1,
        min_voxels: int = 1,
        measurements_key: str | None = "measurements",
        spacing_key: str | None = "spacing",
        overlay_key: str | None = "overlay_path",
        image_reader: str | None = None,
        measure_fn: Callable[..., list[dict[str, Any]]] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.measurements_key = measurements_key
        self.spacing_key = spacing_key
        self.overlay_key = overlay_key
        self.image_reader = image_reader
        self.saver = SaveOverlay(output_dir, output_postfix, line_width, min_voxels, measure_fn)

    def _original_image(self, image: Any, pred_shape: tuple[int, ...], filename: str | None) -> Any:
        img = _to_numpy(image) if image is not None else None
        if img is not None and tuple(img.shape[1:]) == tuple(pred_shape):
            return image
        if not filename or not Path(filename).is_file():
            raise ValueError(
                f"SaveOverlayd: image shape {None if img is None else img.shape} does not match the prediction "
                f"{pred_shape} and the original file {filename!r} cannot be read"
            )
        loaded = LoadImage(reader=self.image_reader, image_only=True)(filename)
        loaded = EnsureChannelFirst()(loaded)
        if tuple(loaded.shape[1:]) != tuple(pred_shape):
            raise ValueError(f"SaveOverlayd: {filename} has shape {tuple(loaded.shape[1:])}, prediction {pred_shape}")
        return loaded

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            image = d.get(self.image_key)
            meta = d.get(f"{self.image_key}_meta_dict")
            filename = _filename_of(image, pred, meta=meta)
            nd = (_to_numpy(image).ndim - 1) if image is not None else None
            mask = _spatial_mask(pred, nd)
            image = self._original_image(image, mask.shape, filename)
            spacing = d.get(self.spacing_key) if self.spacing_key else None
            if spacing is None:
                spacing = _spacing_of(image, pred, nd=mask.ndim)
            measurements = d.get(self.measurements_key) if self.measurements_key else None
            if measurements is None:
                measurements = self.saver.measure_fn(mask, spacing, self.saver.min_voxels)
                if self.measurements_key:
                    d[self.measurements_key] = measurements
            path = self.saver(image, mask, filename=filename, spacing=spacing, measurements=measurements)
            if self.overlay_key:
                d[self.overlay_key] = str(path)
        return d


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
        self.measure_fn = measure_fn or _measure

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            image = d.get(self.image_key)
            filename = _filename_of(image, pred, meta=d.get(f"{self.image_key}_meta_dict"))
            if not filename:
                raise ValueError(f"SaveMeasurementsd: neither '{self.image_key}' nor '{key}' has 'filename_or_obj' metadata")
            nd = (_to_numpy(image).ndim - 1) if image is not None else None
            mask = _spatial_mask(pred, nd)
            spacing = d.get(self.spacing_key) if self.spacing_key else None
            if spacing is None:
                spacing = _spacing_of(pred, image, nd=mask.ndim)
                # a PNG / JPEG ... carries no spacing: its identity affine is "unknown", not 1 mm
                if spacing is not None and filename.lower().endswith(_PLAIN_IMAGE_SUFFIXES) and all(s == 1.0 for s in spacing):
                    spacing = None
            measurements = d.get(self.measurements_key) if self.measurements_key else None
            if measurements is None:
                measurements = self.measure_fn(mask, spacing, self.min_voxels)
            if self.measurements_key:
                d[self.measurements_key] = measurements
            self.writer.add(filename, measurements, spacing)
        return d


SaveOverlayD = SaveOverlayDict = SaveOverlayd
SaveMeasurementsD = SaveMeasurementsDict = SaveMeasurementsd

"""The overlay PNG a sonographer reads: the grayscale input, the predicted lesion contour and the measured calipers.

:class:`SaveOverlay` / :class:`SaveOverlayd`, for a bundle's inference postprocessing after ``Invertd`` (the
prediction on the input image's own grid): one RGB PNG per image with the contour and the long and short axis
segments from :func:`usseg_monai.calipers.measure.measure_mask`. 3D inputs show the axial slice (along z, spatial
axis 2) with the largest predicted lesion area.

Axis order (``docs/conventions.md``): arrays are ``(x, y[, z])``, caliper endpoints ``[x, y(, z)]`` voxel
coordinates. PIL draws in ``(column, row)`` = ``(x, y)`` coordinates as well, so endpoints are drawn as they
are, and the array is transposed to the PNG's ``(row, column)`` layout only when the image is built, which
makes the PNG look like the input file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import EnsureChannelFirst, LoadImage, MapTransform, Transform
from scipy import ndimage

from usseg_monai.data.io import atomic_path
from usseg_monai.transforms.output_meta import (
    filename_of,
    image_stem,
    measure_lesions,
    spacing_of,
    spatial_mask,
    to_numpy,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CONTOUR_COLOR", "LONG_AXIS_COLOR", "SHORT_AXIS_COLOR", "SaveOverlay", "SaveOverlayd", "SaveOverlayD",
    "SaveOverlayDict", "overlay_image", "largest_lesion_slice",
]


#: RGB colours of the overlay (pure colours, which a grayscale input never contains)
CONTOUR_COLOR = (255, 0, 0)


LONG_AXIS_COLOR = (0, 255, 0)


SHORT_AXIS_COLOR = (0, 255, 255)


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
        self.measure_fn = measure_fn or measure_lesions

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
        img = to_numpy(image)
        if img.ndim < 3:
            raise ValueError(f"SaveOverlay: image must be channel-first [C, x, y(, z)], got shape {img.shape}")
        nd = img.ndim - 1
        img = img.mean(axis=0) if img.shape[0] > 1 else img[0]
        mask = spatial_mask(pred, nd)
        if mask.shape != img.shape:
            raise ValueError(
                f"SaveOverlay: prediction shape {mask.shape} differs from image shape {img.shape}; "
                "place the transform after Invertd so both are on the input's grid"
            )
        filename = filename or filename_of(image, pred)
        if not filename:
            raise ValueError("SaveOverlay: no file name given and the image has no 'filename_or_obj' metadata")
        if spacing is None:
            spacing = spacing_of(image, pred, nd=nd)
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
        img = to_numpy(image) if image is not None else None
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
            filename = filename_of(image, pred, meta=meta)
            nd = (to_numpy(image).ndim - 1) if image is not None else None
            mask = spatial_mask(pred, nd)
            image = self._original_image(image, mask.shape, filename)
            spacing = d.get(self.spacing_key) if self.spacing_key else None
            if spacing is None:
                spacing = spacing_of(image, pred, nd=mask.ndim)
            measurements = d.get(self.measurements_key) if self.measurements_key else None
            if measurements is None:
                measurements = self.saver.measure_fn(mask, spacing, self.saver.min_voxels)
                if self.measurements_key:
                    d[self.measurements_key] = measurements
            path = self.saver(image, mask, filename=filename, spacing=spacing, measurements=measurements)
            if self.overlay_key:
                d[self.overlay_key] = str(path)
        return d


SaveOverlayD = SaveOverlayDict = SaveOverlayd

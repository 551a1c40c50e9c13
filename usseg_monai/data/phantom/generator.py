"""One phantom image or volume: :func:`generate_phantom` with its options (:class:`PhantomOptions`), defaults and
revisions; the steps are in :mod:`~usseg_monai.data.phantom.anatomy` and :mod:`~usseg_monai.data.phantom.acoustics`."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from usseg_monai.data.phantom.acoustics import acquire, log_compress
from usseg_monai.data.phantom.anatomy import add_ducts, insert_lesion, tissue
from usseg_monai.data.phantom.geometry import BeamGeometry, Grid
from usseg_monai.data.phantom.options import (
    DEFAULT_FOV_MM,
    ELEVATION_SPACING_FACTOR,
    MIN_SIZE,
    PHANTOM_CLASSES,
    PHANTOM_MODEL_REVISION,
    PhantomOptions,
)

__all__ = ["PhantomSample", "default_phantom_spacing", "check_shape_spacing", "generate_phantom"]

logger = logging.getLogger(__name__)




@dataclass
class PhantomSample:
    """One generated image.

    Attributes:
        image: B-mode image, ``(x, y[, z])`` uint8 in ``[0, 255]``.
        mask: lesion mask, same shape, uint8 in ``{0, 1}``; all zero for ``"normal"``.
        class_name: ``"benign"``, ``"malignant"`` or ``"normal"``.
        spacing: mm per pixel in ``(x, y[, z])`` order.
        params: JSON-serialisable description: seed, options, layer depths, lesion centre / semi-axes /
            angle / margin / contrast / posterior feature, measured extents (mm).
        envelope: float32 envelope before log compression (only with ``return_envelope=True``).
    """

    image: np.ndarray
    mask: np.ndarray
    class_name: str
    spacing: tuple[float, ...]
    params: dict[str, Any]
    envelope: np.ndarray | None = field(default=None, repr=False)


def default_phantom_spacing(shape: Sequence[int]) -> tuple[float, ...]:
    """Default spacing (mm) for ``shape``: lateral field of view 25.6 mm, square in-plane pixels, 3D slices
    :data:`ELEVATION_SPACING_FACTOR` times thicker (e.g. 128x128 -> 0.2 mm; 64x64x32 -> 0.4, 0.4, 0.8 mm)."""
    s = DEFAULT_FOV_MM / int(shape[0])
    out = [s, s] + ([s * ELEVATION_SPACING_FACTOR] if len(shape) == 3 else [])
    return tuple(round(v, 6) for v in out)


def check_shape_spacing(
    shape: Sequence[int], spacing: Sequence[float] | None
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Validated ``(shape, spacing)``; the default spacing when ``spacing`` is None."""
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError as e:
        raise ValueError(f"shape must be a sequence of 2 or 3 integers (x, y[, z]), got {shape!r}") from e
    if len(shp) not in (2, 3) or any(s != v for s, v in zip(shp, shape)):
        raise ValueError(f"shape must be 2 or 3 integers (x, y[, z]), got {tuple(shape)}")
    for ax, n in enumerate(shp):
        if n < MIN_SIZE[ax]:
            raise ValueError(f"shape {shp}: axis {ax} has {n} pixels, at least {MIN_SIZE[ax]} are needed")
    if spacing is None:
        sp = default_phantom_spacing(shp)
    else:
        sp = tuple(float(s) for s in spacing)
        if len(sp) != len(shp) or not all(math.isfinite(s) and s > 0 for s in sp):
            raise ValueError(
                f"spacing must be {len(shp)} positive numbers (mm per pixel, x, y[, z]), got {tuple(spacing)}"
            )
    return shp, sp


def _options(options: dict[str, Any], ndim: int) -> PhantomOptions:
    valid = {f.name for f in fields(PhantomOptions)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"unknown phantom option(s) {unknown}; valid options: {sorted(valid)}")
    opts = PhantomOptions(**options)
    opts.validate(ndim)
    return opts


def generate_phantom(
    shape: Sequence[int],
    *,
    class_name: str = "benign",
    seed: int = 0,
    spacing: Sequence[float] | None = None,
    **options: Any,
) -> PhantomSample:
    """Generate one synthetic B-mode image and its lesion mask.

    Args:
        shape: ``(x, y)`` for 2D or ``(x, y, z)`` for 3D; at least 16 pixels along x and y, 8 along z.
        class_name: ``"benign"`` (oval, wider than tall, posterior enhancement), ``"malignant"``
            (irregular, taller than wide, posterior shadowing) or ``"normal"`` (no lesion, empty mask).
        seed: the result depends only on ``seed``, ``shape``, ``spacing``, ``class_name`` and ``options``.
        spacing: mm per pixel ``(x, y[, z])``; default :func:`default_phantom_spacing`.
        **options: imaging settings, see :class:`PhantomOptions`.

    Returns:
        A :class:`PhantomSample`.

    Raises:
        ValueError: unknown class, shape not of length 2 or 3 or too small, bad spacing, unknown or
            out-of-range option.
    """
    if class_name not in PHANTOM_CLASSES:
        raise ValueError(f"unknown phantom class {class_name!r}; expected one of {list(PHANTOM_CLASSES)}")
    shp, sp = check_shape_spacing(shape, spacing)
    opts = _options(options, len(shp))
    rng = np.random.default_rng(seed)
    grid = Grid(shp, sp)
    geom = BeamGeometry(grid, opts.probe, opts.sector_angle_deg)

    amp, layers = tissue(rng, grid, opts.anatomy)
    lesion: dict[str, Any] | None = None
    mask = np.zeros(shp, dtype=np.uint8)
    atten = None
    avoid = None
    if class_name != "normal":
        amp, mask, atten, lesion = insert_lesion(rng, grid, geom, class_name, amp, layers, opts)
        idx = np.nonzero(mask)
        avoid = (np.array([i.min() for i in idx]) * np.array(sp), np.array([i.max() + 1 for i in idx]) * np.array(sp))
    layers["n_ducts"] = add_ducts(rng, grid, amp, layers, avoid)
    env = acquire(rng, grid, geom, amp, atten, opts)
    gain = opts.gain_db + (rng.uniform(-1, 1) * opts.gain_jitter_db if opts.gain_jitter_db > 0 else 0.0)
    gray = geom.to_image(log_compress(env, opts.dynamic_range_db, gain))
    image = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    if geom.inside is not None:
        mask = (mask * geom.inside).astype(np.uint8)
        if lesion is not None:
            lesion["volume_px"] = int(mask.sum())

    opt_dict = asdict(opts)
    opt_dict["speckle_correlation_mm"] = list(opts.speckle_correlation_mm) if opts.speckle_correlation_mm else None
    params = {
        "model_revision": PHANTOM_MODEL_REVISION,
        "seed": int(seed),
        "class_name": class_name,
        "shape": list(shp),
        "spacing": list(sp),
        "gain_db": round(float(gain), 4),
        "options": opt_dict,
        "layers": layers,
        "lesion": lesion,
    }
    envelope = geom.to_image(env).astype(np.float32) if opts.return_envelope else None
    return PhantomSample(image=image, mask=mask, class_name=class_name, spacing=sp, params=params, envelope=envelope)

"""The phantom's grids: the millimetre grid of the field of view (:class:`Grid`) and the beam geometry of a linear
or sector (fan) probe (:class:`BeamGeometry`, with the scan conversion between beam and image grids)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["Grid", "BeamGeometry"]


class Grid:
    """Physical coordinates (mm) of the pixel centres, as broadcastable open grids, and the field of view."""

    def __init__(self, shape: tuple[int, ...], spacing: tuple[float, ...]) -> None:
        self.shape = shape
        self.spacing = spacing
        self.ndim = len(shape)
        self.fov = tuple(n * s for n, s in zip(shape, spacing))
        self.coords = []
        for ax, (n, s) in enumerate(zip(shape, spacing)):
            view = [1] * self.ndim
            view[ax] = n
            self.coords.append(((np.arange(n, dtype=np.float32) + 0.5) * s).reshape(view))
        self.lateral_shape = tuple(1 if ax == 1 else n for ax, n in enumerate(shape))

    @property
    def x(self) -> np.ndarray:
        return self.coords[0]

    @property
    def y(self) -> np.ndarray:
        return self.coords[1]

    @property
    def z(self) -> np.ndarray | None:
        return self.coords[2] if self.ndim == 3 else None


class BeamGeometry:
    """Maps between the Cartesian image grid and the acquisition grid ``(beam, range[, z])``.

    Linear probe: the identity (beams are image columns). Sector probe: beams fan out from an apex above
    the image centre; ``to_beam`` samples a Cartesian field on the polar grid, ``to_image`` scan-converts
    back (bilinear), zero outside the fan.
    """

    def __init__(self, grid: Grid, probe: str, angle_deg: float) -> None:
        self.grid = grid
        self.linear = probe == "linear"
        nx, ny = grid.shape[0], grid.shape[1]
        sx, sy = grid.spacing[0], grid.spacing[1]
        if self.linear:
            self.range_step = sy
            self.beam_step = sx
            self.inside = None
            return
        half = self.half_angle = math.radians(angle_deg) / 2
        depth = grid.fov[1]
        self.apex = (grid.fov[0] / 2, -0.08 * depth)  # (x, y) mm, just above the skin
        r0, r1 = 0.08 * depth, 0.08 * depth + depth
        self.range_step = (r1 - r0) / ny
        self.beam_step = (r0 + r1) / 2 * 2 * half / nx
        # Cartesian positions of the polar samples (beam i, range j): indices into the image grid
        theta = -half + (np.arange(nx) + 0.5) * (2 * half / nx)
        rng_mm = r0 + (np.arange(ny) + 0.5) * self.range_step
        th, rr = np.meshgrid(theta, rng_mm, indexing="ij")
        self._to_beam_xy = ((self.apex[0] + rr * np.sin(th)) / sx - 0.5, (self.apex[1] + rr * np.cos(th)) / sy - 0.5)
        # polar positions of the Cartesian pixel centres: indices into the beam grid
        x = (np.arange(nx) + 0.5) * sx - self.apex[0]
        y = (np.arange(ny) + 0.5) * sy - self.apex[1]
        xx, yy = np.meshgrid(x, y, indexing="ij")
        r = np.hypot(xx, yy)
        t = np.arctan2(xx, yy)
        self._to_image_xy = ((t + half) / (2 * half / nx) - 0.5, (r - r0) / self.range_step - 0.5)
        inside = (np.abs(t) <= half) & (r >= r0) & (r <= r1)
        self.inside = np.broadcast_to(inside.reshape(inside.shape + (1,) * (grid.ndim - 2)), grid.shape)

    def lateral_range(self, y_mm: float, margin_mm: float) -> tuple[float, float]:
        """Lateral interval (mm) for a lesion centre at depth ``y_mm`` keeping ``margin_mm`` to the image
        sides and, for a sector probe, to the fan's edges."""
        width = self.grid.fov[0]
        lo, hi = margin_mm, width - margin_mm
        if not self.linear:
            half_width = (y_mm - self.apex[1]) * math.tan(self.half_angle) - margin_mm / math.cos(self.half_angle)
            lo, hi = max(lo, self.apex[0] - half_width), min(hi, self.apex[0] + half_width)
        if lo > hi:
            lo = hi = width / 2
        return lo, hi

    def _resample(self, field: np.ndarray, xy: tuple[np.ndarray, np.ndarray], mode: str) -> np.ndarray:
        if field.ndim == 2:
            return ndimage.map_coordinates(field, xy, order=1, mode=mode, cval=0.0)
        out = np.empty(field.shape, dtype=field.dtype)
        for k in range(field.shape[2]):  # the fan is the same in every elevational slice
            out[..., k] = ndimage.map_coordinates(field[..., k], xy, order=1, mode=mode, cval=0.0)
        return out

    def to_beam(self, field: np.ndarray) -> np.ndarray:
        return field if self.linear else self._resample(field, self._to_beam_xy, "nearest")

    def to_image(self, field: np.ndarray) -> np.ndarray:
        if self.linear:
            return field
        return self._resample(field, self._to_image_xy, "constant") * self.inside

"""Seeded synthetic breast-ultrasound phantom, 2D and 3D: the embedded default dataset.

The generator follows the textbook B-mode image-formation chain, in this order (see ``docs/phantom.md``):

1. **Tissue echogenicity** ``A(x)`` (linear backscatter amplitude, glandular tissue = 1): skin line,
   hypoechoic subcutaneous fat with bright Cooper's-ligament septa, echogenic fibroglandular tissue with
   horizontal streaks and dark ducts, a bright fascia and striated pectoral muscle at depth. Interfaces are
   smooth random surfaces ``y = S(x[, z])``.
2. **Lesion**: a hypoechoic star-shaped region around an ellipse (ellipsoid in 3D). Benign-like: smooth oval,
   wider than tall, optional thin echogenic capsule. Malignant-like: taller than wide, microlobulated and
   spiculated margin, heterogeneous interior, optional echogenic halo (BI-RADS US lexicon descriptors).
3. **Attenuation along the beam** (spatial axis 1): a residual exponential loss with depth left after
   time-gain compensation, and the lesion's own excess attenuation integrated along each beam line, which
   gives posterior acoustic *enhancement* below a low-attenuation (benign-like) lesion and *shadowing*
   below a high-attenuation (malignant-like) one.
4. **Speckle**: fully developed speckle, i.e. the amplitude is multiplied by the modulus of a circular
   complex Gaussian field (Rayleigh envelope, Goodman, *Speckle Phenomena in Optics*, 2007; Burckhardt,
   IEEE Trans. Sonics Ultrason. 25(1), 1978), optionally blurred by an anisotropic Gaussian point spread
   function (wider laterally than axially, so grains are elongated laterally as in real B-mode), plus a
   weak additive electronic noise floor.
5. **Log compression** to 8 bit over a display dynamic range (``gray = 255 (20 log10 env + gain) / DR``).
6. Optional **sector (fan) scan conversion**: steps 3-5 happen on a (beam angle, range) grid that is then
   resampled to the Cartesian image, so attenuation, shadows and speckle follow the radial beams.

Arrays are in MONAI index order ``(x, y[, z])``: x lateral, y depth along the beam, z elevational
(``docs/conventions.md``). All geometry is drawn in millimetres relative to the field of view, so lesions
stay round in mm on anisotropic 3D grids. Everything depends only on ``seed``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from usseg_monai import __version__
from usseg_monai.data.io import DatasetError, atomic_write_json, cache_dir, load_datalist
from usseg_monai.data.prepared import PreparedDatasetWriter
from usseg_monai.data.splits import SplitOptions

__all__ = [
    "PHANTOM_CLASSES",
    "PHANTOM_MODEL_REVISION",
    "PHANTOM_LAYOUT_REVISION",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_N_IMAGES",
    "RAYLEIGH_SNR",
    "PhantomOptions",
    "PhantomSample",
    "default_phantom_spacing",
    "rayleigh_speckle",
    "log_compress",
    "generate_phantom",
    "prepare_phantom",
    "phantom_dataset_key",
    "default_phantom_dir",
    "ensure_phantom_dataset",
]

logger = logging.getLogger(__name__)

PHANTOM_CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")
"""Class names in class-index order (as BUSI)."""

PHANTOM_MODEL_REVISION = 1
"""Bumped whenever the generated images change for a given seed; part of the cache key."""

PHANTOM_LAYOUT_REVISION = 2
"""Bumped whenever the prepared folder's layout changes (2: ``calipers/<id>.json``); part of the cache key."""

DEFAULT_IMAGE_SIZE: dict[int, tuple[int, ...]] = {2: (128, 128), 3: (64, 64, 32)}
"""Default ``image_size`` per spatial dimensionality, ``(x, y[, z])``."""

DEFAULT_N_IMAGES: dict[int, int] = {2: 64, 3: 16}
"""Default number of images of the prepared phantom dataset per spatial dimensionality."""

DEFAULT_FOV_MM = 25.6
"""Default lateral field of view (mm): 128 px at 0.2 mm, 64 voxels at 0.4 mm."""

ELEVATION_SPACING_FACTOR = 2.0
"""Default 3D elevational spacing = this factor times the in-plane spacing (slices thicker than pixels)."""

RAYLEIGH_SNR = math.sqrt(math.pi / (4.0 - math.pi))
"""Mean / standard deviation of a Rayleigh envelope (fully developed speckle), about 1.913."""

_MIN_SIZE = {0: 16, 1: 16, 2: 8}  # smallest grid per axis (x, y, z) for which every lesion is resolved


@dataclass(frozen=True)
class PhantomOptions:
    """Imaging settings of :func:`generate_phantom` (all optional keyword arguments).

    Attributes:
        probe: ``"linear"`` (rectangular image) or ``"sector"`` (fan from an apex above the image).
        sector_angle_deg: full opening angle of the fan (sector probe only), degrees.
        anatomy: draw the layered breast anatomy; ``False`` gives homogeneous tissue of amplitude 1
            (useful to measure speckle and attenuation in isolation).
        speckle: multiply by Rayleigh speckle; ``False`` gives the noiseless amplitude (for debugging).
        speckle_correlation_mm: Gaussian PSF sigma per axis ``(lateral x, axial y[, elevational z])`` in mm;
            ``None`` for uncorrelated (one grain per pixel) speckle.
        residual_attenuation_db_per_cm: two-way attenuation left after time-gain compensation, dB per cm
            of depth (soft tissue attenuates ~0.5-0.75 dB/cm/MHz one way; TGC removes most of it).
        dynamic_range_db: displayed dynamic range of the log compression, dB.
        gain_db: overall display gain, dB: an envelope of 1 maps to ``255 gain / DR`` (speckle lowers the mean
            log amplitude by 2.5 dB for one look, less with compounding).
        gain_jitter_db: per-image random gain offset, uniform in ``[-jitter, jitter]`` dB.
        noise_floor_db: additive electronic noise amplitude relative to tissue of amplitude 1, dB.
        lesion_contrast_db: lesion echogenicity relative to glandular tissue, dB (``None``: drawn per class,
            benign -30..-15 dB (down to anechoic cysts), malignant -18..-10 dB).
        posterior_db: gain below the lesion at its full thickness, dB (``None``: drawn per class, benign
            +6..+12 dB enhancement, malignant -18..-10 dB shadowing; ``0`` for none).
        compounding: number of independent speckle looks averaged in intensity (spatial compounding, as
            modern breast scanners do); ``1`` gives single-look fully developed speckle (Rayleigh envelope).
        return_envelope: also return the envelope (linear amplitude before log compression) in
            :attr:`PhantomSample.envelope`.
    """

    probe: str = "linear"
    sector_angle_deg: float = 60.0
    anatomy: bool = True
    speckle: bool = True
    speckle_correlation_mm: tuple[float, ...] | None = (0.4, 0.15, 0.6)
    residual_attenuation_db_per_cm: float = 5.0
    dynamic_range_db: float = 50.0
    gain_db: float = 28.0
    gain_jitter_db: float = 2.0
    noise_floor_db: float = -38.0
    compounding: int = 3
    lesion_contrast_db: float | None = None
    posterior_db: float | None = None
    return_envelope: bool = False

    def validate(self, ndim: int) -> None:
        """Raise ``ValueError`` naming the option that is out of range."""
        if self.probe not in ("linear", "sector"):
            raise ValueError(f"option probe must be 'linear' or 'sector', got {self.probe!r}")
        if not 5.0 <= float(self.sector_angle_deg) <= 150.0:
            raise ValueError(f"option sector_angle_deg must lie in [5, 150] degrees, got {self.sector_angle_deg}")
        if self.speckle_correlation_mm is not None:
            corr = list(self.speckle_correlation_mm)
            if len(corr) < ndim or any(not np.isfinite(c) or c < 0 for c in corr[:ndim]):
                raise ValueError(
                    f"option speckle_correlation_mm needs {ndim} non-negative sigmas (mm) in (x, y[, z]) order, "
                    f"got {self.speckle_correlation_mm}"
                )
        if not float(self.dynamic_range_db) > 0:
            raise ValueError(f"option dynamic_range_db must be positive, got {self.dynamic_range_db}")
        if int(self.compounding) != self.compounding or not 1 <= int(self.compounding) <= 16:
            raise ValueError(f"option compounding must be an integer in [1, 16], got {self.compounding}")
        if float(self.residual_attenuation_db_per_cm) < 0 or float(self.gain_jitter_db) < 0:
            raise ValueError("options residual_attenuation_db_per_cm and gain_jitter_db must be non-negative")


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


# ----------------------------------------------------------------------------------------------------
# speckle and log compression


def _complex_speckle(shape: Sequence[int], rng: np.random.Generator, sigma_px: Sequence[float] | None) -> np.ndarray:
    """Circular complex Gaussian field of unit mean power, optionally blurred by a Gaussian PSF (sigma in px)."""
    re = rng.standard_normal(shape, dtype=np.float32)
    im = rng.standard_normal(shape, dtype=np.float32)
    if sigma_px is not None and any(s >= 0.3 for s in sigma_px):
        sig = [float(s) if s >= 0.3 else 0.0 for s in sigma_px]
        re = ndimage.gaussian_filter(re, sig, mode="wrap", truncate=3.0)
        im = ndimage.gaussian_filter(im, sig, mode="wrap", truncate=3.0)
    c = re + 1j * im
    power = float(np.mean(re * re + im * im))
    return (c / np.sqrt(power)).astype(np.complex64)


def rayleigh_speckle(
    shape: Sequence[int], *, seed: int | np.random.Generator = 0, correlation_px: Sequence[float] | None = None
) -> np.ndarray:
    """Multiplicative fully developed speckle: the modulus of a unit-power circular complex Gaussian field.

    Each value is Rayleigh distributed with ``E[R^2] = 1``; mean / std is :data:`RAYLEIGH_SNR` (1.91).
    With ``correlation_px`` the complex field is first blurred by a Gaussian PSF of that sigma per axis
    (pixels), which correlates neighbouring grains but keeps the Rayleigh first-order statistics (a linear
    filter of a circular Gaussian field is circular Gaussian).

    Args:
        shape: output shape.
        seed: integer seed or a numpy ``Generator``.
        correlation_px: PSF sigma per axis in pixels; ``None`` for independent pixels.

    Returns:
        float32 array of ``shape``.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if correlation_px is not None and len(correlation_px) != len(shape):
        raise ValueError(f"correlation_px has {len(correlation_px)} values for a {len(shape)}D shape")
    return np.abs(_complex_speckle(shape, rng, correlation_px)).astype(np.float32)


def log_compress(envelope: np.ndarray, dynamic_range_db: float = 50.0, gain_db: float = 28.0) -> np.ndarray:
    """Log compression of an envelope to display gray levels (float in ``[0, 255]``).

    ``gray = 255 * clip((20 log10(envelope) + gain_db) / dynamic_range_db, 0, 1)``: amplitudes from
    ``-gain_db`` to ``dynamic_range_db - gain_db`` dB (re. tissue of amplitude 1) span the gray scale.
    """
    db = 20.0 * np.log10(np.maximum(envelope, 1e-12))
    return np.clip((db + gain_db) * (255.0 / dynamic_range_db), 0.0, 255.0)


# ----------------------------------------------------------------------------------------------------
# geometry helpers


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _band(y: np.ndarray, centre: np.ndarray, width_mm: float) -> np.ndarray:
    """Gaussian profile around the surface ``y = centre`` (a thin echogenic line), peak 1."""
    return np.exp(-0.5 * ((y - centre) / width_mm) ** 2)


class _Grid:
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


def _random_surface(
    rng: np.random.Generator, grid: _Grid, depth_mm: float, amp_mm: float, tilt: float = 0.0
) -> np.ndarray:
    """A smooth random interface ``y = S(x[, z])`` (mm): mean depth, tilt, and three sinusoidal undulations
    per lateral axis with wavelengths of 0.3-1.5 field widths. Shape: the grid with axis 1 of size 1."""
    s = depth_mm + tilt * (grid.x - grid.fov[0] / 2)
    lateral = [(grid.x, grid.fov[0])] + ([(grid.z, grid.fov[2])] if grid.ndim == 3 else [])
    for coord, width in lateral:
        for k in range(3):
            wavelength = width * rng.uniform(0.3, 1.5)
            s = s + amp_mm / (k + 1) * np.sin(2 * np.pi * coord / wavelength + rng.uniform(0, 2 * np.pi))
    return np.broadcast_to(s, grid.lateral_shape).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, grid: _Grid, sigma_mm: Sequence[float]) -> np.ndarray:
    """Gaussian random field of zero mean and unit std, correlated with Gaussian sigmas in mm per axis."""
    n = rng.standard_normal(grid.shape, dtype=np.float32)
    sig = [sm / sp for sm, sp in zip(sigma_mm, grid.spacing)]
    n = ndimage.gaussian_filter(n, sig, mode="wrap", truncate=3.0)
    return (n - n.mean()) / (n.std() + 1e-12)


def _ellipsoid_level(
    grid: _Grid, centre: Sequence[float], axes: Sequence[float], angle_deg: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Normalised lesion-frame coordinates ``v`` (rotated by ``angle_deg`` in the x-y plane and divided by
    the semi-axes) and the Euclidean distance from the centre in mm."""
    t = math.radians(angle_deg)
    d = [c - ctr for c, ctr in zip(grid.coords, centre)]
    u0 = math.cos(t) * d[0] + math.sin(t) * d[1]
    u1 = -math.sin(t) * d[0] + math.cos(t) * d[1]
    v = [u0 / axes[0], u1 / axes[1]]
    dist2 = d[0] ** 2 + d[1] ** 2
    if grid.ndim == 3:
        v.append(d[2] / axes[2])
        dist2 = dist2 + d[2] ** 2
    return v, np.sqrt(dist2)


def _unit_vectors(rng: np.random.Generator, n: int, ndim: int) -> np.ndarray:
    """``n`` directions uniform on the circle / sphere."""
    g = rng.standard_normal((n, ndim))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def _star_distance(
    grid: _Grid,
    centre: Sequence[float],
    axes: Sequence[float],
    angle_deg: float,
    bumps: list[tuple[np.ndarray, float, float]],
) -> np.ndarray:
    """Signed radial distance (mm, negative inside) to a star-shaped boundary ``q = r(u)`` around an ellipsoid.

    ``q`` is the normalised ellipsoid radius and ``u`` the direction in the normalised lesion frame;
    ``r(u) = 1 + sum_k a_k exp((u . n_k - 1) / w_k^2)``: each bump is a lobule (wide ``w``, ``a`` of either
    sign: microlobulation) or a spicule (narrow ``w``, large ``a``), with ``n_k`` its direction.
    """
    v, dist = _ellipsoid_level(grid, centre, axes, angle_deg)
    q = np.sqrt(sum(vi * vi for vi in v))
    qs = np.maximum(q, 1e-6)
    r = np.ones_like(q)
    for direction, amp, width in bumps:
        cos = sum(vi * float(di) for vi, di in zip(v, direction)) / qs
        r = r + amp * np.exp((cos - 1.0) / (width * width))
    return ((q - r) / qs * dist).astype(np.float32)


class _BeamGeometry:
    """Maps between the Cartesian image grid and the acquisition grid ``(beam, range[, z])``.

    Linear probe: the identity (beams are image columns). Sector probe: beams fan out from an apex above
    the image centre; ``to_beam`` samples a Cartesian field on the polar grid, ``to_image`` scan-converts
    back (bilinear), zero outside the fan.
    """

    def __init__(self, grid: _Grid, probe: str, angle_deg: float) -> None:
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


# ----------------------------------------------------------------------------------------------------
# anatomy and lesion


def _tissue(rng: np.random.Generator, grid: _Grid, anatomy: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Background echogenicity (linear amplitude, glandular tissue ~1) and the layer description."""
    if not anatomy:
        return np.ones(grid.shape, dtype=np.float32), {"anatomy": False}
    depth, width = grid.fov[1], grid.fov[0]
    y = grid.y
    skin = _random_surface(rng, grid, rng.uniform(0.035, 0.06) * depth, 0.004 * depth)
    fat = _random_surface(rng, grid, rng.uniform(0.17, 0.3) * depth, 0.035 * depth, rng.uniform(-0.08, 0.08))
    muscle = _random_surface(rng, grid, rng.uniform(0.74, 0.88) * depth, 0.02 * depth, rng.uniform(-0.05, 0.05))
    edge = 0.6 * grid.spacing[1]
    in_fat = _sigmoid((y - skin) / edge)
    in_gland = _sigmoid((y - fat) / (2 * edge))
    in_muscle = _sigmoid((y - muscle) / edge)

    # fibrous streaks: noise correlated far laterally (and elevationally), little axially
    lat_sigma = 0.09 * width
    streak_sigma = [lat_sigma, 0.18] + ([0.09 * grid.fov[2]] if grid.ndim == 3 else [])
    streaks = _smooth_noise(rng, grid, streak_sigma)
    blobs = _smooth_noise(rng, grid, [0.06 * width, 0.05 * depth] + ([0.06 * grid.fov[2]] if grid.ndim == 3 else []))

    dermis = 1.5 * np.exp(0.15 * streaks)
    fat_amp = 0.25 * np.exp(0.25 * blobs + 0.1 * streaks)
    gland = 1.2 * np.exp(0.6 * streaks + 0.3 * blobs)
    # hypoechoic fat lobules interspersed in the fibroglandular tissue
    lobules = _smooth_noise(rng, grid, [0.05 * width, 0.025 * depth] + ([0.05 * grid.fov[2]] if grid.ndim == 3 else []))
    fatty = _sigmoid(5.0 * (lobules - rng.uniform(0.4, 1.1)))
    gland = gland + (0.35 * np.exp(0.2 * streaks) - gland) * fatty
    muscle_amp = 0.45 * np.exp(0.5 * streaks)
    amp = dermis + (fat_amp - dermis) * in_fat
    amp = amp + (gland - amp) * in_gland
    amp = amp + (muscle_amp - amp) * in_muscle

    # bright lines: epidermis, Cooper's ligaments in the fat, echogenic planes in the gland, fascia
    amp = amp + 4.0 * _band(y, np.float32(0.35 * grid.spacing[1] + 0.15), 0.12 + 0.4 * grid.spacing[1])
    n_septa = int(rng.integers(2, 6))
    for _ in range(n_septa):
        s = _random_surface(rng, grid, rng.uniform(0.2, 0.9) * float(fat.mean()), 0.03 * depth, rng.uniform(-0.6, 0.6))
        amp = amp + rng.uniform(0.5, 1.2) * _band(y, s, 0.08 + 0.5 * grid.spacing[1]) * in_fat * (1 - in_gland)
    n_planes = int(rng.integers(3, 7))
    fat_mean, muscle_mean = float(fat.mean()), float(muscle.mean())
    for _ in range(n_planes):
        s = _random_surface(rng, grid, rng.uniform(fat_mean, muscle_mean), 0.03 * depth, rng.uniform(-0.15, 0.15))
        amp = amp + rng.uniform(0.6, 1.6) * _band(y, s, 0.1 + 0.5 * grid.spacing[1]) * in_gland * (1 - in_muscle)
    amp = amp + 2.0 * _band(y, muscle, 0.12 + 0.5 * grid.spacing[1])
    layers = {
        "anatomy": True,
        "skin_mm": round(float(skin.mean()), 4),
        "fat_bottom_mm": round(fat_mean, 4),
        "muscle_top_mm": round(muscle_mean, 4),
        "n_septa": n_septa,
        "n_echogenic_planes": n_planes,
    }
    return amp.astype(np.float32), layers


def _add_ducts(
    rng: np.random.Generator,
    grid: _Grid,
    amp: np.ndarray,
    layers: dict[str, Any],
    avoid: tuple[np.ndarray, np.ndarray] | None,
) -> int:
    """Darken 0-3 elongated ducts (tubes along z in 3D) inside the glandular layer, away from the lesion."""
    if not layers.get("anatomy"):
        return 0
    n, placed = int(rng.integers(0, 4)), 0
    for _ in range(n):
        axes = [rng.uniform(0.06, 0.15) * grid.fov[0], rng.uniform(0.012, 0.03) * grid.fov[1]]
        if grid.ndim == 3:
            axes.append(rng.uniform(0.2, 0.4) * grid.fov[2])
        centre = [rng.uniform(0.1, 0.9) * grid.fov[0], rng.uniform(layers["fat_bottom_mm"], layers["muscle_top_mm"])]
        if grid.ndim == 3:
            centre.append(rng.uniform(0.2, 0.8) * grid.fov[2])
        angle = rng.uniform(-12, 12)
        if avoid is not None:
            lo, hi = avoid
            if all(lo[k] - axes[k] < centre[k] < hi[k] + axes[k] for k in range(grid.ndim)):
                continue
        dist = _star_distance(grid, centre, axes, angle, [])
        amp *= 1.0 - 0.6 * _sigmoid(-dist / (0.8 * grid.spacing[1]))
        placed += 1
    return placed


def _draw_lesion(
    rng: np.random.Generator, grid: _Grid, class_name: str, layers: dict[str, Any], geom: _BeamGeometry
) -> tuple[dict[str, Any], np.ndarray]:
    """Draw the lesion shape until its class's orientation rule holds (and, for a sector probe, it lies
    inside the fan); return its parameters and signed radial distance map (mm)."""
    width, depth = grid.fov[0], grid.fov[1]
    malignant = class_name == "malignant"
    top = layers.get("skin_mm", 0.04 * depth) + 0.02 * depth
    gland_top = layers.get("fat_bottom_mm", top)
    bottom = 0.8 * depth  # leave room below for the posterior feature
    for attempt in range(20):
        if malignant:
            a = rng.uniform(0.07, 0.13) * width
            b = a * rng.uniform(1.25, 1.7)
            angle = rng.uniform(-12, 12)
        else:
            a = rng.uniform(0.09, 0.18) * width
            b = a * rng.uniform(0.45, 0.72)
            angle = rng.uniform(-15, 15)
        b = min(b, 0.45 * (bottom - top))
        if malignant:
            a = min(a, b / 1.15)
        axes = [a, b]
        if grid.ndim == 3:
            axes.append(min(rng.uniform(0.8, 1.2) * (a + b) / 2, 0.4 * grid.fov[2]))
        margin_lat = 1.15 * max(a, b)
        y_lo = max(top + 1.1 * b, gland_top + 0.2 * b)  # in the fibroglandular layer where there is room
        y_hi = max(bottom - 1.1 * b, top + 1.1 * b)
        cy = rng.uniform(min(y_lo, y_hi), y_hi)
        x_lo, x_hi = geom.lateral_range(cy, margin_lat)
        centre = [rng.uniform(x_lo, x_hi), cy]
        if grid.ndim == 3:
            centre.append(rng.uniform(1.2 * axes[2], grid.fov[2] - 1.2 * axes[2]))
        bumps: list[tuple[np.ndarray, float, float]] = []
        n_lobes = n_spicules = 0
        if malignant:
            n_lobes = int(rng.integers(4, 9))
            for d in _unit_vectors(rng, n_lobes, grid.ndim):
                bumps.append((d, float(rng.uniform(-0.12, 0.16)), float(rng.uniform(0.3, 0.5))))
            n_spicules = int(rng.integers(0, 12))
            for d in _unit_vectors(rng, n_spicules, grid.ndim):
                bumps.append((d, float(rng.uniform(0.2, 0.55)), float(rng.uniform(0.05, 0.1))))
            margin = "spiculated" if n_spicules >= 3 else "microlobulated"
        else:
            n_lobes = int(rng.integers(0, 3))
            for d in _unit_vectors(rng, n_lobes, grid.ndim):
                bumps.append((d, float(rng.uniform(0.0, 0.08)), float(rng.uniform(0.6, 0.9))))
            margin = "circumscribed"
        dist = _star_distance(grid, centre, axes, angle, bumps)
        mask = dist <= 0
        if not mask.any():
            continue
        extent = [float(np.ptp(np.nonzero(mask.any(axis=tuple(k for k in range(grid.ndim) if k != ax)))[0]) + 1)
                  * grid.spacing[ax] for ax in range(grid.ndim)]
        taller = extent[1] > extent[0]
        if taller == malignant and (geom.inside is None or not (mask & ~geom.inside).any()):
            break
    else:
        raise ValueError(
            f"could not draw a {class_name} lesion in a {list(grid.shape)} grid; use a larger shape"
        )
    params = {
        "centre_mm": [round(float(c), 4) for c in centre],
        "centre_px": [round(float(c) / s - 0.5, 3) for c, s in zip(centre, grid.spacing)],
        "semi_axes_mm": [round(float(v), 4) for v in axes],
        "angle_deg": round(float(angle), 3),
        "margin": margin,
        "n_lobes": n_lobes,
        "n_spicules": n_spicules,
        "extent_mm": [round(e, 4) for e in extent],
        "taller_than_wide": bool(taller),
        "shape_attempts": attempt + 1,
    }
    return params, dist


def _insert_lesion(
    rng: np.random.Generator,
    grid: _Grid,
    geom: _BeamGeometry,
    class_name: str,
    amp: np.ndarray,
    layers: dict[str, Any],
    opts: PhantomOptions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw the lesion and put it into the echogenicity map.

    Returns:
        ``(amplitude, mask, excess attenuation in dB per mm, lesion params)``. The excess attenuation is
        scaled so that its integral along the beam line through the lesion centre is ``-posterior_db``.
    """
    lesion, dist = _draw_lesion(rng, grid, class_name, layers, geom)
    malignant = class_name == "malignant"
    sp = grid.spacing
    mask = (dist <= 0).astype(np.uint8)
    edge = (1.2 if malignant else 0.45) * min(sp[:2])  # indistinct vs sharp margin, mm
    occ = _sigmoid(-dist / edge)
    contrast = opts.lesion_contrast_db
    if contrast is None:
        contrast = rng.uniform(-18, -10) if malignant else rng.uniform(-30, -15)
    hetero = _smooth_noise(rng, grid, [0.03 * grid.fov[0]] * grid.ndim)
    inner = 10 ** (contrast / 20) * np.exp((0.4 if malignant else 0.08) * hetero)
    rim = None
    if malignant and rng.uniform() < 0.6:
        rim = ("echogenic halo", 0.5 * _band(dist, np.float32(0.0), 0.05 * grid.fov[0]) * (dist > 0))
    elif not malignant and rng.uniform() < 0.6:
        rim = ("capsule", 1.2 * _band(dist, np.float32(0.15 + 0.5 * sp[1]), 0.1 + 0.3 * sp[1]))
    amp = amp * (1 - occ) + inner * occ
    if rim is not None:
        amp = amp * (1 + rim[1])
    posterior = opts.posterior_db
    if posterior is None:
        posterior = rng.uniform(-18, -10) if malignant else rng.uniform(6, 12)
    a, b = lesion["semi_axes_mm"][:2]
    t = math.radians(lesion["angle_deg"])
    thickness = 2.0 / math.hypot(math.sin(t) / a, math.cos(t) / b)  # chord along the beam through the centre
    atten = (-posterior / thickness) * occ
    lesion.update(
        contrast_db=round(float(contrast), 3),
        posterior="shadow" if posterior < 0 else ("enhancement" if posterior > 0 else "none"),
        posterior_db=round(float(posterior), 3),
        rim=rim[0] if rim is not None else "none",
        volume_px=int(mask.sum()),
    )
    return amp, mask, atten, lesion


def _acquire(
    rng: np.random.Generator,
    grid: _Grid,
    geom: _BeamGeometry,
    amp: np.ndarray,
    atten: np.ndarray | None,
    opts: PhantomOptions,
) -> np.ndarray:
    """Envelope on the acquisition grid: residual depth loss and the lesion's attenuation integrated along
    each beam line (axis 1), multiplicative speckle (compounded looks) and the electronic noise floor."""
    amp_b = geom.to_beam(amp)
    depth_mm = (np.arange(grid.shape[1], dtype=np.float32) + 0.5) * geom.range_step
    loss_db = opts.residual_attenuation_db_per_cm * depth_mm / 10.0
    loss_db = loss_db.reshape([1, -1] + [1] * (grid.ndim - 2))
    if atten is not None:
        cum = np.cumsum(geom.to_beam(atten), axis=1) * geom.range_step
        beam_sigma = [0.15 / geom.beam_step, 0.0] + [0.0] * (grid.ndim - 2)  # 0.15 mm lateral beam width
        loss_db = loss_db + ndimage.gaussian_filter(cum, beam_sigma, mode="nearest")
    amp_b = amp_b * 10 ** (-loss_db / 20)
    noise_floor = 10 ** (opts.noise_floor_db / 20)
    if not opts.speckle:
        return amp_b + noise_floor
    sigma_px = None
    if opts.speckle_correlation_mm is not None:
        steps = [geom.beam_step, geom.range_step] + list(grid.spacing[2:])
        sigma_px = [c / s for c, s in zip(opts.speckle_correlation_mm, steps)]
    intensity = np.zeros(grid.shape, dtype=np.float32)
    for _ in range(int(opts.compounding)):
        c = _complex_speckle(grid.shape, rng, sigma_px)
        noise = _complex_speckle(grid.shape, rng, None)
        intensity += np.abs(amp_b * c + noise_floor * noise) ** 2
    return np.sqrt(intensity / int(opts.compounding))


# ----------------------------------------------------------------------------------------------------
# public generator


def _check_shape_spacing(
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
        if n < _MIN_SIZE[ax]:
            raise ValueError(f"shape {shp}: axis {ax} has {n} pixels, at least {_MIN_SIZE[ax]} are needed")
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
    shp, sp = _check_shape_spacing(shape, spacing)
    opts = _options(options, len(shp))
    rng = np.random.default_rng(seed)
    grid = _Grid(shp, sp)
    geom = _BeamGeometry(grid, opts.probe, opts.sector_angle_deg)

    amp, layers = _tissue(rng, grid, opts.anatomy)
    lesion: dict[str, Any] | None = None
    mask = np.zeros(shp, dtype=np.uint8)
    atten = None
    avoid = None
    if class_name != "normal":
        amp, mask, atten, lesion = _insert_lesion(rng, grid, geom, class_name, amp, layers, opts)
        idx = np.nonzero(mask)
        avoid = (np.array([i.min() for i in idx]) * np.array(sp), np.array([i.max() + 1 for i in idx]) * np.array(sp))
    layers["n_ducts"] = _add_ducts(rng, grid, amp, layers, avoid)
    env = _acquire(rng, grid, geom, amp, atten, opts)
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


# ----------------------------------------------------------------------------------------------------
# prepared dataset and cache


def _resolve_size(spatial_dims: int, image_size: int | Sequence[int] | None) -> tuple[int, ...]:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if image_size is None:
        return DEFAULT_IMAGE_SIZE[spatial_dims]
    if isinstance(image_size, (int, np.integer)):
        size = (int(image_size),) * spatial_dims
    else:
        size = tuple(int(s) for s in image_size)
        if len(size) == 1:
            size = size * spatial_dims
    if len(size) != spatial_dims:
        raise ValueError(f"image_size {tuple(image_size)} does not have {spatial_dims} values (x, y[, z])")
    _check_shape_spacing(size, None)
    return size


def _class_counts(n_images: int, class_fractions: Sequence[float]) -> list[int]:
    """Images per class (benign, malignant, normal) by the largest-remainder rule; sums to ``n_images``."""
    frac = np.asarray([float(f) for f in class_fractions], dtype=np.float64)
    if frac.shape != (len(PHANTOM_CLASSES),) or not np.all(np.isfinite(frac)) or frac.min() < 0 or frac.sum() <= 0:
        raise ValueError(
            f"class_fractions must be {len(PHANTOM_CLASSES)} non-negative numbers for {list(PHANTOM_CLASSES)} "
            f"with a positive sum, got {tuple(class_fractions)}"
        )
    exact = frac / frac.sum() * n_images
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n_images - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def _item_seed(seed: int, class_index: int, k: int) -> int:
    """Seed of the ``k``-th image of a class: independent streams, stable when ``n_images`` grows."""
    return int(np.random.SeedSequence([int(seed), class_index, k]).generate_state(1)[0])


def prepare_phantom(
    output_dir: str | os.PathLike,
    *,
    n_images: int | None = None,
    spatial_dims: int = 2,
    image_size: int | Sequence[int] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    class_fractions: Sequence[float] = (0.45, 0.35, 0.2),
    caliper_jitter_mm: float | None = None,
    caliper_seed: int | None = None,
    split: SplitOptions | None = None,
    **split_kwargs: Any,
) -> dict[str, Any]:
    """Write a prepared phantom dataset (``docs/conventions.md`` layout) and return its summary.

    Images are written by :class:`usseg_monai.data.prepared.PreparedDatasetWriter`: 2D PNG (mask 0/255),
    3D NIfTI with spacing; every datalist item carries ``spacing`` (mm), ``class`` and ``phantom_seed`` (the
    seed that regenerates it with :func:`generate_phantom`), and ``calipers``: ``calipers/<id>.json``, the
    calipers derived from its mask (always; a "normal" image gets an annotation without lesions), so that
    caliper-supervised bundles train on the phantom out of the box. The generator parameters of every item
    are also written to ``phantom_params.json``.

    Args:
        output_dir: output folder (created; must be empty unless ``overwrite``).
        n_images: number of images; default :data:`DEFAULT_N_IMAGES` (64 in 2D, 16 in 3D).
        spatial_dims: 2 or 3.
        image_size: ``(x, y[, z])``, or one int (or a 1-sequence) for every axis; default :data:`DEFAULT_IMAGE_SIZE`
            (128x128 in 2D, 64x64x32 in 3D).
        seed: seeds the images and (unless ``split`` gives another) the split.
        overwrite: allow a non-empty output folder.
        class_fractions: fractions of benign, malignant, normal images (normalised).
        caliper_jitter_mm, caliper_seed: simulated reader variability of the calipers (mm) and its seed, see
            :class:`usseg_monai.data.caliper_derivation.CaliperDerivation`; ``None``: the enclosing
            :func:`~usseg_monai.data.caliper_derivation.caliper_defaults`, else exact calipers.
        split, **split_kwargs: split (stratified by class) and optional partition, see
            :class:`usseg_monai.data.splits.SplitOptions`; default ``SplitOptions(seed=seed,
            val_fraction=0.25)``, keywords override it (e.g. ``val_fraction=0.2``).

    Returns:
        The summary written to ``summary.json``.

    Raises:
        ValueError: bad ``spatial_dims``, ``n_images``, ``image_size`` or ``class_fractions``.
        DatasetError: non-empty output folder without ``overwrite``.
    """
    opts = SplitOptions.resolve(
        split if split is not None else SplitOptions(seed=seed, val_fraction=0.25), **split_kwargs
    )
    size = _resolve_size(spatial_dims, image_size)
    n = DEFAULT_N_IMAGES[spatial_dims] if n_images is None else n_images
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    counts = _class_counts(int(n), class_fractions)
    with PreparedDatasetWriter(
        output_dir,
        overwrite=overwrite,
        spatial_dims=spatial_dims,
        name=f"phantom_{spatial_dims}d",
        description=(
            f"Synthetic {spatial_dims}D breast-ultrasound phantom (usseg_monai {__version__}, model revision "
            f"{PHANTOM_MODEL_REVISION}): {'x'.join(map(str, size))} px, seed {seed}"
        ),
        classes=list(PHANTOM_CLASSES),
        calipers=True,
        caliper_jitter_mm=caliper_jitter_mm,
        caliper_seed=caliper_seed,
    ) as writer:
        all_params: dict[str, Any] = {}
        for ci, (class_name, count) in enumerate(zip(PHANTOM_CLASSES, counts)):
            for k in range(count):
                item_seed = _item_seed(seed, ci, k)
                sample = generate_phantom(size, class_name=class_name, seed=item_seed)
                item_id = f"{class_name}_{k + 1:03d}"
                writer.add(
                    item_id, sample.image, sample.mask, class_name=class_name, case_id=item_id,
                    spacing=sample.spacing, phantom_seed=item_seed,
                )
                all_params[item_id] = sample.params
        atomic_write_json(writer.staging_dir / "phantom_params.json", all_params)
        return writer.finalize(
            classes=list(PHANTOM_CLASSES),
            split=opts,
            summary_extra={
                "generator": "usseg_monai.data.phantom",
                "model_revision": PHANTOM_MODEL_REVISION,
                "image_size": list(size),
                "spacing": list(default_phantom_spacing(size)),
                "class_fractions": [float(f) for f in class_fractions],
                "seed": int(seed),
            },
        )


def phantom_dataset_key(spatial_dims: int, n_images: int, image_size: Sequence[int], seed: int) -> str:
    """Cache key of a phantom dataset: its parameters, the usseg_monai version, the model and layout revisions."""
    version = re.sub(r"[^A-Za-z0-9.]+", "_", __version__)
    return (
        f"n{n_images}_{'x'.join(str(int(s)) for s in image_size)}_seed{seed}_v{version}_r{PHANTOM_MODEL_REVISION}"
        f"_l{PHANTOM_LAYOUT_REVISION}"
    )


def _complete(folder: Path) -> bool:
    """Whether ``folder`` holds a readable datalist whose files all exist."""
    if not (folder / "datalist.json").is_file():
        return False
    load_datalist(folder / "datalist.json", check_files=True)
    return True



def default_phantom_dir(
    spatial_dims: int = 2,
    *,
    n_images: int | None = None,
    image_size: int | Sequence[int] | None = None,
    seed: int = 0,
) -> str:
    """Where :func:`ensure_phantom_dataset` keeps the phantom dataset with these parameters.

    ``cache_dir()/phantom_<2d|3d>_<key>`` (:func:`phantom_dataset_key`). Nothing is read or written: the bundles'
    default ``dataset_dir`` is this path, and the phantom is generated only by the explicit step
    (``create_phantom`` in a bundle's ``initialize``, or ``usseg prepare phantom``).

    Args: as :func:`ensure_phantom_dataset`.
    """
    size = _resolve_size(spatial_dims, image_size)
    n = DEFAULT_N_IMAGES[spatial_dims] if n_images is None else int(n_images)
    return str(cache_dir() / f"phantom_{spatial_dims}d_{phantom_dataset_key(spatial_dims, n, size, seed)}")


def ensure_phantom_dataset(
    spatial_dims: int = 2,
    *,
    n_images: int | None = None,
    image_size: int | Sequence[int] | None = None,
    seed: int = 0,
    output: str | os.PathLike | None = None,
) -> str:
    """Path of a phantom dataset, generated when it does not exist yet.

    The folder is ``output``, by default :func:`default_phantom_dir` (in :func:`usseg_monai.data.io.cache_dir`).
    It is generated into a temporary sibling folder and moved into place with one :func:`os.rename`, so
    concurrent callers (torchrun ranks, MONAI Label) never see a half-written dataset: whoever loses the race
    discards its own copy and returns the winner's folder. An existing folder is never modified. Nothing is ever
    written into the package or a bundle.

    Args:
        spatial_dims: 2 or 3.
        n_images: default :data:`DEFAULT_N_IMAGES`.
        image_size: default :data:`DEFAULT_IMAGE_SIZE`.
        seed: seed of the images and of the split.
        output: the dataset folder; default :func:`default_phantom_dir` of the other arguments.

    Returns:
        The dataset folder (holding ``datalist.json``), as a string.

    Raises:
        DatasetError: the target folder exists but is not a complete dataset (delete it to regenerate).
    """
    size = _resolve_size(spatial_dims, image_size)
    n = DEFAULT_N_IMAGES[spatial_dims] if n_images is None else int(n_images)
    default = output is None
    final = Path(default_phantom_dir(spatial_dims, n_images=n, image_size=size, seed=seed) if default else output)
    what = "cached phantom dataset" if default else "dataset folder"
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    empty = final.is_dir() and not any(final.iterdir())  # an empty folder is filled (os.rename replaces it)
    if final.exists() and not empty:
        try:
            if _complete(final):
                return str(final)
        except DatasetError as e:
            raise DatasetError(f"{what} {final} is damaged ({e}); delete the folder to regenerate") from e
        raise DatasetError(
            f"{what} {final} exists but has no datalist.json; "
            + ("delete the folder to regenerate" if default else "choose an empty or missing folder for the phantom")
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        logger.info("generating the %dD phantom dataset (%d images) into %s", spatial_dims, n, final)
        summary = prepare_phantom(
            tmp, n_images=n, spatial_dims=spatial_dims, image_size=size, seed=seed, overwrite=True
        )
        summary["output"] = str(final)
        atomic_write_json(tmp / "summary.json", summary)
        try:
            os.rename(tmp, final)
        except OSError as e:
            # another process (or thread) renamed its copy first: use it
            if not _complete(final):
                raise DatasetError(f"could not move the generated phantom dataset to {final}: {e}") from e
            logger.info("phantom dataset %s was created concurrently; discarding this copy", final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(final)

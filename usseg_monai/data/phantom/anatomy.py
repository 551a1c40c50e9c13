"""The phantom's anatomy (steps 1-2 of :mod:`usseg_monai.data.phantom`): tissue echogenicity (skin, fat with
Cooper's ligaments, fibroglandular tissue with ducts, fascia, pectoral muscle) on a millimetre grid, and the lesion
(a star-shaped region around an ellipse or ellipsoid, benign-like or malignant-like by the BI-RADS descriptors)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from usseg_monai.data.phantom.geometry import BeamGeometry, Grid
from usseg_monai.data.phantom.options import PhantomOptions

__all__ = ["tissue", "add_ducts", "insert_lesion"]

logger = logging.getLogger(__name__)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _band(y: np.ndarray, centre: np.ndarray, width_mm: float) -> np.ndarray:
    """Gaussian profile around the surface ``y = centre`` (a thin echogenic line), peak 1."""
    return np.exp(-0.5 * ((y - centre) / width_mm) ** 2)


def _random_surface(
    rng: np.random.Generator, grid: Grid, depth_mm: float, amp_mm: float, tilt: float = 0.0
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


def _smooth_noise(rng: np.random.Generator, grid: Grid, sigma_mm: Sequence[float]) -> np.ndarray:
    """Gaussian random field of zero mean and unit std, correlated with Gaussian sigmas in mm per axis."""
    n = rng.standard_normal(grid.shape, dtype=np.float32)
    sig = [sm / sp for sm, sp in zip(sigma_mm, grid.spacing)]
    n = ndimage.gaussian_filter(n, sig, mode="wrap", truncate=3.0)
    return (n - n.mean()) / (n.std() + 1e-12)


def _ellipsoid_level(
    grid: Grid, centre: Sequence[float], axes: Sequence[float], angle_deg: float
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
    grid: Grid,
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


def tissue(rng: np.random.Generator, grid: Grid, anatomy: bool) -> tuple[np.ndarray, dict[str, Any]]:
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


def add_ducts(
    rng: np.random.Generator,
    grid: Grid,
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
    rng: np.random.Generator, grid: Grid, class_name: str, layers: dict[str, Any], geom: BeamGeometry
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


def insert_lesion(
    rng: np.random.Generator,
    grid: Grid,
    geom: BeamGeometry,
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

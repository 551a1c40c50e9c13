"""The phantom's image formation (steps 3-6 of :mod:`usseg_monai.data.phantom`): attenuation along the beam,
fully developed speckle (Rayleigh envelope) with a point spread function and a noise floor, log compression to 8 bit,
and the optional sector (fan) scan conversion."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from usseg_monai.data.phantom.geometry import BeamGeometry, Grid
from usseg_monai.data.phantom.options import PhantomOptions

__all__ = ["RAYLEIGH_SNR", "rayleigh_speckle", "log_compress", "acquire"]

logger = logging.getLogger(__name__)


RAYLEIGH_SNR = math.sqrt(math.pi / (4.0 - math.pi))


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


def acquire(
    rng: np.random.Generator,
    grid: Grid,
    geom: BeamGeometry,
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

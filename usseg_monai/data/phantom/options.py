"""The phantom's classes, default sizes, revisions and the options of one image (:class:`PhantomOptions`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PHANTOM_CLASSES",
    "PHANTOM_MODEL_REVISION",
    "PHANTOM_LAYOUT_REVISION",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_N_IMAGES",
    "DEFAULT_FOV_MM",
    "ELEVATION_SPACING_FACTOR",
    "MIN_SIZE",
    "PhantomOptions",
]


PHANTOM_CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")


PHANTOM_MODEL_REVISION = 1


PHANTOM_LAYOUT_REVISION = 2


DEFAULT_IMAGE_SIZE: dict[int, tuple[int, ...]] = {2: (128, 128), 3: (64, 64, 32)}


DEFAULT_N_IMAGES: dict[int, int] = {2: 64, 3: 16}


DEFAULT_FOV_MM = 25.6


ELEVATION_SPACING_FACTOR = 2.0


MIN_SIZE = {0: 16, 1: 16, 2: 8}  # smallest grid per axis (x, y, z) for which every lesion is resolved


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

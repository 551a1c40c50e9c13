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

Modules, bottom to top: :mod:`~usseg_monai.data.phantom.options` (classes, defaults, :class:`PhantomOptions`),
:mod:`~usseg_monai.data.phantom.geometry` (the millimetre grid and the beam geometry),
:mod:`~usseg_monai.data.phantom.anatomy` (steps 1-2), :mod:`~usseg_monai.data.phantom.acoustics` (steps 3-6),
:mod:`~usseg_monai.data.phantom.generator` (one image: :func:`generate_phantom`) and
:mod:`~usseg_monai.data.phantom.dataset` (:func:`prepare_phantom`, the bundles' cached default dataset
:func:`ensure_phantom_dataset`, named by the bundles' configs as ``usseg_monai.data.phantom.ensure_phantom_dataset``).
"""

from __future__ import annotations

from usseg_monai.data.phantom.options import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_N_IMAGES,
    PHANTOM_CLASSES,
    PHANTOM_LAYOUT_REVISION,
    PHANTOM_MODEL_REVISION,
    PhantomOptions,
)
from usseg_monai.data.phantom.acoustics import (
    log_compress,
    RAYLEIGH_SNR,
    rayleigh_speckle,
)
from usseg_monai.data.phantom.generator import (
    default_phantom_spacing,
    generate_phantom,
    PhantomSample,
)
from usseg_monai.data.phantom.dataset import (
    default_phantom_dir,
    ensure_phantom_dataset,
    phantom_dataset_key,
    prepare_phantom,
)

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

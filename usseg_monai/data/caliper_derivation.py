"""How a prepared dataset derives calipers from its masks: :class:`CaliperDerivation` (on/off, reader jitter in mm,
seed, smallest lesion in voxels) and :func:`caliper_defaults`, the block that turns derivation on for every
:class:`~usseg_monai.data.prepared.PreparedDatasetWriter` created inside it (``usseg prepare ... --calipers``).
"""

from __future__ import annotations

import contextlib
import contextvars
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from usseg_monai.calipers import calipers_from_mask, label_lesions

__all__ = ["DEFAULT_CALIPER_MIN_VOXELS", "CaliperDerivation", "caliper_defaults", "current_caliper_derivation"]


#: Connected mask components smaller than this many voxels get no calipers (speckle, not a lesion). Real masks
#: hold a few such blobs: BUSI's mask files have 5 components of 1-5 pixels, the smallest real lesion has 175
#: pixels; the reference bundles ignore predicted lesions under 20 voxels (``min_lesion_voxels``), so 20 is
#: the default here too.
DEFAULT_CALIPER_MIN_VOXELS = 20


@dataclass(frozen=True)
class CaliperDerivation:
    """How calipers are derived from masks when a dataset is written.

    Attributes:
        enabled: derive calipers for every item with a mask.
        jitter_mm: standard deviation (mm, per axis) of simulated reader variability,
            :func:`usseg_monai.calipers.jitter_calipers`; 0 places the calipers exactly.
        seed: seed of the jitter; item ``i`` uses the stream ``(seed, crc32(item id))``, so an item's calipers
            do not depend on the order or number of items.
        min_voxels: components smaller than this are speckle and get no calipers.
    """

    enabled: bool = False
    jitter_mm: float = 0.0
    seed: int = 0
    min_voxels: int = DEFAULT_CALIPER_MIN_VOXELS

    def __post_init__(self) -> None:
        if not (float(self.jitter_mm) >= 0.0):
            raise ValueError(f"caliper jitter_mm must be >= 0 (mm), got {self.jitter_mm}")
        if int(self.min_voxels) < 1:
            raise ValueError(f"caliper min_voxels must be >= 1, got {self.min_voxels}")

    def item_seed(self, item_id: str) -> np.random.Generator:
        """The jitter generator of one item (independent of the other items)."""
        return np.random.default_rng(np.random.SeedSequence([int(self.seed), zlib.crc32(item_id.encode())]))

    def derive(self, mask: np.ndarray, spacing: Any, item_id: str, where: str) -> tuple[Any, int]:
        """``(annotation, n_small)``: the calipers of ``mask`` and how many components were too small."""
        _, _, sizes = label_lesions(mask)
        ann = calipers_from_mask(
            mask,
            spacing,
            allow_empty=True,
            min_voxels=int(self.min_voxels),
            jitter_mm=float(self.jitter_mm),
            seed=self.item_seed(item_id),
            where=where,
        )
        ann.meta = {"derived_from": "mask", "min_voxels": int(self.min_voxels), "jitter_mm": float(self.jitter_mm)}
        if self.jitter_mm > 0:
            ann.meta["seed"] = int(self.seed)
        return ann, int((sizes < int(self.min_voxels)).sum())


_CALIPER_DEFAULTS: contextvars.ContextVar[CaliperDerivation] = contextvars.ContextVar(
    "usseg_caliper_defaults", default=CaliperDerivation()
)


@contextlib.contextmanager
def caliper_defaults(
    enabled: bool = True,
    jitter_mm: float = 0.0,
    seed: int = 0,
    min_voxels: int = DEFAULT_CALIPER_MIN_VOXELS,
) -> Iterator[CaliperDerivation]:
    """Make every :class:`PreparedDatasetWriter` created inside the block derive calipers (unless told otherwise).

    This is how ``usseg prepare <dataset> --calipers`` reaches the writer a converter builds internally::

        with caliper_defaults(jitter_mm=0.5):
            prepare_busi(src, out)   # out/calipers/<id>.json for every image with a mask
    """
    token = _CALIPER_DEFAULTS.set(CaliperDerivation(enabled, jitter_mm, seed, min_voxels))
    try:
        yield _CALIPER_DEFAULTS.get()
    finally:
        _CALIPER_DEFAULTS.reset(token)


def current_caliper_derivation() -> CaliperDerivation:
    """The derivation of the innermost enclosing :func:`caliper_defaults` block (off outside any)."""
    return _CALIPER_DEFAULTS.get()

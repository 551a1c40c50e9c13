"""Refuse images with non-finite values (NaN, +-inf) when they are loaded (#19 item 2).

A NaN patch in one training image makes the loss NaN from then on; training would go on and save a model whose
weights are NaN. Floating-point formats (NIfTI, NRRD, MetaImage, float TIFF, DICOM with a float rescale) can hold
such values; the bundles check every loaded image (and label) right after it is made grayscale.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor

from usseg_monai.transforms.channels import source_name

__all__ = ["CheckFinite", "CheckFinited"]


class CheckFinite(Transform):
    """Return the image unchanged, or raise when it holds NaN or infinite values.

    Raises:
        ValueError: naming the source file (MetaTensor ``filename_or_obj``), the number of non-finite values
            and the first one's index.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img):
        t = convert_to_tensor(img, track_meta=False)
        if not torch.is_floating_point(t) and not torch.is_complex(t):
            return img  # integer images cannot hold NaN / inf
        bad = ~torch.isfinite(t)
        n = int(bad.sum())
        if n:
            first = tuple(int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(
                f"{source_name(img)}: {n} non-finite value(s) (NaN or inf) in the image, the first at index "
                f"{first} (channel, x, y[, z]); fix or remove the file"
            )
        return img


class CheckFinited(MapTransform):
    """Dictionary form of :class:`CheckFinite`."""

    backend = CheckFinite.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckFinite()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.checker(d[key])
        return d

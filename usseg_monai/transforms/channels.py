"""Convert channel-first ultrasound images to one grayscale channel.

Ultrasound frames are grayscale, but exports are often RGB (screen captures, DICOM ``RGB``/``YBR``) or RGBA
(PNG with alpha). The networks take one channel, so colour is converted to luminance with the ITU-R BT.601
weights ``Y = 0.299 R + 0.587 G + 0.114 B`` (what PIL's ``convert("L")`` uses); alpha is dropped.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor

__all__ = ["EnsureGrayscale", "EnsureGrayscaled", "LUMA_WEIGHTS", "source_name"]

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def source_name(img) -> str:
    """The file an image was loaded from (MetaTensor ``filename_or_obj``), or a placeholder."""
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if name:
            return str(name)
    return "<array without a file name>"


class EnsureGrayscale(Transform):
    """Return a channel-first image with exactly one channel.

    - 1 channel: returned unchanged;
    - 3 channels (RGB) or 4 (RGBA): luminance ``0.299 R + 0.587 G + 0.114 B`` (alpha ignored), as float32,
      in the input's intensity units; metadata (affine, file name) is kept.

    Any other channel count raises :class:`ValueError` naming the source file and the count.
    The input must already be channel-first (``EnsureChannelFirst``).
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, img) -> torch.Tensor:
        """Apply the conversion to a channel-first ``[C, x, y(, z)]`` image."""
        if img.ndim < 3:
            raise ValueError(
                f"{source_name(img)}: expected a channel-first image [C, x, y(, z)], got shape {tuple(img.shape)}"
            )
        n = int(img.shape[0])
        if n == 1:
            return img
        if n not in (3, 4):
            raise ValueError(
                f"{source_name(img)}: cannot convert an image with {n} channels to grayscale "
                "(expected 1 (gray), 3 (RGB) or 4 (RGBA))"
            )
        t = convert_to_tensor(img, track_meta=isinstance(img, MetaTensor))
        w = torch.tensor(LUMA_WEIGHTS, dtype=torch.float32, device=t.device)
        w = w.reshape((3,) + (1,) * (t.ndim - 1))
        gray = (t[:3].float() * w).sum(dim=0, keepdim=True)
        if isinstance(img, MetaTensor) and not isinstance(gray, MetaTensor):
            gray = MetaTensor(gray, meta=img.meta, applied_operations=img.applied_operations)
        return gray


class EnsureGrayscaled(MapTransform):
    """Dictionary form of :class:`EnsureGrayscale`.

    Args:
        keys: keys of the images to convert (usually ``"image"``; masks need no conversion).
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = EnsureGrayscale.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = EnsureGrayscale()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d

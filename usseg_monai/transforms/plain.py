"""Run the random training transforms on plain tensors, without MONAI's metadata (#20 item 2).

After ``CacheDataset``'s cache, every draw of a training item runs the random transforms again; with metadata
tracking on (MONAI's default) each of them also updates the MetaTensor's affine and its list of applied operations,
and the collated batch reaches the network as a MetaTensor whose ``__torch_function__`` wraps every operation of
the forward and backward pass. Training reads none of that metadata. Measured on this project's 2-core CPU
(1 torch thread, BUSI lesion images at 64x64, batch 8, 2026-12-04): the reference UNet's batch costs 13.7 ms with
metadata and 6.6 ms without; CRBNet's (four keys, the reference augmentation) 31.7 ms and 13.9 ms; the network's
forward + backward + step runs ~10% slower on a MetaTensor than on the same plain tensor.

:class:`PlainTensorCompose` is a :class:`monai.transforms.Compose` that turns the MetaTensors of its input into
plain tensors, switches tracking off (:func:`monai.data.set_track_meta`) while its transforms run and restores the
previous setting after, so the rest of the process (validation, inference, saving) keeps its metadata;
:func:`plain_random_transforms` puts :class:`PlainTensorsd` before it, so that ``CacheDataset`` caches plain
tensors. The same
random numbers are drawn and the same operations applied: the tensors are equal to those of the tracked path. It
is a ``Compose`` (randomizable), so ``CacheDataset`` caches what comes before it and runs it on every draw. The
source file of the first MetaTensor is kept as a string under ``source_key`` (MONAI's ``filename_or_obj``), so
messages about a batch (:func:`usseg_monai.handlers.batch_sources`) can still name its files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor, get_track_meta, set_track_meta
from monai.transforms import Compose, Transform

__all__ = ["PlainTensorsd", "PlainTensorCompose", "plain_random_transforms", "SOURCE_KEY"]

#: the item key that keeps an item's source file once its MetaTensors are plain (MONAI's metadata key name)
SOURCE_KEY = "filename_or_obj"


def _source(data: Mapping[Any, Any]) -> str | None:
    for value in data.values():
        if isinstance(value, MetaTensor):
            name = value.meta.get(SOURCE_KEY)
            if name:
                return str(name)
    return None


class PlainTensorsd(Transform):
    """Every MetaTensor of a dictionary item as a plain tensor (``as_tensor()``: the same storage), the source file
    of the first one kept as a string under ``source_key`` (``None``: not kept; an existing key is not overwritten);
    with ``device``, every tensor of the item moved there (e.g. ``"cuda:0"``: the cache and the random transforms
    after it on the GPU, MONAI's transforms running on CUDA tensors; the loader must then use ``num_workers=0``).

    Deterministic: placed last before the random transforms, ``CacheDataset`` caches plain tensors, so the copy
    it makes of a cached item on every draw copies no metadata (measured: the deep copy of the MetaTensor items
    was ~40% of the reference UNet's data time at 64x64).

    Raises:
        TypeError: when called on something other than a dictionary item.
    """

    def __init__(self, source_key: str | None = SOURCE_KEY, device: str | torch.device | None = None) -> None:
        self.source_key = source_key
        self.device = None if device is None else torch.device(device)

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        if not isinstance(data, Mapping):
            raise TypeError(f"PlainTensorsd: expects a dictionary item, got {type(data).__name__}")
        out = dict(data)
        if self.source_key is not None and self.source_key not in out:
            name = _source(out)
            if name is not None:
                out[self.source_key] = name
        for key, value in out.items():
            if isinstance(value, MetaTensor):
                value = out[key] = value.as_tensor()
            if self.device is not None and isinstance(value, torch.Tensor):
                out[key] = value.to(self.device)
        return out


class PlainTensorCompose(Compose):
    """:class:`monai.transforms.Compose` of ``transforms`` applied to a dictionary item's plain tensors
    (:class:`PlainTensorsd` first), with metadata tracking off for the call (see the module docstring).

    Args:
        transforms: the (random) dictionary transforms; an empty sequence only converts.
        source_key: see :class:`PlainTensorsd`.
        kwargs: other arguments of :class:`monai.transforms.Compose`.

    Raises:
        TypeError: when called on something other than a dictionary item.
    """

    def __init__(self, transforms: Sequence[Any] | None = None, source_key: str | None = SOURCE_KEY,
                 **kwargs: Any) -> None:
        super().__init__(list(transforms or []), **kwargs)
        self.to_plain = PlainTensorsd(source_key)

    def __call__(self, input_, start=0, end=None, threading=False, lazy: bool | None = None):
        if not isinstance(input_, Mapping):
            raise TypeError(f"PlainTensorCompose: expects a dictionary item, got {type(input_).__name__}")
        data = self.to_plain(input_)
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            return super().__call__(data, start=start, end=end, threading=threading, lazy=lazy)
        finally:
            set_track_meta(tracking)


def plain_random_transforms(
    transforms: Sequence[Any], device: str | torch.device | None = None, source_key: str | None = SOURCE_KEY
) -> list[Any]:
    """The tail of a training chain: ``[PlainTensorsd(source_key, device), PlainTensorCompose(transforms)]`` (the
    first cached, the second run on every draw); a bundle's ``train#preprocessing`` is ``load + ... +
    plain_random_transforms(@train#random_transforms, device=@augment_device)``."""
    return [PlainTensorsd(source_key, device), PlainTensorCompose(transforms, source_key=source_key)]

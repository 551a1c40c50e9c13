"""Item keys that a workflow needs but a caller may leave out.

MONAI Label's bundle trainer, for instance, builds its own training list of ``{"image", "label"}`` items, with no
``class_index``; for SemiSeg-CAW such an item is what the datalist calls a mask-only item (segmentation loss only,
``class_index`` -1, ``docs/semiseg_caw.md``). :class:`SetDefaultd` gives the missing key that meaning, so that a
later ``SelectItemsd`` or collation finds it.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["SetDefaultd", "SetDefaultD", "SetDefaultDict"]


class SetDefaultd(MapTransform):
    """Set each of ``keys`` that the item lacks (or holds ``None``) to a copy of ``default``; present values stay.

    Args:
        keys: the item keys.
        default: the value of a missing key (e.g. ``-1``, "no class label").
    """

    def __init__(self, keys: KeysCollection, default: Any = None) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.default = default

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            if d.get(key) is None:
                d[key] = copy.deepcopy(self.default)
        return d


SetDefaultD = SetDefaultDict = SetDefaultd

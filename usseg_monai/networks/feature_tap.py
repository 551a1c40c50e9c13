"""Read a network's intermediate features from outside its ``forward``: forward hooks that keep what a loss needs.

A loss that balances gradients on a shared representation (IMTL-G, Liu et al., ICLR 2021, section 3.1; used by
:class:`usseg_monai.losses.semiseg.IMTLWeights`) needs the feature tensors of the current training step, while the
engines hand the loss only the network's outputs. :class:`FeatureTap` registers a forward hook on each given module
and keeps the outputs of the forward passes run in training mode with gradients enabled; the loss takes them with
:meth:`FeatureTap.pop`. Eval-mode and ``no_grad`` passes (validation, inference, export) are not kept.

One tap per module set (:meth:`FeatureTap.for_modules`), so two losses of one network (e.g. SemiSeg-CAW's
pre-training and joint stages) share it and whichever runs takes the features. At most ``max_items`` tensors are
kept (the oldest are dropped), so a tap that no loss reads cannot hold the graphs of many steps.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn as nn

__all__ = ["FeatureTap"]

_TAPS: weakref.WeakKeyDictionary[nn.Module, FeatureTap] = weakref.WeakKeyDictionary()


class FeatureTap:
    """Forward hooks on ``modules`` that keep their training-mode outputs until :meth:`pop`.

    Args:
        modules: the modules whose outputs are kept (each output must be a tensor).
        max_items: most tensors kept between two :meth:`pop` calls (the oldest are dropped); at least
            ``len(modules)``.

    Raises:
        ValueError: no module, or ``max_items`` below the number of modules.
    """

    def __init__(self, modules: Sequence[nn.Module], max_items: int = 16) -> None:
        mods = list(modules)
        if not mods:
            raise ValueError("FeatureTap: no module to read")
        if max_items < len(mods):
            raise ValueError(f"FeatureTap: max_items ({max_items}) must be >= the number of modules ({len(mods)})")
        self.modules = mods
        self.max_items = int(max_items)
        self._kept: list[torch.Tensor] = []
        self._handles = [m.register_forward_hook(self._hook) for m in mods]

    @classmethod
    def for_modules(cls, modules: Sequence[nn.Module], max_items: int = 16) -> FeatureTap:
        """The tap of exactly these modules, created on first use (a second loss of the same network shares it).

        Raises:
            ValueError: the first module already has a tap on another module set.
        """
        mods = list(modules)
        if not mods:
            raise ValueError("FeatureTap: no module to read")
        tap = _TAPS.get(mods[0])
        if tap is None:
            tap = cls(mods, max_items)
            _TAPS[mods[0]] = tap
        elif len(tap.modules) != len(mods) or any(a is not b for a, b in zip(tap.modules, mods)):
            raise ValueError(
                f"FeatureTap: {type(mods[0]).__name__} is already read together with other modules "
                f"({[type(m).__name__ for m in tap.modules]}); read the same module set"
            )
        return tap

    def _hook(self, module: nn.Module, _inputs: object, output: object) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"FeatureTap: {type(module).__name__} returned {type(output).__name__}, not a tensor")
        self._kept.append(output)
        if len(self._kept) > self.max_items:
            del self._kept[: len(self._kept) - self.max_items]

    def pop(self) -> list[torch.Tensor]:
        """The outputs kept since the last call, in call order; the tap is empty afterwards."""
        kept, self._kept = self._kept, []
        return kept

    def remove(self) -> None:
        """Remove the hooks (and forget the kept tensors)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._kept = []
        for key, tap in list(_TAPS.items()):
            if tap is self:
                del _TAPS[key]

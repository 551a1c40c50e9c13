"""SemiSeg-CAW's network: ClassElevateSeg's auxiliary lesion map as an extra input of the core segmentation network.

SemiSeg-CAW (Barzegar & Khan, Mach. Learn. Knowl. Extr. 2025, 7, 124; ``methods.md`` section 2) pre-trains
ClassElevateSeg (:class:`~usseg_monai.networks.class_elevate.ClassElevateSeg`), then fine-tunes it jointly with a
core network whose bottleneck also feeds a classification head: MALUNet (Ruan et al., BIBM 2022) or UNeXt
(Valanarasu & Patel, MICCAI 2022). This project's *design choice* (the paper gives no wiring): the auxiliary map
(ClassElevateSeg's lesion probability, in [0, 1], at input resolution) is concatenated to the image as a second
input channel of the core network; gradients of the core's losses flow back into ClassElevateSeg (joint
fine-tuning).

:class:`SemiSegCAWNet` holds both. With ``auxiliary=False`` it is the core network alone (one input channel),
the "backbone on masks" baselines of the paper's tables.

Output convention (as :class:`~usseg_monai.networks.TwoBranchNet` and
:class:`~usseg_monai.networks.CoarseRefinedNet`: one tensor, so DDP, TorchScript and the semi-supervised engine
see a plain network):

- **eval mode**: ``forward(x)`` returns the core's segmentation logits ``[B, out_channels, x, y]`` (what
  inference, MONAI Label, ``verify_net_in_out`` and the exports use); :meth:`SemiSegCAWNet.forward_with_class`
  gives ``(segmentation logits, class logits [B, K])`` for the bundle's class-probability output;
- **training mode**: ``forward(x)`` returns every output packed on the channel dimension,
  ``[B, out_channels + K (+ 1 + K), x, y]``: the core's segmentation logits, its class logits (broadcast over the
  image), and with the auxiliary branch ClassElevateSeg's one-channel lesion logits and its class logits;
  :func:`unpack_semiseg_output` returns them as a dict.

2D; spatial sizes divisible by 32 (both ClassElevateSeg and the core pool five times).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from .class_elevate import ClassElevateSeg
from .malunet import MALUNet
from .unext import UNeXt

__all__ = ["SemiSegCAWNet", "unpack_semiseg_output", "make_backbone", "BACKBONES"]

#: core networks by name
BACKBONES: dict[str, type[nn.Module]] = {"malunet": MALUNet, "unext": UNeXt}


def make_backbone(
    name: str, in_channels: int, out_channels: int, num_cls_classes: int, **kwargs: Any
) -> nn.Module:
    """The core network ``name`` (``"malunet"`` or ``"unext"``) with a classification head of ``num_cls_classes``.

    Raises:
        ValueError: an unknown name.
    """
    key = str(name).lower()
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[key](in_channels=in_channels, out_channels=out_channels, num_classes_cls=num_cls_classes, **kwargs)


def unpack_semiseg_output(output: torch.Tensor, out_channels: int, num_cls_classes: int) -> dict[str, torch.Tensor]:
    """Split a training-mode output of :class:`SemiSegCAWNet` into ``seg``, ``cls`` (and ``aux_seg``, ``aux_cls``).

    ``seg`` ``[B, out_channels, x, y]`` and ``aux_seg`` ``[B, 1, x, y]`` are logits; ``cls`` / ``aux_cls``
    ``[B, num_cls_classes]`` class logits.

    Raises:
        ValueError: a channel count that matches neither layout (with or without the auxiliary branch).
    """
    c, k = int(out_channels), int(num_cls_classes)
    if output.ndim != 4:
        raise ValueError(f"unpack_semiseg_output: expected a [B, C, x, y] training-mode output, got {list(output.shape)}")
    n = output.shape[1]
    if n not in (c + k, c + k + 1 + k):
        raise ValueError(
            f"unpack_semiseg_output: {n} channels match neither {c + k} (core: {c} seg + {k} class) nor "
            f"{c + 2 * k + 1} (with the auxiliary branch); is the network in training mode?"
        )
    out = {"seg": output[:, :c], "cls": output[:, c : c + k, 0, 0]}
    if n == c + 2 * k + 1:
        out["aux_seg"] = output[:, c + k : c + k + 1]
        out["aux_cls"] = output[:, c + k + 1 :, 0, 0]
    return out


class SemiSegCAWNet(nn.Module):
    """ClassElevateSeg + core network (MALUNet or UNeXt), see the module docstring.

    ``divisor`` (32): every spatial size must be a multiple of it (used by :mod:`usseg_monai.export`).

    Args:
        backbone: ``"malunet"`` (default, the paper's main backbone) or ``"unext"``.
        in_channels: image channels (1, grayscale ultrasound).
        out_channels: segmentation logit channels of the core (2: softmax, channel 1 = lesion).
        num_cls_classes: classification classes (BUSI: 3, benign / malignant / normal).
        auxiliary: with ClassElevateSeg and its map as an extra input (SemiSeg-CAW); ``False``: the core alone.
        class_elevate: extra keyword arguments of :class:`ClassElevateSeg` (e.g. ``decoder_channels``).
        core: extra keyword arguments of the backbone (e.g. MALUNet's ``widths``).
    """

    def __init__(
        self,
        backbone: str = "malunet",
        in_channels: int = 1,
        out_channels: int = 2,
        num_cls_classes: int = 3,
        auxiliary: bool = True,
        class_elevate: Mapping[str, Any] | None = None,
        core: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.divisor = 32
        if num_cls_classes < 1:
            raise ValueError(f"SemiSegCAWNet: num_cls_classes must be >= 1, got {num_cls_classes}")
        self.backbone = str(backbone).lower()
        self.out_channels = int(out_channels)
        self.num_cls_classes = int(num_cls_classes)
        self.auxiliary = bool(auxiliary)
        self.class_elevate: ClassElevateSeg | None = None
        if self.auxiliary:
            self.class_elevate = ClassElevateSeg(
                spatial_dims=2, in_channels=in_channels, out_channels=1, num_classes=num_cls_classes,
                **dict(class_elevate or {}),
            )
        self.core = make_backbone(
            self.backbone, in_channels + (1 if self.auxiliary else 0), out_channels, num_cls_classes, **dict(core or {})
        )

    def _all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        aux_seg: torch.Tensor | None = None
        aux_cls: torch.Tensor | None = None
        inp = x
        ce = self.class_elevate
        if ce is not None:
            a_seg, a_cls = ce(x)
            inp = torch.cat([x, torch.sigmoid(a_seg)], dim=1)
            aux_seg, aux_cls = a_seg, a_cls
        out = self.core(inp)
        # the core always has its class head here (make_backbone); the check refines the Union for TorchScript
        if not isinstance(out, tuple):
            raise RuntimeError("SemiSegCAWNet: the core network returned no class logits (built without a head)")
        seg, cls = out[0], out[1]
        return seg, cls, aux_seg, aux_cls

    def forward_with_class(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(segmentation logits [B, out_channels, x, y], class logits [B, num_cls_classes])`` in either mode."""
        seg, cls, _, _ = self._all(x)
        return seg, cls

    def pretrain_module(self) -> nn.Module:
        """What stage 1 trains and ``class_elevate.pt`` holds: ClassElevateSeg (the core when there is none, for
        configs that build, but never run, the pretraining of the supervised baseline)."""
        return self.class_elevate if self.class_elevate is not None else self.core

    def shared_feature_modules(self) -> list[nn.Module]:
        """The modules whose outputs every task of a network reads (the core's bottleneck, and ClassElevateSeg's
        when the auxiliary branch is on), for IMTL-G's gradient balance
        (:class:`~usseg_monai.losses.semiseg_caw.SemiSegCAWLoss` ``shared_modules``)."""
        mods = [self.core.shared_feature_module()]
        ce = self.class_elevate
        if ce is not None:
            mods.append(ce.shared_feature_module())
        return mods

    def auxiliary_map(self, x: torch.Tensor) -> torch.Tensor:
        """ClassElevateSeg's lesion probability ``[B, 1, x, y]`` in [0, 1].

        Raises:
            RuntimeError: the network was built without the auxiliary branch.
        """
        ce = self.class_elevate
        if ce is None:
            raise RuntimeError("SemiSegCAWNet: built with auxiliary=False, there is no auxiliary map")
        return ce.auxiliary_map(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eval mode: segmentation logits; training mode: every output packed on channels (module docstring)."""
        seg, cls, aux_seg, aux_cls = self._all(x)
        if not self.training:
            return seg
        size = seg.shape[2:]
        parts = [seg, cls[:, :, None, None].expand(-1, -1, size[0], size[1])]
        if aux_seg is not None and aux_cls is not None:
            parts += [aux_seg, aux_cls[:, :, None, None].expand(-1, -1, size[0], size[1])]
        return torch.cat(parts, dim=1)

"""UNeXt, the second core network of SemiSeg-CAW, with an optional classification head.

Valanarasu & Patel, "UNeXt: MLP-based Rapid Medical Image Segmentation Network", MICCAI 2022, pp. 23-33
(``methods.md`` section 2). Written from the paper and, in #16, checked and fixed against the official code
(jeya-maria-jose/UNeXt-pytorch ``archs.py``, ``UNext``). Its parts (section 2 of the paper, Fig. 2):

- convolutional stage: three encoder blocks (3x3 convolution, batch normalisation, 2x2 max pooling, ReLU) with
  16, 32, 128 channels, mirrored in the decoder (3x3 convolution, batch normalisation, bilinear x2 upsampling,
  ReLU), skip connections added;
- tokenised MLP stage: two encoder levels (160 and 256 channels) each made of an overlapping patch embedding
  (3x3 convolution, stride 2, then LayerNorm over the channels: the tokens) and one shifted-MLP block, and two
  decoder levels (160 and 128 channels) with one shifted-MLP block each;
- shifted MLP block (:class:`ShiftedMLPBlock`, the paper's eq. 1-3): ``x + MLP(LN(x))`` where the MLP shifts the
  channel groups of the tokens along the height (first spatial axis, tensor dim 2), applies a linear layer, a 3x3
  depthwise convolution and GELU, shifts along the width (last spatial axis, dim 3) and applies a second linear
  layer: the order of the official code (jeya-maria-jose/UNeXt-pytorch ``archs.py``, ``shiftmlp.forward``: roll
  on dim 2, then on dim 3; #16 fixed an earlier width-first order); the
  shift splits the channels in ``shift_size`` groups rolled by ``-shift_size//2 .. shift_size//2`` positions
  (zero-padded, not wrapped);
- the bottleneck (256 channels, 1/32 of the input) feeds SemiSeg-CAW's classification head (global average
  pooling + linear).

Initialisation as the official code: the token stage's modules (:class:`ShiftedMLP`, :class:`ShiftedMLPBlock`,
:class:`OverlapPatchEmbed`) get ``_init_weights`` (:func:`token_init`: linear weights truncated normal, std 0.02,
zero biases; LayerNorm 1 / 0; convolutions normal with std ``sqrt(2 / fan_out)``, ``fan_out = k * k * out /
groups``, zero biases); the convolutional stage keeps PyTorch's defaults, as there.

Five stride-2 steps: spatial sizes must be divisible by 32. With ``in_channels=3, out_channels=1`` and no
classification head the network has 1,471,921 parameters, the paper's 1.47 M and the official ``archs.UNext``
counted with its own file. With the official weights copied in (a scratch comparison, the official file outside
the repository) the outputs agree with the official model's to 1e-6 (float32 rounding of a different memory
layout), in eval and train mode, for 64x64 and 128x128 inputs; swapping the two shifts makes them differ by 1e-2.

Where we still differ from the official code, and why:

- ``in_channels`` is honoured: the official first convolution is ``nn.Conv2d(3, 16, ...)`` whatever
  ``input_channels`` says, so for 1 input channel / 2 classes it has 1,471,938 parameters and ours 1,471,650
  (2 x 16 x 3 x 3 weights fewer); SemiSeg-CAW feeds 2 channels (image + auxiliary lesion map);
- the output is ``out_channels`` logits (the project's convention: 2 channels for a softmax over background /
  lesion); the official is the same final 1x1 convolution, trained with ``num_classes=1`` and a sigmoid in its
  loss;
- the LayerNorms the official applies after each shifted block (``norm3``, ``norm4``, ``dnorm3``, ``dnorm4``) are
  :class:`ShiftedMLPBlock`'s ``norm_out``, and the tensors stay ``[B, C, H, W]`` between the token operations
  (the official flattens to ``[B, N, C]``): the same computation; module names and the construction order differ
  (the same state by a name mapping, other random draws for a seed);
- no dropout / drop path (the official rates are 0 by default: identities); ``mlp_ratio`` 1 as the official
  (its second shift reshapes with the input width, so it only runs with ``hidden == dim``; ours takes any);
- SemiSeg-CAW's classification head on the bottleneck (``num_classes_cls=0``: none) and an input check (4D, both
  sizes divisible by 32: the official fails later on a skip whose size does not match);
- loops written so that TorchScript compiles them (``torch.jit.script`` and ``torch.export`` both work).

2D only, like the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .malunet import check_divisible

__all__ = ["UNeXt", "ShiftedMLP", "ShiftedMLPBlock", "OverlapPatchEmbed", "shift_tokens", "token_init"]


def token_init(m: nn.Module) -> None:
    """The official UNeXt ``_init_weights`` for one module (use with ``Module.apply``): ``nn.Linear`` weights
    truncated normal (std 0.02, cut at +-2 in absolute value, as timm and torch do by default: in effect a
    normal), biases 0; ``nn.LayerNorm`` weight 1, bias 0; ``nn.Conv2d`` weights normal with std
    ``sqrt(2 / fan_out)``, ``fan_out = k_h * k_w * out_channels / groups``, biases 0."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def shift_tokens(x: torch.Tensor, shift_size: int, dim: int) -> torch.Tensor:
    """Shift the channel groups of ``x [B, C, H, W]`` along spatial ``dim`` (2 or 3), zero-filling the borders.

    The channels are split in ``shift_size`` groups; group ``g`` moves by ``g - shift_size // 2`` positions.
    """
    pad = shift_size // 2
    padded = F.pad(x, (pad, pad, pad, pad))
    groups = torch.chunk(padded, shift_size, dim=1)
    rolled: list[torch.Tensor] = []
    for g, group in enumerate(groups):  # torch.chunk's groups (as the official), shifts -pad, -pad + 1, ...
        rolled.append(torch.roll(group, g - pad, dims=dim))
    shifted = torch.cat(rolled, dim=1)
    h, w = x.shape[2], x.shape[3]
    return shifted[:, :, pad : pad + h, pad : pad + w]


class ShiftedMLP(nn.Module):
    """Tokenised shifted MLP of UNeXt: shift(H) -> linear -> DWConv 3x3 -> GELU -> shift(W) -> linear.

    Args:
        dim: token channels (input = output).
        hidden: hidden channels (the paper: ``dim``, MLP ratio 1).
        shift_size: number of channel groups and shift range (the paper: 5).
    """

    def __init__(self, dim: int, hidden: int | None = None, shift_size: int = 5) -> None:
        super().__init__()
        hidden = dim if hidden is None else int(hidden)
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.shift_size = int(shift_size)
        self.apply(token_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` -> ``[B, C, H, W]``."""
        b, _, h, w = x.shape
        x = shift_tokens(x, self.shift_size, dim=2)  # along the height first, as the official code
        x = self.fc1(x.flatten(2).transpose(1, 2))  # tokens [B, N, hidden]
        x = x.transpose(1, 2).reshape(b, -1, h, w)
        x = self.act(self.dwconv(x))
        x = shift_tokens(x, self.shift_size, dim=3)  # then along the width
        x = self.fc2(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(b, -1, h, w)


class ShiftedMLPBlock(nn.Module):
    """``x + ShiftedMLP(LayerNorm(x))`` followed by a LayerNorm over the channels, on ``[B, C, H, W]``."""

    def __init__(self, dim: int, mlp_ratio: float = 1.0, shift_size: int = 5) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.mlp = ShiftedMLP(dim, int(dim * mlp_ratio), shift_size)
        self.norm_out = nn.LayerNorm(dim)
        self.apply(token_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm_in(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = x + self.mlp(y)
        return self.norm_out(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class OverlapPatchEmbed(nn.Module):
    """Tokenisation of UNeXt: 3x3 convolution with stride 2 (overlapping patches) + LayerNorm over channels."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.apply(token_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class UNeXt(nn.Module):
    """UNeXt (Valanarasu & Patel, MICCAI 2022), 2D, returning segmentation logits (and class logits with the head).

    Args:
        in_channels: input channels (SemiSeg-CAW: 2, the image and the auxiliary lesion map).
        out_channels: segmentation logit channels (1: sigmoid; 2: softmax).
        widths: five widths, conv stages then token stages (the paper: 16, 32, 128, 160, 256).
        num_classes_cls: classification outputs of the bottleneck head; 0 or ``None``: no head, ``forward``
            returns the segmentation logits alone.
        shift_size: channel groups of the shifted MLP (the paper: 5).

    ``forward(x)`` takes ``[B, in_channels, x, y]`` with both sizes divisible by 32 and returns
    ``seg_logits [B, out_channels, x, y]`` or ``(seg_logits, cls_logits [B, num_classes_cls])``.
    """

    divisor = 32

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        widths: Sequence[int] = (16, 32, 128, 160, 256),
        num_classes_cls: int | None = 3,
        shift_size: int = 5,
    ) -> None:
        super().__init__()
        c = [int(w) for w in widths]
        if len(c) != 5:
            raise ValueError(f"UNeXt: widths needs five values (3 conv + 2 token stages), got {list(widths)}")
        self.enc_convs = nn.ModuleList(
            [
                nn.Conv2d(in_channels, c[0], 3, padding=1),
                nn.Conv2d(c[0], c[1], 3, padding=1),
                nn.Conv2d(c[1], c[2], 3, padding=1),
            ]
        )
        self.enc_bns = nn.ModuleList([nn.BatchNorm2d(w) for w in c[:3]])
        self.embed3 = OverlapPatchEmbed(c[2], c[3])
        self.block3 = ShiftedMLPBlock(c[3], shift_size=shift_size)
        self.embed4 = OverlapPatchEmbed(c[3], c[4])
        self.block4 = ShiftedMLPBlock(c[4], shift_size=shift_size)
        # decoder: 256 -> 160 (+t4, MLP), 160 -> 128 (+t3, MLP), 128 -> 32 (+t2), 32 -> 16 (+t1), 16 -> 16
        self.dec_convs = nn.ModuleList(
            [
                nn.Conv2d(c[4], c[3], 3, padding=1),
                nn.Conv2d(c[3], c[2], 3, padding=1),
                nn.Conv2d(c[2], c[1], 3, padding=1),
                nn.Conv2d(c[1], c[0], 3, padding=1),
                nn.Conv2d(c[0], c[0], 3, padding=1),
            ]
        )
        self.dec_bns = nn.ModuleList([nn.BatchNorm2d(w) for w in (c[3], c[2], c[1], c[0])])
        self.dec_blocks = nn.ModuleList(
            [ShiftedMLPBlock(c[3], shift_size=shift_size), ShiftedMLPBlock(c[2], shift_size=shift_size)]
        )
        self.final = nn.Conv2d(c[0], out_channels, kernel_size=1)
        self.num_classes_cls = int(num_classes_cls or 0)
        self.cls_head = nn.Linear(c[4], self.num_classes_cls) if self.num_classes_cls > 0 else None
        self.divisor = int(type(self).divisor)  # an instance attribute: TorchScript reads no class attributes

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def shared_feature_module(self) -> nn.Module:
        """The module whose output (the bottleneck, 1/32) both the decoder and the class head read: the shared
        representation of IMTL-G (:class:`~usseg_monai.networks.feature_tap.FeatureTap`)."""
        return self.block4

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Segmentation logits, and class logits when the head is enabled.

        Raises:
            ValueError: the input is not 4D or a spatial size is not divisible by 32.
        """
        check_divisible("UNeXt", x, self.divisor)
        skips: list[torch.Tensor] = []
        for conv, bn in zip(self.enc_convs, self.enc_bns):
            x = F.relu(F.max_pool2d(bn(conv(x)), 2, 2))
            skips.append(x)  # t1 (1/2), t2 (1/4), t3 (1/8)
        x = self.block3(self.embed3(x))  # t4, 1/16 (the official norm3 is the block's norm_out)
        t4 = x
        x = self.block4(self.embed4(x))  # bottleneck, 1/32
        bottleneck = x
        # the official decoder stages, unrolled as there (constant indices: TorchScript compiles them)
        x = F.relu(self._up(self.dec_bns[0](self.dec_convs[0](x)))) + t4
        x = self.dec_blocks[0](x)  # dblock1 + dnorm3
        x = F.relu(self._up(self.dec_bns[1](self.dec_convs[1](x)))) + skips[2]
        x = self.dec_blocks[1](x)  # dblock2 + dnorm4
        x = F.relu(self._up(self.dec_bns[2](self.dec_convs[2](x)))) + skips[1]
        x = F.relu(self._up(self.dec_bns[3](self.dec_convs[3](x)))) + skips[0]
        x = F.relu(self._up(self.dec_convs[4](x)))
        seg = self.final(x)
        if self.cls_head is None:
            return seg
        return seg, self.cls_head(bottleneck.mean(dim=(2, 3)))

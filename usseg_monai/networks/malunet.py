"""MALUNet, the light-weight core network of SemiSeg-CAW, with an optional classification head.

Written from the paper: Ruan et al., "MALUNet: A Multi-Attention and Light-weight UNet for Skin Lesion
Segmentation", IEEE BIBM 2022, pp. 1150-1156 (``methods.md`` section 2; SemiSeg-CAW, Barzegar & Khan, MAKE 2025,
uses it as its default backbone). Its parts:

- a six-stage U-shaped network with widths ``(8, 16, 24, 32, 48, 64)``: the first three encoder stages (and the
  last two decoder stages) are plain 3x3 convolutions, the deeper ones are a :class:`DilatedGatedAttention`
  block followed by an :class:`InvertedExternalAttention` block; every encoder stage but the last is followed by
  group normalisation, 2x2 max pooling and GELU, so five poolings: spatial sizes must be divisible by 32;
- DGA (dilated gated attention): the channels are split in four groups, each convolved by a depthwise 3x3 kernel
  with its own dilation (1, 2, 5, 7), the result gated (element-wise product) by a 1x1-convolution + GELU branch
  and projected to the output width by a depthwise + pointwise convolution;
- IEA (inverted external attention): external attention (Guo et al., "Beyond self-attention: external attention
  using two linear layers", TPAMI 2022) with two memory units shared over the positions, applied in an inverted
  bottleneck (channels expanded four times, then projected back), with a residual connection;
- CAB (channel attention bridge) and SAB (spatial attention bridge): the five skip connections exchange
  information; SAB computes per stage a spatial map from the channel mean and max with one shared 7x7 dilated
  (dilation 3) convolution, CAB a channel map from the global averages of all stages (a 1D convolution across
  the concatenated averages, then one linear layer per stage); both applied as ``x * att + x``, SAB first.

The default widths give 170,183 parameters with ``in_channels=3, out_channels=1`` and no classification head,
within 3% of the paper's 0.175 M. SemiSeg-CAW adds a classification head on the bottleneck (global average pooling +
linear, :attr:`MALUNet.num_classes_cls` outputs) and feeds two input channels (image + auxiliary lesion map).

2D only, like the paper (inputs ``[B, C, x, y]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "MALUNet",
    "ChannelLayerNorm",
    "DilatedGatedAttention",
    "InvertedExternalAttention",
    "ChannelAttentionBridge",
    "SpatialAttentionBridge",
    "check_divisible",
]

DEFAULT_WIDTHS = (8, 16, 24, 32, 48, 64)


def check_divisible(name: str, x: torch.Tensor, divisor: int, spatial_dims: int = 2) -> None:
    """Raise ``ValueError`` unless ``x`` is ``[B, C, *spatial]`` with every spatial size divisible by ``divisor``."""
    if x.ndim != spatial_dims + 2:
        raise ValueError(
            f"{name}: expected a {spatial_dims + 2}D input [B, C, {', '.join('xyz'[:spatial_dims])}], "
            f"got shape {list(x.shape)}"
        )
    for s in x.shape[2:]:
        if s % divisor != 0:
            raise ValueError(
                f"{name}: every spatial size must be divisible by {divisor}, got input shape {list(x.shape)}"
            )


class ChannelLayerNorm(nn.Module):
    """Layer normalisation over the channel axis of ``[B, C, *spatial]`` (per position), with affine parameters."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


class DilatedGatedAttention(nn.Module):
    """DGA block of MALUNet (Ruan et al. 2022, section II-B): ``[B, dim_in, x, y] -> [B, dim_out, x, y]``.

    The normalised input is split in ``len(dilations)`` channel groups, each convolved by a depthwise 3x3 kernel
    with its dilation; the concatenation is normalised and multiplied by a gate ``GELU(conv1x1(x))``; a depthwise
    3x3 + pointwise 1x1 convolution projects the gated features to ``dim_out``.

    Args:
        dim_in: input channels, divisible by ``len(dilations)``.
        dim_out: output channels.
        dilations: one dilation rate per channel group (the paper: 1, 2, 5, 7).
    """

    def __init__(self, dim_in: int, dim_out: int, dilations: Sequence[int] = (1, 2, 5, 7)) -> None:
        super().__init__()
        dilations = [int(d) for d in dilations]
        if dim_in % len(dilations) != 0:
            raise ValueError(f"DilatedGatedAttention: dim_in ({dim_in}) must be divisible by {len(dilations)} groups")
        g = dim_in // len(dilations)
        self.norm_in = ChannelLayerNorm(dim_in)
        self.branches = nn.ModuleList(
            [nn.Conv2d(g, g, kernel_size=3, padding=d, dilation=d, groups=g) for d in dilations]
        )
        self.norm_mid = ChannelLayerNorm(dim_in)
        self.gate = nn.Sequential(nn.Conv2d(dim_in, dim_in, kernel_size=1), nn.GELU())
        self.project = nn.Sequential(
            nn.Conv2d(dim_in, dim_in, kernel_size=3, padding=1, groups=dim_in),
            nn.GELU(),
            nn.Conv2d(dim_in, dim_out, kernel_size=1),
        )
        self.groups = len(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(x)
        parts = torch.chunk(x, self.groups, dim=1)
        y = torch.cat([conv(p) for conv, p in zip(self.branches, parts)], dim=1)
        y = self.norm_mid(y) * self.gate(x)
        return self.project(y)


class InvertedExternalAttention(nn.Module):
    """IEA block of MALUNet (Ruan et al. 2022, section II-C): external attention in an inverted bottleneck.

    ``x -> x + proj(M_v(norm(attn)))`` where the channels are first expanded ``expansion`` times by a 1x1
    convolution, ``attn = M_k(features)`` has ``memory`` units (softmax over the positions, then each position
    normalised to sum 1 over the units: the double normalisation of external attention), ``M_k`` and ``M_v`` are
    bias-free linear maps shared over all positions, and ``proj`` maps back to ``dim`` channels.

    Args:
        dim: channels (input = output).
        expansion: channel expansion of the inverted bottleneck (the paper: 4).
        memory: number of memory units ``S`` (default ``dim // 4``; the paper gives no number we could check, this
            default is our choice, calibrated so that the default network has the paper's 0.175 M parameters).
    """

    def __init__(self, dim: int, expansion: int = 4, memory: int | None = None) -> None:
        super().__init__()
        hidden = dim * int(expansion)
        memory = max(1, dim // 4) if memory is None else int(memory)
        self.norm = ChannelLayerNorm(dim)
        self.expand = nn.Linear(dim, hidden)
        self.memory_k = nn.Linear(hidden, memory, bias=False)
        self.memory_v = nn.Linear(memory, hidden, bias=False)
        self.act = nn.GELU()
        self.project = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        tokens = self.norm(x).reshape(b, c, -1).transpose(1, 2)  # [B, N, C]
        attn = torch.softmax(self.memory_k(self.expand(tokens)), dim=1)  # [B, N, S], over positions
        attn = attn / (attn.sum(dim=2, keepdim=True) + 1e-9)  # over memory units
        y = self.project(self.act(self.memory_v(attn)))  # [B, N, C]
        return x + y.transpose(1, 2).reshape(x.shape)


class SpatialAttentionBridge(nn.Module):
    """SAB of MALUNet: per stage ``sigmoid(conv7x7_dil3([mean_c(x), max_c(x)]))``, the convolution shared by all."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=7, padding=9, dilation=3)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for t in feats:
            s = torch.cat([t.mean(dim=1, keepdim=True), t.amax(dim=1, keepdim=True)], dim=1)
            out.append(torch.sigmoid(self.conv(s)))
        return out


class ChannelAttentionBridge(nn.Module):
    """CAB of MALUNet: channel maps for every stage from the global averages of all stages.

    The averages of the stages (``sum(widths)`` values) are concatenated, mixed by a 1D convolution (kernel 3,
    no bias) across that axis and mapped to each stage's width by its own linear layer + sigmoid.

    Args:
        widths: channels of the bridged stages.
    """

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        total = sum(widths)
        self.mix = nn.Conv1d(1, 1, kernel_size=3, padding=1, bias=False)
        self.heads = nn.ModuleList([nn.Linear(total, w) for w in widths])

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        pooled = torch.cat([t.mean(dim=(2, 3)) for t in feats], dim=1)  # [B, total]
        mixed = self.mix(pooled.unsqueeze(1)).squeeze(1)
        return [torch.sigmoid(h(mixed))[:, :, None, None] for h in self.heads]


class MALUNet(nn.Module):
    """MALUNet (Ruan et al., BIBM 2022), 2D, returning segmentation logits (and class logits with the head).

    Args:
        in_channels: input channels (SemiSeg-CAW: 2, the image and the auxiliary lesion map).
        out_channels: segmentation logit channels (1: sigmoid; 2: softmax).
        widths: six stage widths (the paper: 8, 16, 24, 32, 48, 64); stages 3-5 must be divisible by 4 (DGA).
        num_classes_cls: classification outputs of the bottleneck head (BUSI: benign, malignant, normal); 0 or
            ``None`` builds no head and ``forward`` returns the segmentation logits alone.
        bridge: use the SAB + CAB bridges on the skip connections (the paper's default).

    ``forward(x)`` takes ``[B, in_channels, x, y]`` with both sizes divisible by 32 and returns
    ``seg_logits [B, out_channels, x, y]`` or ``(seg_logits, cls_logits [B, num_classes_cls])``.
    """

    divisor = 32

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        num_classes_cls: int | None = 3,
        bridge: bool = True,
    ) -> None:
        super().__init__()
        c = [int(w) for w in widths]
        if len(c) != 6:
            raise ValueError(f"MALUNet: widths needs six stage widths, got {list(widths)}")
        self.encoder = nn.ModuleList(
            [
                nn.Conv2d(in_channels, c[0], 3, padding=1),
                nn.Conv2d(c[0], c[1], 3, padding=1),
                nn.Conv2d(c[1], c[2], 3, padding=1),
                nn.Sequential(DilatedGatedAttention(c[2], c[3]), InvertedExternalAttention(c[3])),
                nn.Sequential(DilatedGatedAttention(c[3], c[4]), InvertedExternalAttention(c[4])),
                nn.Sequential(DilatedGatedAttention(c[4], c[5]), InvertedExternalAttention(c[5])),
            ]
        )
        self.encoder_norms = nn.ModuleList([nn.GroupNorm(4, w) for w in c[:5]])
        self.decoder = nn.ModuleList(
            [
                nn.Sequential(DilatedGatedAttention(c[5], c[4]), InvertedExternalAttention(c[4])),
                nn.Sequential(DilatedGatedAttention(c[4], c[3]), InvertedExternalAttention(c[3])),
                nn.Sequential(DilatedGatedAttention(c[3], c[2]), InvertedExternalAttention(c[2])),
                nn.Conv2d(c[2], c[1], 3, padding=1),
                nn.Conv2d(c[1], c[0], 3, padding=1),
            ]
        )
        self.decoder_norms = nn.ModuleList([nn.GroupNorm(4, w) for w in (c[4], c[3], c[2], c[1], c[0])])
        self.sab = SpatialAttentionBridge() if bridge else None
        self.cab = ChannelAttentionBridge(c[:5]) if bridge else None
        self.final = nn.Conv2d(c[0], out_channels, kernel_size=1)
        self.num_classes_cls = int(num_classes_cls or 0)
        self.cls_head = nn.Linear(c[5], self.num_classes_cls) if self.num_classes_cls > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Segmentation logits, and class logits when the head is enabled.

        Raises:
            ValueError: the input is not 4D or a spatial size is not divisible by 32.
        """
        check_divisible("MALUNet", x, self.divisor)
        skips = []
        for stage, norm in zip(self.encoder[:5], self.encoder_norms):
            x = F.gelu(F.max_pool2d(norm(stage(x)), 2, 2))
            skips.append(x)
        x = self.encoder[5](x)  # bottleneck, 1/32
        bottleneck = x
        if self.sab is not None and self.cab is not None:
            s_att = self.sab(skips)
            skips = [t * a + t for t, a in zip(skips, s_att)]
            c_att = self.cab(skips)
            skips = [t * a + t for t, a in zip(skips, c_att)]
        # decoder stage 1 stays at 1/32 and adds the deepest skip; the others upsample x2 and add the next skip
        x = F.gelu(self.decoder_norms[0](self.decoder[0](x))) + skips[4]
        for i in range(1, 5):
            x = self.decoder_norms[i](self.decoder[i](x))
            x = F.gelu(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)) + skips[4 - i]
        seg = F.interpolate(self.final(x), scale_factor=2.0, mode="bilinear", align_corners=True)
        if self.cls_head is None:
            return seg
        return seg, self.cls_head(bottleneck.mean(dim=(2, 3)))

"""MALUNet, the light-weight core network of SemiSeg-CAW, with an optional classification head.

Ruan et al., "MALUNet: A Multi-Attention and Light-weight UNet for Skin Lesion Segmentation", IEEE BIBM 2022,
pp. 1150-1156 (``methods.md`` section 2; SemiSeg-CAW, Barzegar & Khan, MAKE 2025, uses it as its default backbone).
Rebuilt in #16 to the official architecture (JCruan519/MALUNet, ``models/malunet.py``), written from reading it:

- a six-stage U-shaped network with widths ``(8, 16, 24, 32, 48, 64)``: the first three encoder stages (and the
  last two decoder stages) are plain 3x3 convolutions; encoder stages 4-6 are an :class:`ExternalAttention` block
  followed by a :class:`DilatedGatedAttention` block, decoder stages 1-3 the reverse (DGA, then EA); every encoder
  stage but the last is followed by GroupNorm (4 groups), 2x2 max pooling and GELU (five poolings: spatial sizes
  must be divisible by 32), the bottleneck by GELU; the decoder stages by GroupNorm, bilinear x2 upsampling
  (align corners) and GELU, each adding its skip connection (the first, at 1/32, without upsampling);
- DGA (dilated gated attention): four channel groups, depthwise 3x3 convolutions with dilations 7, 5, 2, 1,
  GroupNorm + 1x1 convolution + GELU, then a gated attention unit (a sigmoid gate from a 3x3 and a GELU value from
  a 5x5 depthwise-separable branch, multiplied, a 3x3 depthwise-separable output + GELU, plus a 1x1 shortcut);
- EA (external attention, Guo et al., TPAMI 2022): 1x1 convolution, ``4 * C`` memory units with the double
  normalisation, 1x1 convolution + GroupNorm, residual, GELU;
- SAB + CAB bridges on the five skips, combined as the official ``SC_Att_Bridge``: ``s = SAB(t) t``,
  ``u = s + t``, ``out = CAB(u) u + s``;
- the official initialisation (:func:`_official_init`).

Parameters: 177,943 with ``in_channels=3, out_channels=1`` and no classification head, 177,808 with 1 / 2:
both equal to the official model counted with its own file (``tests/test_networks_backbones.py`` pins them).
With the official weights copied in (a scratch comparison, the official file outside the repository), the
sigmoid of our output equals the official output (bit for bit on CPU), for 64x64 and 128x128 inputs, 3-in/1-out
and 1-in/2-out.

Where we still differ from the official code, and why:

- the output is ``out_channels`` logits (the project's convention: 2 channels for a softmax over background /
  lesion, or 1 for a sigmoid in the loss); the official returns ``sigmoid`` of one channel (``num_classes=1``);
- EA's two memories are separate parameters from a tied start (see :class:`ExternalAttention`: what the
  official training on a GPU does too; the official module tied by a shared view only until it is moved);
- only ``split_att='fc'`` (the official default: one linear layer per stage in CAB); the official's 1D
  convolution variant is not implemented; ``bridge=False`` drops both bridges, as the official;
- SemiSeg-CAW's additions: the classification head on the bottleneck (global average pooling + linear,
  :attr:`MALUNet.num_classes_cls` outputs, after the bottleneck's GELU) and two input channels (image + auxiliary
  lesion map); ``num_classes_cls=0`` builds the plain MALUNet;
- an input check (4D, both sizes divisible by 32: the official fails later on a skip whose size does not match);
- module names (``encoder.3.0`` for ``encoder4.0``, ``sab`` / ``cab`` for ``scab.satt`` / ``scab.catt``) and the
  construction order differ: the same state is reachable by a name mapping, not by ``load_state_dict``, and a
  seed gives other draws from the same distributions;
- loops written so that TorchScript compiles them (``torch.jit.script`` and ``torch.export`` both work).

2D only, like the paper (inputs ``[B, C, x, y]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "MALUNet",
    "DepthwiseSeparableConv",
    "GatedAttentionUnit",
    "DilatedGatedAttention",
    "ExternalAttention",
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


def _official_init(m: nn.Module) -> None:
    """MALUNet's ``_init_weights`` (JCruan519/MALUNet ``models/malunet.py``), for ``Module.apply``: ``nn.Linear``
    weights truncated normal std 0.02 (cut at +-2 absolute), biases 0; ``nn.Conv1d`` weights normal with std
    ``sqrt(2 / (k * out_channels))``; ``nn.Conv2d`` weights normal with std ``sqrt(2 / fan_out)``,
    ``fan_out = k_h * k_w * out_channels / groups``, biases 0. Norm layers keep PyTorch's defaults."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv1d):
        nn.init.normal_(m.weight, 0.0, (2.0 / (m.kernel_size[0] * m.out_channels)) ** 0.5)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class DepthwiseSeparableConv(nn.Module):
    """Depthwise ``k x k`` convolution, GroupNorm (4 groups), pointwise 1x1 convolution: ``dim_in -> dim_out``."""

    def __init__(self, dim_in: int, dim_out: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(dim_in, dim_in, kernel_size, padding=kernel_size // 2, groups=dim_in)
        self.norm = nn.GroupNorm(4, dim_in)
        self.pointwise = nn.Conv2d(dim_in, dim_out, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.norm(self.depthwise(x)))


class GatedAttentionUnit(nn.Module):
    """The gate of DGA: ``GELU(dsconv3(sigmoid(dsconv3(x)) * GELU(dsconv5(x)))) + conv1x1(x)``, ``dim_in -> dim_out``
    (two gates, a 3x3 and a 5x5 depthwise-separable branch, and a 1x1 shortcut)."""

    def __init__(self, dim_in: int, dim_out: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.gate = DepthwiseSeparableConv(dim_in, dim_in, kernel_size)
        self.value = DepthwiseSeparableConv(dim_in, dim_in, kernel_size + 2)
        self.out = DepthwiseSeparableConv(dim_in, dim_out, kernel_size)
        self.shortcut = nn.Conv2d(dim_in, dim_out, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = torch.sigmoid(self.gate(x)) * F.gelu(self.value(x))
        return F.gelu(self.out(gated)) + self.shortcut(x)


class DilatedGatedAttention(nn.Module):
    """DGA block of MALUNet (Ruan et al. 2022, section II-B; the official ``DilatedGatedAttention``):
    ``[B, dim_in, x, y] -> [B, dim_out, x, y]``.

    The input's channels are split in four groups, each convolved by a depthwise 3x3 kernel with its dilation
    (7, 5, 2, 1: the first group the widest); the concatenation goes through GroupNorm (4 groups), a 1x1
    convolution and GELU, then the :class:`GatedAttentionUnit` maps it to ``dim_out``.

    Args:
        dim_in: input channels, divisible by ``len(dilations)`` (and by 4, the GroupNorm groups).
        dim_out: output channels.
        dilations: one dilation rate per channel group (the official code: 7, 5, 2, 1).
    """

    def __init__(self, dim_in: int, dim_out: int, dilations: Sequence[int] = (7, 5, 2, 1)) -> None:
        super().__init__()
        dilations = [int(d) for d in dilations]
        if dim_in % len(dilations) != 0 or dim_in % 4 != 0:
            raise ValueError(
                f"DilatedGatedAttention: dim_in ({dim_in}) must be divisible by {len(dilations)} groups and by 4"
            )
        g = dim_in // len(dilations)
        self.branches = nn.ModuleList(
            [nn.Conv2d(g, g, kernel_size=3, padding=d, dilation=d, groups=g) for d in dilations]
        )
        self.norm = nn.GroupNorm(4, dim_in)
        self.mix = nn.Conv2d(dim_in, dim_in, kernel_size=1)
        self.gau = GatedAttentionUnit(dim_in, dim_out, 3)
        self.groups = len(dilations)
        self.dilations = tuple(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(x, self.groups, dim=1)
        outs: list[torch.Tensor] = []
        for i, conv in enumerate(self.branches):  # (a loop TorchScript can compile)
            outs.append(conv(parts[i]))
        y = torch.cat(outs, dim=1)
        return self.gau(F.gelu(self.mix(self.norm(y))))


class ExternalAttention(nn.Module):
    """EA block of MALUNet (the official ``EAblock``; external attention, Guo et al., TPAMI 2022):
    ``x -> GELU(x + GroupNorm(conv1x1(M_v(dnorm(M_k(conv1x1(x)))))))``.

    ``M_k`` maps the ``dim`` channels of every position to ``memory = 4 * dim`` units (bias-free), the attention is
    normalised twice (softmax over the positions, then each position to sum 1 over the units), ``M_v`` maps back.
    The official code makes ``M_v``'s weight a transposed *view* of ``M_k``'s storage, so its ``_init_weights``
    leaves both equal to the last draw (``M_v``'s: normal with std ``sqrt(2 / dim)``), transposed. The view lasts
    only until the first ``.cuda()`` / ``.to()`` / ``.double()`` (PyTorch's ``Module._apply`` gives each parameter
    its own tensor; checked on the official module), and the official ``train.py`` calls ``model.cuda()``: there
    the two memories are trained as separate parameters from a tied start. Here likewise: ``M_k`` starts as
    ``M_v`` transposed (:meth:`tie_memories`) and both are their own parameters, on every device. Parameter
    count as the official (both memories counted).

    Args:
        dim: channels (input = output), divisible by 4 (GroupNorm).
        memory_factor: memory units per channel (the official code: 4).
    """

    def __init__(self, dim: int, memory_factor: int = 4) -> None:
        super().__init__()
        memory = int(dim) * int(memory_factor)
        self.conv_in = nn.Conv2d(dim, dim, kernel_size=1)
        self.memory_k = nn.Conv1d(dim, memory, kernel_size=1, bias=False)
        self.memory_v = nn.Conv1d(memory, dim, kernel_size=1, bias=False)
        self.conv_out = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        self.norm = nn.GroupNorm(4, dim)
        self.memory = memory

    def tie_memories(self) -> None:
        """``M_k := M_v^T`` (the official init leaves both equal to ``M_v``'s normal init, transposed)."""
        with torch.no_grad():
            self.memory_k.weight.copy_(self.memory_v.weight.permute(1, 0, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.conv_in(x).reshape(b, c, h * w)
        attn = torch.softmax(self.memory_k(y), dim=-1)  # [B, S, N], over positions
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))  # over the memory units
        y = self.memory_v(attn).reshape(b, c, h, w)
        return F.gelu(self.norm(self.conv_out(y)) + x)


class SpatialAttentionBridge(nn.Module):
    """SAB of MALUNet: per stage ``sigmoid(conv7x7_dil3([mean_c(x), max_c(x)]))``, the convolution shared by all."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=7, padding=9, dilation=3)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
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

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        pooled = torch.cat([t.mean(dim=(2, 3)) for t in feats], dim=1)  # [B, total]
        mixed = self.mix(pooled.unsqueeze(1)).squeeze(1)
        out: list[torch.Tensor] = []
        for head in self.heads:
            out.append(torch.sigmoid(head(mixed))[:, :, None, None])
        return out


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
                nn.Sequential(ExternalAttention(c[2]), DilatedGatedAttention(c[2], c[3])),
                nn.Sequential(ExternalAttention(c[3]), DilatedGatedAttention(c[3], c[4])),
                nn.Sequential(ExternalAttention(c[4]), DilatedGatedAttention(c[4], c[5])),
            ]
        )
        self.encoder_norms = nn.ModuleList([nn.GroupNorm(4, w) for w in c[:5]])
        self.decoder = nn.ModuleList(
            [
                nn.Sequential(DilatedGatedAttention(c[5], c[4]), ExternalAttention(c[4])),
                nn.Sequential(DilatedGatedAttention(c[4], c[3]), ExternalAttention(c[3])),
                nn.Sequential(DilatedGatedAttention(c[3], c[2]), ExternalAttention(c[2])),
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
        self.divisor = int(type(self).divisor)  # an instance attribute: TorchScript reads no class attributes
        self.apply(_official_init)
        for m in self.modules():
            if isinstance(m, ExternalAttention):
                m.tie_memories()

    def shared_feature_module(self) -> nn.Module:
        """The module whose output (the bottleneck, 1/32, before its GELU) both the decoder and the class head read:
        the shared representation of IMTL-G (:class:`~usseg_monai.networks.feature_tap.FeatureTap`)."""
        return self.encoder[5]

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Segmentation logits, and class logits when the head is enabled.

        Raises:
            ValueError: the input is not 4D or a spatial size is not divisible by 32.
        """
        check_divisible("MALUNet", x, self.divisor)
        skips: list[torch.Tensor] = []
        for stage, norm in zip(self.encoder, self.encoder_norms):  # stages 1-5 (zip stops at the 5 norms)
            x = F.gelu(F.max_pool2d(norm(stage(x)), 2, 2))
            skips.append(x)
        x = F.gelu(self.encoder[5](x))  # bottleneck, 1/32, with the official GELU
        bottleneck = x
        if self.sab is not None and self.cab is not None:
            # the official SC_Att_Bridge: s = SAB(t) * t; u = s + t; out = CAB(u) * u + s
            s_att = self.sab(skips)
            spatial: list[torch.Tensor] = []
            summed: list[torch.Tensor] = []
            for i in range(len(skips)):
                spatial.append(skips[i] * s_att[i])
                summed.append(spatial[i] + skips[i])
            c_att = self.cab(summed)
            skips = [summed[i] * c_att[i] + spatial[i] for i in range(len(summed))]
        # decoder stage 1 stays at 1/32 and adds the deepest skip; the others upsample x2 and add the next skip
        i = 0
        for stage, norm in zip(self.decoder, self.decoder_norms):
            x = norm(stage(x))
            if i > 0:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
            x = F.gelu(x) + skips[4 - i]
            i += 1
        seg = F.interpolate(self.final(x), scale_factor=2.0, mode="bilinear", align_corners=True)
        if self.cls_head is None:
            return seg
        return seg, self.cls_head(bottleneck.mean(dim=(2, 3)))

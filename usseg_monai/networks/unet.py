"""PyMIC-style UNet, the backbone of CRBNet and of the fully supervised reference bundles.

The architecture is the UNet of PyMIC (Wang et al., "PyMIC: A deep learning toolkit for annotation-efficient
medical image segmentation", Comput. Methods Programs Biomed. 231, 2023) as used by SSL4MIS and by CRBNet's
released code (Zhao et al., IEEE TCSVT 2024; see ``methods.md`` section 1):

- encoder: five levels with channels 16-32-64-128-256; each level is a block of two 3x3 convolutions, each
  followed by batch normalisation and LeakyReLU (slope 0.01), with dropout 0.05/0.1/0.2/0.3/0.5 between the
  two convolutions; 2x2 max pooling between levels;
- decoder: at each level a 1x1 convolution halves the channels and a bilinear (trilinear in 3D) x2 upsampling
  (``align_corners=True``) follows, or optionally a 2x2 transposed convolution; the result is concatenated
  with the encoder skip and passed through a block of two convolutions without dropout;
- output: a 3x3 convolution to ``out_channels`` logits (no activation), as in the reference code.

Built from MONAI blocks (:class:`monai.networks.blocks.Convolution`, :class:`monai.networks.blocks.UpSample`),
for 2D and 3D alike (``spatial_dims``), and TorchScript-scriptable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Pool

__all__ = ["PyMICUNet", "PyMICConvBlock"]

DEFAULT_CHANNELS = (16, 32, 64, 128, 256)
DEFAULT_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)


class PyMICConvBlock(nn.Sequential):
    """Two ``kernel_size`` convolutions, each + BatchNorm + LeakyReLU, with dropout after the first.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels of both convolutions.
        dropout: dropout probability after the first convolution's activation (0 disables it).
        negative_slope: LeakyReLU slope.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, dropout: float = 0.0, negative_slope: float = 0.01
    ) -> None:
        super().__init__()
        act = ("leakyrelu", {"negative_slope": negative_slope})
        self.conv1 = Convolution(
            spatial_dims,
            in_channels,
            out_channels,
            kernel_size=3,
            act=act,
            norm="batch",
            dropout=float(dropout) if dropout > 0 else None,
            adn_ordering="NAD",
        )
        self.conv2 = Convolution(spatial_dims, out_channels, out_channels, kernel_size=3, act=act, norm="batch")


class PyMICUNet(nn.Module):
    """UNet of PyMIC / SSL4MIS / CRBNet, 2D or 3D, returning logits.

    Args:
        spatial_dims: 2 (input ``[B, C, x, y]``) or 3 (``[B, C, x, y, z]``).
        in_channels: input channels (1 for grayscale ultrasound).
        out_channels: output classes (2: background, lesion); logits, no activation.
        channels: feature channels per level, from the top; ``len(channels)`` levels, ``len(channels) - 1``
            poolings, so every spatial size must be divisible by ``2 ** (len(channels) - 1)`` (16 by default).
        dropout: encoder dropout per level, same length as ``channels`` (decoder blocks use none).
        upsample: ``"linear"`` (1x1 conv, then bilinear/trilinear x2 with ``align_corners=True``; the
            reference) or ``"deconv"`` (2x2 transposed convolution, stride 2).
        negative_slope: LeakyReLU slope (PyTorch's default 0.01, as in the reference).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        dropout: Sequence[float] = DEFAULT_DROPOUT,
        upsample: str = "linear",
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        channels = [int(c) for c in channels]
        dropout = [float(p) for p in dropout]
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two levels, got {channels}")
        if len(dropout) != len(channels):
            raise ValueError(f"dropout needs one value per level ({len(channels)}), got {dropout}")
        if any(not 0.0 <= p < 1.0 for p in dropout):
            raise ValueError(f"dropout values must be in [0, 1), got {dropout}")
        if upsample not in ("linear", "deconv"):
            raise ValueError(f"upsample must be 'linear' or 'deconv', got {upsample!r}")
        self.spatial_dims = spatial_dims
        self.divisor = 2 ** (len(channels) - 1)

        self.encoder = nn.ModuleList(
            [PyMICConvBlock(spatial_dims, in_channels, channels[0], dropout[0], negative_slope)]
            + [
                PyMICConvBlock(spatial_dims, channels[i - 1], channels[i], dropout[i], negative_slope)
                for i in range(1, len(channels))
            ]
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        ups = []
        decoder = []
        for i in range(len(channels) - 1, 0, -1):
            ups.append(
                UpSample(
                    spatial_dims,
                    in_channels=channels[i],
                    out_channels=channels[i - 1],
                    scale_factor=2,
                    mode="nontrainable" if upsample == "linear" else "deconv",
                    pre_conv="default",
                    interp_mode="linear",
                    align_corners=True,
                )
            )
            decoder.append(PyMICConvBlock(spatial_dims, 2 * channels[i - 1], channels[i - 1], 0.0, negative_slope))
        self.upsamples = nn.ModuleList(ups)
        self.decoder = nn.ModuleList(decoder)
        self.out_conv = Convolution(spatial_dims, channels[0], out_channels, kernel_size=3, conv_only=True, bias=True)

    def decoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's last feature map ``[B, channels[0], *spatial]`` (input resolution) for ``x``.

        Raises:
            ValueError: a spatial size is not divisible by ``2 ** (levels - 1)``.
        """
        for s in x.shape[2:]:
            if s % self.divisor != 0:
                raise ValueError(
                    f"every spatial size must be divisible by {self.divisor}, got input shape {list(x.shape)}"
                )
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        n = len(skips)
        for j, (up, block) in enumerate(zip(self.upsamples, self.decoder)):
            x = up(x)
            x = block(torch.cat([skips[n - 2 - j], x], dim=1))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, out_channels, *spatial]`` for ``x`` of shape ``[B, in_channels, *spatial]``.

        Raises:
            ValueError: a spatial size is not divisible by ``2 ** (levels - 1)``.
        """
        return self.out_conv(self.decoder_features(x))

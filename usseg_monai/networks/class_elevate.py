"""ClassElevateSeg: the auxiliary-map network of SemiSeg-CAW (stage 1).

SemiSeg-CAW (Barzegar & Khan, Mach. Learn. Knowl. Extr. 2025, 7, 124, section 3.1) pre-trains a module that
segments and classifies and gives an auxiliary lesion map for every image, class-only images included. The paper
gives no layer list; this project's design (``methods.md`` section 2, *design choice*) is:

- encoder: MONAI's ResNet-18 (:func:`monai.networks.nets.resnet18`, He et al. CVPR 2016: 7x7 stride-2 stem,
  3x3 max pooling, four stages of two basic blocks with 64-128-256-512 channels), its features at 1/2, 1/4, 1/8,
  1/16 and 1/32 of the input;
- a light decoder: at each level a x2 upsampling (transposed convolution), concatenation with the encoder skip
  and one 3x3 convolution + batch norm + ReLU, with ``decoder_channels`` (default 256-128-64-32) channels, then a
  last x2 upsampling to full resolution, a 3x3 convolution and a 1x1 convolution to ``out_channels`` logits;
- a classification head on the deepest features: global average pooling + dropout + linear.

2D or 3D (``spatial_dims``); every spatial size must be divisible by 32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UpSample
from monai.networks.nets import resnet18

from .malunet import check_divisible

__all__ = ["ClassElevateSeg"]

RESNET18_CHANNELS = (64, 64, 128, 256, 512)


class ClassElevateSeg(nn.Module):
    """ResNet-18 encoder + light U-shaped decoder + classification head, returning ``(seg_logits, cls_logits)``.

    Args:
        spatial_dims: 2 (``[B, C, x, y]``) or 3 (``[B, C, x, y, z]``).
        in_channels: input channels (1 for grayscale ultrasound).
        out_channels: segmentation logit channels: 1 (sigmoid) or 2 (softmax, channel 1 = lesion).
        num_classes: classification outputs (BUSI: 3, benign / malignant / normal).
        decoder_channels: four decoder widths, from the deepest level up.
        dropout: dropout before the classification layer.
    """

    divisor = 32

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        num_classes: int = 3,
        decoder_channels: Sequence[int] = (256, 128, 64, 32),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"ClassElevateSeg: spatial_dims must be 2 or 3, got {spatial_dims}")
        if out_channels not in (1, 2):
            raise ValueError(f"ClassElevateSeg: out_channels must be 1 (sigmoid) or 2 (softmax), got {out_channels}")
        if num_classes < 1:
            raise ValueError(f"ClassElevateSeg: num_classes must be >= 1, got {num_classes}")
        dec = [int(c) for c in decoder_channels]
        if len(dec) != 4:
            raise ValueError(f"ClassElevateSeg: decoder_channels needs four widths, got {list(decoder_channels)}")
        self.spatial_dims = spatial_dims
        self.out_channels = out_channels
        self.divisor = int(type(self).divisor)  # an instance attribute: TorchScript reads no class attributes
        self.encoder = resnet18(
            spatial_dims=spatial_dims, n_input_channels=in_channels, conv1_t_stride=2, feed_forward=False
        )
        skips = RESNET18_CHANNELS[3::-1]  # 256 (1/16), 128 (1/8), 64 (1/4), 64 (1/2)
        ups, blocks = [], []
        prev = RESNET18_CHANNELS[-1]
        for width, skip in zip(dec, skips):
            ups.append(UpSample(spatial_dims, prev, width, scale_factor=2, mode="deconv"))
            blocks.append(Convolution(spatial_dims, width + skip, width, kernel_size=3, act="relu", norm="batch"))
            prev = width
        self.ups = nn.ModuleList(ups)
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(
            UpSample(spatial_dims, prev, prev, scale_factor=2, mode="deconv"),
            Convolution(spatial_dims, prev, prev, kernel_size=3, act="relu", norm="batch"),
            Convolution(spatial_dims, prev, out_channels, kernel_size=1, conv_only=True, bias=True),
        )
        self.cls_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(RESNET18_CHANNELS[-1], num_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ResNet-18 features at 1/2, 1/4, 1/8, 1/16, 1/32 of ``x`` (64, 64, 128, 256, 512 channels)."""
        e = self.encoder
        x = e.act(e.bn1(e.conv1(x)))
        feats = [x]
        x = e.maxpool(x)
        # one call per layer (a tuple of modules cannot be iterated in TorchScript)
        x = e.layer1(x)
        feats.append(x)
        x = e.layer2(x)
        feats.append(x)
        x = e.layer3(x)
        feats.append(x)
        x = e.layer4(x)
        feats.append(x)
        return feats

    def shared_feature_module(self) -> nn.Module:
        """The module whose output (ResNet-18's last stage, 1/32, 512 channels) both the decoder and the classifier
        read: the shared representation of IMTL-G (:class:`~usseg_monai.networks.feature_tap.FeatureTap`)."""
        return self.encoder.layer4

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(seg_logits [B, out_channels, *spatial], cls_logits [B, num_classes])``.

        Raises:
            ValueError: wrong number of dimensions, or a spatial size not divisible by 32.
        """
        check_divisible("ClassElevateSeg", x, self.divisor, self.spatial_dims)
        feats = self.features(x)
        y = feats[-1]
        for i, (up, block) in enumerate(zip(self.ups, self.blocks)):
            y = block(torch.cat([up(y), feats[3 - i]], dim=1))
        seg = self.head(y)
        pooled = feats[-1].flatten(2).mean(dim=2)
        return seg, self.classifier(self.cls_dropout(pooled))

    @staticmethod
    def probability(seg_logits: torch.Tensor) -> torch.Tensor:
        """Lesion probability ``[B, 1, *spatial]`` from logits: sigmoid (1 channel) or softmax channel 1 (2)."""
        if seg_logits.shape[1] == 1:
            return torch.sigmoid(seg_logits)
        if seg_logits.shape[1] == 2:
            return torch.softmax(seg_logits, dim=1)[:, 1:2]
        raise ValueError(f"ClassElevateSeg: expected 1 or 2 logit channels, got shape {list(seg_logits.shape)}")

    def auxiliary_map(self, x: torch.Tensor) -> torch.Tensor:
        """The auxiliary lesion map of SemiSeg-CAW: lesion probability in [0, 1], ``[B, 1, *spatial]`` (input size)."""
        seg, _ = self.forward(x)
        return self.probability(seg)

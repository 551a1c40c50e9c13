"""CRII-Net's coarse-refined network: a shared encoder, a coarse decoder (``P_c``) and a refinement head (``P_r``).

CRII-Net (Du et al., "Coarse-Refined Consistency Learning Using Pixel-Level Features for Semi-Supervised Medical
Image Segmentation", IEEE JBHI 2023; ``methods.md`` section 3) trains a network with two outputs: a coarse
prediction ``P_c`` and a refined prediction ``P_r``; on unlabeled images the refined prediction, detached and
sharpened, is the target of the coarse one (:class:`usseg_monai.losses.consistency.CoarseRefinedConsistencyLoss`),
and on labeled images ``P_r`` also gets the intra- and inter-patch ranked losses
(:mod:`usseg_monai.losses.ranked`). The abstract does not give the architecture; this project's *design choice*:

- **shared encoder and coarse decoder**: the PyMIC UNet (:class:`usseg_monai.networks.unet.PyMICUNet`, the
  project's reference backbone; this class is a subclass, so its encoder, decoder and ``out_conv`` are exactly
  that network's, with the same state-dict names, and a trained ``PyMICUNet`` checkpoint loads into them with
  ``strict=False``). ``out_conv`` on the decoder's last features (``channels[0]`` channels at full resolution)
  gives the coarse logits ``P_c``;
- **refinement head**: the decoder's last features concatenated with the coarse class probabilities
  ``softmax(P_c)``, through one :class:`~usseg_monai.networks.unet.PyMICConvBlock` (two 3x3 convolutions, batch
  norm, LeakyReLU; no dropout) and a 3x3 convolution to ``out_channels`` logits ``P_r``. The gradient of losses on
  ``P_r`` flows through ``softmax(P_c)`` into the coarse decoder too (the coarse-refined consistency only stops
  it on the target side).

Output convention (the one of :class:`usseg_monai.networks.two_branch.TwoBranchNet`, so that the
semi-supervised engine sees one call and one tensor, through ``DistributedDataParallel`` too):

- **training mode** (``net.train()``): ``forward(x)`` returns both outputs stacked on a new first dimension,
  ``[2, B, C, *spatial]``: index 0 the coarse logits ``P_c``, index 1 the refined logits ``P_r``
  (:func:`split_coarse_refined` unpacks it);
- **eval mode** (``net.eval()``): ``forward(x)`` returns one tensor ``[B, C, *spatial]``, the refined logits
  (``inference="refined"``, default) or the coarse ones (``inference="coarse"``, for ablations), so that the
  bundle's inference, the TorchScript / ``torch.export`` exports and MONAI Label see a plain segmentation network;
- :meth:`CoarseRefinedNet.forward_both` returns the tuple ``(coarse, refined)`` in either mode.

All outputs are logits (no activation). 2D (``[B, C, x, y]``) and 3D (``[B, C, x, y, z]``) by ``spatial_dims``;
every spatial size must be divisible by ``2 ** (len(channels) - 1)`` (``divisor``, 16 by default). The module is
TorchScript-scriptable and traceable, and exports with ``torch.export`` in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution

from usseg_monai.networks.mean_teacher import MeanTeacherNet
from usseg_monai.networks.unet import DEFAULT_CHANNELS, DEFAULT_DROPOUT, PyMICConvBlock, PyMICUNet

__all__ = [
    "CoarseRefinedNet",
    "split_coarse_refined",
    "CRII_INFERENCE_MODES",
    "CrossPseudoNet",
    "CPS_INFERENCE",
    "make_few_mask_network",
    "FEW_MASK_METHODS",
    "inference_network",
    "checkpoint_modules",
]

#: what :class:`CoarseRefinedNet` returns in eval mode
CRII_INFERENCE_MODES = ("refined", "coarse")


def split_coarse_refined(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(coarse, refined)`` logits from the training-mode output ``[2, B, C, *spatial]`` of :class:`CoarseRefinedNet`.

    Raises:
        ValueError: ``output`` does not have a leading dimension of size 2 (e.g. an eval-mode output was given).
    """
    if output.ndim < 4 or output.shape[0] != 2:
        raise ValueError(
            "split_coarse_refined: expected the training-mode output [2, B, C, *spatial] of CoarseRefinedNet "
            f"(coarse, refined stacked), got shape {list(output.shape)}; in eval mode the network returns one "
            "tensor, use forward_both(x) to get both outputs"
        )
    return output[0], output[1]


class CoarseRefinedNet(PyMICUNet):
    """CRII-Net's coarse-refined network (see the module docstring for the design and the output convention).

    Args:
        spatial_dims: 2 (input ``[B, C, x, y]``) or 3 (``[B, C, x, y, z]``).
        in_channels: input channels (1 for grayscale ultrasound).
        out_channels: classes (2: background, lesion) of both outputs; logits.
        channels: encoder/decoder channels per level, as :class:`~usseg_monai.networks.unet.PyMICUNet`.
        dropout: encoder dropout per level, as :class:`~usseg_monai.networks.unet.PyMICUNet`.
        upsample: ``"linear"`` or ``"deconv"``, as :class:`~usseg_monai.networks.unet.PyMICUNet`.
        negative_slope: LeakyReLU slope (encoder, decoder and refinement head).
        refine_channels: feature channels of the refinement head's convolution block (default ``channels[0]``).
        inference: what eval-mode ``forward`` returns: ``"refined"`` (``P_r``, default) or ``"coarse"`` (``P_c``).
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
        refine_channels: int | None = None,
        inference: str = "refined",
    ) -> None:
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            dropout=dropout,
            upsample=upsample,
            negative_slope=negative_slope,
        )
        if inference not in CRII_INFERENCE_MODES:
            raise ValueError(f"CoarseRefinedNet: inference must be one of {CRII_INFERENCE_MODES}, got {inference!r}")
        top = int(list(channels)[0])
        refine_channels = top if refine_channels is None else int(refine_channels)
        if refine_channels < 1:
            raise ValueError(f"CoarseRefinedNet: refine_channels must be >= 1, got {refine_channels}")
        self.inference = inference
        self.refine_block = PyMICConvBlock(spatial_dims, top + out_channels, refine_channels, 0.0, negative_slope)
        self.refine_conv = Convolution(
            spatial_dims, refine_channels, out_channels, kernel_size=3, conv_only=True, bias=True
        )

    def refine(self, features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Refined logits ``P_r`` from the decoder features and the coarse logits ``P_c`` (softmax-ed here)."""
        return self.refine_conv(self.refine_block(torch.cat([features, torch.softmax(coarse, dim=1)], dim=1)))

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(coarse, refined)`` logits, each ``[B, out_channels, *spatial]``, in either mode."""
        features = self.decoder_features(x)
        coarse = self.out_conv(features)
        return coarse, self.refine(features, coarse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode: ``[2, B, C, *spatial]`` (coarse, refined); eval mode: ``[B, C, *spatial]`` (``inference``)."""
        if self.training:
            coarse, refined = self.forward_both(x)
            return torch.stack((coarse, refined), dim=0)
        if self.inference == "coarse":
            return self.out_conv(self.decoder_features(x))
        coarse, refined = self.forward_both(x)
        return refined


#: what :class:`CrossPseudoNet` returns in eval mode
CPS_INFERENCE = ("first", "second")


class CrossPseudoNet(nn.Module):
    """The two networks of cross pseudo supervision (Chen et al., "Semi-Supervised Semantic Segmentation with Cross
    Pseudo Supervision", CVPR 2021, section 3.1, eq. (1): ``P_1 = f(X; theta_1)``, ``P_2 = f(X; theta_2)``, the
    same architecture with different initialisations).

    - **training mode**: ``forward(x)`` returns ``[2, B, C, *spatial]``: index 0 the first network's logits,
      index 1 the second's, both with gradients (the convention of :class:`CoarseRefinedNet` and
      :class:`~usseg_monai.networks.mean_teacher.MeanTeacherNet`, so the semi-supervised engine splits it along
      dimension 1); the cross supervision is :class:`usseg_monai.losses.crii_net.CRIINetLoss` ``method="cps"``;
    - **eval mode**: the ``inference`` network's logits ``[B, C, *spatial]`` (``"first"``, default: the paper
      evaluates one of the two networks).

    The bundles save and export only the network used at inference (:func:`inference_network`; the second one is
    kept for resuming under the checkpoint key ``"peer"``, :func:`checkpoint_modules`), so that inference, the
    ``.pt2`` / TorchScript exports and MONAI Label see a plain :class:`~usseg_monai.networks.unet.PyMICUNet`.

    Args:
        first: the network used at inference.
        second: its peer; must be a different object (built separately, so that its initial weights are another
            draw of the random initialisation).
        inference: ``"first"`` or ``"second"``.
    """

    def __init__(self, first: nn.Module, second: nn.Module, inference: str = "first") -> None:
        super().__init__()
        if first is second:
            raise ValueError("CrossPseudoNet: first and second must be two networks (two initialisations), got one")
        if inference not in CPS_INFERENCE:
            raise ValueError(f"CrossPseudoNet: inference must be one of {CPS_INFERENCE}, got {inference!r}")
        self.first = first
        self.second = second
        self.inference = inference
        self.divisor = int(getattr(first, "divisor", 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode: ``[2, B, C, *spatial]`` (first, second); eval mode: the ``inference`` network's logits."""
        if self.training:
            return torch.stack((self.first(x), self.second(x)), dim=0)
        if self.inference == "second":
            return self.second(x)
        return self.first(x)

    def inference_module(self) -> nn.Module:
        """The network eval-mode ``forward`` runs (``first`` or ``second``)."""
        return self.second if self.inference == "second" else self.first

    def peer_module(self) -> nn.Module:
        """The other network, used only in training."""
        return self.first if self.inference == "second" else self.second


def _bare(network: nn.Module) -> nn.Module:
    return network.module if hasattr(network, "module") and isinstance(network.module, nn.Module) else network


def inference_network(network: nn.Module) -> nn.Module:
    """The module whose weights a bundle saves as ``model`` (``model.pt``, ``checkpoint.pt["model"]``) and that its
    ``inference.json`` builds: the inference network of a :class:`CrossPseudoNet`, the network itself otherwise
    (a ``DistributedDataParallel`` wrapper is unwrapped for a :class:`CrossPseudoNet`)."""
    bare = _bare(network)
    return bare.inference_module() if isinstance(bare, CrossPseudoNet) else network


def checkpoint_modules(network: nn.Module) -> dict[str, nn.Module]:
    """The network part of a bundle's full checkpoint: ``{"model": inference_network(network)}``, plus ``"peer"``
    (the second network, needed to resume) for a :class:`CrossPseudoNet`."""
    bare = _bare(network)
    if isinstance(bare, CrossPseudoNet):
        return {"model": bare.inference_module(), "peer": bare.peer_module()}
    return {"model": network}


#: the methods of the few-masks protocol that the CRII-Net bundles train (``method`` key)
FEW_MASK_METHODS = ("crii_net", "mean_teacher", "cps", "labeled_only")


def make_few_mask_network(
    method: str = "crii_net",
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    dropout: Sequence[float] = DEFAULT_DROPOUT,
    upsample: str = "linear",
    ema_decay: float = 0.99,
    for_inference: bool = False,
) -> nn.Module:
    """The network of one few-masks method on the same PyMIC UNet backbone.

    ``"crii_net"``: :class:`CoarseRefinedNet`; ``"mean_teacher"``:
    :class:`~usseg_monai.networks.mean_teacher.MeanTeacherNet` around a :class:`PyMICUNet`; ``"cps"``:
    :class:`CrossPseudoNet` of two :class:`PyMICUNet` built one after the other (two draws of the initialisation);
    ``"labeled_only"``: the :class:`PyMICUNet` alone (the supervised-on-the-labeled-part baseline). Every one returns
    ``[B, C, *spatial]`` logits in eval mode.

    ``for_inference=True`` (the bundles' ``inference.json``) builds what the bundle saves as ``model``
    (:func:`inference_network`): for ``"cps"`` one :class:`PyMICUNet` (the second network is neither saved as the
    model nor exported); the other methods are unchanged.

    Raises:
        ValueError: an unknown method.
    """
    kw = dict(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, channels=channels,
              dropout=dropout, upsample=upsample)  # fmt: skip
    if method == "crii_net":
        return CoarseRefinedNet(**kw)
    if method == "mean_teacher":
        return MeanTeacherNet(PyMICUNet(**kw), decay=ema_decay)
    if method == "cps":
        if for_inference:
            return PyMICUNet(**kw)
        first = PyMICUNet(**kw)
        return CrossPseudoNet(first, PyMICUNet(**kw))
    if method == "labeled_only":
        return PyMICUNet(**kw)
    raise ValueError(f"unknown few-masks method {method!r}; choose one of {FEW_MASK_METHODS}")

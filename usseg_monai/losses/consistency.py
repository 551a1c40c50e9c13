"""CRII-Net's coarse-refined consistency: the refined prediction, detached and sharpened, is the coarse one's target.

CRII-Net (Du et al., "Coarse-Refined Consistency Learning Using Pixel-Level Features for Semi-Supervised Medical
Image Segmentation", IEEE JBHI 2023; ``methods.md`` section 3) gives unlabeled images *stable targets*: the refined
output ``P_r`` of :class:`usseg_monai.networks.crii_net.CoarseRefinedNet`, with its gradient stopped and sharpened,
is the target of the coarse output ``P_c``. Which augmented view each prediction comes from (e.g. refined on the
weak view, coarse on the strong one) is the training engine's business: this loss takes the two predictions.

- :func:`sharpen`: temperature sharpening of class probabilities, ``p_c ** (1 / T) / sum_k p_k ** (1 / T)``
  (Berthelot et al., "MixMatch", NeurIPS 2019, eq. 7); on probabilities ``softmax(z)`` it equals
  ``softmax(z / T)``.
- :class:`CoarseRefinedConsistencyLoss`: per pixel, ``"mse"``: the mean over classes of
  ``(softmax(P_c) - sharpen(softmax(P_r), T)) ** 2`` (the squared error of SSL4MIS-style consistency terms, so the
  ``"mean"`` reduction equals ``F.mse_loss`` on the probability maps), or ``"ce"``: the soft cross-entropy
  ``-sum_c t_c log softmax(P_c)_c``. Temperature default ``T = 0.5`` (MixMatch's value; *design choice*, the
  abstract gives none).
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["sharpen", "CoarseRefinedConsistencyLoss", "CONSISTENCY_LOSSES"]

#: the pixel losses :class:`CoarseRefinedConsistencyLoss` offers
CONSISTENCY_LOSSES = ("mse", "ce")
_REDUCTIONS = ("mean", "sum", "none")


def sharpen(p: torch.Tensor, temperature: float = 0.5, dim: int = 1, eps: float = 1e-12) -> torch.Tensor:
    """Temperature-sharpened class probabilities ``p ** (1/T) / sum(p ** (1/T))`` along ``dim`` (MixMatch eq. 7).

    Computed as ``softmax(log(max(p, eps)) / T)``, which never overflows or divides by zero. ``T = 1`` renormalises
    ``p``; ``T < 1`` sharpens (``T -> 0``: one-hot of the argmax); ``T > 1`` flattens.

    Args:
        p: non-negative class probabilities (e.g. ``[B, C, *spatial]``, classes along ``dim``).
        temperature: ``T > 0``.
        dim: the class dimension.
        eps: floor of ``p`` before the log.

    Raises:
        ValueError: ``temperature`` is not positive.
    """
    if not temperature > 0:
        raise ValueError(f"sharpen: temperature must be > 0, got {temperature}")
    return torch.softmax(torch.log(p.clamp_min(eps)) / temperature, dim=dim)


class CoarseRefinedConsistencyLoss(nn.Module):
    """Coarse-refined consistency of CRII-Net: ``softmax(P_c)`` pulled to the detached, sharpened ``softmax(P_r)``.

    ``forward(coarse, refined, mask=None)``: ``coarse`` and ``refined`` ``[B, C, *spatial]`` of the same shape,
    logits (``softmax=True``, default) or class probabilities (``softmax=False``). The target
    ``sharpen(softmax(refined), T)`` is computed from ``refined.detach()``: no gradient ever reaches the refined
    branch through this loss. ``mask`` (optional, broadcastable to ``[B, 1, *spatial]``, e.g. a confidence mask or
    per-image weights ``[B, 1, 1, 1]``) multiplies the per-pixel loss; the ``"mean"`` reduction still divides by
    the number of pixels (so the term does not grow when few pixels pass a mask).

    Returns a scalar (``reduction`` ``"mean"`` over batch and pixels, or ``"sum"``) or, with ``"none"``, the
    per-pixel loss ``[B, 1, *spatial]``.

    Args:
        temperature: sharpening temperature ``T`` of the target (default 0.5).
        loss: ``"mse"`` (default) or ``"ce"``.
        softmax: the inputs are logits (``True``) or probabilities (``False``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        eps: floor of probabilities before a log (``"ce"`` on probability inputs, and sharpening).
    """

    def __init__(
        self,
        temperature: float = 0.5,
        loss: str = "mse",
        softmax: bool = True,
        reduction: str = "mean",
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"CoarseRefinedConsistencyLoss: temperature must be > 0, got {temperature}")
        if loss not in CONSISTENCY_LOSSES:
            raise ValueError(f"CoarseRefinedConsistencyLoss: loss must be one of {CONSISTENCY_LOSSES}, got {loss!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"CoarseRefinedConsistencyLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.temperature = float(temperature)
        self.loss = loss
        self.softmax = bool(softmax)
        self.reduction = reduction
        self.eps = float(eps)

    def target(self, refined: torch.Tensor) -> torch.Tensor:
        """The detached, sharpened target ``[B, C, *spatial]`` from the refined prediction."""
        refined = refined.detach()
        if self.softmax:
            # sharpen(softmax(z), T) == softmax(z / T), without the log of a probability
            return torch.softmax(refined / self.temperature, dim=1)
        return sharpen(refined, self.temperature, dim=1, eps=self.eps)

    def forward(self, coarse: torch.Tensor, refined: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if coarse.ndim < 3 or coarse.shape != refined.shape:
            raise ValueError(
                "CoarseRefinedConsistencyLoss: coarse and refined must be [B, C, *spatial] of the same shape, got "
                f"{list(coarse.shape)} and {list(refined.shape)}"
            )
        if coarse.shape[1] < 2:
            raise ValueError(
                f"CoarseRefinedConsistencyLoss: needs at least 2 class channels, got shape {list(coarse.shape)}"
            )
        target = self.target(refined)
        if self.loss == "mse":
            prob = torch.softmax(coarse, dim=1) if self.softmax else coarse
            per_pixel = ((prob - target) ** 2).mean(dim=1, keepdim=True)
        else:
            log_prob = torch.log_softmax(coarse, dim=1) if self.softmax else torch.log(coarse.clamp_min(self.eps))
            per_pixel = -(target * log_prob).sum(dim=1, keepdim=True)
        if mask is not None:
            try:
                weighted = per_pixel * mask.to(per_pixel.dtype)
            except RuntimeError as err:
                raise ValueError(
                    f"CoarseRefinedConsistencyLoss: mask of shape {list(mask.shape)} does not broadcast to "
                    f"{list(per_pixel.shape)}"
                ) from err
            if weighted.shape != per_pixel.shape:
                raise ValueError(
                    f"CoarseRefinedConsistencyLoss: mask of shape {list(mask.shape)} changes the loss map's shape "
                    f"{list(per_pixel.shape)} to {list(weighted.shape)}; expected broadcastable to [B, 1, *spatial]"
                )
            per_pixel = weighted
        if self.reduction == "mean":
            return per_pixel.mean()
        if self.reduction == "sum":
            return per_pixel.sum()
        return per_pixel

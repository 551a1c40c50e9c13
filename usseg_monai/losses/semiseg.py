"""Losses of SemiSeg-CAW: segmentation (BCE + Dice + Focal Tversky) and the multi-loss weighting (WGM, alternatives).

SemiSeg-CAW (Barzegar & Khan, Mach. Learn. Knowl. Extr. 2025, 7, 124; ``methods.md`` section 2) trains with a
segmentation loss made of BCE-with-logits, Dice and Focal Tversky terms and a classification cross-entropy, the
two combined by a weight generation module (WGM) with trainable weights. This module gives:

- :class:`FocalTverskyLoss`: Abraham & Khan, "A novel focal Tversky loss function with improved attention U-Net
  for lesion segmentation", ISBI 2019, eq. 3-4: ``TI_c = (TP_c + s) / (TP_c + alpha FN_c + beta FP_c + s)`` with
  ``TP = sum p g``, ``FN = sum (1 - p) g``, ``FP = sum p (1 - g)``, and ``FTL_c = (1 - TI_c) ** (1 / gamma)``;
  the paper's (and SemiSeg-CAW's) values ``alpha = 0.7`` (on false negatives), ``beta = 0.3`` (on false
  positives), ``gamma = 4/3``. Note MONAI's ``TverskyLoss`` puts its ``alpha`` on false positives: not the same
  convention. An optional per-pixel weight multiplies every pixel's contribution to TP, FN and FP.
- :class:`SegmentationLoss`: BCE-with-logits + soft Dice + Focal Tversky with a per-pixel weight and a per-image
  mask, so that images without a mask (class-only images) contribute nothing (their logits get an exactly zero
  gradient).
- :class:`WeightGenerationModule` (WGM, *design choice* of this project: the learned log-variance weighting of
  Kendall, Gal & Cipolla, "Multi-task learning using uncertainty to weigh losses", CVPR 2018, eq. 7 in the form
  ``L = sum_i exp(-s_i) L_i + s_i`` with ``s_i = log sigma_i^2`` trainable), and the ablation alternatives
  :class:`StaticLossWeights` (fixed weights) and :class:`IMTLWeights` (Liu et al., "Towards Impartial Multi-task
  Learning", ICLR 2021: IMTL-L loss balance and IMTL-G gradient balance, i.e. the paper's hybrid IMTL).
- :func:`make_loss_weighting`: ``"wgm" | "static" | "imtl"`` by name, for bundle configs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "tversky_index",
    "FocalTverskyLoss",
    "SegmentationLoss",
    "WeightGenerationModule",
    "StaticLossWeights",
    "IMTLWeights",
    "imtl_gradient_weights",
    "make_loss_weighting",
    "LOSS_WEIGHTINGS",
]

_REDUCTIONS = ("mean", "sum", "none")


def _stack_losses(losses: Sequence[torch.Tensor] | torch.Tensor, n: int, name: str) -> torch.Tensor:
    """The ``n`` scalar task losses as one 1D tensor, with a clear error on a wrong count or shape."""
    if isinstance(losses, torch.Tensor):
        stacked = losses.reshape(-1) if losses.ndim <= 1 else losses
    else:
        items = list(losses)
        for i, item in enumerate(items):
            if not isinstance(item, torch.Tensor) or item.numel() != 1:
                raise ValueError(f"{name}: loss {i} must be a scalar tensor, got {item!r:.80}")
        stacked = torch.stack([item.reshape(()) for item in items]) if items else torch.zeros(0)
    if stacked.ndim != 1 or stacked.numel() != n:
        raise ValueError(f"{name}: expected {n} scalar losses, got shape {list(stacked.shape)}")
    return stacked


def tversky_index(
    probs: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
    beta: float,
    weight: torch.Tensor | None = None,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
) -> torch.Tensor:
    """Tversky index ``(TP + s_nr) / (TP + alpha FN + beta FP + s_dr)`` per image and channel (Abraham & Khan eq. 3).

    Args:
        probs: probabilities ``[B, C, *spatial]`` in [0, 1].
        target: ground truth of the same shape, in [0, 1] (one-hot or soft).
        alpha: weight of the false negatives ``sum (1 - p) g``.
        beta: weight of the false positives ``sum p (1 - g)``.
        weight: optional non-negative per-pixel weight broadcastable to ``probs``.
        smooth_nr, smooth_dr: smoothing of numerator and denominator.
        batch: sum over the batch too (one index per channel, ``[C]``) instead of per image (``[B, C]``).

    With ``alpha = beta = 0.5`` it is the soft Dice coefficient ``2 TP / (sum p + sum g)``.
    """
    if probs.shape != target.shape:
        raise ValueError(f"tversky_index: probs {list(probs.shape)} and target {list(target.shape)} differ in shape")
    w = torch.ones_like(probs) if weight is None else weight.to(probs.dtype).expand_as(probs)
    dims = tuple(range(2, probs.ndim))
    if batch:
        dims = (0,) + dims
    tp = (w * probs * target).sum(dims)
    fn = (w * (1.0 - probs) * target).sum(dims)
    fp = (w * probs * (1.0 - target)).sum(dims)
    return (tp + smooth_nr) / (tp + alpha * fn + beta * fp + smooth_dr)


def _one_hot_target(target: torch.Tensor, num_channels: int, name: str) -> torch.Tensor:
    """``[B, 1, *spatial]`` class indices -> ``[B, C, *spatial]`` one-hot (float)."""
    if target.shape[1] != 1:
        raise ValueError(f"{name}: to_onehot_y needs a [B, 1, ...] index target, got shape {list(target.shape)}")
    idx = target.long()
    if idx.min() < 0 or idx.max() >= num_channels:
        raise ValueError(f"{name}: target indices must be in [0, {num_channels - 1}], got {idx.min()}..{idx.max()}")
    return F.one_hot(idx[:, 0], num_channels).movedim(-1, 1).to(torch.float32)


class FocalTverskyLoss(nn.Module):
    """Focal Tversky loss (Abraham & Khan, ISBI 2019): mean (or sum) over images, channels of ``(1 - TI) ** (1/gamma)``.

    Args:
        alpha: weight of false negatives in the Tversky index (0.7 in the paper and in SemiSeg-CAW).
        beta: weight of false positives (0.3).
        gamma: focal parameter; the loss is ``(1 - TI) ** (1 / gamma)`` (``gamma = 4/3``; ``gamma = 1`` gives the
            plain Tversky loss).
        sigmoid: apply a sigmoid to the input (logits).
        softmax: apply a softmax over channels to the input (logits).
        to_onehot_y: the target is ``[B, 1, ...]`` class indices, converted to one-hot over the input channels.
        include_background: keep channel 0 (set ``False`` with softmax/one-hot inputs to score the lesion only).
        smooth_nr, smooth_dr: smoothing constants of the index.
        batch: one index per channel over the whole batch instead of one per image.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[B, C]``, or ``[C]`` with ``batch``).

    ``forward(input, target, weight=None)``: ``input [B, C, *spatial]`` probabilities (or logits with
    ``sigmoid``/``softmax``), ``target`` of the same shape (or indices with ``to_onehot_y``), ``weight`` an
    optional non-negative per-pixel weight broadcastable to the input.
    """

    def __init__(
        self,
        alpha: float = 0.7,
        beta: float = 0.3,
        gamma: float = 4.0 / 3.0,
        sigmoid: bool = False,
        softmax: bool = False,
        to_onehot_y: bool = False,
        include_background: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if sigmoid and softmax:
            raise ValueError("FocalTverskyLoss: sigmoid and softmax are mutually exclusive")
        if alpha < 0 or beta < 0:
            raise ValueError(f"FocalTverskyLoss: alpha and beta must be >= 0, got {alpha}, {beta}")
        if gamma <= 0:
            raise ValueError(f"FocalTverskyLoss: gamma must be > 0, got {gamma}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"FocalTverskyLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.sigmoid, self.softmax, self.to_onehot_y = sigmoid, softmax, to_onehot_y
        self.include_background = include_background
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.batch = batch
        self.reduction = reduction

    def per_channel(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unreduced loss ``[B, C']`` (``[C']`` with ``batch``), ``C'`` the scored channels."""
        n_ch = input.shape[1]
        if self.sigmoid:
            input = torch.sigmoid(input)
        elif self.softmax:
            if n_ch == 1:
                raise ValueError("FocalTverskyLoss: softmax needs at least two channels")
            input = torch.softmax(input, dim=1)
        if self.to_onehot_y:
            target = _one_hot_target(target, n_ch, "FocalTverskyLoss")
        if target.shape != input.shape:
            raise ValueError(
                f"FocalTverskyLoss: target shape {list(target.shape)} does not match input {list(input.shape)}"
            )
        target = target.to(input.dtype)
        if not self.include_background:
            if n_ch == 1:
                raise ValueError("FocalTverskyLoss: include_background=False needs at least two channels")
            input, target = input[:, 1:], target[:, 1:]
            if weight is not None and weight.ndim == input.ndim and weight.shape[1] == n_ch:
                weight = weight[:, 1:]
        ti = tversky_index(input, target, self.alpha, self.beta, weight, self.smooth_nr, self.smooth_dr, self.batch)
        # clamp: (1 - TI) ** (1/gamma) has an infinite slope at 0 (perfect or empty images); the clamp keeps the
        # gradient finite (zero there) instead of 0 * inf = nan
        return (1.0 - ti).clamp_min(1e-12) ** (1.0 / self.gamma)

    def forward(self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.per_channel(input, target, weight)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class SegmentationLoss(nn.Module):
    """SemiSeg-CAW segmentation loss ``w_bce BCE + w_dice Dice + w_ftl FocalTversky``, with pixel weights, image masks.

    Input logits ``[B, 1, *spatial]`` (sigmoid; target ``[B, 1, ...]`` in [0, 1]) or ``[B, C>=2, *spatial]``
    (softmax; target ``[B, 1, ...]`` class indices or ``[B, C, ...]`` one-hot). With one channel the pixel term is
    BCE-with-logits; with several it is the softmax cross-entropy (the same loss written for ``C`` channels), and
    Dice and Focal Tversky score the foreground channels ``1..C-1``.

    Weighting (``forward(logits, target, weight=None, image_mask=None)``):

    - ``weight``: non-negative per-pixel weight ``[B, 1, *spatial]`` (or broadcastable), e.g. the confidence of a
      thresholded auxiliary map; multiplies each pixel's BCE term and its TP/FN/FP contributions;
    - ``image_mask``: ``[B]``, 1 for an image whose target counts, 0 for one that has none (class-only images);
      multiplies the pixel weight.

    Reduction: the pixel term is the weighted mean over all counted pixels (``sum w l / sum w``); Dice and Focal
    Tversky are computed per image and averaged over the images with a positive weight sum. When nothing counts
    the loss is 0 (still attached to the graph, with a zero gradient). Pixels and images of weight zero give an
    exactly zero gradient to their logits.

    Args:
        bce_weight, dice_weight, ftl_weight: weights of the three terms (1 each by default).
        alpha, beta, gamma: Focal Tversky parameters (0.7 on FN, 0.3 on FP, 4/3).
        smooth: smoothing of Dice and Tversky indices.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        ftl_weight: float = 1.0,
        alpha: float = 0.7,
        beta: float = 0.3,
        gamma: float = 4.0 / 3.0,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        if min(bce_weight, dice_weight, ftl_weight) < 0:
            raise ValueError("SegmentationLoss: term weights must be >= 0")
        self.bce_weight, self.dice_weight, self.ftl_weight = float(bce_weight), float(dice_weight), float(ftl_weight)
        self.ftl = FocalTverskyLoss(alpha, beta, gamma, smooth_nr=smooth, smooth_dr=smooth, reduction="none")
        self.dice = FocalTverskyLoss(0.5, 0.5, 1.0, smooth_nr=smooth, smooth_dr=smooth, reduction="none")
        self.last_components: dict[str, float] = {}

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if logits.ndim < 3:
            raise ValueError(f"SegmentationLoss: logits must be [B, C, *spatial], got shape {list(logits.shape)}")
        b, c = logits.shape[:2]
        spatial = logits.shape[2:]
        if target.shape[0] != b or target.shape[2:] != spatial:
            raise ValueError(
                f"SegmentationLoss: target shape {list(target.shape)} does not match logits {list(logits.shape)}"
            )
        w = torch.ones((b, 1) + tuple(spatial), dtype=logits.dtype, device=logits.device)
        if weight is not None:
            if (weight < 0).any():
                raise ValueError("SegmentationLoss: weight must be non-negative")
            w = w * weight.to(logits.dtype)
            if w.shape != (b, 1) + tuple(spatial):
                raise ValueError(
                    f"SegmentationLoss: weight shape {list(weight.shape)} must broadcast to [B, 1, *spatial] "
                    f"= {[b, 1, *spatial]}"
                )
        if image_mask is not None:
            image_mask = image_mask.reshape(-1).to(logits.dtype)
            if image_mask.numel() != b:
                raise ValueError(
                    f"SegmentationLoss: image_mask needs {b} values (one per image), got {image_mask.numel()}"
                )
            w = w * image_mask.view((b,) + (1,) * (logits.ndim - 1))

        if c == 1:
            if target.shape[1] != 1:
                raise ValueError(
                    f"SegmentationLoss: one logit channel needs a [B, 1, ...] target, got {list(target.shape)}"
                )
            tgt = target.to(logits.dtype)
            if tgt.numel() and (tgt.min() < 0 or tgt.max() > 1):
                raise ValueError(
                    "SegmentationLoss: a one-channel target must be in [0, 1], "
                    f"got {float(tgt.min())}..{float(tgt.max())}"
                )
            pixel = F.binary_cross_entropy_with_logits(logits, tgt, reduction="none")
            probs, onehot = torch.sigmoid(logits), tgt
        else:
            if target.shape[1] == 1:
                onehot = _one_hot_target(target, c, "SegmentationLoss").to(logits.dtype)
            elif target.shape[1] == c:
                onehot = target.to(logits.dtype)
            else:
                raise ValueError(
                    f"SegmentationLoss: target must have 1 (indices) or {c} (one-hot) channels, "
                    f"got {list(target.shape)}"
                )
            logp = torch.log_softmax(logits, dim=1)
            pixel = -(onehot * logp).sum(1, keepdim=True)
            probs, onehot = logp.exp()[:, 1:], onehot[:, 1:]

        w_sum = w.sum()
        bce = (w * pixel).sum() / w_sum.clamp_min(1e-12)
        per_image = w.flatten(1).sum(1)  # [B]
        valid = (per_image > 0).to(logits.dtype)
        n_valid = valid.sum().clamp_min(1.0)
        dice = (self.dice.per_channel(probs, onehot, w).mean(1) * valid).sum() / n_valid
        ftl = (self.ftl.per_channel(probs, onehot, w).mean(1) * valid).sum() / n_valid
        self.last_components = {"bce": float(bce.detach()), "dice": float(dice.detach()), "ftl": float(ftl.detach())}
        return self.bce_weight * bce + self.dice_weight * dice + self.ftl_weight * ftl


class WeightGenerationModule(nn.Module):
    """WGM of SemiSeg-CAW as learned log-variance weighting (Kendall et al., CVPR 2018): ``sum_i exp(-s_i) L_i + s_i``.

    ``s_i = log sigma_i^2`` are trainable (:attr:`log_vars`, initialised to ``init``, so the weights start at
    ``exp(-init)``); the optimiser must include this module's parameters. For a fixed ``L_i`` the objective is
    minimal at ``s_i = log L_i``, where the weighted loss ``exp(-s_i) L_i`` equals 1.

    Args:
        n_losses: number of task losses (SemiSeg-CAW: 2, segmentation and classification).
        init: initial ``s_i`` (a float, or one per loss).
    """

    def __init__(self, n_losses: int = 2, init: float | Sequence[float] = 0.0) -> None:
        super().__init__()
        if n_losses < 1:
            raise ValueError(f"WeightGenerationModule: n_losses must be >= 1, got {n_losses}")
        values = torch.as_tensor(init, dtype=torch.float32).expand(n_losses).clone()
        self.log_vars = nn.Parameter(values)
        self.n_losses = n_losses

    @property
    def weights(self) -> torch.Tensor:
        """The current weights ``exp(-s_i)`` (detached)."""
        return torch.exp(-self.log_vars.detach())

    def forward(self, losses: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        stacked = _stack_losses(losses, self.n_losses, "WeightGenerationModule")
        return (torch.exp(-self.log_vars) * stacked + self.log_vars).sum()


class StaticLossWeights(nn.Module):
    """Fixed weights ``sum_i w_i L_i`` (the "static weights instead of WGM" ablation); no trainable parameters.

    Args:
        n_losses: number of task losses.
        weights: one non-negative weight per loss (default 1 each).
    """

    def __init__(self, n_losses: int = 2, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if n_losses < 1:
            raise ValueError(f"StaticLossWeights: n_losses must be >= 1, got {n_losses}")
        w = [1.0] * n_losses if weights is None else [float(v) for v in weights]
        if len(w) != n_losses or min(w) < 0:
            raise ValueError(f"StaticLossWeights: need {n_losses} non-negative weights, got {w}")
        self.register_buffer("static_weights", torch.tensor(w))
        self.n_losses = n_losses

    @property
    def weights(self) -> torch.Tensor:
        return self.static_weights.clone()

    def forward(self, losses: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        stacked = _stack_losses(losses, self.n_losses, "StaticLossWeights")
        return (self.static_weights.to(stacked) * stacked).sum()


def imtl_gradient_weights(grads: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """IMTL-G weights (Liu et al., ICLR 2021, Theorem 1 / eq. 10): ``alpha [T]`` with ``sum alpha = 1`` such that
    ``g = sum_t alpha_t g_t`` has equal projections on every unit task gradient ``u_t = g_t / |g_t|``.

    ``alpha_{2:T} = g_1 U^T (D U^T)^{-1}`` with ``D`` the rows ``g_1 - g_t`` and ``U`` the rows ``u_1 - u_t``
    (``t = 2..T``), ``alpha_1 = 1 - sum alpha_{2:T}``. A singular ``D U^T`` (parallel or zero gradients) is solved
    with the pseudo-inverse.

    Args:
        grads: ``[T, P]``, one flattened task gradient per row.
    """
    if grads.ndim != 2 or grads.shape[0] < 1:
        raise ValueError(f"imtl_gradient_weights: grads must be [T, P], got shape {list(grads.shape)}")
    t = grads.shape[0]
    if t == 1:
        return torch.ones(1, dtype=grads.dtype, device=grads.device)
    units = grads / grads.norm(dim=1, keepdim=True).clamp_min(eps)
    d = grads[:1] - grads[1:]  # [T-1, P]
    u = units[:1] - units[1:]
    rest = grads[:1] @ u.T @ torch.linalg.pinv(d @ u.T)  # [1, T-1]
    rest = rest.reshape(-1)
    return torch.cat([(1.0 - rest.sum()).reshape(1), rest])


class IMTLWeights(nn.Module):
    """Impartial multi-task learning (Liu et al., ICLR 2021) as the "strategy of [21] instead of WGM" ablation.

    Implemented parts:

    - IMTL-L (loss balance, section 3.2): a learned scale per task, loss ``sum_t exp(s_t) L_t - s_t``;
      ``d/ds_t = exp(s_t) L_t - 1``, so the scales drive every scaled loss ``exp(s_t) L_t`` to 1. (Up to the sign
      of ``s`` this is the same objective as :class:`WeightGenerationModule`; the difference of this option is
      the gradient balance below.)
    - IMTL-G (gradient balance, section 3.1) on a shared representation ``z`` (the paper's efficient variant,
      gradients w.r.t. the shared representation instead of the shared parameters): when ``forward`` gets
      ``shared`` (one feature tensor or several, e.g. the encoder bottleneck of every forward pass of the step,
      which every task reads; several are treated as one ``z``, concatenated), the gradient flowing back into
      ``z`` is replaced by ``c * sum_t alpha_t g_t`` with ``g_t = d(exp(s_t) L_t)/dz``, ``alpha`` from
      :func:`imtl_gradient_weights` (computed from the current batch, not differentiated) and ``c`` the factor
      by which the incoming gradient is scaled relative to ``sum_t g_t`` (1, or a loss scale such as AMP's
      ``GradScaler``); the task-specific parameters and the scales keep the IMTL-L gradients. Gradients that
      reach the shared parameters by another path (e.g. skip connections) are not rebalanced. Without
      ``shared`` (or with ``gradient_balance=False``) only IMTL-L applies.

    :attr:`last_alpha` holds the IMTL-G weights of the last call (``None`` when not computed).

    Args:
        n_losses: number of task losses.
        gradient_balance: apply IMTL-G when ``shared`` is given.
    """

    def __init__(self, n_losses: int = 2, gradient_balance: bool = True) -> None:
        super().__init__()
        if n_losses < 1:
            raise ValueError(f"IMTLWeights: n_losses must be >= 1, got {n_losses}")
        self.log_scales = nn.Parameter(torch.zeros(n_losses))
        self.n_losses = n_losses
        self.gradient_balance = gradient_balance
        self.last_alpha: torch.Tensor | None = None

    @property
    def weights(self) -> torch.Tensor:
        """The current loss scales ``exp(s_t)`` (detached)."""
        return torch.exp(self.log_scales.detach())

    def forward(
        self,
        losses: Sequence[torch.Tensor] | torch.Tensor,
        shared: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        stacked = _stack_losses(losses, self.n_losses, "IMTLWeights")
        scaled = torch.exp(self.log_scales) * stacked
        total = (scaled - self.log_scales).sum()
        self.last_alpha = None
        feats = [] if shared is None else [shared] if isinstance(shared, torch.Tensor) else list(shared)
        for z in feats:
            if z.is_leaf:
                raise ValueError(
                    "IMTLWeights: shared must be intermediate features (e.g. the encoder bottleneck), not a leaf "
                    "tensor: the gradient hook would stay registered across steps"
                )
        feats = [z for z in feats if z.requires_grad]
        if feats and self.gradient_balance and torch.is_grad_enabled():
            per_task = []  # per task: the gradient w.r.t. every shared tensor
            for t in range(self.n_losses):
                grads = torch.autograd.grad(scaled[t], feats, retain_graph=True, allow_unused=True)
                per_task.append([torch.zeros_like(z) if g is None else g.detach() for z, g in zip(feats, grads)])
            flat = torch.stack([torch.cat([g.reshape(-1) for g in gs]) for gs in per_task])
            alpha = imtl_gradient_weights(flat)
            self.last_alpha = alpha.detach()
            for i, z in enumerate(feats):
                plain = sum(gs[i] for gs in per_task)
                balanced = sum(a * gs[i] for a, gs in zip(alpha, per_task))
                z.register_hook(functools.partial(_rebalance, plain=plain, balanced=balanced))
        return total


def _rebalance(grad: torch.Tensor, plain: torch.Tensor, balanced: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """IMTL-G's gradient hook: ``balanced`` times the factor by which ``grad`` is scaled relative to ``plain`` (the
    unbalanced sum of the task gradients), so a loss scale applied by the caller (AMP) carries over."""
    denom = (plain * plain).sum()
    ratio = (grad.to(plain.dtype) * plain).sum() / denom.clamp_min(eps)
    scale = torch.where(denom > eps, ratio, torch.ones_like(ratio))  # no task gradient: nothing to scale by
    return (scale * balanced).to(grad.dtype)


LOSS_WEIGHTINGS = ("wgm", "static", "imtl")


def make_loss_weighting(name: str, n: int = 2, **kwargs) -> nn.Module:
    """The multi-loss combiner by name: ``"wgm"`` (:class:`WeightGenerationModule`), ``"static"``
    (:class:`StaticLossWeights`) or ``"imtl"`` (:class:`IMTLWeights`); ``kwargs`` go to the constructor."""
    key = str(name).lower()
    if key == "wgm":
        return WeightGenerationModule(n, **kwargs)
    if key == "static":
        return StaticLossWeights(n, **kwargs)
    if key == "imtl":
        return IMTLWeights(n, **kwargs)
    raise ValueError(f"make_loss_weighting: unknown weighting {name!r}, expected one of {LOSS_WEIGHTINGS}")

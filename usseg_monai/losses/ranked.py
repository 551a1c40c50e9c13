"""CRII-Net's ranked losses: the Intra-Patch Ranked Loss (pixel pairs) and the Inter-Patch Ranked Loss (patch pairs).

CRII-Net (Du et al., "Coarse-Refined Consistency Learning Using Pixel-Level Features for Semi-Supervised Medical
Image Segmentation", IEEE JBHI 2023; ``methods.md`` section 3) adds two ranking losses on the refined prediction of
labeled images. The abstract names them and their purpose; the formulas below are this project's reading of it
(``methods.md``), with the unstated details marked *design choice*.

Both losses cut every image of the batch into patches, aligned at index 0 of every axis. The patch side along
each spatial axis (:func:`resolve_patch_size`) is, by default, a fraction of the input's size along that axis:
``max(2, round_half_up(patch_fraction * size))`` with ``patch_fraction = 16 / 256 = 0.0625`` (*design choice*:
16 px at 256 px, 8 at 128, 4 at 64; an anisotropic 3D input ``64 x 64 x 32`` gets ``4 x 4 x 2`` voxel patches), so
that a patch covers the same part of the image, and the ranked losses see about as many lesion patches per image,
whatever the network's input size. An explicit ``patch_size`` (pixels/voxels, one int or one per axis) overrides
the fraction. When a spatial size is not a multiple of the patch side, the last patch along that axis is smaller
(*design choice*: the image is padded to a multiple and padded pixels belong to no class and are never scored). The lesion score of a pixel is
its probability of the lesion class, ``s = softmax(input, dim=1)[:, lesion_channel]`` for logits ``[B, C, ...]``
(``activation="softmax"``, default), ``sigmoid(input[:, lesion_channel])`` (``"sigmoid"``, one-channel logits with
``lesion_channel=0``), or ``input[:, lesion_channel]`` as given (``"none"``: the input already holds
probabilities). Labels ``[B, 1, ...]`` are binarised with ``> 0`` (0/1 and 0/255 both work).

- :class:`IntraPatchRankedLoss` (Intra-PRL, boundaries): in every patch that holds both foreground and background
  pixels, every foreground pixel should score at least a margin ``m`` above every background pixel; the patch's
  loss is the mean over its (foreground, background) pairs of the hinge ``max(0, m - (s_f - s_b))``. A patch has
  ``n_f * n_b`` pairs (up to 128 * 128 in 2D and 2048 * 2048 in 3D for 16-pixel patches), so at most
  ``max_pairs`` pairs per patch are used: all of them, exactly, when ``n_f * n_b <= max_pairs``, otherwise
  ``max_pairs`` pairs drawn uniformly with replacement (a foreground and a background pixel drawn independently
  and uniformly), an unbiased estimate of the patch's mean. Memory is ``O(patches * (patch voxels + max_pairs))``.
  The loss is the mean over the batch's mixed patches of their patch loss (*design choice*: every boundary
  patch weighs the same, however many pairs it has).
- :class:`InterPatchRankedLoss` (Inter-PRL, low contrast): a patch's score is the mean lesion score of its
  pixels; a patch is *positive* (mostly lesion) when its lesion fraction is at least ``lesion_fraction``, and
  *negative* when it holds no lesion pixel at all. Pairs are formed across the whole batch: every positive patch
  with the ``hardest_negatives`` negative patches of highest score (the hardest negatives: the hinge is largest
  for them; all negatives when fewer, or when ``hardest_negatives=None``); the loss is the mean over these pairs
  of ``max(0, m - (S_pos - S_neg))``. Patches that are partly lesion but below ``lesion_fraction`` take no part.

No valid patch (no mixed patch for the intra loss; no positive or no negative patch for the inter loss): the loss
is exactly zero, attached to the input's graph (``backward`` works and gives zero gradients, never NaN), and
``reduction="none"`` gives an empty tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "IntraPatchRankedLoss",
    "InterPatchRankedLoss",
    "patchify",
    "lesion_scores",
    "resolve_patch_size",
    "SCORE_ACTIVATIONS",
    "DEFAULT_PATCH_FRACTION",
]

#: default patch side as a fraction of the input's size along each axis: 16 px at 256 px (*design choice*)
DEFAULT_PATCH_FRACTION = 16.0 / 256.0

#: how the ranked losses turn their input into a lesion score
SCORE_ACTIVATIONS = ("softmax", "sigmoid", "none")
_REDUCTIONS = ("mean", "sum", "none")


def lesion_scores(input: torch.Tensor, activation: str = "softmax", lesion_channel: int = 1) -> torch.Tensor:
    """Lesion score (probability of the lesion class) ``[B, *spatial]`` from ``input`` ``[B, C, *spatial]``.

    Args:
        input: logits (``activation`` ``"softmax"`` or ``"sigmoid"``) or probabilities (``"none"``).
        activation: ``"softmax"`` over the channels, ``"sigmoid"`` of the lesion channel, or ``"none"``.
        lesion_channel: index of the lesion class's channel.

    Raises:
        ValueError: an unknown activation, a lesion channel out of range, or softmax over a single channel.
    """
    if activation not in SCORE_ACTIVATIONS:
        raise ValueError(f"activation must be one of {SCORE_ACTIVATIONS}, got {activation!r}")
    if input.ndim < 3:
        raise ValueError(f"input must be [B, C, *spatial], got shape {list(input.shape)}")
    n = input.shape[1]
    if activation == "softmax" and n < 2:
        raise ValueError(
            "activation='softmax' needs at least 2 channels (background, lesion); for one-channel logits use "
            "activation='sigmoid', lesion_channel=0"
        )
    if not -n <= lesion_channel < n:
        raise ValueError(
            f"lesion_channel {lesion_channel} is out of range for an input with {n} channel(s) "
            "(use lesion_channel=0 for one-channel input)"
        )
    if activation == "softmax":
        return torch.softmax(input, dim=1)[:, lesion_channel]
    if activation == "sigmoid":
        return torch.sigmoid(input[:, lesion_channel])
    return input[:, lesion_channel]


def _patch_shape(patch_size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    if isinstance(patch_size, int):
        sizes = (int(patch_size),) * spatial_dims
    else:
        sizes = tuple(int(p) for p in patch_size)
        if len(sizes) != spatial_dims:
            raise ValueError(
                f"patch_size {list(sizes)} has {len(sizes)} value(s) for an input with {spatial_dims} spatial dims"
            )
    if any(p < 1 for p in sizes):
        raise ValueError(f"patch_size values must be >= 1, got {list(sizes)}")
    return sizes


def _check_patch_fraction(patch_fraction: float, name: str) -> float:
    if isinstance(patch_fraction, bool) or not isinstance(patch_fraction, (int, float)):
        raise ValueError(f"{name}: patch_fraction must be a number in (0, 1], got {patch_fraction!r}")
    f = float(patch_fraction)
    if not 0.0 < f <= 1.0:  # also refuses NaN
        raise ValueError(f"{name}: patch_fraction must be in (0, 1] (patch side / image side), got {patch_fraction}")
    return f


def _check_patch_spec(
    patch_size: int | Sequence[int] | None, patch_fraction: float | None, name: str
) -> tuple[int | tuple[int, ...] | None, float | None]:
    """Validated ``(patch_size, patch_fraction)`` of a ranked loss's constructor (at least one given)."""
    if patch_size is None and patch_fraction is None:
        raise ValueError(f"{name}: give patch_size (pixels) or patch_fraction (of the input size); both are None")
    size: int | tuple[int, ...] | None = None
    if patch_size is not None:
        if isinstance(patch_size, bool):
            raise ValueError(f"{name}: patch_size must be an int or a sequence of ints, got {patch_size!r}")
        if isinstance(patch_size, (int, float)):
            if float(patch_size) != int(patch_size):
                raise ValueError(f"{name}: patch_size must be a whole number of pixels, got {patch_size}")
            size = int(patch_size)
            _patch_shape(size, 1)
        else:
            values = tuple(patch_size)
            if not values or any(isinstance(v, bool) or float(v) != int(v) for v in values):
                raise ValueError(f"{name}: patch_size must be whole numbers of pixels, got {list(values)}")
            size = tuple(int(v) for v in values)
            _patch_shape(size, len(size))
    fraction = None if patch_fraction is None else _check_patch_fraction(patch_fraction, name)
    return size, fraction


def resolve_patch_size(
    spatial_shape: Sequence[int],
    patch_size: int | Sequence[int] | None = None,
    patch_fraction: float | None = DEFAULT_PATCH_FRACTION,
) -> tuple[int, ...]:
    """The patch side (pixels/voxels) along each axis of an input of spatial shape ``spatial_shape``.

    An explicit ``patch_size`` wins (one int for every axis, or one per axis); otherwise each axis gets
    ``max(2, floor(patch_fraction * size + 0.5))`` (rounded half up; at least 2 so that a patch can hold a
    lesion and a background pixel). 2D and 3D alike: ``(64, 128, 256)`` with the default fraction ``0.0625``
    gives ``(4, 8, 16)``.

    Raises:
        ValueError: both ``patch_size`` and ``patch_fraction`` are ``None``; ``patch_fraction`` outside ``(0, 1]``;
            a patch size below 1 or with another number of values than ``spatial_shape``; a spatial size below 1.
    """
    spatial = tuple(int(s) for s in spatial_shape)
    if not spatial or any(s < 1 for s in spatial):
        raise ValueError(f"resolve_patch_size: spatial sizes must be >= 1, got {list(spatial)}")
    size, fraction = _check_patch_spec(patch_size, patch_fraction, "resolve_patch_size")
    if size is not None:
        return _patch_shape(size, len(spatial))
    assert fraction is not None
    return tuple(max(2, int(math.floor(fraction * s + 0.5))) for s in spatial)


def patchify(x: torch.Tensor, patch_size: int | Sequence[int], pad_value: float = 0.0) -> torch.Tensor:
    """Cut ``x`` ``[B, *spatial]`` into non-overlapping patches: ``[B, n_patches, patch_voxels]``.

    Patches are aligned at index 0 of every axis and ordered in C order of their grid position; each patch's
    pixels are in C order of their position in the patch. Axes that are not a multiple of the patch size are
    padded at their end with ``pad_value``.
    """
    spatial = tuple(x.shape[1:])
    sizes = _patch_shape(patch_size, len(spatial))
    counts = tuple(math.ceil(s / p) for s, p in zip(spatial, sizes))
    pad: list[int] = []
    for s, p, n in zip(reversed(spatial), reversed(sizes), reversed(counts)):
        pad += [0, n * p - s]
    if any(pad):
        x = F.pad(x, pad, mode="constant", value=pad_value)
    interleaved: list[int] = [x.shape[0]]
    for n, p in zip(counts, sizes):
        interleaved += [n, p]
    d = len(spatial)
    order = [0] + [1 + 2 * i for i in range(d)] + [2 + 2 * i for i in range(d)]
    return x.reshape(interleaved).permute(order).reshape(x.shape[0], math.prod(counts), math.prod(sizes))


def _check(input: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if input.ndim < 4:
        raise ValueError(f"{name}: input must be [B, C, x, y(, z)], got shape {list(input.shape)}")
    if target.ndim != input.ndim or target.shape[1] != 1:
        raise ValueError(f"{name}: target must be [B, 1, *spatial] labels, got shape {list(target.shape)}")
    if target.shape[0] != input.shape[0] or target.shape[2:] != input.shape[2:]:
        raise ValueError(
            f"{name}: target shape {list(target.shape)} does not match input shape {list(input.shape)} "
            "(same batch and spatial sizes expected)"
        )


def _patched(
    input: torch.Tensor, target: torch.Tensor, patch_size: int | Sequence[int], activation: str, lesion_channel: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patched lesion scores (float), foreground and valid masks (bool), each ``[B, n_patches, patch_voxels]``."""
    scores = lesion_scores(input, activation, lesion_channel)
    fg = (target[:, 0] > 0).to(scores.dtype)
    valid = torch.ones_like(fg)
    return (
        patchify(scores, patch_size),
        patchify(fg, patch_size) > 0,
        patchify(valid, patch_size) > 0,
    )


def _reduce(values: torch.Tensor, reduction: str, anchor: torch.Tensor) -> torch.Tensor:
    """``values`` reduced; an empty ``values`` gives an exact zero attached to ``anchor``'s graph."""
    if reduction == "none":
        return values
    if values.numel() == 0:
        return anchor.sum() * 0.0
    return values.mean() if reduction == "mean" else values.sum()


class IntraPatchRankedLoss(nn.Module):
    """Intra-Patch Ranked Loss of CRII-Net (pixel pairs inside patches holding lesion and background).

    See the module docstring for the definition. ``forward(input, target)``: ``input`` ``[B, C, x, y(, z)]``
    logits (or probabilities, ``activation="none"``), ``target`` ``[B, 1, x, y(, z)]`` labels; returns a scalar
    (``reduction`` ``"mean"``: mean over mixed patches of the per-patch mean hinge; ``"sum"``: their sum) or, with
    ``"none"``, the per-patch losses of the mixed patches, 1D, in batch-then-patch-grid order.

    Args:
        patch_size: patch edge in pixels (voxels), one int for every axis or one per spatial axis; when given it
            overrides ``patch_fraction`` (default ``None``: use the fraction).
        patch_fraction: patch edge as a fraction of the input's size along each axis, in ``(0, 1]`` (default
            ``0.0625`` = 16 px at 256 px; see :func:`resolve_patch_size`).
        margin: the margin ``m`` in lesion-score units (probabilities, so in ``(0, 1]``; default 0.5, *design
            choice*).
        max_pairs: at most this many (foreground, background) pairs per patch (default 1024); all pairs, exactly,
            when a patch has no more, otherwise a uniform sample with replacement (global torch RNG).
        activation: ``"softmax"`` (default), ``"sigmoid"`` or ``"none"`` (see :func:`lesion_scores`).
        lesion_channel: the lesion class's channel (default 1).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        patch_size: int | Sequence[int] | None = None,
        margin: float = 0.5,
        max_pairs: int = 1024,
        activation: str = "softmax",
        lesion_channel: int = 1,
        reduction: str = "mean",
        patch_fraction: float | None = DEFAULT_PATCH_FRACTION,
    ) -> None:
        super().__init__()
        patch_size, patch_fraction = _check_patch_spec(patch_size, patch_fraction, "IntraPatchRankedLoss")
        if not margin >= 0:
            raise ValueError(f"IntraPatchRankedLoss: margin must be >= 0, got {margin}")
        if int(max_pairs) < 1:
            raise ValueError(f"IntraPatchRankedLoss: max_pairs must be >= 1, got {max_pairs}")
        if activation not in SCORE_ACTIVATIONS:
            raise ValueError(f"IntraPatchRankedLoss: activation must be one of {SCORE_ACTIVATIONS}, got {activation!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"IntraPatchRankedLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.patch_size = patch_size
        self.patch_fraction = patch_fraction
        self.margin = float(margin)
        self.max_pairs = int(max_pairs)
        self.activation = activation
        self.lesion_channel = int(lesion_channel)
        self.reduction = reduction

    def patch_shape(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """The patch side per axis used for an input of spatial shape ``spatial_shape`` (:func:`resolve_patch_size`)."""
        return resolve_patch_size(spatial_shape, self.patch_size, self.patch_fraction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(input, target, "IntraPatchRankedLoss")
        patch = self.patch_shape(input.shape[2:])
        scores, fg, valid = _patched(input, target, patch, self.activation, self.lesion_channel)
        p = scores.shape[-1]
        scores, fg, valid = scores.reshape(-1, p), fg.reshape(-1, p), valid.reshape(-1, p)
        bg = valid & ~fg
        n_f, n_b = fg.sum(1), bg.sum(1)
        mixed = (n_f > 0) & (n_b > 0)
        if not bool(mixed.any()):
            return _reduce(scores.new_zeros(0), self.reduction, scores)
        scores, fg, bg, n_f, n_b = scores[mixed], fg[mixed], bg[mixed], n_f[mixed], n_b[mixed]
        # positions of each patch's foreground (background) pixels first, in pixel order: the k-th foreground
        # pixel of a patch is at f_order[k]
        f_order = torch.argsort((~fg).to(torch.int8), dim=1, stable=True)
        b_order = torch.argsort((~bg).to(torch.int8), dim=1, stable=True)
        m = scores.shape[0]
        n_pairs = n_f * n_b
        k = torch.arange(self.max_pairs, device=scores.device).expand(m, -1)
        exact = (n_pairs <= self.max_pairs).unsqueeze(1)
        # exact patches: pair k = (k // n_b)-th foreground with (k % n_b)-th background, k < n_f * n_b
        f_idx = torch.minimum(k // n_b.unsqueeze(1), (n_f - 1).unsqueeze(1))
        b_idx = k % n_b.unsqueeze(1)
        weight = (k < n_pairs.unsqueeze(1)).to(scores.dtype)
        if not bool(exact.all()):
            u = torch.rand(m, self.max_pairs, 2, device=scores.device)
            f_rand = torch.minimum((u[..., 0] * n_f.unsqueeze(1)).long(), (n_f - 1).unsqueeze(1))
            b_rand = torch.minimum((u[..., 1] * n_b.unsqueeze(1)).long(), (n_b - 1).unsqueeze(1))
            f_idx = torch.where(exact, f_idx, f_rand)
            b_idx = torch.where(exact, b_idx, b_rand)
            weight = torch.where(exact, weight, torch.ones_like(weight))
        s_f = scores.gather(1, f_order.gather(1, f_idx))
        s_b = scores.gather(1, b_order.gather(1, b_idx))
        hinge = torch.relu(self.margin - (s_f - s_b)) * weight
        per_patch = hinge.sum(1) / weight.sum(1)
        return _reduce(per_patch, self.reduction, scores)


class InterPatchRankedLoss(nn.Module):
    """Inter-Patch Ranked Loss of CRII-Net (mostly-lesion patches above all-background patches, hardest negatives).

    See the module docstring for the definition. ``forward(input, target)``: ``input`` ``[B, C, x, y(, z)]``
    logits (or probabilities, ``activation="none"``), ``target`` ``[B, 1, x, y(, z)]`` labels; returns a scalar
    (``reduction`` ``"mean"``: mean over all (positive, hard negative) pairs; ``"sum"``: the sum over positive
    patches of their mean over their hard negatives) or, with ``"none"``, one value per positive patch (its mean
    hinge over the hard negatives), 1D, in batch-then-patch-grid order.

    Args:
        patch_size: patch edge in pixels (voxels), one int for every axis or one per spatial axis; when given it
            overrides ``patch_fraction`` (default ``None``: use the fraction).
        patch_fraction: patch edge as a fraction of the input's size along each axis, in ``(0, 1]`` (default
            ``0.0625`` = 16 px at 256 px; see :func:`resolve_patch_size`).
        margin: the margin ``m`` between patch scores (mean probabilities; default 0.5, *design choice*).
        lesion_fraction: a patch is positive ("mostly lesion") when at least this fraction of its pixels is
            lesion (default 0.5, *design choice*); in ``(0, 1]``.
        hardest_negatives: negatives paired with every positive, the highest-scoring negative patches of the
            batch (default 16, *design choice*); ``None``: all negatives.
        activation: ``"softmax"`` (default), ``"sigmoid"`` or ``"none"`` (see :func:`lesion_scores`).
        lesion_channel: the lesion class's channel (default 1).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        patch_size: int | Sequence[int] | None = None,
        margin: float = 0.5,
        lesion_fraction: float = 0.5,
        hardest_negatives: int | None = 16,
        activation: str = "softmax",
        lesion_channel: int = 1,
        reduction: str = "mean",
        patch_fraction: float | None = DEFAULT_PATCH_FRACTION,
    ) -> None:
        super().__init__()
        patch_size, patch_fraction = _check_patch_spec(patch_size, patch_fraction, "InterPatchRankedLoss")
        if not margin >= 0:
            raise ValueError(f"InterPatchRankedLoss: margin must be >= 0, got {margin}")
        if not 0.0 < lesion_fraction <= 1.0:
            raise ValueError(f"InterPatchRankedLoss: lesion_fraction must be in (0, 1], got {lesion_fraction}")
        if hardest_negatives is not None and int(hardest_negatives) < 1:
            raise ValueError(f"InterPatchRankedLoss: hardest_negatives must be >= 1 or None, got {hardest_negatives}")
        if activation not in SCORE_ACTIVATIONS:
            raise ValueError(f"InterPatchRankedLoss: activation must be one of {SCORE_ACTIVATIONS}, got {activation!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"InterPatchRankedLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.patch_size = patch_size
        self.patch_fraction = patch_fraction
        self.margin = float(margin)
        self.lesion_fraction = float(lesion_fraction)
        self.hardest_negatives = None if hardest_negatives is None else int(hardest_negatives)
        self.activation = activation
        self.lesion_channel = int(lesion_channel)
        self.reduction = reduction

    def patch_shape(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """The patch side per axis used for an input of spatial shape ``spatial_shape`` (:func:`resolve_patch_size`)."""
        return resolve_patch_size(spatial_shape, self.patch_size, self.patch_fraction)

    def patch_scores(self, input: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per patch: mean lesion score and lesion fraction of its (unpadded) pixels, each ``[B, n_patches]``."""
        _check(input, target, "InterPatchRankedLoss")
        patch = self.patch_shape(input.shape[2:])
        scores, fg, valid = _patched(input, target, patch, self.activation, self.lesion_channel)
        n = valid.sum(-1).to(scores.dtype)
        return (scores * valid).sum(-1) / n, fg.sum(-1).to(scores.dtype) / n

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        score, fraction = self.patch_scores(input, target)
        score, fraction = score.reshape(-1), fraction.reshape(-1)
        positive = score[fraction >= self.lesion_fraction]
        negative = score[fraction == 0]
        if positive.numel() == 0 or negative.numel() == 0:
            return _reduce(score.new_zeros(0), self.reduction, score)
        k = negative.numel() if self.hardest_negatives is None else min(self.hardest_negatives, negative.numel())
        hard = torch.topk(negative, k, sorted=False).values
        hinge = torch.relu(self.margin - (positive.unsqueeze(1) - hard.unsqueeze(0)))
        return _reduce(hinge.mean(1), self.reduction, score)

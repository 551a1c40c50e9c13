"""Losses of CRBNet: CRBS (per-branch weighted CE + Dice), CAP (caliper projection prior), IDMPS (ring pseudo-labels).

CRBNet (Zhao et al., "CRBNet", IEEE TCSVT 2024; ``methods.md`` section 1) trains two networks from caliper
annotations only: branch 1 ("radical") learns the radical label ``Yr`` (ellipse through the caliper endpoints),
branch 2 ("conservative") the conservative label ``Yc`` (convex hull of the endpoints). The terms below are what
the public reference code (github NeuronXJTU/CRBNet, ``code/train_IDAMP.py`` and ``code/utils/losses.py``, built on
SSL4MIS) computes; where the project brief and that code differ, the code is followed (see ``docs/crbnet.md``).

- :func:`soft_dice_loss`: per class ``1 - (2 sum p y + s) / (sum p^2 + sum y^2 + s)``, sums over the whole batch
  and all voxels, then the mean over classes (SSL4MIS ``DiceLoss``; ``s = 1e-5``).
- :class:`CRBSLoss`: ``CE_w(z, y) + Dice(softmax(z), onehot(y))``, a plain sum of the two (the reference adds
  them, no 0.5 factor). ``CE_w`` is torch's class-weighted cross-entropy (weighted mean over voxels). Branch 1
  uses weights ``[1, 3]`` (background, lesion), branch 2 ``[3, 1]``.
- :class:`CAPLoss`: the clinical anatomy prior. ``"axis"`` (faithful): the max-projection of the softmax
  probabilities onto each spatial axis is compared with the max-projection of the axis mask ``A`` (the caliper
  segments, one voxel wide) by the reference's Dice, and the Dice of each axis are summed. As in the reference,
  the target is the single-channel axis mask broadcast against every probability channel (background included)
  in the intersection but counted once in ``sum y^2``; this is *not* a Dice against a one-hot mask.
  ``"caliper_frame"`` (*design choice*): the same comparison along the caliper frame, estimated per image by
  PCA of the axis-mask voxel coordinates.
- :class:`IDMPSLoss`: ``beta ~ U(0, 1)``, hard pseudo-label ``argmax(beta p1 + (1 - beta) p2)`` without gradient,
  ring ``M = Yr - Yc``, ``L_k = sum M CE(z_k, Yhat) / (sum M + 1e-16)``.
- :func:`idmps_weight` and :func:`cap_active`: the schedules, as fractions of the run.
- :class:`CRBNetLoss`: ``L1 + L2 + [cap active] w_cap (CAP1 + CAP2) + lambda(t) (Lp1 + Lp2)``.

All tensors are channel-first batches, logits ``[B, 2, x, y(, z)]`` and label maps ``[B, 1, x, y(, z)]`` with
values 0/1 (binarised with ``> 0``); 2D and 3D share one code path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn as nn
import torch.nn.functional as F

from usseg_monai.utils import channel_argmax

__all__ = [
    "soft_dice_loss",
    "CRBSLoss",
    "CAPLoss",
    "IDMPSLoss",
    "CRBNetLoss",
    "idmps_weight",
    "cap_active",
    "estimate_caliper_frame",
    "CAP_PROJECTIONS",
]

CAP_PROJECTIONS = ("axis", "caliper_frame")
_NUM_CLASSES = 2
_RING_EPS = 1e-16  # the reference's denominator guard for the ring average


# ----------------------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------------------
def _check_logits(logits: torch.Tensor, name: str = "logits") -> None:
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim not in (4, 5):
        raise ValueError(
            f"{name} must be [B, C, x, y] or [B, C, x, y, z] (2D or 3D), got shape {tuple(logits.shape)}"
        )
    if logits.shape[1] != _NUM_CLASSES:
        raise ValueError(
            f"{name} must have C = 2 channels (background, lesion), got C = {logits.shape[1]} "
            f"in shape {tuple(logits.shape)}"
        )


def _check_label(label: torch.Tensor, logits: torch.Tensor, name: str, logits_name: str = "logits") -> None:
    if not isinstance(label, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(label).__name__}")
    expected = (logits.shape[0], 1, *logits.shape[2:])
    if tuple(label.shape) != expected:
        raise ValueError(
            f"{name} must have shape [B, 1, spatial...] = {expected} to match {logits_name} "
            f"{tuple(logits.shape)}, got {tuple(label.shape)}"
        )


def _check_pair(logits1: torch.Tensor, logits2: torch.Tensor, radical_label: torch.Tensor,
                conservative_label: torch.Tensor) -> None:
    """Both branches' logits of one shape, and the two labels matching them."""
    _check_logits(logits1, "logits1")
    _check_logits(logits2, "logits2")
    if logits1.shape != logits2.shape:
        raise ValueError(f"logits1 {tuple(logits1.shape)} and logits2 {tuple(logits2.shape)} must have the same shape")
    _check_label(radical_label, logits1, "radical_label", "logits1")
    _check_label(conservative_label, logits1, "conservative_label", "logits1")


def _binary(label: torch.Tensor) -> torch.Tensor:
    """0/1 long map ``[B, 1, ...]`` from a 0/1 (or 0/255) float or int label map."""
    return (label > 0).long()


def _one_hot(label: torch.Tensor) -> torch.Tensor:
    """``[B, 1, ...]`` 0/1 label map -> float one-hot ``[B, 2, ...]`` (background, lesion)."""
    fg = (label > 0).to(torch.float32)
    return torch.cat([1.0 - fg, fg], dim=1)


def _exact_fraction(value: float) -> Fraction:
    """A run fraction as an exact rational (``1/3`` written as ``0.3333333333333333`` gives ``1/3``)."""
    if not math.isfinite(float(value)):
        raise ValueError(f"fraction must be finite, got {value}")
    return Fraction(float(value)).limit_denominator(1_000_000)


# ----------------------------------------------------------------------------------------------------------------
# Dice and CRBS
# ----------------------------------------------------------------------------------------------------------------
def soft_dice_loss(probs: torch.Tensor, target_onehot: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """The reference (SSL4MIS) soft Dice loss, unitless in [0, 1].

    Per class ``c``: ``1 - (2 sum p_c y_c + s) / (sum p_c^2 + sum y_c^2 + s)``, the sums over the whole batch and
    every voxel; the result is the mean over classes.

    Args:
        probs: probabilities ``[B, C, spatial...]``.
        target_onehot: one-hot target of the same shape.
        smooth: ``s``, 1e-5 in the reference.
    """
    if probs.shape != target_onehot.shape:
        raise ValueError(
            f"probs {tuple(probs.shape)} and target_onehot {tuple(target_onehot.shape)} must have the same shape"
        )
    if probs.ndim < 3:
        raise ValueError(f"probs must be [B, C, spatial...], got shape {tuple(probs.shape)}")
    target = target_onehot.to(probs.dtype)
    dims = [0] + list(range(2, probs.ndim))
    intersect = (probs * target).sum(dim=dims)
    denom = (probs * probs).sum(dim=dims) + (target * target).sum(dim=dims)
    return (1.0 - (2.0 * intersect + smooth) / (denom + smooth)).mean()


class CRBSLoss(nn.Module):
    """One branch's supervised term: class-weighted cross-entropy + soft Dice (CRBNet's CRBS).

    ``loss = ce_weight * CE_w(z, y) + dice_weight * Dice(softmax(z), onehot(y))`` with ``CE_w`` torch's weighted
    cross-entropy (``sum_i w_{y_i} (-log p_{y_i}) / sum_i w_{y_i}``) and Dice :func:`soft_dice_loss`. The reference
    adds the two with unit weights (``ce_weight = dice_weight = 1``).

    Args:
        class_weights: CE weight per class (background, lesion): ``[1, 3]`` for the radical branch, ``[3, 1]``
            for the conservative branch.
        ce_weight: factor on the CE term.
        dice_weight: factor on the Dice term.
        smooth: the Dice smoothing term.
    """

    def __init__(
        self, class_weights: Sequence[float], ce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1e-5
    ) -> None:
        super().__init__()
        weights = [float(w) for w in class_weights]
        if len(weights) != _NUM_CLASSES or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"class_weights must be 2 finite non-negative numbers, not all 0, got {class_weights}")
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32))
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ``logits [B, 2, ...]`` against the 0/1 label map ``target [B, 1, ...]``."""
        _check_logits(logits)
        _check_label(target, logits, "target")
        labels = _binary(target)[:, 0]
        ce = F.cross_entropy(logits, labels, weight=self.class_weights.to(logits.dtype))
        dice = soft_dice_loss(torch.softmax(logits, dim=1), _one_hot(target).to(logits.dtype), self.smooth)
        return self.ce_weight * ce + self.dice_weight * dice


# ----------------------------------------------------------------------------------------------------------------
# CAP
# ----------------------------------------------------------------------------------------------------------------
def _reference_projection_dice(pred_proj: torch.Tensor, target_proj: torch.Tensor, smooth: float) -> torch.Tensor:
    """The reference's CAP Dice: ``1 - (2 sum p a + s) / (sum p^2 + sum a^2 + s)``.

    ``pred_proj`` is ``[B, C', L]`` and ``target_proj`` ``[B, 1, L]``: the single-channel target is broadcast
    against every prediction channel in the intersection, and counted once in ``sum a^2`` (as the reference).
    """
    intersect = (pred_proj * target_proj).sum()
    denom = (pred_proj * pred_proj).sum() + (target_proj * target_proj).sum()
    return 1.0 - (2.0 * intersect + smooth) / (denom + smooth)


def _voxel_coordinates(spatial: Sequence[int], device: torch.device) -> torch.Tensor:
    """Index coordinates ``[N, nd]`` (float64) of every voxel, in the C order of a flattened spatial block."""
    axes = [torch.arange(n, device=device, dtype=torch.float64) for n in spatial]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(spatial))


def estimate_caliper_frame(axis_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Caliper frame of one image from its axis mask, by PCA of the axis voxels' index coordinates.

    Args:
        axis_mask: ``[x, y(, z)]`` one image's caliper segments (``> 0`` on the segments).

    Returns:
        ``(centre, frame)``: ``centre [nd]`` the mean axis-voxel coordinate rounded to the nearest voxel (pixel
        units), ``frame [nd, nd]`` (float64) whose columns are the principal directions, largest variance first
        (the long caliper, then the short one, then the elevational one in 3D). Directions within 1e-6 of an
        image axis are snapped onto it, so axis-aligned calipers give a signed permutation exactly.
        An empty mask gives the image centre and the identity.

    Assumes one lesion (one caliper cross) per image, voxel coordinates in pixel units (isotropic spacing), and
    a cross in which one caliper bisects the other: then the covariance of the two segments is diagonal in the
    caliper frame. For calipers crossing off-centre, the covariance has a cross term and the estimated frame is
    tilted from the calipers by a small angle.
    """
    nd = axis_mask.ndim
    device = axis_mask.device
    spatial = tuple(axis_mask.shape)
    coords = _voxel_coordinates(spatial, device)[axis_mask.reshape(-1) > 0]
    if coords.shape[0] == 0:
        centre = torch.tensor([(n - 1) // 2 for n in spatial], dtype=torch.float64, device=device)
        return centre, torch.eye(nd, dtype=torch.float64, device=device)
    mean = coords.mean(dim=0)
    centred = coords - mean
    cov = centred.T @ centred / coords.shape[0]
    evals, evecs = torch.linalg.eigh(cov)
    frame = evecs[:, torch.argsort(evals, descending=True)]
    frame = torch.where(frame.abs() < 1e-6, torch.zeros_like(frame), frame)
    frame = torch.where((frame.abs() - 1.0).abs() < 1e-6, frame.sign(), frame)
    frame = frame / frame.norm(dim=0, keepdim=True)
    return torch.round(mean), frame


class CAPLoss(nn.Module):
    """CRBNet's clinical anatomy prior: the prediction's extent must match the calipers' extent.

    For each spatial axis ``d`` (2 in 2D, 3 in 3D), the softmax probabilities and the axis mask are max-projected
    onto that axis (max over every other spatial axis: a 1D profile per channel) and compared by the reference's
    Dice (:func:`_reference_projection_dice`, batch-summed); the loss is the sum over axes, so it lies in
    ``[0, nd]``. In 2D this is exactly the reference's ``D(max_H p, max_H A) + D(max_W p, max_W A)``.

    Args:
        projection: ``"axis"`` (faithful): project onto the image axes. ``"caliper_frame"`` (*design choice*):
            per image, estimate the caliper frame with :func:`estimate_caliper_frame` and project onto its axes,
            i.e. each voxel's probability goes to the bin ``round(e_k . (x - c))`` of frame axis ``k`` (a max
            over the voxels in the bin: a forward projection, exact, without interpolation); the axis mask's
            profile along ``e_k`` is the interval between its extreme bins (the extent of a caliper cross along
            that axis). For axis-aligned calipers this equals ``"axis"``; for oblique calipers it measures the
            lesion along the calipers, as a sonographer does.
        include_background: True (reference): the background channel's projection is part of the Dice (see the
            module docstring); False: only the lesion channel's projection is compared with the axis mask's.
        smooth: the Dice smoothing term (1e-5).

    An empty axis mask (an image without a lesion) is a valid input: its target profiles are all zero, so the
    image adds its probability projections to the Dice denominator only; a batch of only empty masks gives
    ``1 - s / (sum p^2 + s)`` per axis (finite, no NaN), pushing the projections down.
    """

    def __init__(self, projection: str = "axis", include_background: bool = True, smooth: float = 1e-5) -> None:
        super().__init__()
        if projection not in CAP_PROJECTIONS:
            raise ValueError(f"projection must be one of {CAP_PROJECTIONS}, got {projection!r}")
        self.projection = projection
        self.include_background = bool(include_background)
        self.smooth = float(smooth)

    def _axis_profiles(
        self, probs: torch.Tensor, axes: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        nd = probs.ndim - 2
        out = []
        for d in range(nd):
            others = [2 + k for k in range(nd) if k != d]
            out.append((probs.amax(dim=others), axes.amax(dim=others)))
        return out

    def _frame_profiles(
        self, probs: torch.Tensor, axes: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        b, c = probs.shape[:2]
        spatial = tuple(probs.shape[2:])
        nd = len(spatial)
        coords = _voxel_coordinates(spatial, probs.device)  # [N, nd]
        half = int(math.ceil(math.sqrt(sum((n - 1) ** 2 for n in spatial)))) + 1
        length = 2 * half + 1
        flat_p = probs.reshape(b, c, -1)
        bins = []  # per image [nd, N]
        target = torch.zeros(b, 1, nd, length, dtype=probs.dtype, device=probs.device)
        for i in range(b):
            mask = axes[i, 0]
            centre, frame = estimate_caliper_frame(mask)
            q = torch.round((coords - centre) @ frame).long() + half  # [N, nd], bin of each voxel per frame axis
            bins.append(q.T)
            on = q[mask.reshape(-1) > 0]
            if on.shape[0]:
                lo, hi = on.min(dim=0).values, on.max(dim=0).values
                for k in range(nd):
                    target[i, 0, k, lo[k] : hi[k] + 1] = 1.0
        index = torch.stack(bins)  # [B, nd, N]
        out = []
        for k in range(nd):
            idx = index[:, k].unsqueeze(1).expand(b, c, -1)
            prof = torch.zeros(b, c, length, dtype=probs.dtype, device=probs.device)
            prof = prof.scatter_reduce(2, idx, flat_p, reduce="amax", include_self=True)
            out.append((prof, target[:, :, k]))
        return out

    def forward(self, logits: torch.Tensor, caliper_axes: torch.Tensor) -> torch.Tensor:
        """Scalar CAP loss of ``logits [B, 2, ...]`` against the axis mask ``caliper_axes [B, 1, ...]``."""
        _check_logits(logits)
        _check_label(caliper_axes, logits, "caliper_axes")
        probs = torch.softmax(logits, dim=1)
        axes = (caliper_axes > 0).to(probs.dtype)
        if self.projection == "axis":
            pairs = self._axis_profiles(probs, axes)
        else:
            pairs = self._frame_profiles(probs, axes)
        total = probs.new_zeros(())
        for pred_proj, target_proj in pairs:
            if not self.include_background:
                pred_proj = pred_proj[:, 1:]
            total = total + _reference_projection_dice(pred_proj, target_proj, self.smooth)
        return total


# ----------------------------------------------------------------------------------------------------------------
# IDMPS
# ----------------------------------------------------------------------------------------------------------------
class IDMPSLoss(nn.Module):
    """CRBNet's IDMPS: both branches learn, on the ring between the two labels, a mixed hard pseudo-label.

    ``beta ~ U(0, 1)`` (torch's RNG, so ``monai.utils.set_determinism`` fixes it; the reference adds 1e-10 to
    avoid 0 and so does this class), ``Yhat = argmax_c(beta p1 + (1 - beta) p2)`` computed without gradient,
    ring ``M = clamp(Yr - Yc, min=0)`` (the reference uses ``Yr - Yc`` unclamped; identical when ``Yc`` lies
    inside ``Yr``, which the caliper rasterisation guarantees), and for branch ``k``
    ``L_k = sum M CE(z_k, Yhat) / (sum M + 1e-16)`` (nats per ring voxel; 0 when the ring is empty).
    """

    def forward(
        self,
        logits1: torch.Tensor,
        logits2: torch.Tensor,
        radical_label: torch.Tensor,
        conservative_label: torch.Tensor,
        beta: float | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss1, loss2, _ = self.terms(logits1, logits2, radical_label, conservative_label, beta)
        return loss1, loss2

    def terms(
        self,
        logits1: torch.Tensor,
        logits2: torch.Tensor,
        radical_label: torch.Tensor,
        conservative_label: torch.Tensor,
        beta: float | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(L1, L2, beta)``: :meth:`forward` plus the ``beta`` used (a 0-d tensor)."""
        _check_pair(logits1, logits2, radical_label, conservative_label)
        if beta is None:
            beta_t = torch.rand(()) + 1e-10
        else:
            beta_t = torch.as_tensor(beta, dtype=torch.float32).reshape(())
            if not 0.0 <= float(beta_t) <= 1.0:
                raise ValueError(f"beta must lie in [0, 1], got {float(beta_t)}")
        beta_t = beta_t.to(device=logits1.device, dtype=logits1.dtype)
        with torch.no_grad():
            mixed = beta_t * torch.softmax(logits1, dim=1) + (1.0 - beta_t) * torch.softmax(logits2, dim=1)
            pseudo = channel_argmax(mixed, dim=1)  # [B, spatial...]; = argmax, without its slow CPU kernel
        ring = (_binary(radical_label) - _binary(conservative_label)).clamp(min=0)[:, 0].to(logits1.dtype)
        norm = ring.sum() + _RING_EPS
        ce1 = F.cross_entropy(logits1, pseudo, reduction="none")
        ce2 = F.cross_entropy(logits2, pseudo, reduction="none")
        return (ce1 * ring).sum() / norm, (ce2 * ring).sum() / norm, beta_t.detach()


# ----------------------------------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------------------------------
def idmps_weight(
    iteration: int, total_iterations: int, max_weight: float = 0.1, ramp_fraction: float = 1.0, steps: int = 200
) -> float:
    """IDMPS weight ``lambda(t)``: the SSL4MIS sigmoid ramp-up on a staircase of ``steps`` steps.

    ``lambda(t) = max_weight * exp(-5 (1 - min(floor(t / P), steps) / steps)^2)`` with the step length
    ``P = ramp_fraction * total_iterations / steps`` iterations; ``t`` is the number of iterations completed
    before this one (0 for the first, the reference's ``iter_num``). With ``total_iterations = 30000`` and the
    defaults, ``P = 150``: the reference's ``0.1 * sigmoid_rampup(iter_num // 150, 200)``. The floor is taken on
    the exact rational ``t * steps / (ramp_fraction * total)``, so boundaries fall on exact iterations.
    """
    if int(total_iterations) < 1:
        raise ValueError(f"total_iterations must be >= 1, got {total_iterations}")
    if int(iteration) < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not float(ramp_fraction) > 0:
        raise ValueError(f"ramp_fraction must be > 0, got {ramp_fraction}")
    ramp = _exact_fraction(ramp_fraction) * int(total_iterations)
    stage = min(math.floor(Fraction(int(iteration) * int(steps)) / ramp), int(steps))
    phase = 1.0 - stage / int(steps)
    return float(max_weight) * math.exp(-5.0 * phase * phase)


def cap_active(iteration: int, total_iterations: int, fraction: float = 1 / 3) -> bool:
    """Whether the CAP term is on: ``t <= fraction * total_iterations`` (reference: ``iter_num <= 10000`` of 30000).

    ``t`` counts completed iterations (0 for the first). The product is exact (``1/3`` of 30000 is 10000), so
    the boundary iteration itself is on and the next one off; ``fraction = 0`` keeps CAP for ``t = 0`` only.
    """
    if int(total_iterations) < 1:
        raise ValueError(f"total_iterations must be >= 1, got {total_iterations}")
    if float(fraction) < 0:
        raise ValueError(f"fraction must be >= 0, got {fraction}")
    return int(iteration) <= _exact_fraction(fraction) * int(total_iterations)


# ----------------------------------------------------------------------------------------------------------------
# total
# ----------------------------------------------------------------------------------------------------------------
class CRBNetLoss(nn.Module):
    """CRBNet's total loss for the two branches (reference ``train_IDAMP.py``).

    ``L = L1 + L2 + [cap_active(t)] cap_weight (CAP1 + CAP2) + lambda(t) (Lp1 + Lp2)`` with ``L1`` the CRBS loss
    of branch 1 on the radical label (CE weights ``radical_class_weights``), ``L2`` of branch 2 on the
    conservative label, ``CAP_k`` :class:`CAPLoss` of branch ``k`` against the axis mask, ``Lp_k``
    :class:`IDMPSLoss`, ``lambda`` :func:`idmps_weight`.

    Returns a dict: ``"loss"`` (the total, with gradient) and, detached, ``"crbs_radical"``,
    ``"crbs_conservative"``, ``"cap_radical"``, ``"cap_conservative"`` (0 once CAP is off: not computed),
    ``"idmps_radical"``, ``"idmps_conservative"``, ``"cap_weight"`` (the weight applied: ``cap_weight`` or 0),
    ``"idmps_weight"`` (``lambda(t)``) and ``"beta"``.
    """

    def __init__(
        self,
        radical_class_weights: Sequence[float] = (1.0, 3.0),
        conservative_class_weights: Sequence[float] = (3.0, 1.0),
        cap_weight: float = 0.3,
        cap_fraction: float = 1 / 3,
        cap_projection: str = "axis",
        idmps_max_weight: float = 0.1,
        idmps_ramp_fraction: float = 1.0,
        idmps_steps: int = 200,
        cap_include_background: bool = True,
    ) -> None:
        super().__init__()
        self.crbs_radical = CRBSLoss(radical_class_weights)
        self.crbs_conservative = CRBSLoss(conservative_class_weights)
        self.cap = CAPLoss(cap_projection, include_background=cap_include_background)
        self.idmps = IDMPSLoss()
        self.cap_weight = float(cap_weight)
        self.cap_fraction = float(cap_fraction)
        self.idmps_max_weight = float(idmps_max_weight)
        self.idmps_ramp_fraction = float(idmps_ramp_fraction)
        self.idmps_steps = int(idmps_steps)
        # validate the schedules' arguments now rather than at the first iteration
        idmps_weight(0, 1, self.idmps_max_weight, self.idmps_ramp_fraction, self.idmps_steps)
        cap_active(0, 1, self.cap_fraction)

    def forward(
        self,
        logits1: torch.Tensor,
        logits2: torch.Tensor,
        radical_label: torch.Tensor,
        conservative_label: torch.Tensor,
        caliper_axes: torch.Tensor,
        iteration: int,
        total_iterations: int,
        beta: float | torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        _check_pair(logits1, logits2, radical_label, conservative_label)
        _check_label(caliper_axes, logits1, "caliper_axes", "logits1")

        l1 = self.crbs_radical(logits1, radical_label)
        l2 = self.crbs_conservative(logits2, conservative_label)
        total = l1 + l2
        zero = logits1.new_zeros(())
        if cap_active(iteration, total_iterations, self.cap_fraction):
            w_cap = self.cap_weight
            cap1, cap2 = self.cap(logits1, caliper_axes), self.cap(logits2, caliper_axes)
            total = total + w_cap * (cap1 + cap2)
        else:
            w_cap, cap1, cap2 = 0.0, zero, zero
        lam = idmps_weight(
            iteration, total_iterations, self.idmps_max_weight, self.idmps_ramp_fraction, self.idmps_steps
        )
        p1, p2, beta_t = self.idmps.terms(logits1, logits2, radical_label, conservative_label, beta)
        total = total + lam * (p1 + p2)

        def _d(x: torch.Tensor | float) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float32).detach().float().reshape(())

        return {
            "loss": total,
            "crbs_radical": _d(l1),
            "crbs_conservative": _d(l2),
            "cap_radical": _d(cap1),
            "cap_conservative": _d(cap2),
            "idmps_radical": _d(p1),
            "idmps_conservative": _d(p2),
            "cap_weight": _d(w_cap),
            "idmps_weight": _d(lam),
            "beta": _d(beta_t),
        }

"""The few-masks objectives (CRII-Net and its baselines) for :class:`usseg_monai.engines.SemiSupervisedTrainer`.

CRII-Net (Du et al., "Coarse-Refined Consistency Learning Using Pixel-Level Features for Semi-Supervised Medical
Image Segmentation", IEEE JBHI 2023; ``methods.md`` section 3). Per iteration the trainer gives a labeled batch
(``image``, ``label``) and an unlabeled batch with two views of each image: ``image`` (weak: the spatial
augmentation) and ``image_strong`` (the same geometry plus intensity perturbations), so that pixel ``i`` of both
views is the same tissue. :class:`CRIINetLoss` computes, by ``method``:

- ``"crii_net"`` (the network's training output is ``[2, B, C, ...]``, coarse ``P_c`` and refined ``P_r``):

  ``L = S(P_c, y) + S(P_r, y) + w_intra Intra(P_r, y) + w_inter Inter(P_r, y) + lambda(t) (Cons_c + Cons_r)``

  with ``S`` = cross-entropy + Dice (MONAI ``DiceCELoss``), ``Intra`` / ``Inter`` the intra- and inter-patch
  ranked losses (:mod:`usseg_monai.losses.ranked`; patch side a fraction ``patch_fraction`` of the input size, or
  ``patch_size`` pixels when given) on the labeled images, and the coarse-refined consistency
  (:class:`~usseg_monai.losses.consistency.CoarseRefinedConsistencyLoss`) on the unlabeled ones, whose target
  ``T = sharpen(softmax(P_r^weak))`` (the refined prediction of the weak view, detached) is fixed; which heads are
  pulled towards ``T`` is ``unlabeled_target`` (*design choice* of this project, not the paper's):

  - ``"coarse"``: ``Cons_c = 0.5 [C(P_c^weak, T) + C(P_c^strong, T)]``, ``Cons_r = 0``: only the coarse head is
    pulled; the refinement head, the one used at inference, receives **no** gradient from unlabeled images (the
    target is detached and ``P_c`` does not depend on the head); it changes only through the shared encoder and
    decoder. This was the only behaviour before ``unlabeled_target`` existed, and is the default;
  - ``"refined"``: ``Cons_c = 0``, ``Cons_r = C(P_r^strong, T)`` (weak-to-strong self-consistency of the refined
    head; ``C(P_r^weak, T)`` when there is no strong view): the unlabeled signal reaches the inference head (and,
    through ``softmax(P_c)`` in the head's input, the coarse decoder), but the coarse head has no target of its own;
  - ``"both"``: both terms, so the paper's coarse-refined consistency is kept as it is and the inference head also
    learns from the unlabeled images. The default stays ``"coarse"`` until the ablation (``few_masks`` rows
    ``CRII-Net, unlabeled signal to both heads``) decides;
- ``"mean_teacher"`` (Tarvainen & Valpola 2017; output ``[2, B, C, ...]``, student and teacher):
  ``L = S(student, y) + lambda(t) MSE(softmax(student(strong)), softmax(teacher(weak)))``;
- ``"cps"`` (cross pseudo supervision: Chen, Yuan, Zeng & Wang, "Semi-Supervised Semantic Segmentation with Cross
  Pseudo Supervision", CVPR 2021, section 3.1; output ``[2, B, C, ...]`` of
  :class:`~usseg_monai.networks.crii_net.CrossPseudoNet`: two PyMIC UNets of the same architecture, initialised
  differently, index 0 the network used at inference): with ``Y_k = argmax_c P_k`` the hard (one-hot) pseudo-label
  of network ``k``, which carries no gradient,

  ``L = S(P_1, y) + S(P_2, y) + lambda(t) (L_cps^l + L_cps^u)``, ``L_cps = CE(P_1, Y_2) + CE(P_2, Y_1)``,

  the paper's eq. (4) ``L = L_s + lambda L_cps`` with ``L_s`` of eq. (2) (both networks supervised on the labeled
  images), ``L_cps^u`` of eq. (3) on the unlabeled images and ``L_cps^l``, defined "in the same way", on the
  labeled ones (``L_cps = L_cps^l + L_cps^u``: every image). Each ``CE`` is the mean over batch and pixels
  (:func:`cross_pseudo_supervision`). *Our choices* (neither the CRII-Net paper nor the CPS paper fixes them for
  this setting): ``S`` is Dice + CE, the supervised loss of every few-masks method (the CPS paper uses CE alone);
  ``lambda(t)`` is the ramped unsupervised weight shared by the other methods (``consistency_weight`` 1.0 with the
  sigmoid ramp over ``rampup_fraction`` 0.4 of the run; the CPS paper uses a constant 1.5 on PASCAL VOC and 6 on
  Cityscapes, without ramp); ``L_cps^u`` is the mean over the two unlabeled views (weak and strong), each network
  supervised by the other's pseudo-label *of the same view* (the paper feeds both networks the same image); the
  two networks' initialisations are two draws of PyTorch's default initialisation (the paper: two different
  random initialisations of the segmentation heads, on ImageNet-pretrained backbones);
- ``"labeled_only"`` (a plain network): ``L = S(z, y)``.

``lambda(t) = consistency_weight * sigmoid_rampup(t, T, rampup_fraction)``
(:func:`usseg_monai.engines.sigmoid_rampup`: ``exp(-5 (1 - x)^2)``, full weight after ``rampup_fraction`` of the
run). The result: ``loss``, the terms (``sup``, ``intra``, ``inter``, ``consistency``, ``consistency_refined``,
``cps_labeled``, ``cps_unlabeled``, ``consistency_weight``, by method; for ``"cps"`` ``consistency`` is
``L_cps``) and ``pred`` (the labeled prediction of the network used at inference: refined, student, first network
or plain logits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceCELoss

from usseg_monai.engines.semi_supervised import sigmoid_rampup
from usseg_monai.utils import channel_argmax

from .consistency import CoarseRefinedConsistencyLoss
from .ranked import DEFAULT_PATCH_FRACTION, InterPatchRankedLoss, IntraPatchRankedLoss

__all__ = ["CRIINetLoss", "FEW_MASK_LOSS_METHODS", "UNLABELED_TARGETS", "cross_pseudo_supervision"]

FEW_MASK_LOSS_METHODS = ("crii_net", "mean_teacher", "cps", "labeled_only")

#: which CRII-Net heads the unlabeled consistency pulls towards the refined target (see the module docstring)
UNLABELED_TARGETS = ("coarse", "refined", "both")


def cross_pseudo_supervision(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``CE(P_1, argmax P_2) + CE(P_2, argmax P_1)``, each the mean over batch and pixels (CPS, Chen et al., CVPR
    2021, eq. (3) for one set of images).

    ``first`` / ``second``: ``[B, C, *spatial]`` logits of the two networks on the same images. The pseudo-labels
    are hard (argmax over the classes) and carry no gradient: each network is trained only through its own
    prediction. Ties of the argmax go to the lowest class index (``torch.argmax``).

    Raises:
        ValueError: the two tensors differ in shape or are not ``[B, C, *spatial]``.
    """
    if first.ndim < 3 or first.shape != second.shape:
        raise ValueError(
            "cross_pseudo_supervision: two [B, C, *spatial] logits of the same shape expected, got "
            f"{list(first.shape)} and {list(second.shape)}"
        )
    pseudo_1 = channel_argmax(first.detach(), dim=1)
    pseudo_2 = channel_argmax(second.detach(), dim=1)
    return F.cross_entropy(first, pseudo_2) + F.cross_entropy(second, pseudo_1)


def _pair(output: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if output.ndim < 4 or output.shape[0] != 2:
        raise ValueError(f"CRIINetLoss: {what} needs the training output [2, B, C, ...], got {list(output.shape)}")
    return output[0], output[1]


class CRIINetLoss(nn.Module):
    """The objective of one few-masks method (see the module docstring).

    Args:
        method: ``"crii_net"``, ``"mean_teacher"``, ``"cps"`` or ``"labeled_only"``.
        intra_weight, inter_weight: weights of the intra- and inter-patch ranked losses (CRII-Net).
        consistency_weight: the maximum unsupervised weight ``lambda`` (CRII-Net, mean teacher and CPS alike).
        rampup_fraction: fraction of the run over which ``lambda`` ramps up.
        temperature: sharpening temperature of the CRII-Net consistency target.
        patch_size: patch side (pixels/voxels; one int or one per axis) of both ranked losses; when given it
            overrides ``patch_fraction``. Default ``None``.
        patch_fraction: patch side of both ranked losses as a fraction of the input size along each axis,
            ``max(2, round(patch_fraction * size))`` (:func:`usseg_monai.losses.ranked.resolve_patch_size`);
            in ``(0, 1]``, default ``16 / 256 = 0.0625``.
        margin: ranking margin of both ranked losses (probability units).
        max_pairs: pixel pairs sampled per mixed patch by the intra-patch loss.
        unlabeled_target: CRII-Net: the heads the unlabeled consistency pulls towards the detached refined target,
            ``"coarse"`` (the coarse head only: the refinement head, used at inference, gets no gradient from
            unlabeled images; the default, the behaviour before this option existed, until the ablation decides),
            ``"refined"`` or ``"both"`` (see the module docstring).
        image_key, strong_key, label_key: batch keys (the weak view is ``image_key`` of the unlabeled batch).
    """

    def __init__(
        self,
        method: str = "crii_net",
        intra_weight: float = 0.5,
        inter_weight: float = 0.5,
        consistency_weight: float = 1.0,
        rampup_fraction: float = 0.4,
        temperature: float = 0.5,
        patch_size: int | Sequence[int] | None = None,
        margin: float = 0.5,
        max_pairs: int = 256,
        patch_fraction: float | None = DEFAULT_PATCH_FRACTION,
        unlabeled_target: str = "coarse",
        image_key: str = "image",
        strong_key: str = "image_strong",
        label_key: str = "label",
    ) -> None:
        super().__init__()
        if method not in FEW_MASK_LOSS_METHODS:
            raise ValueError(f"CRIINetLoss: method must be one of {FEW_MASK_LOSS_METHODS}, got {method!r}")
        if min(intra_weight, inter_weight, consistency_weight) < 0:
            raise ValueError("CRIINetLoss: weights must be >= 0")
        if unlabeled_target not in UNLABELED_TARGETS:
            raise ValueError(f"CRIINetLoss: unlabeled_target must be one of {UNLABELED_TARGETS}, got {unlabeled_target!r}")
        self.unlabeled_target = unlabeled_target
        self.method = method
        self.intra_weight, self.inter_weight = float(intra_weight), float(inter_weight)
        self.consistency_weight, self.rampup_fraction = float(consistency_weight), float(rampup_fraction)
        self.image_key, self.strong_key, self.label_key = image_key, strong_key, label_key
        self.supervised = DiceCELoss(to_onehot_y=True, softmax=True)
        patch = dict(patch_size=patch_size, patch_fraction=patch_fraction)
        self.intra = IntraPatchRankedLoss(margin=margin, max_pairs=max_pairs, **patch)
        self.inter = InterPatchRankedLoss(margin=margin, **patch)
        self.consistency = CoarseRefinedConsistencyLoss(temperature=temperature)

    def unsupervised_weight(self, iteration: int, total_iterations: int) -> float:
        """``lambda(t)``: ``consistency_weight`` times the sigmoid ramp-up."""
        return self.consistency_weight * sigmoid_rampup(iteration, total_iterations, self.rampup_fraction)

    def forward(
        self,
        labeled_output: torch.Tensor,
        unlabeled_outputs: Mapping[str, torch.Tensor],
        labeled: Mapping[str, torch.Tensor],
        unlabeled: Mapping[str, torch.Tensor],
        iteration: int = 0,
        total_iterations: int = 1,
    ) -> dict[str, torch.Tensor]:
        if self.label_key not in labeled:
            raise KeyError(f"CRIINetLoss: the labeled batch has no {self.label_key!r}")
        y = (labeled[self.label_key] > 0.5).to(labeled_output.dtype)
        lam = self.unsupervised_weight(iteration, total_iterations)
        zero = labeled_output.sum() * 0.0
        weak = unlabeled_outputs.get(self.image_key)
        strong = unlabeled_outputs.get(self.strong_key)
        if self.method == "labeled_only":
            sup = self.supervised(labeled_output, y)
            return {"loss": sup, "sup": sup.detach(), "pred": labeled_output.detach()}
        if self.method == "mean_teacher":
            student, _ = _pair(labeled_output, "mean_teacher")
            sup = self.supervised(student, y)
            cons = zero
            if weak is not None:
                _, teacher_weak = _pair(weak, "mean_teacher")
                student_u = _pair(strong if strong is not None else weak, "mean_teacher")[0]
                cons = torch.mean((torch.softmax(student_u, 1) - torch.softmax(teacher_weak, 1).detach()) ** 2)
            total = sup + lam * cons
            return {"loss": total, "sup": sup.detach(), "consistency": cons.detach(),
                    "consistency_weight": torch.tensor(lam), "pred": student.detach()}  # fmt: skip
        if self.method == "cps":
            first, second = _pair(labeled_output, "cps")
            sup = self.supervised(first, y) + self.supervised(second, y)
            cps_l = cross_pseudo_supervision(first, second)
            views = [v for v in (weak, strong) if v is not None]
            cps_u = zero
            if views:
                cps_u = sum(cross_pseudo_supervision(*_pair(v, "cps")) for v in views) / len(views)
            cps = cps_l + cps_u
            total = sup + lam * cps
            return {"loss": total, "sup": sup.detach(), "consistency": cps.detach(), "cps_labeled": cps_l.detach(),
                    "cps_unlabeled": cps_u.detach(), "consistency_weight": torch.tensor(lam), "pred": first.detach()}  # fmt: skip
        coarse, refined = _pair(labeled_output, "crii_net")
        sup = self.supervised(coarse, y) + self.supervised(refined, y)
        intra = self.intra(refined, y) if self.intra_weight > 0 else zero
        inter = self.inter(refined, y) if self.inter_weight > 0 else zero
        cons = zero
        cons_refined = zero
        if weak is not None:
            coarse_w, refined_w = _pair(weak, "crii_net")
            coarse_s, refined_s = _pair(strong, "crii_net") if strong is not None else (None, None)
            if self.unlabeled_target in ("coarse", "both"):
                cons = self.consistency(coarse_w, refined_w)
                if coarse_s is not None:
                    cons = 0.5 * (cons + self.consistency(coarse_s, refined_w))
            if self.unlabeled_target in ("refined", "both"):
                cons_refined = self.consistency(refined_s if refined_s is not None else refined_w, refined_w)
        total = sup + self.intra_weight * intra + self.inter_weight * inter + lam * (cons + cons_refined)
        return {"loss": total, "sup": sup.detach(), "intra": intra.detach(), "inter": inter.detach(),
                "consistency": cons.detach(), "consistency_refined": cons_refined.detach(),
                "consistency_weight": torch.tensor(lam), "pred": refined.detach()}  # fmt: skip

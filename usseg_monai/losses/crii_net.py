"""The few-masks objectives (CRII-Net and its baselines) for :class:`usseg_monai.engines.SemiSupervisedTrainer`.

CRII-Net (Du et al., "Coarse-Refined Consistency Learning Using Pixel-Level Features for Semi-Supervised Medical
Image Segmentation", IEEE JBHI 2023; ``methods.md`` section 3). Per iteration the trainer gives a labeled batch
(``image``, ``label``) and an unlabeled batch with two views of each image: ``image`` (weak: the spatial
augmentation) and ``image_strong`` (the same geometry plus intensity perturbations), so that pixel ``i`` of both
views is the same tissue. :class:`CRIINetLoss` computes, by ``method``:

- ``"crii_net"`` (the network's training output is ``[2, B, C, ...]``, coarse ``P_c`` and refined ``P_r``):

  ``L = S(P_c, y) + S(P_r, y) + w_intra Intra(P_r, y) + w_inter Inter(P_r, y) + lambda(t) Cons``

  with ``S`` = cross-entropy + Dice (MONAI ``DiceCELoss``), ``Intra`` / ``Inter`` the intra- and inter-patch
  ranked losses (:mod:`usseg_monai.losses.ranked`) on the labeled images, and ``Cons`` the coarse-refined
  consistency (:class:`~usseg_monai.losses.consistency.CoarseRefinedConsistencyLoss`): the refined prediction of the
  weak view, detached and sharpened, is the target of the coarse predictions of the weak and of the strong view
  (mean of the two);
- ``"mean_teacher"`` (Tarvainen & Valpola 2017; output ``[2, B, C, ...]``, student and teacher):
  ``L = S(student, y) + lambda(t) MSE(softmax(student(strong)), softmax(teacher(weak)))``;
- ``"labeled_only"`` (a plain network): ``L = S(z, y)``.

``lambda(t) = consistency_weight * sigmoid_rampup(t, T, rampup_fraction)``
(:func:`usseg_monai.engines.sigmoid_rampup`: ``exp(-5 (1 - x)^2)``, full weight after ``rampup_fraction`` of the
run). The result: ``loss``, the terms (``sup``, ``intra``, ``inter``, ``consistency``, ``consistency_weight``) and
``pred`` (the labeled prediction: refined, student or plain logits).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
from monai.losses import DiceCELoss

from usseg_monai.engines.semi_supervised import sigmoid_rampup

from .consistency import CoarseRefinedConsistencyLoss
from .ranked import InterPatchRankedLoss, IntraPatchRankedLoss

__all__ = ["CRIINetLoss", "FEW_MASK_LOSS_METHODS"]

FEW_MASK_LOSS_METHODS = ("crii_net", "mean_teacher", "labeled_only")


def _pair(output: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if output.ndim < 4 or output.shape[0] != 2:
        raise ValueError(f"CRIINetLoss: {what} needs the training output [2, B, C, ...], got {list(output.shape)}")
    return output[0], output[1]


class CRIINetLoss(nn.Module):
    """The objective of one few-masks method (see the module docstring).

    Args:
        method: ``"crii_net"``, ``"mean_teacher"`` or ``"labeled_only"``.
        intra_weight, inter_weight: weights of the intra- and inter-patch ranked losses (CRII-Net).
        consistency_weight: the maximum unsupervised weight ``lambda``.
        rampup_fraction: fraction of the run over which ``lambda`` ramps up.
        temperature: sharpening temperature of the CRII-Net consistency target.
        patch_size: patch size (pixels/voxels) of both ranked losses.
        margin: ranking margin of both ranked losses (probability units).
        max_pairs: pixel pairs sampled per mixed patch by the intra-patch loss.
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
        patch_size: int = 16,
        margin: float = 0.5,
        max_pairs: int = 256,
        image_key: str = "image",
        strong_key: str = "image_strong",
        label_key: str = "label",
    ) -> None:
        super().__init__()
        if method not in FEW_MASK_LOSS_METHODS:
            raise ValueError(f"CRIINetLoss: method must be one of {FEW_MASK_LOSS_METHODS}, got {method!r}")
        if min(intra_weight, inter_weight, consistency_weight) < 0:
            raise ValueError("CRIINetLoss: weights must be >= 0")
        self.method = method
        self.intra_weight, self.inter_weight = float(intra_weight), float(inter_weight)
        self.consistency_weight, self.rampup_fraction = float(consistency_weight), float(rampup_fraction)
        self.image_key, self.strong_key, self.label_key = image_key, strong_key, label_key
        self.supervised = DiceCELoss(to_onehot_y=True, softmax=True)
        self.intra = IntraPatchRankedLoss(patch_size=patch_size, margin=margin, max_pairs=max_pairs)
        self.inter = InterPatchRankedLoss(patch_size=patch_size, margin=margin)
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
        coarse, refined = _pair(labeled_output, "crii_net")
        sup = self.supervised(coarse, y) + self.supervised(refined, y)
        intra = self.intra(refined, y) if self.intra_weight > 0 else zero
        inter = self.inter(refined, y) if self.inter_weight > 0 else zero
        cons = zero
        if weak is not None:
            coarse_w, refined_w = _pair(weak, "crii_net")
            cons = self.consistency(coarse_w, refined_w)
            if strong is not None:
                coarse_s, _ = _pair(strong, "crii_net")
                cons = 0.5 * (cons + self.consistency(coarse_s, refined_w))
        total = sup + self.intra_weight * intra + self.inter_weight * inter + lam * cons
        return {"loss": total, "sup": sup.detach(), "intra": intra.detach(), "inter": inter.detach(),
                "consistency": cons.detach(), "consistency_weight": torch.tensor(lam), "pred": refined.detach()}  # fmt: skip

"""SemiSeg-CAW's training objectives for :class:`usseg_monai.engines.SemiSupervisedTrainer` (three stages).

SemiSeg-CAW (Barzegar & Khan, Mach. Learn. Knowl. Extr. 2025, 7, 124; ``methods.md`` section 2). The trainer's
labeled stream holds images with a mask and (usually) a class, the second stream images with a class only; their
masks are never read. :class:`SemiSegCAWLoss` takes the packed training-mode outputs of
:class:`usseg_monai.networks.SemiSegCAWNet` (:func:`~usseg_monai.networks.semiseg_caw.unpack_semiseg_output`) and
computes, by ``stage``:

- ``"joint"`` (stage 2, the method): the core's segmentation loss ``L_seg`` (:class:`SegmentationLoss`:
  BCE/CE + Dice + Focal Tversky) on masked images against the mask and on class-only images against the
  auxiliary map thresholded at ``pseudo_threshold``, each pixel weighted by the map's confidence ``|2p - 1|``
  (times ``class_only_weight``; target and weight detached) (*design choice*, ``methods.md``); plus
  ClassElevateSeg's own segmentation loss on the masked images (joint fine-tuning); the classification loss
  ``L_cls``: cross-entropy of the core's and of ClassElevateSeg's class logits on every image with a class
  (``-1``: no class, ignored). The two task losses are combined by the weighting module (WGM: learned
  log-variance weights, or static / IMTL, :func:`~usseg_monai.losses.semiseg.make_loss_weighting`; IMTL's
  gradient balance needs ``shared_modules``, e.g. ``SemiSegCAWNet.shared_feature_modules()``);
- ``"pretrain"`` (stage 1): ClassElevateSeg alone: its segmentation loss on the masked images and its
  cross-entropy on every image with a class, combined by the weighting module; the core is not trained;
- ``"supervised"`` (the "backbone on masks" baselines): the core's segmentation loss on the masked images
  only; the classification head and any second stream are unused.

The result is a dict: ``loss``, the terms (``seg``, ``cls``, ``seg_aux``, ``cls_aux``, ``pseudo_fraction``,
``w_seg``, ``w_cls``) and ``pred`` (the core's segmentation logits of the labeled batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from usseg_monai.networks.feature_tap import FeatureTap
from usseg_monai.networks.semiseg_caw import unpack_semiseg_output

from .semiseg import IMTLWeights, SegmentationLoss, make_loss_weighting

__all__ = ["SemiSegCAWLoss", "SEMISEG_STAGES", "masked_cross_entropy"]

SEMISEG_STAGES = ("joint", "pretrain", "supervised")


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
    """Mean cross-entropy over the items whose class is not ``ignore_index``; 0 (attached) when there is none."""
    target = target.reshape(-1).long()
    if logits.shape[0] != target.shape[0]:
        raise ValueError(f"masked_cross_entropy: {logits.shape[0]} logits for {target.shape[0]} class labels")
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    bad = target[valid]
    if bool((bad < 0).any()) or bool((bad >= logits.shape[1]).any()):
        raise ValueError(
            f"masked_cross_entropy: class labels must be in [0, {logits.shape[1]}) or {ignore_index}, "
            f"got {sorted(set(bad.tolist()))}"
        )
    return F.cross_entropy(logits[valid], target[valid])


class SemiSegCAWLoss(nn.Module):
    """The SemiSeg-CAW objective of one stage (see the module docstring).

    Args:
        stage: ``"joint"``, ``"pretrain"`` or ``"supervised"``.
        out_channels: segmentation logit channels of the core (2).
        num_cls_classes: classification classes.
        weighting: ``"wgm"`` (learned, default), ``"static"`` or ``"imtl"``; its parameters (WGM, IMTL) must be
            given to the optimiser (``loss.parameters()``).
        pseudo_threshold: auxiliary-map probability above which a class-only image's pixel is lesion.
        class_only_weight: scale of the class-only images' pixel weights in the core's segmentation loss.
        image_key, label_key, class_key: batch keys.
        seg_kwargs: arguments of :class:`~usseg_monai.losses.semiseg.SegmentationLoss` (term weights, Focal
            Tversky alpha 0.7, beta 0.3, gamma 4/3 by default).
        shared_modules: with ``weighting="imtl"``: the modules whose outputs both tasks read
            (``SemiSegCAWNet.shared_feature_modules()``); their training-mode outputs of the step (read by a
            :class:`~usseg_monai.networks.feature_tap.FeatureTap`) are IMTL-G's shared representation. Without
            them IMTL is its loss balance (IMTL-L) only. Ignored by the other weightings and the supervised stage.
    """

    def __init__(
        self,
        stage: str = "joint",
        out_channels: int = 2,
        num_cls_classes: int = 3,
        weighting: str = "wgm",
        pseudo_threshold: float = 0.5,
        class_only_weight: float = 1.0,
        image_key: str = "image",
        label_key: str = "label",
        class_key: str = "class_index",
        seg_kwargs: Mapping[str, Any] | None = None,
        shared_modules: Sequence[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if stage not in SEMISEG_STAGES:
            raise ValueError(f"SemiSegCAWLoss: stage must be one of {SEMISEG_STAGES}, got {stage!r}")
        if not 0.0 < pseudo_threshold < 1.0:
            raise ValueError(f"SemiSegCAWLoss: pseudo_threshold must be in (0, 1), got {pseudo_threshold}")
        if class_only_weight < 0:
            raise ValueError(f"SemiSegCAWLoss: class_only_weight must be >= 0, got {class_only_weight}")
        self.stage = stage
        self.out_channels = int(out_channels)
        self.num_cls_classes = int(num_cls_classes)
        self.pseudo_threshold = float(pseudo_threshold)
        self.class_only_weight = float(class_only_weight)
        self.image_key, self.label_key, self.class_key = image_key, label_key, class_key
        self.seg = SegmentationLoss(**dict(seg_kwargs or {}))
        self.weighting = make_loss_weighting(weighting, 2) if stage != "supervised" else None
        self.tap: FeatureTap | None = None
        if shared_modules is not None and isinstance(self.weighting, IMTLWeights):
            self.tap = FeatureTap.for_modules(shared_modules)

    def _unpack(self, output: torch.Tensor, need_aux: bool) -> dict[str, torch.Tensor]:
        out = unpack_semiseg_output(output, self.out_channels, self.num_cls_classes)
        if need_aux and "aux_seg" not in out:
            raise ValueError(f"SemiSegCAWLoss: stage {self.stage!r} needs the auxiliary branch (SemiSegCAWNet(auxiliary=True))")
        return out

    def _classes(self, batch: Mapping[str, torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
        if self.class_key in batch:
            return batch[self.class_key].reshape(-1).long().to(device)
        return torch.full((n,), -1, dtype=torch.long, device=device)

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
            raise KeyError(f"SemiSegCAWLoss: the labeled batch has no {self.label_key!r}")
        mask = (labeled[self.label_key] > 0.5).to(labeled_output.dtype)
        o_l = self._unpack(labeled_output, need_aux=self.stage != "supervised")
        b_l = mask.shape[0]
        terms: dict[str, torch.Tensor] = {}
        if self.stage == "supervised":
            seg = self.seg(o_l["seg"], mask)
            return {"loss": seg, "seg": seg.detach(), "pred": o_l["seg"].detach()}

        out_u = unlabeled_outputs.get(self.image_key)
        o_u = self._unpack(out_u, need_aux=True) if out_u is not None else None
        y_l = self._classes(labeled, b_l, mask.device)
        y_u = self._classes(unlabeled, out_u.shape[0], mask.device) if out_u is not None else None
        y = y_l if y_u is None else torch.cat([y_l, y_u])

        seg_aux = self.seg(o_l["aux_seg"], mask)
        aux_cls = o_l["aux_cls"] if o_u is None else torch.cat([o_l["aux_cls"], o_u["aux_cls"]])
        cls_aux = masked_cross_entropy(aux_cls, y)
        if self.stage == "pretrain":
            seg_total, cls_total = seg_aux, cls_aux
            terms.update(seg_aux=seg_aux.detach(), cls_aux=cls_aux.detach())
        else:
            if o_u is not None:
                with torch.no_grad():
                    p = torch.sigmoid(o_u["aux_seg"])
                    pseudo = (p > self.pseudo_threshold).to(p.dtype)
                    conf = (2.0 * p - 1.0).abs() * self.class_only_weight
                logits = torch.cat([o_l["seg"], o_u["seg"]])
                target = torch.cat([mask, pseudo])
                weight = torch.cat([torch.ones_like(mask), conf])
                seg_core = self.seg(logits, target, weight=weight)
                cls_core = masked_cross_entropy(torch.cat([o_l["cls"], o_u["cls"]]), y)
                terms["pseudo_fraction"] = pseudo.mean().detach()
            else:
                seg_core = self.seg(o_l["seg"], mask)
                cls_core = masked_cross_entropy(o_l["cls"], y)
            seg_total, cls_total = seg_core + seg_aux, cls_core + cls_aux
            terms.update(seg=seg_core.detach(), cls=cls_core.detach(), seg_aux=seg_aux.detach(), cls_aux=cls_aux.detach())
        weighting = self.weighting
        if weighting is None:  # only the supervised stage has none, and it returned above
            raise RuntimeError("SemiSegCAWLoss: no loss weighting module")
        if self.tap is not None:
            total = weighting([seg_total, cls_total], shared=self.tap.pop())
        else:
            total = weighting([seg_total, cls_total])
        w = weighting.weights
        terms.update(w_seg=w[0].detach(), w_cls=w[1].detach())
        return {"loss": total, **terms, "pred": o_l["seg"].detach()}

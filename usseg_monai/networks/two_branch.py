"""Two jointly trained segmentation networks held as one module (CRBNet's two branches).

CRBNet (Zhao et al., IEEE TCSVT 2024; ``docs/crbnet.md``) trains two networks together: branch 1 on the
radical pseudo-label, branch 2 on the conservative one. Keeping both in one :class:`torch.nn.Module` makes
everything a bundle does with ``network_def`` work unchanged: one checkpoint holds both branches
(``radical_branch.*`` and ``conservative_branch.*`` in the state dict), ``ckpt_export`` / ``torch.export``
trace one graph, and MONAI Label loads one network.

Output convention:

- **training mode** (``net.train()``): ``forward`` returns both branches' logits stacked on a new first
  dimension, ``[2, B, C, ...]`` (radical first), so that the two-branch engine gets both branches through one
  call (through ``DistributedDataParallel`` too, whose gradient hooks only see calls made through the wrapper)
  and ``forward`` always returns one tensor (TorchScript scripting needs one return type);
- **eval mode**: ``forward`` returns one tensor ``[B, C, ...]`` chosen by ``inference``:

  - ``"mean"`` (default, design choice of this project): ``log((softmax(z1) + softmax(z2)) / 2)``, the log of
    the two branches' averaged class probabilities. A softmax of it gives back exactly the averaged
    probabilities (they sum to one), so the bundles' post-processing (``Activationsd(softmax=True)`` then
    argmax) is the same as for a single network;
  - ``"radical"`` / ``"conservative"``: that branch's logits alone.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["TwoBranchNet", "INFERENCE_MODES"]

INFERENCE_MODES = ("mean", "radical", "conservative")


class TwoBranchNet(nn.Module):
    """Two segmentation networks trained jointly; their averaged probabilities at inference.

    Args:
        radical_branch: branch 1 (learns the radical label); any network mapping ``[B, Cin, ...]`` to
            ``[B, C, ...]`` logits.
        conservative_branch: branch 2 (learns the conservative label); may differ from branch 1
            (asymmetric backbones), but must give logits of the same shape.
        inference: what eval mode returns: ``"mean"``, ``"radical"`` or ``"conservative"`` (see module doc).
        eps: floor of the averaged probabilities before the log (keeps the output finite).
    """

    def __init__(
        self, radical_branch: nn.Module, conservative_branch: nn.Module, inference: str = "mean", eps: float = 1e-12
    ) -> None:
        super().__init__()
        if radical_branch is conservative_branch:
            raise ValueError(
                "TwoBranchNet: the two branches are the same module object; give two networks (in a bundle "
                "config use two definitions, e.g. '%branch_def' twice, not '@branch_def' twice)"
            )
        if inference not in INFERENCE_MODES:
            raise ValueError(f"TwoBranchNet: inference must be one of {INFERENCE_MODES}, got {inference!r}")
        self.radical_branch = radical_branch
        self.conservative_branch = conservative_branch
        self.inference = inference
        self.eps = float(eps)

    def forward_branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both branches' logits, whatever the mode."""
        z1 = self.radical_branch(x)
        z2 = self.conservative_branch(x)
        if z1.shape != z2.shape:
            raise ValueError("TwoBranchNet: the two branches give logits of different shapes")
        return z1, z2

    def combine(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Eval-mode output from the two branches' logits (see the module docstring)."""
        if self.inference == "radical":
            return z1
        if self.inference == "conservative":
            return z2
        p = 0.5 * (torch.softmax(z1, dim=1) + torch.softmax(z2, dim=1))
        return torch.log(p.clamp_min(self.eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            z1, z2 = self.forward_branches(x)
            return torch.stack((z1, z2), dim=0)
        if self.inference == "radical":
            return self.radical_branch(x)
        if self.inference == "conservative":
            return self.conservative_branch(x)
        z1, z2 = self.forward_branches(x)
        return self.combine(z1, z2)

"""Mean teacher (Tarvainen & Valpola, NeurIPS 2017): a student and its exponential-moving-average teacher.

The few-masks protocol (CRII-Net, Du et al., IEEE JBHI 2023) compares against classic semi-supervised methods;
the mean teacher is the one this project ships as a baseline. :class:`MeanTeacherNet` holds a student and a teacher
copy of one segmentation network (the PyMIC UNet in the CRII-Net bundles):

- **training mode**: ``forward(x)`` returns ``[2, B, C, *spatial]``: index 0 the student's logits, index 1 the
  teacher's (computed without gradient), the convention of :class:`~usseg_monai.networks.TwoBranchNet` and
  :class:`~usseg_monai.networks.CoarseRefinedNet`;
- **eval mode**: ``forward(x)`` returns the teacher's logits (``inference="teacher"``, default: the usual way to
  evaluate a mean teacher) or the student's (``"student"``).

The teacher is updated after every optimiser step by :class:`EMAUpdateHandler` (or :meth:`MeanTeacherNet.update_teacher`):
``theta'_t = a theta'_{t-1} + (1 - a) theta_t`` with ``a = min(1 - 1 / (t + 1), decay)`` (the paper's eq. and
ramp of ``a`` from its code); buffers (batch-norm statistics) are copied from the student.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
from ignite.engine import Events

__all__ = ["MeanTeacherNet", "EMAUpdateHandler", "MEAN_TEACHER_INFERENCE"]

MEAN_TEACHER_INFERENCE = ("teacher", "student")


class MeanTeacherNet(nn.Module):
    """A student network and its EMA teacher (see the module docstring).

    Args:
        student: the network trained by gradient descent; the teacher starts as a copy of it.
        decay: the EMA decay ``a`` (0.99 in the paper's segmentation experiments).
        inference: what eval-mode ``forward`` returns: ``"teacher"`` or ``"student"``.
    """

    def __init__(self, student: nn.Module, decay: float = 0.99, inference: str = "teacher") -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MeanTeacherNet: decay must be in [0, 1), got {decay}")
        if inference not in MEAN_TEACHER_INFERENCE:
            raise ValueError(f"MeanTeacherNet: inference must be one of {MEAN_TEACHER_INFERENCE}, got {inference!r}")
        self.student = student
        self.teacher = copy.deepcopy(student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.inference = inference
        self.divisor = int(getattr(student, "divisor", 16))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode: ``[2, B, C, *spatial]`` (student, teacher); eval mode: the ``inference`` network's logits."""
        if self.training:
            s = self.student(x)
            with torch.no_grad():
                t = self.teacher(x)
            return torch.stack((s, t), dim=0)
        if self.inference == "student":
            return self.student(x)
        return self.teacher(x)

    @torch.no_grad()
    def update_teacher(self) -> float:
        """One EMA step of the teacher towards the student; returns the ``a`` used."""
        t = int(self.updates)
        a = min(1.0 - 1.0 / (t + 1.0), self.decay)
        for pt, ps in zip(self.teacher.parameters(), self.student.parameters()):
            pt.mul_(a).add_(ps.detach(), alpha=1.0 - a)
        for bt, bs in zip(self.teacher.buffers(), self.student.buffers()):
            bt.copy_(bs)
        self.updates += 1
        return a


class EMAUpdateHandler:
    """Ignite handler: :meth:`MeanTeacherNet.update_teacher` after every training iteration.

    Args:
        network: the :class:`MeanTeacherNet` (the bare module; under DDP pass ``network_def``, whose parameters
            the wrapper shares).
    """

    def __init__(self, network: nn.Module) -> None:
        net = network.module if hasattr(network, "module") else network
        if not isinstance(net, MeanTeacherNet):
            raise TypeError(f"EMAUpdateHandler needs a MeanTeacherNet, got {type(net).__name__}")
        self.network = net

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        self.network.update_teacher()

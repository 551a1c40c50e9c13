"""Optimisers and learning-rate schedules chosen by name in a bundle config (one key switches e.g. CRBNet's SGD +
poly to AdamW + cosine), so that a training recipe (:mod:`usseg_monai.recipes`) is a set of bundle overrides."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["OPTIMIZERS", "LR_SCHEDULES", "make_optimizer", "make_lr_scheduler"]

#: names accepted by :func:`make_optimizer`
OPTIMIZERS = ("sgd", "adamw", "adam")

#: names accepted by :func:`make_lr_scheduler`
LR_SCHEDULES = ("poly", "cosine", "constant")


def make_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[dict],
    name: str = "sgd",
    lr: float = 0.01,
    weight_decay: float = 1e-4,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """An optimiser by name.

    Args:
        params: parameters (or parameter groups) to optimise.
        name: ``"sgd"`` (with ``momentum``; CRBNet's reference recipe: lr 0.01, momentum 0.9, weight decay
            1e-4), ``"adamw"`` or ``"adam"`` (``momentum`` unused).
        lr: learning rate.
        weight_decay: weight decay (decoupled for AdamW, L2 for SGD and Adam).
        momentum: SGD momentum.

    Raises:
        ValueError: unknown name, or a negative learning rate / weight decay.
    """
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"optimizer name must be one of {OPTIMIZERS}, got {name!r}")
    if lr < 0 or weight_decay < 0:
        raise ValueError(f"lr and weight_decay must be >= 0, got {lr} and {weight_decay}")
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    total_iterations: int,
    power: float = 0.9,
    eta_min: float = 1e-5,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A learning-rate schedule by name, stepped once per training iteration over ``total_iterations``.

    Args:
        optimizer: the optimiser whose learning rate is scheduled.
        name: ``"poly"``: ``lr_t = lr_0 (1 - t / T)^power`` (CRBNet's reference code, ``power`` 0.9);
            ``"cosine"``: ``lr_t = eta_min + (lr_0 - eta_min)(1 + cos(pi t / T)) / 2``; ``"constant"``: ``lr_0``.
        total_iterations: ``T``, the run's iterations (:func:`usseg_monai.engines.total_iterations`); the bundles
            attach the schedule with ``LrScheduleHandler(epoch_level=False)``.
        power: the poly exponent.
        eta_min: the cosine schedule's final learning rate.

    Raises:
        ValueError: unknown name, ``total_iterations < 1`` or ``power <= 0``.
    """
    key = str(name).lower()
    if key not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {name!r}")
    if int(total_iterations) < 1:
        raise ValueError(f"total_iterations must be >= 1, got {total_iterations}")
    if key == "poly":
        if not float(power) > 0:
            raise ValueError(f"poly power must be > 0, got {power}")
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=int(total_iterations), power=float(power))
    if key == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(total_iterations), eta_min=float(eta_min))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)

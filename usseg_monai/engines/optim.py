"""Optimisers chosen by name in a bundle config (one key switches e.g. CRBNet's SGD to AdamW)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["OPTIMIZERS", "make_optimizer"]

#: names accepted by :func:`make_optimizer`
OPTIMIZERS = ("sgd", "adamw", "adam")


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

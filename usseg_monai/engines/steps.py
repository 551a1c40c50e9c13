"""The optimisation step shared by this package's trainers (one backward, one or more optimisers, AMP).

:func:`record_loss` stores a loss result in ``engine.state.output`` (``loss``, the ``loss/<name>`` terms and an
optional ``pred``); :func:`backward_and_step` zeroes the optimisers, runs the forward + loss closure (under
``torch.autocast`` with AMP), back-propagates once and steps every optimiser (through the engine's gradient
scaler with AMP), firing MONAI's iteration events as :class:`monai.engines.SupervisedTrainer` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys

__all__ = ["fetch_tensor", "record_loss", "backward_and_step"]


def fetch_tensor(engine: Any, batchdata: Any, key: str, where: str) -> torch.Tensor:
    """``batchdata[key]`` moved to the engine's device; ``where`` (e.g. ``"TwoBranchTrainer: the batch"``) starts
    the message of the ``TypeError`` / ``KeyError`` raised for a batch that is not a dict, lacks ``key`` or holds no
    tensor there."""
    if not isinstance(batchdata, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(batchdata).__name__}")
    if key not in batchdata:
        raise KeyError(f"{where} has no {key!r} (keys: {sorted(map(str, batchdata))})")
    value = batchdata[key]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where}[{key!r}] must be a tensor, got {type(value).__name__}")
    return value.to(engine.state.device, non_blocking=engine.non_blocking)


def record_loss(engine: Any, result: torch.Tensor | Mapping[str, Any], name: str) -> torch.Tensor:
    """The scalar loss of ``result`` (a tensor, or a dict with ``"loss"``), its terms and ``pred`` stored in
    ``engine.state.output``; fires ``LOSS_COMPLETED``.

    Raises:
        KeyError: a dict without ``"loss"`` (``name`` is the trainer's name, for the message).
    """
    if isinstance(result, Mapping):
        if "loss" not in result:
            raise KeyError(f"{name}: the loss returned a dict without 'loss' (keys: {sorted(result)})")
        loss = result["loss"]
        for key, value in result.items():
            if key == "pred":
                engine.state.output[Keys.PRED] = value.detach()
            elif key != "loss":
                engine.state.output[f"loss/{key}"] = torch.as_tensor(value).detach()
    else:
        loss = result
    engine.state.output[Keys.LOSS] = loss.mean()
    engine.fire_event(IterationEvents.LOSS_COMPLETED)
    return engine.state.output[Keys.LOSS]


def backward_and_step(engine: Any, forward_and_loss: Callable[[], torch.Tensor], optimizers: Sequence[Any]) -> None:
    """Zero ``optimizers``, compute the loss, one backward pass, step every optimiser (see the module docstring)."""
    engine.network.train()
    for opt in optimizers:
        opt.zero_grad(set_to_none=engine.optim_set_to_none)
    if engine.amp and engine.scaler is not None:
        with torch.autocast("cuda", **engine.amp_kwargs):
            loss = forward_and_loss()
        engine.scaler.scale(loss).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        for opt in optimizers:
            engine.scaler.step(opt)
        engine.scaler.update()
    else:
        loss = forward_and_loss()
        loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        for opt in optimizers:
            opt.step()
    engine.fire_event(IterationEvents.MODEL_COMPLETED)

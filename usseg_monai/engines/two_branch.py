"""A trainer for two jointly trained networks with two optimisers and one backward pass (CRBNet).

:class:`TwoBranchTrainer` is a :class:`monai.engines.SupervisedTrainer` whose iteration

1. reads the image and the training targets named by ``target_keys`` from the batch (for CRBNet the radical
   label, the conservative label and the caliper axes; no mask is read);
2. runs the network once in training mode: a :class:`usseg_monai.networks.TwoBranchNet` returns both branches'
   logits stacked ``[2, B, C, ...]``;
3. calls ``loss_function(logits1, logits2, *targets, iteration=t, total_iterations=T)`` where ``t`` is the
   number of iterations completed before this one (0 for the first) and ``T`` the run's length
   (``max_epochs * epoch_length``), so that schedules can be written as fractions of the run; the loss returns
   a tensor or a dict with ``"loss"`` and named terms;
4. zeroes both optimisers, does one backward of the total, and steps both optimisers (with AMP through one
   gradient scaler).

Everything else (ignite events, handlers, validation, checkpoints, resume, DDP) is the SupervisedTrainer's.
``engine.state.output`` holds ``image``, ``pred`` (the eval-mode combination of both branches, detached),
``loss`` and each term of a dict loss under ``"loss/<name>"``; :func:`loss_terms` picks those for
``StatsHandler`` / ``TensorBoardStatsHandler``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys

from .steps import backward_and_step, fetch_tensor, record_loss

__all__ = ["TwoBranchTrainer", "loss_terms", "total_iterations"]


def total_iterations(max_epochs: int, epoch_length: int) -> int:
    """Iterations of a whole run (``max_epochs * epoch_length``), at least 1: what schedules divide by."""
    if int(max_epochs) < 1 or int(epoch_length) < 1:
        raise ValueError(f"max_epochs and epoch_length must be >= 1, got {max_epochs} and {epoch_length}")
    return int(max_epochs) * int(epoch_length)


def loss_terms(output: Any) -> dict[str, float]:
    """The scalar ``loss`` and ``loss/<term>`` entries of a trainer output (a dict or a decollated list)."""
    if isinstance(output, Sequence) and not isinstance(output, Mapping):
        output = output[0] if len(output) else {}
    if not isinstance(output, Mapping):
        return {}
    out = {}
    for k, v in output.items():
        if k == Keys.LOSS or (isinstance(k, str) and k.startswith("loss/")):
            out[k] = float(v.detach().float().mean()) if isinstance(v, torch.Tensor) else float(v)
    return out


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    return network.module if hasattr(network, "module") else network


class TwoBranchTrainer(SupervisedTrainer):
    """SupervisedTrainer for a :class:`~usseg_monai.networks.TwoBranchNet` and two optimisers.

    Args:
        optimizer: the first branch's optimiser (also the one SupervisedTrainer knows, e.g. for checkpoints).
        second_optimizer: the second branch's optimiser.
        loss_function: ``f(logits1, logits2, *targets, iteration=, total_iterations=)`` returning a scalar
            tensor or a dict with ``"loss"`` (e.g. :class:`usseg_monai.losses.CRBNetLoss`).
        image_key: the network input's key in the batch.
        target_keys: batch keys passed to the loss after the logits, in order.
        other args: see :class:`monai.engines.SupervisedTrainer` (``prepare_batch`` is not used: the keys
            above are moved to ``device`` directly).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Any,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        second_optimizer: torch.optim.Optimizer,
        loss_function: Callable,
        target_keys: Sequence[str] = ("radical_label", "conservative_label", "caliper_axes"),
        image_key: str = Keys.IMAGE,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("accumulation_steps", 1) != 1:
            raise ValueError("TwoBranchTrainer does not support gradient accumulation (accumulation_steps must be 1)")
        if optimizer is second_optimizer:
            raise ValueError("TwoBranchTrainer: optimizer and second_optimizer are the same object; give one per branch")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            **kwargs,
        )
        self.second_optimizer = second_optimizer
        self.image_key = image_key
        self.target_keys = tuple(target_keys)

    def _iteration(self, engine: TwoBranchTrainer, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        where = "TwoBranchTrainer: the batch"
        inputs = fetch_tensor(engine, batchdata, engine.image_key, where)
        targets = [fetch_tensor(engine, batchdata, k, where) for k in engine.target_keys]
        t = int(engine.state.iteration) - 1  # ignite counts the running iteration already
        total = total_iterations(engine.state.max_epochs, engine.state.epoch_length)
        engine.state.output = {Keys.IMAGE: inputs}

        def _forward_and_loss() -> torch.Tensor:
            both = engine.network(inputs)
            if not (isinstance(both, torch.Tensor) and both.ndim == inputs.ndim + 1 and both.shape[0] == 2):
                raise ValueError(
                    "TwoBranchTrainer: the network must return both branches stacked [2, B, C, ...] in training "
                    f"mode (a TwoBranchNet), got {getattr(both, 'shape', type(both))}"
                )
            z1, z2 = both[0], both[1]
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            result = engine.loss_function(z1, z2, *targets, iteration=t, total_iterations=total)
            with torch.no_grad():
                engine.state.output[Keys.PRED] = _unwrap(engine.network).combine(z1.detach(), z2.detach())
            return record_loss(engine, result, "TwoBranchTrainer")

        backward_and_step(engine, _forward_and_loss, [engine.optimizer, engine.second_optimizer])
        return engine.state.output

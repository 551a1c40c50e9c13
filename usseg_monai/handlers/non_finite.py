"""Stop a training run whose loss is not finite, naming the iteration and the batch (#19 item 2).

Once the loss is NaN or infinite the optimiser step makes the weights non-finite and every later iteration stays
so; ignite's ``TerminateOnNan`` would end the run quietly (exit code 0). :class:`StopOnNonFiniteLoss` raises
instead, at ``Events.ITERATION_COMPLETED`` of the first bad iteration, before the epoch's validation can save a
model; :class:`~usseg_monai.handlers.TrainingStateSaver` refuses to write a non-finite state, so ``model.pt`` and
``checkpoint.pt`` keep the last finite one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from usseg_monai.utils.errors import NonFiniteLossError
from usseg_monai.transforms.plain import SOURCE_KEY

__all__ = ["StopOnNonFiniteLoss", "batch_sources"]


def _names_of(image: Any) -> list[str]:
    if isinstance(image, MetaTensor):
        names = image.meta.get("filename_or_obj")
        if isinstance(names, (list, tuple)):
            return [str(n) for n in names]
        if names:
            return [str(names)]
    return []


def batch_sources(batch: Any, image_key: str = "image") -> list[str]:
    """The files of a batch's images (collated dict or decollated list of dicts; empty when unknown): the image
    MetaTensor's ``filename_or_obj``, else the batch's ``filename_or_obj`` key (where
    :class:`~usseg_monai.transforms.plain.PlainTensorCompose` keeps it once the tensors are plain)."""
    if isinstance(batch, dict):
        names = _names_of(batch.get(image_key))
        if names:
            return names
        kept = batch.get(SOURCE_KEY)
        if isinstance(kept, (list, tuple)):
            return [str(n) for n in kept]
        return [str(kept)] if isinstance(kept, str) and kept else []
    if isinstance(batch, (list, tuple)):
        out: list[str] = []
        for item in batch:
            out += batch_sources(item, image_key)
        return out
    return []


class StopOnNonFiniteLoss:
    """Raise :class:`~usseg_monai.utils.errors.NonFiniteLossError` (a ``FloatingPointError``) at the first iteration
    whose loss is NaN or infinite.

    Args:
        output_transform: maps ``engine.state.output`` to the loss (a number or a one-element tensor); the
            bundles pass ``monai.handlers.from_engine(['loss'], first=True)`` (a decollated output) or
            ``lambda x: x['loss']`` (a trainer with ``decollate=False``).
        image_key: the batch key whose file names the message lists.
    """

    def __init__(self, output_transform: Callable[[Any], Any] = lambda x: x, image_key: str = "image") -> None:
        self.output_transform = output_transform
        self.image_key = image_key

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = self.output_transform(engine.state.output)
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)
        if math.isfinite(value):
            return
        sources = batch_sources(engine.state.batch, self.image_key)
        listed = ", ".join(sources[:16]) + (f" (+{len(sources) - 16} more)" if len(sources) > 16 else "")
        raise NonFiniteLossError(
            f"training stopped: the loss is {value} at iteration {engine.state.iteration} "
            f"(epoch {engine.state.epoch}); "
            f"the batch's images: {listed or 'unknown'}. Check these files and the learning rate; the saved "
            "checkpoints keep the last finite state"
        )

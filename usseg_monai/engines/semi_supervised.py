"""A trainer with a labeled and an unlabeled stream per iteration (SemiSeg-CAW, CRII-Net, mean teacher).

:class:`SemiSupervisedTrainer` is a :class:`monai.engines.SupervisedTrainer` whose iteration

1. takes the labeled batch from ``train_data_loader`` (the engine's own loader: ignite's epochs, ``epoch_length``,
   DDP samplers and resume work on it unchanged) and the next batch of ``unlabeled_data_loader``, which is cycled
   (a fresh pass, with its sampler's ``set_epoch`` called, whenever it is exhausted);
2. moves the keys named by ``labeled_keys`` and ``unlabeled_keys`` to the device (and only those: a key that is
   not named is never read, so the masks of class-only or unlabeled images cannot reach the loss even if a
   datalist still had them);
3. runs the network once on the labeled images (``labeled_keys[0]``) and once per name in
   ``unlabeled_image_keys`` on the unlabeled images (e.g. ``"image"`` for class-only images, or a weak and a strong
   view ``"image_weak"``, ``"image_strong"``), in training mode;
4. calls ``loss_function(labeled_output, unlabeled_outputs, labeled, unlabeled, iteration=t, total_iterations=T)``
   with ``labeled`` / ``unlabeled`` the dicts of batch tensors, ``unlabeled_outputs`` a dict keyed like
   ``unlabeled_image_keys``, ``t`` the number of iterations completed before this one (0 first) and ``T`` the
   run's length (``max_epochs * epoch_length``) so that ramp-ups are fractions of the run; the loss returns a
   tensor or a dict with ``"loss"``, named terms (logged as ``"loss/<name>"``) and optionally ``"pred"``
   (the labeled prediction to expose to training metrics);
5. one backward and one optimiser step (with AMP through the gradient scaler).

Everything else (ignite events, handlers, validation, checkpoints, resume, DDP) is the SupervisedTrainer's.
``engine.state.output`` holds ``image`` (labeled images), ``label`` (when ``label_key`` is among the labeled
keys), ``pred``, ``loss`` and the ``loss/<name>`` terms; :func:`usseg_monai.engines.loss_terms` picks those for
``StatsHandler`` / ``TensorBoardStatsHandler``.

:func:`sigmoid_rampup` is the ramp-up of the unsupervised weight used by the semi-supervised losses (Laine &
Aila, "Temporal ensembling for semi-supervised learning", ICLR 2017, appendix A: ``exp(-5 (1 - x)^2)``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys

from .steps import backward_and_step, fetch_tensor, record_loss
from .two_branch import total_iterations

__all__ = ["SemiSupervisedTrainer", "sigmoid_rampup", "CyclicLoader", "require_checkpoint"]


def require_checkpoint(path: str | os.PathLike, hint: str = "") -> str:
    """``path`` if it is a file, else ``FileNotFoundError`` naming it (and ``hint``: how to produce it)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}" + (f" ({hint})" if hint else ""))
    return str(path)


def sigmoid_rampup(iteration: int | float, total_iterations: int | float, fraction: float = 0.4) -> float:
    """Ramp-up weight in ``[0, 1]``: ``exp(-5 (1 - x)^2)`` with ``x = min(1, iteration / (fraction * total))``.

    Laine & Aila, ICLR 2017 (appendix A), the schedule of mean teacher (Tarvainen & Valpola, NeurIPS 2017) and of
    most semi-supervised segmentation code. ``iteration`` counts completed iterations (0 first); the weight
    reaches 1 after ``fraction`` of the run and stays there. ``fraction <= 0`` means no ramp (always 1).
    """
    if total_iterations <= 0:
        raise ValueError(f"sigmoid_rampup: total_iterations must be > 0, got {total_iterations}")
    length = float(fraction) * float(total_iterations)
    if length <= 0:
        return 1.0
    x = min(max(float(iteration), 0.0) / length, 1.0)
    return float(math.exp(-5.0 * (1.0 - x) ** 2))


class CyclicLoader:
    """Endless iteration over a data loader: a new pass (and ``sampler.set_epoch(pass)``) when one ends.

    Args:
        loader: any iterable of batches (a ``DataLoader``); an empty one is an error at the first ``next``.
        name: used in the error message.
    """

    def __init__(self, loader: Iterable, name: str = "unlabeled_data_loader") -> None:
        self.loader = loader
        self.name = name
        self.passes = 0
        self._it: Iterator | None = None

    def _new_pass(self) -> None:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.passes)
        self.passes += 1
        self._it = iter(self.loader)

    def __iter__(self) -> CyclicLoader:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._new_pass()
        try:
            return next(self._it)  # type: ignore[arg-type]
        except StopIteration:
            self._new_pass()
            try:
                return next(self._it)  # type: ignore[arg-type]
            except StopIteration:
                raise ValueError(f"{self.name} yields no batch (empty dataset?)") from None


class SemiSupervisedTrainer(SupervisedTrainer):
    """SupervisedTrainer with a second, cycled stream of images without masks (see the module docstring).

    Args:
        device: the device of the run.
        max_epochs: epochs over the labeled stream (``epoch_length`` iterations each, default one labeled pass).
        train_data_loader: the labeled stream (images with masks).
        unlabeled_data_loader: the second stream (images without masks: unlabeled, or with a class only);
            ``None`` trains on the labeled stream alone (the loss then gets empty ``unlabeled_outputs`` and
            ``unlabeled`` dicts): the labeled-only baselines use the same engine and loss.
        network: the network; called in training mode on each stream.
        optimizer: one optimiser over every trained parameter (network and, e.g., learned loss weights).
        loss_function: ``f(labeled_output, unlabeled_outputs, labeled, unlabeled, iteration=, total_iterations=)``
            returning a scalar tensor or a dict with ``"loss"`` (see the module docstring).
        labeled_keys: batch keys read from the labeled stream; the first is the network input.
        unlabeled_keys: batch keys read from the unlabeled stream (must include ``unlabeled_image_keys``).
        unlabeled_image_keys: unlabeled keys the network is run on (one forward pass each).
        label_key: the labeled key exposed as ``label`` in the engine output (``None``: none).
        concat_streams: run the network once on the labeled and unlabeled images concatenated along the batch
            (so batch normalisation sees one batch of both; every input must have the same spatial size) and
            split its output back; otherwise one forward pass per stream.
        output_batch_dim: the batch dimension of the network's training-mode output, for that split (0; 1 for
            outputs stacked ``[2, B, ...]`` like :class:`~usseg_monai.networks.TwoBranchNet`).
        other args: see :class:`monai.engines.SupervisedTrainer` (``epoch_length``, ``train_handlers``, ``amp``,
            ...; ``prepare_batch`` is not used: the keys above are moved to ``device`` directly).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Any,
        unlabeled_data_loader: Any | None,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: Callable,
        labeled_keys: Sequence[str] = (Keys.IMAGE, Keys.LABEL),
        unlabeled_keys: Sequence[str] = (Keys.IMAGE,),
        unlabeled_image_keys: Sequence[str] | None = None,
        label_key: str | None = Keys.LABEL,
        concat_streams: bool = False,
        output_batch_dim: int = 0,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("accumulation_steps", 1) != 1:
            raise ValueError("SemiSupervisedTrainer does not support gradient accumulation (accumulation_steps must be 1)")
        labeled_keys = tuple(labeled_keys)
        unlabeled_keys = tuple(unlabeled_keys)
        image_keys = tuple(unlabeled_keys[:1] if unlabeled_image_keys is None else unlabeled_image_keys)
        if not labeled_keys or not unlabeled_keys or not image_keys:
            raise ValueError("SemiSupervisedTrainer: labeled_keys, unlabeled_keys and unlabeled_image_keys must not be empty")
        missing = [k for k in image_keys if k not in unlabeled_keys]
        if missing:
            raise ValueError(f"SemiSupervisedTrainer: unlabeled_image_keys {missing} are not in unlabeled_keys {list(unlabeled_keys)}")
        if label_key is not None and label_key not in labeled_keys:
            raise ValueError(f"SemiSupervisedTrainer: label_key {label_key!r} is not in labeled_keys {list(labeled_keys)}")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            **kwargs,
        )
        self.unlabeled_data_loader = unlabeled_data_loader
        self.unlabeled_stream = None if unlabeled_data_loader is None else CyclicLoader(unlabeled_data_loader)
        self.labeled_keys = labeled_keys
        self.unlabeled_keys = unlabeled_keys
        self.unlabeled_image_keys = image_keys
        self.label_key = label_key
        self.concat_streams = bool(concat_streams)
        self.output_batch_dim = int(output_batch_dim)

    def _iteration(self, engine: SemiSupervisedTrainer, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        where_l, where_u = "SemiSupervisedTrainer: the labeled batch", "SemiSupervisedTrainer: the unlabeled batch"
        labeled = {k: fetch_tensor(engine, batchdata, k, where_l) for k in engine.labeled_keys}
        unlabeled: dict[str, torch.Tensor] = {}
        if engine.unlabeled_stream is not None:
            unlabeled_batch = next(engine.unlabeled_stream)
            unlabeled = {k: fetch_tensor(engine, unlabeled_batch, k, where_u) for k in engine.unlabeled_keys}
        inputs = labeled[engine.labeled_keys[0]]
        t = int(engine.state.iteration) - 1  # ignite counts the running iteration already
        total = total_iterations(engine.state.max_epochs, engine.state.epoch_length)
        engine.state.output = {Keys.IMAGE: inputs}
        if engine.label_key is not None:
            engine.state.output[Keys.LABEL] = labeled[engine.label_key]

        def _forward_and_loss() -> torch.Tensor:
            keys = [k for k in engine.unlabeled_image_keys if k in unlabeled]
            if engine.concat_streams and keys:
                parts = [inputs] + [unlabeled[k] for k in keys]
                out = engine.network(torch.cat(parts, dim=0))
                if not isinstance(out, torch.Tensor):
                    raise TypeError(f"SemiSupervisedTrainer: concat_streams needs a tensor output, got {type(out).__name__}")
                pieces = torch.split(out, [p.shape[0] for p in parts], dim=engine.output_batch_dim)
                out_l, outs_u = pieces[0], dict(zip(keys, pieces[1:]))
            else:
                out_l = engine.network(inputs)
                outs_u = {k: engine.network(unlabeled[k]) for k in keys}
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            result = engine.loss_function(out_l, outs_u, labeled, unlabeled, iteration=t, total_iterations=total)
            if not isinstance(result, Mapping) or "pred" not in result:
                if isinstance(out_l, torch.Tensor):
                    engine.state.output[Keys.PRED] = out_l.detach()
            return record_loss(engine, result, "SemiSupervisedTrainer")

        backward_and_step(engine, _forward_and_loss, [engine.optimizer])
        return engine.state.output

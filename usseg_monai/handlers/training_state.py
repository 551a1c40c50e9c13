"""Save and restore a trainer's whole state from ``train#handlers``: resumable training (#18, #19).

:class:`TrainingStateSaver` writes ``checkpoint.pt`` (every object of ``save_dict``: network(s), optimiser(s),
scheduler(s), a stateful loss; the trainer's iteration and epoch; the torch / numpy / python RNG states) atomically
(a temporary file beside it, then :func:`os.replace`), every ``epoch_interval`` epochs and when the run ends or
raises. A run killed at any moment leaves the last complete checkpoint. :class:`TrainingStateLoader` restores it
at ``Events.STARTED`` (``--resume True``), so training continues from the last saved epoch to ``max_epochs``.

Both learn the engine when they are attached to it and add it to the saved (or loaded) objects under
``engine_key``: a config that built them inside ``train#handlers`` could not name ``@train#trainer`` in the
trainer's own arguments (a circular reference), and the model-zoo layout wants every trainer handler there.

Cost: one ``torch.save`` of the state per saved epoch. Measured on a 2-core Intel Xeon (load ~3, local disk): the
2D UNet bundle's state (1.8 M parameters + AdamW moments) is 22 MB and takes 0.05 s; the other bundles' states
are 22 MB (CRII-Net 2D), 29 MB (CRBNet 2D), 64-86 MB (3D) and 164 MB (SemiSeg-CAW). ``epoch_interval: 0`` saves
only at the end.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from usseg_monai.utils.errors import CheckpointError, CheckpointNotFoundError, OutputNotWritableError

__all__ = [
    "TrainingStateLoader",
    "TrainingStateSaver",
    "check_writable_dir",
    "non_finite_entries",
    "rng_state",
    "set_rng_state",
]

logger = logging.getLogger("usseg_monai.handlers.training_state")

RNG_KEY = "rng"


def _with_engine(objects: Mapping[str, Any], engine_key: str, engine: Engine, owner: str) -> dict[str, Any]:
    if not isinstance(objects, Mapping):
        raise TypeError(f"{owner}: expected a dict of objects to save/load, got {type(objects).__name__}")
    for key in (engine_key, RNG_KEY):
        if key in objects:
            raise ValueError(
                f"{owner}: key {key!r} is reserved (the engine the handler is attached to, the RNG states); "
                f"remove it from the dict (keys: {sorted(objects)})"
            )
    return {**objects, engine_key: engine}


def check_writable_dir(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and check that a file can be written in it.

    Raises:
        OutputNotWritableError (a ``PermissionError``): naming the folder, what it is for and the OS's reason.
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_", delete=True):
            pass
    except OSError as e:
        raise OutputNotWritableError(f"{what} {path} is not writable ({e.strerror or e}); choose another folder") from e
    return path


def rng_state() -> dict[str, Any]:
    """The torch, numpy and python RNG states as tensors and numbers (loadable with ``weights_only=True``)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def non_finite_entries(state: Mapping[str, Any], objects: Mapping[str, Any]) -> list[str]:
    """``"<key>.<tensor>"`` for every floating tensor with NaN / inf in the state of the ``nn.Module`` objects."""
    bad = []
    for key, obj in objects.items():
        if isinstance(obj, torch.nn.Module):
            for name, t in state[key].items():
                if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    bad.append(f"{key}.{name}")
    return bad


class TrainingStateSaver:
    """Write ``save_dir/filename`` with ``save_dict``, the engine and the RNG states, atomically.

    Args:
        save_dir: folder of the checkpoint; created if missing and checked writable when attached (before the
            first iteration), the error naming it.
        save_dict: the objects with a ``state_dict()`` to save, e.g. ``{"model": ..., "optimizer": ...}``.
        filename: the checkpoint's file name (``checkpoint.pt``; the bundles' ``resume_ckpt_path``).
        epoch_interval: save after every ``epoch_interval`` completed epochs; 0: only at the end.
        save_final: also save when the run completes and when it raises (the state of the last iteration).
        engine_key: name of the engine's entry (``"trainer"``, as in MONAI's resume examples).
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: Mapping[str, Any],
        filename: str = "checkpoint.pt",
        epoch_interval: int = 1,
        save_final: bool = True,
        engine_key: str = "trainer",
    ) -> None:
        if int(epoch_interval) < 0:
            raise ValueError(f"TrainingStateSaver: epoch_interval must be >= 0, got {epoch_interval!r}")
        self.save_dir = save_dir
        self.save_dict = save_dict
        self.filename = str(filename)
        self.epoch_interval = int(epoch_interval)
        self.save_final = bool(save_final)
        self.engine_key = engine_key
        self.objects: dict[str, Any] = {}

    @property
    def path(self) -> Path:
        return Path(self.save_dir) / self.filename

    def attach(self, engine: Engine) -> None:
        self.objects = _with_engine(self.save_dict, self.engine_key, engine, type(self).__name__)
        check_writable_dir(self.save_dir, "checkpoint folder (ckpt_dir)")
        if self.epoch_interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.epoch_interval), self.save)
        if self.save_final:
            engine.add_event_handler(Events.COMPLETED, self.save)
            engine.add_event_handler(Events.EXCEPTION_RAISED, self._save_on_exception)

    def save(self, engine: Engine) -> Path | None:
        """Write the checkpoint now (atomically) and return its path; ``None`` when a network's weights are not
        finite (the previous checkpoint is kept and an error is logged: a NaN state is never saved)."""
        state = {k: obj.state_dict() for k, obj in self.objects.items()}
        bad = non_finite_entries(state, self.objects)
        if bad:
            logger.error(
                "not saving the training state at iteration %d to %s: non-finite values in %s; the file keeps the "
                "last finite state", engine.state.iteration, self.path, ", ".join(bad[:8]),
            )
            return None
        state[RNG_KEY] = rng_state()
        path = self.path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        logger.debug("saved the training state at epoch %d, iteration %d to %s", engine.state.epoch,
                     engine.state.iteration, path)
        return path

    def _save_on_exception(self, engine: Engine, e: Exception) -> None:
        try:
            if not isinstance(e, KeyboardInterrupt):
                self.save(engine)
        finally:
            raise e


class TrainingStateLoader:
    """Restore a checkpoint of :class:`TrainingStateSaver` at ``Events.STARTED``.

    Args:
        load_path: the checkpoint file.
        load_dict: the objects to restore (the engine is added under ``engine_key`` at :meth:`attach`).
        map_location: passed to :func:`torch.load`.
        strict: whether a module's keys must match exactly.
        engine_key: name of the engine's entry.

    Raises (at ``Events.STARTED``):
        CheckpointNotFoundError (a ``FileNotFoundError``): the file is missing (the message says how to start
            instead).
        CheckpointError (a ``ValueError``): the file is damaged or not a training checkpoint (names the file and
            the missing entries), or it is already at or beyond the run's ``max_epochs``.
    """

    def __init__(
        self,
        load_path: str,
        load_dict: Mapping[str, Any],
        map_location: Any = None,
        strict: bool = True,
        engine_key: str = "trainer",
    ) -> None:
        self.load_path = load_path
        self.load_dict = load_dict
        self.map_location = map_location
        self.strict = strict
        self.engine_key = engine_key
        self.objects: dict[str, Any] = {}

    def attach(self, engine: Engine) -> None:
        self.objects = _with_engine(self.load_dict, self.engine_key, engine, type(self).__name__)
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        path = Path(self.load_path)
        if not path.is_file():
            raise CheckpointNotFoundError(
                f"resume: no checkpoint {path} (a run writes it after its first epoch); train without --resume to "
                "start from scratch, or set resume_ckpt_path"
            )
        try:
            checkpoint = torch.load(path, map_location=self.map_location, weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"resume: checkpoint {path} is damaged or not a training checkpoint ({type(e).__name__}: {e}); "
                "delete it and train without --resume"
            ) from e
        missing = [k for k in self.objects if not isinstance(checkpoint, dict) or k not in checkpoint]
        if missing:
            have = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise CheckpointError(
                f"resume: checkpoint {path} lacks {missing} (it holds {have}); was it written by this bundle?"
            )
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self.objects, checkpoint=checkpoint, strict=self.strict)
        if max_epochs is not None:
            if engine.state.epoch >= max_epochs:
                raise CheckpointError(
                    f"resume: checkpoint {path} is at epoch {engine.state.epoch}, "
                    f"the run's max_epochs is {max_epochs}: "
                    "nothing to train; raise max_epochs to train further"
                )
            engine.state.max_epochs = max_epochs
        if RNG_KEY in checkpoint:
            set_rng_state(checkpoint[RNG_KEY])
        state = engine.state
        logger.info("resume: restored epoch %d (iteration %d) from %s", state.epoch, state.iteration, path)

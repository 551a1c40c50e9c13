"""Save and restore a trainer's state from ``train#handlers`` (#18).

MONAI's :class:`~monai.handlers.CheckpointSaver` and :class:`~monai.handlers.CheckpointLoader` take the objects to
save in their constructor. To resume a run the trainer itself must be saved (its iteration and epoch), so a config
that builds them inside ``train#handlers`` would refer to ``@train#trainer`` from within the trainer's own
arguments: a circular reference. The model-zoo layout wants every handler of the trainer in ``train#handlers``.

:class:`TrainingStateSaver` and :class:`TrainingStateLoader` resolve this the way ignite's handlers do: they learn
the engine when they are attached to it and add it to the saved (or loaded) objects under ``engine_key``. Every
other argument is MONAI's, passed through unchanged, so e.g. ``save_interval`` / ``epoch_level`` keep their
meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ignite.engine import Engine
from monai.handlers import CheckpointLoader, CheckpointSaver

__all__ = ["TrainingStateLoader", "TrainingStateSaver"]


def _with_engine(objects: Mapping[str, Any], engine_key: str, engine: Engine, owner: str) -> dict[str, Any]:
    if not isinstance(objects, Mapping):
        raise TypeError(f"{owner}: expected a dict of objects to save/load, got {type(objects).__name__}")
    if engine_key in objects:
        raise ValueError(
            f"{owner}: key {engine_key!r} is reserved for the engine the handler is attached to; "
            f"remove it from the dict (keys: {sorted(objects)})"
        )
    return {**objects, engine_key: engine}


class TrainingStateSaver:
    """A :class:`~monai.handlers.CheckpointSaver` of ``save_dict`` plus the engine it is attached to.

    Args:
        save_dir: folder of the checkpoint files (created when missing, as by MONAI).
        save_dict: the objects to save, e.g. ``{"model": ..., "optimizer": ..., "lr_scheduler": ...}``; the
            engine is added under ``engine_key`` at :meth:`attach`.
        engine_key: name of the engine's entry in the checkpoint (``"trainer"``, as MONAI's resume examples).
        kwargs: every other :class:`~monai.handlers.CheckpointSaver` argument (``save_final``,
            ``final_filename``, ``save_interval``, ``epoch_level``, ``n_saved``, ...).

    Raises:
        ValueError: at :meth:`attach`, when ``save_dict`` already has ``engine_key``.
    """

    def __init__(self, save_dir: str, save_dict: Mapping[str, Any], engine_key: str = "trainer", **kwargs: Any):
        self.save_dir = save_dir
        self.save_dict = save_dict
        self.engine_key = engine_key
        self.kwargs = kwargs
        self.saver: CheckpointSaver | None = None

    def attach(self, engine: Engine) -> None:
        objects = _with_engine(self.save_dict, self.engine_key, engine, type(self).__name__)
        self.saver = CheckpointSaver(save_dir=self.save_dir, save_dict=objects, **self.kwargs)
        self.saver.attach(engine)


class TrainingStateLoader:
    """A :class:`~monai.handlers.CheckpointLoader` of ``load_dict`` plus the engine it is attached to.

    Args:
        load_path: the checkpoint file (written by :class:`TrainingStateSaver`).
        load_dict: the objects to restore; the engine is added under ``engine_key`` at :meth:`attach`.
        engine_key: name of the engine's entry in the checkpoint.
        kwargs: every other :class:`~monai.handlers.CheckpointLoader` argument (``map_location``, ``strict``, ...).

    Raises:
        ValueError: at :meth:`attach`, when ``load_dict`` already has ``engine_key``.
    """

    def __init__(self, load_path: str, load_dict: Mapping[str, Any], engine_key: str = "trainer", **kwargs: Any):
        self.load_path = load_path
        self.load_dict = load_dict
        self.engine_key = engine_key
        self.kwargs = kwargs
        self.loader: CheckpointLoader | None = None

    def attach(self, engine: Engine) -> None:
        objects = _with_engine(self.load_dict, self.engine_key, engine, type(self).__name__)
        self.loader = CheckpointLoader(load_path=self.load_path, load_dict=objects, **self.kwargs)
        self.loader.attach(engine)

"""Resuming an interrupted benchmark training: the settings and progress file beside a bundle's ``checkpoint.pt``.

After every epoch :func:`usseg_monai.evaluation.runner.train_run` writes the training's settings (every training
override, the bundle's config digest, the epoch length) and its progress (iteration times, loss curve, training wall
time so far) atomically to ``<run_dir>/train_state.json``, beside the bundle's own ``models/checkpoint.pt`` (the whole
trainer state, written every epoch by ``TrainingStateSaver``). A run started again in the same folder with the same
settings resumes from that checkpoint (the bundle's ``resume``) and carries the progress on, so a run killed at the
end of a session loses at most one epoch; a checkpoint already at the last epoch (a run killed during its test pass)
is not trained again, only scored. Other settings, or no state file: trained from the start. The record's
``timing.resumed_at_iterations`` lists where it was resumed (empty: one uninterrupted training); resumed training is
not bit-identical to an uninterrupted one (data order after the resume point), as CPU training here is not from run to
run anyway. Changes to the library's Python code are not detected (as with ``--reuse-runs``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["TRAIN_STATE", "resume_point"]

logger = logging.getLogger(__name__)

#: the training's settings and progress, beside ``models/checkpoint.pt`` in a run folder
TRAIN_STATE = "train_state.json"


def resume_point(run_dir: Path, ckpt: Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The progress of an interrupted training of ``settings`` in ``run_dir`` (its :data:`TRAIN_STATE` cut at the
    checkpoint's iteration, plus ``"iteration"``), or ``None`` where it must train from the start (logged why)."""
    state_path = run_dir / TRAIN_STATE
    if not ckpt.is_file():
        return None
    if not state_path.is_file():
        logger.info("resume: %s has no %s (not written by this runner): training from the start", ckpt, state_path.name)
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        saved_settings, progress = state["settings"], state["progress"]
    except (ValueError, KeyError, TypeError) as e:
        logger.warning("resume: %s is unreadable (%s): training from the start", state_path, e)
        return None
    wanted = json.loads(json.dumps(settings))
    if saved_settings != wanted:
        old_o, new_o = saved_settings.get("overrides") or {}, wanted["overrides"]
        top = sorted(k for k in set(saved_settings) | set(wanted) if k != "overrides")
        changed = [k for k in top if saved_settings.get(k) != wanted.get(k)]
        changed += [k for k in sorted(set(old_o) | set(new_o)) if old_o.get(k) != new_o.get(k)]
        logger.info(
            "resume: %s was trained with other settings (%s): training from the start", ckpt, ", ".join(changed)
        )
        return None
    try:
        trainer_state = torch.load(ckpt, map_location="cpu", weights_only=True)["trainer"]
        iteration = int(trainer_state["iteration"])
    except Exception as e:  # a damaged file: the bundle's loader would stop the run; start again instead
        logger.warning(
            "resume: checkpoint %s is unreadable (%s: %s): training from the start", ckpt, type(e).__name__, e
        )
        return None
    epoch_length = int(settings["epoch_length"] or trainer_state.get("epoch_length") or 1)
    return {
        "iteration": iteration,
        "iteration_s": list(progress["iteration_s"])[:iteration],
        "curve": [c for c in progress["curve"] if int(c["epoch"]) <= iteration // epoch_length],
        "train_wall_s": float(progress["train_wall_s"]),
        "resumed_at_iterations": [*progress.get("resumed_at_iterations", []), iteration],
    }

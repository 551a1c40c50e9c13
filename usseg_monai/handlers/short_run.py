"""A one-line note at the end of a training run too short to have learned (#17).

A 1-2 epoch smoke run (README, the phantom) ends with validation Dice ~0.0; without a word this reads as a broken
bundle. :class:`ShortRunNote` is attached to the trainer (``train#handlers``) and, when training completes, logs one
warning if the validator's best key metric never reached ``min_metric``, naming the epochs and iterations trained.
It changes nothing else: no metric, no checkpoint, no exit code.
"""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events

__all__ = ["ShortRunNote"]

logger = logging.getLogger("usseg_monai.handlers.short_run")


class ShortRunNote:
    """Log one warning at ``Events.COMPLETED`` when the best validation metric stayed below ``min_metric``.

    Args:
        validator: the validation engine whose ``state.best_metric`` (MONAI ``Workflow`` state: -1 until the first
            validation) is read; usually ``@validate#evaluator``.
        min_metric: the key metric (e.g. mean Dice, in [0, 1]) below which the run is called too short to learn.
    """

    def __init__(self, validator: Engine, min_metric: float = 0.05) -> None:
        if not 0.0 <= float(min_metric) <= 1.0:
            raise ValueError(f"ShortRunNote: min_metric must be in [0, 1], got {min_metric!r}")
        self.validator = validator
        self.min_metric = float(min_metric)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def message(self, engine: Engine) -> str | None:
        """The note for a completed ``engine``, or None when the run learned (best metric >= ``min_metric``)."""
        best = getattr(self.validator.state, "best_metric", -1)
        epochs, iterations = engine.state.epoch, engine.state.iteration
        if best is None or best < 0:
            return (
                f"training ended after {epochs} epoch(s) / {iterations} iteration(s) without a validation round "
                "(val_interval larger than max_epochs?): there is no best model to judge"
            )
        if best >= self.min_metric:
            return None
        return (
            f"best validation metric {best:.3f} after {epochs} epoch(s) / {iterations} iteration(s): this is "
            f"expected for a run this short (a smoke run), not a fault; train longer (e.g. the bundle's default "
            f"max_epochs) before judging the model (metric below {self.min_metric:g})"
        )

    def __call__(self, engine: Engine) -> None:
        note = self.message(engine)
        if note is not None:
            logger.warning(note)

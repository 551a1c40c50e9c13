"""``MeanDiceFast``: MONAI's ``MeanDice`` handler with the batch-vectorised Dice (#20)."""

from __future__ import annotations

from typing import Any

from monai.handlers import MeanDice

from usseg_monai.metrics.batch_dice import batch_dice_metric

__all__ = ["MeanDiceFast"]


class MeanDiceFast(MeanDice):
    """:class:`monai.handlers.MeanDice` (same arguments, same values) whose metric computes the Dice of a whole
    batch at once (:class:`usseg_monai.metrics.BatchDiceHelper`) instead of one image and class at a time: the
    bundles' ``train_mean_dice`` runs after every training iteration."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        batch_dice_metric(self.metric_fn)

"""MONAI's Dice, computed for a whole batch in a few tensor operations (#20).

``monai.metrics.DiceMetric`` (and so the ``MeanDice`` handler the bundles use as ``train_mean_dice`` and
``val_mean_dice``) computes the Dice of each image and class in a Python loop (``DiceHelper.compute_channel``):
about 2 ms for a ``[8, 2, 64, 64]`` training batch on this project's 2-core CPU, every iteration.
:class:`BatchDiceHelper` gives the same values for one-hot predictions and labels of the same shape (the bundles'
post-processing output) with one reduction over the spatial axes; any other input goes to MONAI's own loop.
"""

from __future__ import annotations

import torch
from monai.metrics import DiceHelper, DiceMetric
from monai.metrics.utils import do_metric_reduction

__all__ = ["BatchDiceHelper", "batch_dice_metric"]


class BatchDiceHelper(DiceHelper):
    """:class:`monai.metrics.DiceHelper` with a vectorised path for one-hot ``y_pred`` and ``y`` of one shape
    ``[B, C, spatial...]`` (``C > 1``): per image and class ``2 |Y and P| / (|Y| + |P|)`` with ``P = y_pred != 0``;
    an empty ``Y`` gives NaN with ``ignore_empty`` (left out of the mean), else 1 when ``P`` is empty too and 0
    otherwise, as ``DiceHelper.compute_channel``. On 0/1 masks every sum is an exact integer, so the values are
    identical to MONAI's (``tests/test_discrete.py``)."""

    def _vectorised(self, y_pred: torch.Tensor, y: torch.Tensor) -> bool:
        return (
            not self.per_component
            and self.ignore_index is None
            and not self.apply_argmax
            and not self.threshold
            and y_pred.ndim >= 3
            and y_pred.shape == y.shape
            and y_pred.shape[1] > 1
            and (self.num_classes is None or self.num_classes == y_pred.shape[1])
        )

    def __call__(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not self._vectorised(y_pred, y):
            return super().__call__(y_pred, y)
        first = 0 if self.include_background else 1
        pred = y_pred[:, first:].bool().flatten(2)
        truth = y[:, first:].flatten(2)
        truth_sum = truth.sum(-1)
        pred_sum = pred.sum(-1).to(truth_sum.dtype)
        overlap = (truth * pred).sum(-1)
        dice = 2.0 * overlap / (truth_sum + pred_sum)
        if self.ignore_empty:
            empty = torch.full_like(dice, float("nan"))
        else:
            empty = (truth_sum + pred_sum <= 0).to(dice.dtype)
        data = torch.where(truth_sum > 0, dice, empty).contiguous()
        f, not_nans = do_metric_reduction(data, self.reduction)  # type: ignore[arg-type]
        return (f, not_nans) if self.get_not_nans else f


def batch_dice_metric(metric: DiceMetric) -> DiceMetric:
    """``metric`` (a :class:`monai.metrics.DiceMetric`) with its helper replaced by a :class:`BatchDiceHelper` of
    the same settings; returned for chaining."""
    h = metric.dice_helper
    metric.dice_helper = BatchDiceHelper(
        include_background=h.include_background, threshold=h.threshold, apply_argmax=h.apply_argmax,
        activate=h.activate, get_not_nans=h.get_not_nans, reduction=h.reduction, ignore_empty=h.ignore_empty,
        num_classes=h.num_classes, per_component=h.per_component, ignore_index=h.ignore_index,
    )  # fmt: skip
    return metric

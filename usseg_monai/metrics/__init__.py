"""Metrics that monai.metrics lacks: bootstrap confidence intervals of per-case means, per-case metric
bundles in physical units (built on MONAI's Dice/IoU/HD95/ASD/confusion matrix), and caliper measurement
error between predicted and ground-truth masks."""

from usseg_monai.metrics.batch_dice import BatchDiceHelper, batch_dice_metric
from usseg_monai.metrics.bootstrap import bootstrap_ci, summarize_cases
from usseg_monai.metrics.measurement import MEASUREMENT_ERROR_KEYS, case_measurement_error, measurement_error_summary
from usseg_monai.metrics.segmentation import SEGMENTATION_METRICS, as_binary_mask, case_metrics

__all__ = [
    "BatchDiceHelper",
    "batch_dice_metric",
    "bootstrap_ci",
    "summarize_cases",
    "SEGMENTATION_METRICS",
    "as_binary_mask",
    "case_metrics",
    "MEASUREMENT_ERROR_KEYS",
    "case_measurement_error",
    "measurement_error_summary",
]

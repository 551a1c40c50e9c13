"""usseg_monai.handlers: ignite handlers that MONAI lacks.

Per-case metrics in physical units, metric reports with the label's name, class probabilities, a note on runs
too short to learn, a checkpoint saver/loader of the trainer's own state, a stop on a non-finite loss.
"""

from .case_metric import CaseMetricHandler, spacing_of
from .class_probabilities import ClassProbabilityWriter, read_class_probabilities
from .mean_dice import MeanDiceFast
from .metrics_saver import LabeledMetricsSaver, relabel_metric_reports
from .non_finite import StopOnNonFiniteLoss, batch_sources
from .short_run import ShortRunNote
from .training_state import TrainingStateLoader, TrainingStateSaver

__all__ = [
    "CaseMetricHandler",
    "spacing_of",
    "ClassProbabilityWriter",
    "read_class_probabilities",
    "MeanDiceFast",
    "LabeledMetricsSaver",
    "relabel_metric_reports",
    "ShortRunNote",
    "StopOnNonFiniteLoss",
    "batch_sources",
    "TrainingStateLoader",
    "TrainingStateSaver",
]

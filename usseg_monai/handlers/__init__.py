"""usseg_monai.handlers: ignite handlers that MONAI lacks (per-case metrics in physical units, class probabilities)."""

from .case_metric import CaseMetricHandler, spacing_of
from .class_probabilities import ClassProbabilityWriter, read_class_probabilities

__all__ = ["CaseMetricHandler", "spacing_of", "ClassProbabilityWriter", "read_class_probabilities"]

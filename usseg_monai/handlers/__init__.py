"""usseg_monai.handlers: ignite handlers that MONAI lacks (per-case metrics in physical units)."""

from .case_metric import CaseMetricHandler, spacing_of

__all__ = ["CaseMetricHandler", "spacing_of"]

"""An ignite metric handler giving one value per case, distances in mm, for ``MetricsSaver``.

MONAI's handlers leave two gaps for the evaluation tables of the papers (Dice, IoU, HD95, ASD, recall,
precision, specificity, accuracy per case):

- the distance metrics (``HausdorffDistanceMetric``, ``SurfaceDistanceMetric``) accept ``spacing=`` so that
  distances come out in millimetres, but MONAI's ``HausdorffDistance`` / ``SurfaceDistance`` handlers call
  them without it (pixel units);
- the ``ConfusionMatrix`` handler stores raw ``[tp, fp, tn, fn]`` counts as its per-case details, which
  ``MetricsSaver`` cannot write as one value per case.

:class:`CaseMetricHandler` wraps any MONAI cumulative metric, calls it one image at a time (with the spacing
read from each prediction's affine when ``use_spacing``), turns confusion-matrix counts into the named rate,
stores one value per case and channel, and reports the NaN-aware mean over cases. An infinite distance (one
of the two masks is empty, MONAI's ``SurfaceDistanceMetric`` returns ``inf`` there while the Hausdorff metric
returns ``nan``) is stored as ``nan``, so every undefined case is left out of the mean the same way; the
``notnans`` column of ``MetricsSaver``'s summary counts the cases each mean is over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler
from monai.metrics import ConfusionMatrixMetric, CumulativeIterationMetric, compute_confusion_matrix_metric
from monai.metrics.utils import do_metric_reduction
from monai.metrics.metric import IterationMetric

__all__ = ["CaseMetricHandler", "spacing_of"]


def spacing_of(img: torch.Tensor, spatial_dims: int) -> list[float]:
    """Spacing (mm per pixel/voxel, MONAI index order) of one channel-first image: its affine's column norms.

    A plain tensor (no affine) gives 1.0 per axis (pixel units).
    """
    if isinstance(img, MetaTensor):
        affine = img.affine
        if affine.ndim == 3:  # a batched affine
            affine = affine[0]
        cols = affine[:spatial_dims, :spatial_dims].double()
        return [float(v) for v in torch.linalg.norm(cols, dim=0)]
    return [1.0] * spatial_dims


class CaseMetricHandler(IgniteMetricHandler):
    """Attach a MONAI cumulative metric to an engine with one stored value per case and channel.

    Args:
        metric_fn: e.g. ``HausdorffDistanceMetric(include_background=False, percentile=95)``,
            ``SurfaceDistanceMetric(include_background=False, symmetric=True)`` or
            ``ConfusionMatrixMetric(include_background=False, metric_name="sensitivity")``.
        output_transform: gives ``(y_pred, y)``: lists of channel-first one-hot images (decollated engine
            output, ``from_engine(["pred", "label"])``) or batch-first tensors.
        use_spacing: pass each prediction's spacing (mm, from its affine; after ``Invertd`` the original
            image's) to the metric as ``spacing=``: distances in mm.
        save_details: keep per-case values in ``engine.state.metric_details`` (for ``MetricsSaver``).

    For a :class:`~monai.metrics.ConfusionMatrixMetric` the per-case value is its ``metric_name`` rate
    computed from that case's counts (NaN where the denominator is 0, e.g. recall with an empty ground truth).
    """

    def __init__(
        self,
        metric_fn: CumulativeIterationMetric,
        output_transform: Callable = lambda x: x,
        use_spacing: bool = False,
        save_details: bool = True,
    ) -> None:
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
        self.use_spacing = use_spacing

    def _case_value(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        kwargs = {"spacing": spacing_of(pred, pred.ndim - 1)} if self.use_spacing else {}
        value = IterationMetric.__call__(self.metric_fn, pred.unsqueeze(0), label.unsqueeze(0), **kwargs)
        if isinstance(value, (list, tuple)):
            value = value[0]
        if isinstance(self.metric_fn, ConfusionMatrixMetric):
            names = self.metric_fn.metric_name
            value = compute_confusion_matrix_metric(names[0] if isinstance(names, (list, tuple)) else names, value)
        value = torch.as_tensor(value, dtype=torch.float32).reshape(1, -1)
        return torch.where(torch.isinf(value), torch.full_like(value, float("nan")), value)

    def update(self, output: Sequence[torch.Tensor]) -> None:
        """Store the value of every case of ``output = (y_pred, y)``."""
        if len(output) != 2:
            raise ValueError(f"output must have length 2 (y_pred, y), got {len(output)}")
        y_pred, y = output
        preds = [y_pred[i] for i in range(y_pred.shape[0])] if isinstance(y_pred, torch.Tensor) else list(y_pred)
        labels = [y[i] for i in range(y.shape[0])] if isinstance(y, torch.Tensor) else list(y)
        if len(preds) != len(labels):
            raise ValueError(f"{len(preds)} predictions but {len(labels)} labels")
        for p, t in zip(preds, labels):
            self.metric_fn.extend(self._case_value(p, t))

    def compute(self) -> float:
        """NaN-aware mean over cases and channels (NaN if no case has a defined value)."""
        data = self.metric_fn.get_buffer()
        if data is None or (isinstance(data, torch.Tensor) and data.numel() == 0):
            raise RuntimeError("CaseMetricHandler: no case was scored")
        mean, not_nans = do_metric_reduction(data.clone(), "mean")  # it zeroes NaNs in place
        self._is_reduced = True
        if self.save_details:
            if self._engine is None or self._name is None:
                raise RuntimeError("please call the attach() function to connect expected engine first.")
            self._engine.state.metric_details[self._name] = data
        if float(torch.as_tensor(not_nans).sum()) == 0:
            return float("nan")  # no case has a defined value: not 0, which would read as a perfect distance
        return float(mean.item()) if isinstance(mean, torch.Tensor) else float(mean)

"""``MetricsSaver`` whose per-case CSVs name the lesion column after the bundle's label (#17).

MONAI's :class:`monai.handlers.MetricsSaver` writes ``<metric>_raw.csv`` with columns ``filename, class0, mean`` and
``<metric>_summary.csv`` with a row ``class0``: it does not pass ``class_labels`` on to
:func:`monai.handlers.utils.write_metrics_reports`. :class:`LabeledMetricsSaver` writes the same files and then
renames ``class<i>`` to ``class_labels[i]`` (e.g. ``lesion``, the bundle's ``channel_def`` without the background),
rewriting each file atomically. Values and the other columns are unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ignite.engine import Engine
from monai.handlers import MetricsSaver

from usseg_monai.data.io import atomic_write_text

__all__ = ["LabeledMetricsSaver", "relabel_metric_reports"]


def relabel_metric_reports(save_dir: str, metric: str, class_labels: Sequence[str], delimiter: str = ",") -> None:
    """Rename ``class<i>`` to ``class_labels[i]`` in ``save_dir/<metric>_raw.csv`` and ``<metric>_summary.csv``.

    Files that do not exist are skipped (e.g. on a rank that does not save). Raises ``ValueError`` naming the file when
    its class columns do not match ``class_labels`` in number.
    """
    names = {f"class{i}": str(label) for i, label in enumerate(class_labels)}
    raw = os.path.join(save_dir, f"{metric}_raw.csv")
    if os.path.isfile(raw):
        with open(raw, encoding="utf-8") as f:
            header, _, body = f.read().partition("\n")
        columns = header.split(delimiter)
        classes = [c for c in columns if c.startswith("class") and c[5:].isdigit()]
        if len(classes) != len(names):
            raise ValueError(
                f"{raw}: {len(classes)} class column(s) {classes} but {len(names)} class_labels {list(class_labels)}"
            )
        atomic_write_text(raw, delimiter.join(names.get(c, c) for c in columns) + "\n" + body)
    summary = os.path.join(save_dir, f"{metric}_summary.csv")
    if os.path.isfile(summary):
        with open(summary, encoding="utf-8") as f:
            lines = f.read().split("\n")
        out = [lines[0]]
        for line in lines[1:]:
            first, sep, rest = line.partition(delimiter)
            out.append(names.get(first, first) + sep + rest)
        atomic_write_text(summary, "\n".join(out))


class LabeledMetricsSaver(MetricsSaver):
    """:class:`monai.handlers.MetricsSaver` with ``class_labels`` naming the class columns of its reports.

    Args:
        save_dir: folder of the reports (as ``MetricsSaver``).
        class_labels: one name per class column of the metric details, in channel order after the background is
            excluded (``include_background=False``), e.g. ``["lesion"]``.
        kwargs: the other ``MetricsSaver`` arguments (``metrics``, ``metric_details``, ``summary_ops``, ...).
    """

    def __init__(self, save_dir: str, class_labels: Sequence[str], **kwargs: Any) -> None:
        labels = [str(c) for c in class_labels]
        if not labels or len(set(labels)) != len(labels) or "mean" in labels or any(not c.strip() for c in labels):
            raise ValueError(
                f"LabeledMetricsSaver: class_labels must be distinct, non-empty names, not 'mean'; got {labels}"
            )
        super().__init__(save_dir=save_dir, **kwargs)
        self.class_labels = labels

    def __call__(self, engine: Engine) -> None:
        super().__call__(engine)
        if self.metric_details is None:
            return
        details = engine.state.metric_details.keys() if "*" in self.metric_details else self.metric_details
        for metric in details:
            relabel_metric_reports(self.save_dir, metric, self.class_labels, delimiter=self.deli)

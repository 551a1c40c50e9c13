"""LabeledMetricsSaver (#17): MONAI's metric reports with the class column named after the bundle's label."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine

from usseg_monai.handlers import LabeledMetricsSaver, relabel_metric_reports


def _engine(details: dict[str, torch.Tensor], files: list[str]) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {k: float(torch.nanmean(v)) for k, v in details.items()}
    engine.state.metric_details = details
    engine.state.batch = [{"filename_or_obj": f} for f in files]
    return engine


def test_reports_name_the_lesion_column_values_unchanged(tmp_path) -> None:
    saver = LabeledMetricsSaver(
        str(tmp_path), class_labels=["lesion"], metrics="*", metric_details="*", summary_ops=["mean", "notnans"]
    )
    engine = _engine({"dice": torch.tensor([[0.5], [float("nan")]])}, ["a.png", "b.png"])
    saver._started(engine)
    saver._get_filenames(engine)
    saver(engine)
    raw = (tmp_path / "dice_raw.csv").read_text().splitlines()
    assert raw[0] == "filename,lesion,mean"
    assert raw[1] == "a.png,0.5,0.5" and raw[2] == "b.png,nan,nan"  # MONAI's values, as written by MetricsSaver
    summary = [r.split(",") for r in (tmp_path / "dice_summary.csv").read_text().splitlines()]
    assert [r[0] for r in summary] == ["class", "lesion", "mean"]
    assert float(summary[1][1]) == pytest.approx(0.5) and float(summary[1][2]) == 1  # mean over the non-NaN case
    assert not math.isnan(float(summary[2][1]))
    assert not list(tmp_path.glob("*.tmp*"))  # rewritten atomically, nothing left behind


def test_relabel_two_classes_and_mismatch_named(tmp_path) -> None:
    (tmp_path / "iou_raw.csv").write_text("filename,class0,class1,mean\nx.png,0.1,0.3,0.2\n")
    relabel_metric_reports(str(tmp_path), "iou", ["thyroid", "nodule"])
    assert (tmp_path / "iou_raw.csv").read_text() == "filename,thyroid,nodule,mean\nx.png,0.1,0.3,0.2\n"
    (tmp_path / "hd_raw.csv").write_text("filename,class0,class1,mean\nx.png,1,2,1.5\n")
    with pytest.raises(ValueError, match=r"hd_raw\.csv: 2 class column\(s\) \['class0', 'class1'\] but 1 class_labels"):
        relabel_metric_reports(str(tmp_path), "hd", ["lesion"])
    relabel_metric_reports(str(tmp_path), "absent", ["lesion"])  # a rank that saved nothing: no file, no error


@pytest.mark.parametrize("labels", [[], ["lesion", "lesion"], ["mean"], [" "]])
def test_bad_class_labels_refused(tmp_path, labels: list[str]) -> None:
    with pytest.raises(ValueError, match="LabeledMetricsSaver: class_labels must be distinct, non-empty names"):
        LabeledMetricsSaver(str(tmp_path), class_labels=labels)

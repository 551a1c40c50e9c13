"""Metrics: bootstrap CIs, per-case metrics (hand-computed values), caliper measurement error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from usseg_monai.metrics import (
    SEGMENTATION_METRICS,
    bootstrap_ci,
    case_measurement_error,
    case_metrics,
    measurement_error_summary,
    summarize_cases,
)


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_mean_and_interval_bracket():
    rng = np.random.default_rng(1)
    vals = rng.normal(0.7, 0.1, size=200)
    r = bootstrap_ci(vals, n_resamples=2000, seed=3)
    assert r["mean"] == pytest.approx(vals.mean())
    assert r["ci_low"] < r["mean"] < r["ci_high"]
    # percentile bootstrap of a mean ~ normal theory: half width 1.96 * sd / sqrt(n)
    half = 1.96 * vals.std(ddof=1) / math.sqrt(vals.size)
    assert (r["ci_high"] - r["ci_low"]) / 2 == pytest.approx(half, rel=0.15)
    assert r["n"] == 200 and r["n_excluded"] == 0 and r["n_resamples"] == 2000 and r["confidence"] == 0.95


def test_bootstrap_is_seeded_and_seed_matters():
    vals = np.random.default_rng(0).uniform(size=15)
    a, b, c = bootstrap_ci(vals, 500, seed=7), bootstrap_ci(vals, 500, seed=7), bootstrap_ci(vals, 500, seed=8)
    assert a == b
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])


def test_bootstrap_hand_computed_two_values():
    # resamples of [0, 1] have means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% / 97.5% quantiles are 0 and 1
    r = bootstrap_ci([0.0, 1.0], n_resamples=4000, seed=0)
    assert r["mean"] == 0.5 and r["ci_low"] == 0.0 and r["ci_high"] == 1.0
    # 50% interval: quantiles 25% and 75% of that distribution are 0.5 (with 4000 draws, 0/0.5 and 0.5/1 boundaries)
    r50 = bootstrap_ci([0.0, 1.0], n_resamples=4000, seed=0, confidence=0.4)
    assert r50["ci_low"] == 0.5 and r50["ci_high"] == 0.5


def test_bootstrap_constant_single_and_nan():
    assert bootstrap_ci([0.3] * 5, 100)["ci_low"] == pytest.approx(0.3)
    one = bootstrap_ci([2.0], 100)
    assert one["mean"] == one["ci_low"] == one["ci_high"] == 2.0
    r = bootstrap_ci([1.0, np.nan, 3.0, np.inf], 100)
    assert r["mean"] == 2.0 and r["n"] == 2 and r["n_excluded"] == 2
    empty = bootstrap_ci([np.nan], 100)
    assert empty["mean"] is None and empty["ci_low"] is None and empty["n_excluded"] == 1


def test_bootstrap_custom_statistic_median():
    vals = [1.0, 2.0, 100.0]
    r = bootstrap_ci(vals, 200, statistic=lambda a: np.median(a, axis=-1))
    assert r["mean"] == 2.0  # the statistic on all values
    assert r["ci_low"] >= 1.0 and r["ci_high"] <= 100.0


@pytest.mark.parametrize(
    "kwargs, msg",
    [({"values": [[1.0, 2.0]]}, "one-dimensional"), ({"values": [1.0], "n_resamples": 0}, "n_resamples"), ({"values": [1.0], "confidence": 1.0}, "confidence")],
)
def test_bootstrap_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        bootstrap_ci(**kwargs)


def test_summarize_cases_picks_numeric_keys():
    cases = [{"dice": 0.5, "image": "a.png", "ok": True}, {"dice": 1.0, "image": "b.png", "ok": False}]
    s = summarize_cases(cases, n_resamples=50)
    assert set(s) == {"dice", "ok"}
    assert s["dice"]["mean"] == 0.75 and s["ok"]["mean"] == 0.5
    assert summarize_cases([]) == {}
    assert summarize_cases([{"hd": None}, {"hd": 4.0}], keys=["hd"], n_resamples=10)["hd"]["n_excluded"] == 1


# ---------------------------------------------------------------- per-case metrics
def _squares():
    pred = np.zeros((10, 10), dtype=np.uint8)
    pred[2:6, 2:6] = 1  # 16 px
    label = np.zeros((10, 10), dtype=np.uint8)
    label[2:6, 2:8] = 255  # 24 px, contains pred
    return pred, label


def test_case_metrics_hand_computed():
    pred, label = _squares()
    m = case_metrics(pred, label, spacing=(0.5, 2.0))
    assert set(m) == set(SEGMENTATION_METRICS)
    tp, fp, fn, tn = 16, 0, 8, 76
    assert m["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 0.8
    assert m["iou"] == pytest.approx(tp / (tp + fp + fn))  # 2/3
    assert m["recall"] == pytest.approx(tp / (tp + fn))
    assert m["precision"] == pytest.approx(1.0)
    assert m["specificity"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx((tp + tn) / 100)
    # label edge pixels at y = 6, 7 lie 1 and 2 px (2 and 4 mm along y) beyond pred's edge at y = 5
    assert m["hd95_mm"] == pytest.approx(4.0)
    # pixel units: the same distance is 2 px
    assert case_metrics(pred, label)["hd95_mm"] == pytest.approx(2.0)


def test_case_metrics_asd_hand_computed():
    # two 1-pixel-wide vertical bars 3 px apart along x, spacing 0.5 mm: every surface point is 1.5 mm away
    a = np.zeros((8, 6), dtype=bool)
    a[2, 1:5] = True
    b = np.zeros((8, 6), dtype=bool)
    b[5, 1:5] = True
    m = case_metrics(a, b, spacing=[0.5, 0.5])
    assert m["asd_mm"] == pytest.approx(1.5)
    assert m["hd95_mm"] == pytest.approx(1.5)
    assert m["dice"] == 0.0


def test_case_metrics_identical_3d_and_channel_forms():
    lab = np.zeros((6, 6, 4), dtype=np.uint8)
    lab[1:4, 2:5, 1:3] = 1
    for pred in (lab, lab[None], torch.as_tensor(np.stack([1 - lab, lab]).astype(np.float32))):
        m = case_metrics(pred, lab, spacing=[1.0, 1.0, 2.5])
        assert m["dice"] == pytest.approx(1.0) and m["iou"] == pytest.approx(1.0)
        assert m["hd95_mm"] == pytest.approx(0.0) and m["asd_mm"] == pytest.approx(0.0)


def test_case_metrics_empty_conventions():
    pred, label = _squares()
    missed = case_metrics(np.zeros_like(pred), label)
    assert missed["dice"] == 0.0 and math.isnan(missed["hd95_mm"]) and math.isnan(missed["precision"])
    assert missed["specificity"] == 1.0
    both = case_metrics(np.zeros_like(pred), np.zeros_like(label))
    assert both["dice"] == 1.0 and both["accuracy"] == 1.0 and math.isnan(both["asd_mm"])


def test_case_metrics_errors():
    pred, label = _squares()
    with pytest.raises(ValueError, match="differs from label shape"):
        case_metrics(pred[:5], label)
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(pred, label, spacing=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="channel-first"):
        case_metrics(np.zeros((3, 4, 4, 4)), np.zeros((3, 4, 4, 4)))


# ---------------------------------------------------------------- measurement error
def _rect(shape, x0, x1, y0, y1):
    m = np.zeros(shape, dtype=bool)
    m[x0:x1, y0:y1] = True
    return m


def test_measurement_error_hand_computed():
    # axis-aligned rectangles, long axis along x: truth 11 x 3 px, pred 9 x 3 px (1 mm pixels)
    truth = _rect((30, 20), 5, 16, 8, 11)
    pred = _rect((30, 20), 6, 15, 8, 11)
    e = case_measurement_error(pred, truth, spacing=[1.0, 1.0])
    assert e["status"] == "ok"
    # long axis = max Feret between pixel centres: sqrt(dx^2 + dy^2) of the opposite corners
    assert e["truth"]["long_axis_mm"] == pytest.approx(math.hypot(10, 2))
    assert e["pred"]["long_axis_mm"] == pytest.approx(math.hypot(8, 2))
    assert e["long_axis_err_mm"] == pytest.approx(math.hypot(8, 2) - math.hypot(10, 2))
    assert e["long_axis_abs_err_mm"] == pytest.approx(abs(e["long_axis_err_mm"]))
    assert e["aspect_ratio_abs_err"] == pytest.approx(abs(e["pred"]["aspect_ratio"] - e["truth"]["aspect_ratio"]))
    assert e["taller_than_wide_agree"] == 1.0  # both wider than tall


def test_measurement_error_taller_than_wide_disagreement_and_spacing():
    truth = _rect((20, 20), 8, 11, 2, 14)  # 3 wide, 12 deep: taller than wide
    pred = _rect((20, 20), 4, 16, 7, 10)  # 12 wide, 3 deep
    e = case_measurement_error(pred, truth)
    assert e["taller_than_wide_agree"] == 0.0
    # spacing scales the axis errors (mm) but not the aspect ratio for isotropic spacing
    e2 = case_measurement_error(pred, truth, spacing=[0.5, 0.5])
    assert e2["long_axis_abs_err_mm"] == pytest.approx(0.5 * e["long_axis_abs_err_mm"])
    assert e2["aspect_ratio_abs_err"] == pytest.approx(e["aspect_ratio_abs_err"])


def test_measurement_error_summary_counts_and_means():
    truth = _rect((30, 20), 5, 16, 8, 11)
    cases = [
        case_measurement_error(_rect((30, 20), 6, 15, 8, 11), truth),
        case_measurement_error(truth, truth),
        case_measurement_error(np.zeros((30, 20)), truth),
        case_measurement_error(truth, np.zeros((30, 20))),
        case_measurement_error(np.zeros((30, 20)), np.zeros((30, 20))),
    ]
    assert [c["status"] for c in cases] == ["ok", "ok", "missed", "no_truth", "both_empty"]
    s = measurement_error_summary(cases, n_resamples=200)
    assert s["n_measured"] == 2 and s["n_missed"] == 1 and s["n_no_truth"] == 1 and s["n_both_empty"] == 1
    expected = (math.hypot(10, 2) - math.hypot(8, 2)) / 2  # mean of |err| over the two measured cases
    assert s["long_axis_mae_mm"]["mean"] == pytest.approx(expected)
    assert s["long_axis_mae_mm"]["ci_low"] <= expected <= s["long_axis_mae_mm"]["ci_high"]
    assert s["taller_than_wide_agreement"]["mean"] == 1.0


def test_measurement_error_shape_mismatch():
    with pytest.raises(ValueError, match="differs"):
        case_measurement_error(np.zeros((4, 4)), np.zeros((4, 5)))

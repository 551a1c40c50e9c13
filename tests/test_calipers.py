"""Caliper geometry: exact cases, measurements, JSON form and bad input (usseg_monai.calipers)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from usseg_monai.calipers import (
    CaliperAnnotation,
    CaliperFallbackWarning,
    CaliperLesion,
    calipers_from_mask,
    dice,
    jitter_calipers,
    load_calipers,
    measure_calipers,
    measure_mask,
    radical_ellipsoid,
    rasterize_calipers,
    save_calipers,
)
from usseg_monai.data.io import DatasetError


def ellipse_mask(shape, centre, semi, angle_deg=0.0, spacing=(1.0, 1.0)):
    """Boolean (x, y) mask of an ellipse given in mm (centre in voxels), voxel centres inside."""
    sp = np.asarray(spacing, dtype=float)
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    dx, dy = (x - centre[0]) * sp[0], (y - centre[1]) * sp[1]
    t = np.radians(angle_deg)
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    return (u / semi[0]) ** 2 + (v / semi[1]) ** 2 <= 1.0


def ellipsoid_mask(shape, centre, semi, spacing=(1.0, 1.0, 1.0)):
    g = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum((((g[k] - centre[k]) * spacing[k]) / semi[k]) ** 2 for k in range(3)) <= 1.0


def _match_endpoints(seg, expected):
    """Largest distance between a segment's endpoints and the expected pair (either order)."""
    a = np.max(np.linalg.norm(seg - expected, axis=1))
    b = np.max(np.linalg.norm(seg[::-1] - expected, axis=1))
    return min(a, b)


def test_axis_aligned_ellipse_calipers_are_its_axes():
    m = ellipse_mask((160, 150), (70, 75), (40, 20))
    ann = calipers_from_mask(m, (1.0, 1.0))
    assert len(ann.lesions) == 1 and ann.image_shape == (160, 150)
    seg = ann.lesions[0].segments
    assert _match_endpoints(seg[0], np.array([[30, 75], [110, 75]])) <= 1.0
    assert _match_endpoints(seg[1], np.array([[70, 55], [70, 95]])) <= 1.0
    lengths = ann.lesions[0].lengths_mm(ann.spacing)
    assert lengths[0] == pytest.approx(80, abs=1.0) and lengths[1] == pytest.approx(40, abs=1.0)
    assert ann.lesions[0].angles_deg(ann.spacing)[0, 1] == pytest.approx(90.0, abs=1e-6)


@pytest.mark.parametrize("angle", [30.0, -55.0, 90.0])
def test_rotated_ellipse_calipers_are_its_axes(angle):
    c, (a, b) = np.array([80.3, 70.6]), (45.0, 18.0)
    m = ellipse_mask((170, 150), c, (a, b), angle)
    ann = calipers_from_mask(m)
    t = np.radians(angle)
    u, v = np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])
    seg = ann.lesions[0].segments
    lengths = ann.lesions[0].lengths_mm(ann.spacing)
    assert abs(lengths[0] - 2 * a) <= 1.0 and abs(lengths[1] - 2 * b) <= 1.0
    # endpoints sit on voxel centres or line samples: within one voxel diagonal of the continuous ends;
    # the short axis may slide along the long axis where the width is flat within a voxel (<= ~2 px here)
    assert _match_endpoints(seg[0], np.stack([c - a * u, c + a * u])) <= 1.5
    assert _match_endpoints(seg[1], np.stack([c - b * v, c + b * v])) <= 2.5


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_radical_label_matches_the_ellipse_and_conservative_is_the_rhombus(angle):
    m = ellipse_mask((170, 150), (80.3, 70.6), (45.0, 25.0), angle)
    labels = rasterize_calipers(calipers_from_mask(m))
    assert dice(labels["radical_label"], m) >= 0.97
    ratio = labels["conservative_label"].sum() / m.sum()
    assert ratio == pytest.approx(2 / np.pi, abs=0.03)
    assert not np.any(labels["conservative_label"] & ~labels["radical_label"])
    assert not np.any(labels["caliper_axes"] & ~labels["conservative_label"])
    # the conservative label is the rhombus: inside |u|/a + |v|/b <= 1 (up to a pixel at the border)
    assert dice(labels["conservative_label"], _rhombus(m.shape, (80.3, 70.6), (45.0, 25.0), angle)) >= 0.93


def _rhombus(shape, c, semi, angle):
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    t = np.radians(angle)
    u = (x - c[0]) * np.cos(t) + (y - c[1]) * np.sin(t)
    v = -(x - c[0]) * np.sin(t) + (y - c[1]) * np.cos(t)
    return np.abs(u) / semi[0] + np.abs(v) / semi[1] <= 1.0


def test_off_centre_calipers_give_the_ellipse_through_all_endpoints():
    # long axis at y0 = 50 from x1 = 20 to x2 = 100; short axis at x0 = 40 from y1 = 35 to y2 = 75
    seg = np.array([[[20.0, 50.0], [100.0, 50.0]], [[40.0, 35.0], [40.0, 75.0]]])
    sp = np.array([0.5, 0.8])
    centre, frame, semi, exact = radical_ellipsoid(seg * sp)
    assert exact
    # closed form of methods.md: p = 40 px, q = 20 px, dx = -20 px, dy = -5 px (here in mm)
    p, q, dx, dy = 40 * 0.5, 20 * 0.8, -20 * 0.5, -5 * 0.8
    det = p**2 * q**2 - dx**2 * dy**2
    assert 1 / semi[0] ** 2 == pytest.approx((q**2 - dy**2) / det)
    assert 1 / semi[1] ** 2 == pytest.approx((p**2 - dx**2) / det)
    pts = (seg * sp).reshape(-1, 2)
    t = (pts - centre) @ frame.T
    np.testing.assert_allclose(((t / semi) ** 2).sum(axis=1), 1.0, rtol=1e-9)
    ann = CaliperAnnotation(tuple(sp), (120, 90), [CaliperLesion(seg)]).validate()
    labels = rasterize_calipers(ann)
    for e in np.rint(pts / sp).astype(int):
        assert labels["radical_label"][tuple(e)] and labels["conservative_label"][tuple(e)]
    assert not np.any(labels["conservative_label"] & ~labels["radical_label"])


def test_calipers_crossing_at_an_end_use_the_fallback_with_a_warning():
    seg = np.array([[[20.0, 50.0], [100.0, 50.0]], [[100.0, 35.0], [100.0, 65.0]]])  # T at the long axis' end
    ann = CaliperAnnotation((1.0, 1.0), (128, 100), [CaliperLesion(seg)])
    with pytest.warns(CaliperFallbackWarning, match="intersection"):
        labels = rasterize_calipers(ann)
    centre, _, semi, exact = radical_ellipsoid(seg, warn=False)
    assert not exact
    np.testing.assert_allclose(semi, [40.0, 15.0])
    np.testing.assert_allclose(centre, [100.0, 50.0])
    assert not np.any(labels["conservative_label"] & ~labels["radical_label"])
    for e in seg.reshape(-1, 2).astype(int):
        assert labels["radical_label"][tuple(e)]


def test_anisotropic_spacing_round_in_mm_is_measured_round():
    sp = (0.25, 0.5)  # a disc of 10 mm radius is 80 x 40 pixels
    m = ellipse_mask((120, 70), (60, 35), (10.0, 10.0), spacing=sp)
    (meas,) = measure_mask(m, sp)
    assert meas["long_axis_mm"] == pytest.approx(20.0, abs=0.5)
    assert meas["short_axis_mm"] == pytest.approx(20.0, abs=1.0)
    assert meas["aspect_ratio"] == pytest.approx(1.0, abs=0.05)
    assert meas["depth_width_ratio"] == pytest.approx(1.0, abs=0.03)
    assert meas["area_mm2"] == pytest.approx(np.pi * 100, rel=0.02)
    # in pixel units the same mask is twice as wide as deep
    (px,) = measure_mask(m)
    assert px["aspect_ratio"] == pytest.approx(2.0, abs=0.06)
    assert dice(rasterize_calipers(calipers_from_mask(m, sp))["radical_label"], m) >= 0.97


def test_measure_fields_and_taller_than_wide():
    tall = ellipse_mask((100, 120), (50, 60), (15.0, 40.0))  # deeper (axis 1) than wide
    (m,) = measure_mask(tall, (0.1, 0.1))
    assert m["taller_than_wide"] is True
    assert m["depth_mm"] == pytest.approx(8.1, abs=1e-6) and m["width_mm"] == pytest.approx(3.1, abs=1e-6)
    assert m["depth_width_ratio"] == pytest.approx(8.1 / 3.1)
    assert m["long_axis_mm"] == pytest.approx(8.0, abs=0.1) and m["short_axis_mm"] == pytest.approx(3.0, abs=0.1)
    assert m["aspect_ratio"] == pytest.approx(m["long_axis_mm"] / m["short_axis_mm"])
    np.testing.assert_allclose(m["centroid"], [50, 60], atol=1e-6)
    json.dumps(m)  # JSON-serialisable as inference writes it
    wide = ellipse_mask((100, 120), (50, 60), (40.0, 15.0))
    assert measure_mask(wide)[0]["taller_than_wide"] is False
    assert measure_mask(np.zeros((10, 10))) == []


def test_several_lesions_sorted_by_size_and_labels_are_unions():
    m = ellipse_mask((200, 120), (50, 60), (30.0, 20.0)) | ellipse_mask((200, 120), (150, 60), (15.0, 10.0), 40)
    meas = measure_mask(m)
    assert [x["lesion"] for x in meas] == [0, 1]
    assert meas[0]["voxels"] > meas[1]["voxels"]
    assert meas[0]["long_axis_mm"] == pytest.approx(60, abs=1) and meas[1]["long_axis_mm"] == pytest.approx(30, abs=1)
    ann = calipers_from_mask(m)
    assert len(ann) == 2
    both = rasterize_calipers(ann)
    first = rasterize_calipers(CaliperAnnotation(ann.spacing, ann.image_shape, ann.lesions[:1]))
    second = rasterize_calipers(CaliperAnnotation(ann.spacing, ann.image_shape, ann.lesions[1:]))
    for k in both:
        np.testing.assert_array_equal(both[k], first[k] | second[k])
    calip = measure_calipers(ann)
    assert calip[0]["long_axis_mm"] == pytest.approx(meas[0]["long_axis_mm"])
    assert calip[1]["short_axis_mm"] == pytest.approx(meas[1]["short_axis_mm"])


def test_3d_ellipsoid_anisotropic():
    sp = (0.5, 0.5, 2.0)
    m = ellipsoid_mask((90, 70, 20), (45, 35, 10), (20.0, 12.0, 8.0), sp)
    ann = calipers_from_mask(m, sp)
    les = ann.lesions[0]
    lengths = les.lengths_mm(sp)
    np.testing.assert_allclose(lengths, [40.0, 24.0, 16.0], atol=2.0)  # within a voxel (2 mm along z)
    ang = les.angles_deg(sp)
    assert ang[0, 1] == pytest.approx(90, abs=1e-6) and ang[0, 2] == pytest.approx(90, abs=1e-6)
    assert ang[1, 2] == pytest.approx(90, abs=1e-6)
    labels = rasterize_calipers(ann)
    assert dice(labels["radical_label"], m) >= 0.93
    assert labels["conservative_label"].sum() / m.sum() == pytest.approx(1 / np.pi, abs=0.05)  # octahedron
    assert not np.any(labels["conservative_label"] & ~labels["radical_label"])
    (meas,) = measure_mask(m, sp)
    assert meas["third_axis_mm"] == pytest.approx(lengths[2])
    assert meas["elevation_mm"] == pytest.approx(18.0) and meas["width_mm"] == pytest.approx(40.5)
    assert "volume_mm3" in meas and "area_mm2" not in meas


def test_tiny_lesions_give_valid_calipers():
    m = np.zeros((10, 10), bool)
    m[3, 4] = True
    m[7, 1:9] = True  # a one-pixel-thin line
    ann = calipers_from_mask(m, (0.5, 1.0)).validate()
    lengths = [les.lengths_mm(ann.spacing) for les in ann.lesions]
    assert lengths[0][0] == pytest.approx(7.0) and lengths[0][1] == pytest.approx(0.5)  # thin: one voxel wide
    np.testing.assert_allclose(lengths[1], [0.5, 0.5])  # single voxel: min spacing each way
    labels = rasterize_calipers(ann)
    assert labels["radical_label"][3, 4] and labels["radical_label"][7, 1:9].all()


def test_jitter_is_seeded_valid_and_moves_endpoints():
    m = ellipse_mask((100, 80), (50, 40), (30.0, 15.0), 20)
    ann = calipers_from_mask(m, (0.2, 0.3))
    j1 = jitter_calipers(ann, 0.5, seed=3)
    j2 = jitter_calipers(ann, 0.5, seed=3)
    assert j1 == j2 and j1 != ann
    j1.validate(angle_tolerance=1e-6)
    shift = np.abs((j1.lesions[0].segments - ann.lesions[0].segments) * ann.spacing).max()
    assert 0.05 < shift < 5.0
    assert calipers_from_mask(m, (0.2, 0.3), jitter_mm=0.5, seed=3) == j1
    # near the border the jittered calipers are shrunk to stay inside
    edge = np.zeros((20, 20), bool)
    edge[0:20, 0:3] = True
    jitter_calipers(calipers_from_mask(edge), 3.0, seed=0).validate(angle_tolerance=1e-6)


def test_json_round_trip(tmp_path):
    ann = calipers_from_mask(ellipse_mask((60, 50), (30, 25), (20, 8), 10), (0.1, 0.2))
    ann.lesions[0].name = "nodule 1"
    ann.meta["source"] = "test"
    path = save_calipers(tmp_path / "a" / "cal.json", ann)
    data = json.loads(path.read_text())
    assert data["format"] == "usseg-calipers" and data["version"] == 1
    assert data["spacing"] == [0.1, 0.2] and data["image_shape"] == [60, 50]
    assert np.asarray(data["lesions"][0]["segments"]).shape == (2, 2, 2)
    back = load_calipers(path)
    assert back == ann
    assert sorted(p.name for p in path.parent.iterdir()) == ["cal.json"]  # atomic write leaves no temp file


def _ann(seg, shape=(100, 100), spacing=(1.0, 1.0)):
    return CaliperAnnotation(spacing, shape, [CaliperLesion(np.asarray(seg, dtype=float))])


GOOD = [[[10, 50], [90, 50]], [[50, 30], [50, 70]]]


@pytest.mark.parametrize(
    "seg, kwargs, match",
    [
        ([[[10, 50], [10, 50]], [[50, 30], [50, 70]]], {}, r"lesion 0 segment 0 \(long axis\): zero length"),
        ([[[10, 50], [90, 50]], [[50, np.nan], [50, 70]]], {},
         r"lesion 0 segment 1 \(short axis\): endpoints .*not finite"),
        ([[[10, 50], [90, 50]], [[50, 30], [57.3, 70]]], {}, r"segments 0 and 1 are at 79\.\d+ degrees"),
        ([[[10, 50], [120, 50]], [[50, 30], [50, 70]]], {},
         r"segment 0 \(long axis\): endpoint \[120\.0, 50\.0\] lies outside"),
        (GOOD, {"shape": (100, 100, 20), "spacing": (1, 1, 1)}, r"a 3D image needs 3 segments of 3D endpoints, got 2"),
        (GOOD, {"spacing": (1.0, -1.0)}, r"spacing \[1\.0, -1\.0\] must be 2 positive"),
    ],
)
def test_bad_annotations_name_the_field(seg, kwargs, match):
    with pytest.raises(DatasetError, match=match):
        _ann(seg, **kwargs).validate()


def test_angle_tolerance_is_configurable_and_in_mm():
    seg = [[[10, 50], [90, 50]], [[50, 30], [57.3, 70]]]  # ~10.3 degrees off
    _ann(seg).validate(angle_tolerance=11)
    # perpendicular in pixels but not in mm under anisotropic spacing
    diag = [[[20, 20], [60, 60]], [[50, 30], [30, 50]]]
    _ann(diag).validate()
    with pytest.raises(DatasetError, match="degrees"):
        _ann(diag, spacing=(1.0, 2.0)).validate()


def test_empty_mask():
    with pytest.raises(DatasetError, match=r"label: empty mask .*allow_empty=True"):
        calipers_from_mask(np.zeros((20, 30)), where="label")
    ann = calipers_from_mask(np.zeros((20, 30)), allow_empty=True)
    assert ann.lesions == [] and ann.image_shape == (20, 30)
    labels = rasterize_calipers(ann)
    assert all(v.shape == (20, 30) and not v.any() for v in labels.values())
    with pytest.raises(DatasetError, match="2D or 3D"):
        calipers_from_mask(np.zeros(10))
    with pytest.raises(DatasetError, match="spacing"):
        calipers_from_mask(np.ones((4, 4)), (1.0,))


_OK = {"format": "usseg-calipers", "version": 1, "spacing": [0.1, 0.1], "image_shape": [128, 128], "lesions": []}


@pytest.mark.parametrize(
    "data, match",
    [
        ([], "must be a JSON object"),
        ({"format": "other", "version": 1}, "'format' must be 'usseg-calipers'"),
        ({"format": "usseg-calipers", "version": 7}, "unsupported 'version' 7"),
        ({"format": "usseg-calipers", "version": 1, "spacing": [1, 1], "lesions": []}, "missing field 'image_shape'"),
        ({"format": "usseg-calipers", "version": 1, "spacing": [1, 1], "image_shape": [9, 9], "lesions": [{}]},
         "lesion 0 has no 'segments'"),
        # numbers only (#19): strings and booleans are refused, never converted
        (dict(_OK, lesions=[{"segments": [[["60", 10], [80, 10]], [[70, 5], [70, 15]]]}]),
         r"lesion 0 'segments'\[0\]\[0\]\[0\] must be a number, got \"60\" \(str\)"),
        (dict(_OK, lesions=[{"segments": [[[60, True], [80, 10]], [[70, 5], [70, 15]]]}]),
         r"lesion 0 'segments'\[0\]\[0\]\[1\] must be a number, got true \(bool\)"),
        (dict(_OK, lesions=[{"segments": [[60, 10, 80, 10]]}]), r"lesion 0 'segments'\[0\]\[0\] must be a list"),
        (dict(_OK, spacing=["0.1", 0.1]), r"'spacing'\[0\] must be a number, got \"0.1\""),
        (dict(_OK, spacing=0.1), r"'spacing' must be a list, got 0.1"),
        (dict(_OK, image_shape=[128.5, 128]), r"'image_shape'\[0\] must be an integer, got 128.5"),
        (dict(_OK, image_shape=[128, False]), r"'image_shape'\[1\] must be an integer, got false \(bool\)"),
    ],
)
def test_bad_json(tmp_path, data, match):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=match) as e:
        load_calipers(p)
    assert str(p) in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(DatasetError, match="caliper file not found"):
        load_calipers(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_calipers(tmp_path / "x.json")


def test_rasterise_checks_dimensions():
    ann = _ann(GOOD)
    with pytest.raises(ValueError, match="do not fit a 3D grid"):
        rasterize_calipers(ann, shape=(100, 100, 5), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="does not match"):
        rasterize_calipers(ann, spacing=(1, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = rasterize_calipers(ann)
    assert out["caliper_axes"].sum() == 81 + 41 - 1  # two one-pixel lines crossing at one pixel

"""Inference outputs: overlay PNG and measurements CSV on synthetic ellipse predictions with known axes."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from usseg_monai.data.io import save_png, save_volume
from usseg_monai.transforms.outputs import (
    CONTOUR_COLOR,
    LONG_AXIS_COLOR,
    MEASUREMENT_COLUMNS,
    SHORT_AXIS_COLOR,
    MeasurementsWriter,
    SaveMeasurementsd,
    SaveOverlay,
    SaveOverlayd,
    image_stem,
    largest_lesion_slice,
    overlay_image,
)

NX, NY = 120, 80  # (x, y): 120 px wide, 80 px deep
CX, CY, AX, AY = 60, 40, 30, 15  # ellipse centre and semi-axes (px), long axis along x


def _ellipse(shape=(NX, NY), c=(CX, CY), a=(AX, AY)) -> np.ndarray:
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return ((x - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2 <= 1.0


def _image(shape=(NX, NY)) -> np.ndarray:
    # a horizontal gradient plus a bright marker at x=5, y=70: tells the PNG's orientation
    img = np.tile(np.linspace(20, 120, shape[0])[:, None], (1, shape[1]))
    img[3:8, 68:73] = 250
    return img.astype(np.uint8)


def _data(tmp_path: Path, spacing=(0.2, 0.1), with_spacing_key=True) -> dict:
    fname = tmp_path / "src" / "case_7.png"
    fname.parent.mkdir(parents=True, exist_ok=True)
    save_png(fname, _image())
    d = {
        "image": MetaTensor(torch.as_tensor(_image()[None].astype(np.float32)), meta={"filename_or_obj": str(fname)}),
        "pred": MetaTensor(torch.as_tensor(_ellipse().astype(np.uint8))),
    }
    if with_spacing_key:
        d["spacing"] = list(spacing)
    return d


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_measurements_csv_ellipse_within_a_pixel(tmp_path):
    sx, sy = 0.2, 0.1
    out = tmp_path / "out"
    d = SaveMeasurementsd("pred", output_dir=out)(_data(tmp_path, (sx, sy)))
    rows = _read_csv(out / "measurements.csv")
    assert list(rows[0]) == list(MEASUREMENT_COLUMNS)
    assert len(rows) == 1
    r = rows[0]
    assert r["image"] == "case_7.png" and r["lesion_index"] == "0" and r["lesion_found"] == "True"
    long_true, short_true = 2 * AX * sx, 2 * AY * sy  # 12 mm along x, 3 mm along y
    assert abs(float(r["long_axis_mm"]) - long_true) <= max(sx, sy)
    assert abs(float(r["short_axis_mm"]) - short_true) <= max(sx, sy)
    assert abs(float(r["width_mm"]) - long_true) <= 2 * sx  # extent covers whole pixels
    assert abs(float(r["depth_mm"]) - short_true) <= 2 * sy
    assert float(r["aspect_ratio"]) == pytest.approx(float(r["long_axis_mm"]) / float(r["short_axis_mm"]), rel=1e-3)
    assert r["taller_than_wide"] == "False"
    assert float(r["area_mm2"]) == pytest.approx(math.pi * AX * AY * sx * sy, rel=0.03)
    assert r["volume_mm3"] == "" and r["spacing_mm"] == "0.2x0.1"
    # measurements are handed on for the overlay
    assert d["measurements"][0]["calipers"]


def test_measurements_spacing_from_affine_and_pixel_units(tmp_path):
    d = _data(tmp_path, with_spacing_key=False)
    d["pred"].affine = torch.diag(torch.tensor([0.5, 0.25, 1.0, 1.0], dtype=torch.float64))
    SaveMeasurementsd("pred", output_dir=tmp_path / "a")(d)
    r = _read_csv(tmp_path / "a" / "measurements.csv")[0]
    assert abs(float(r["long_axis_mm"]) - 2 * AX * 0.5) <= 0.5 and r["spacing_mm"] == "0.5x0.25"
    # plain arrays: pixel units, said so
    d2 = {"image": np.asarray(_image()[None], dtype=np.float32), "pred": _ellipse(), "image_meta_dict": {"filename_or_obj": "x.png"}}
    SaveMeasurementsd("pred", output_dir=tmp_path / "b")(d2)
    r2 = _read_csv(tmp_path / "b" / "measurements.csv")[0]
    assert abs(float(r2["long_axis_mm"]) - 2 * AX) <= 1.0 and r2["spacing_mm"] == "none (pixel units)"
    assert r2["unit"] == "px" and r["unit"] == "mm"
    # a PNG's identity affine (no 'spacing' in the datalist) is no spacing either: pixels, said once in the log
    d3 = _data(tmp_path, with_spacing_key=False)
    d3["pred"].affine = torch.eye(4, dtype=torch.float64)
    d3["image"].affine = torch.eye(4, dtype=torch.float64)
    SaveMeasurementsd("pred", output_dir=tmp_path / "c")(d3)
    r3 = _read_csv(tmp_path / "c" / "measurements.csv")[0]
    assert r3["unit"] == "px" and r3["spacing_mm"] == "none (pixel units)"
    # a volume's identity affine is a real 1 mm spacing
    d4 = _data(tmp_path, with_spacing_key=False)
    d4["pred"].affine = torch.eye(4, dtype=torch.float64)
    d4["pred"].meta["filename_or_obj"] = "/d/vol.nii.gz"
    d4.pop("image", None)
    SaveMeasurementsd("pred", output_dir=tmp_path / "e")(d4)
    r4 = _read_csv(tmp_path / "e" / "measurements.csv")[0]
    assert r4["unit"] == "mm" and r4["spacing_mm"] == "1x1"


def test_measurements_many_images_one_csv_and_no_lesion_row(tmp_path):
    t = SaveMeasurementsd("pred", output_dir=tmp_path, filename="m.csv")
    two = _ellipse() | _ellipse(c=(12, 10), a=(5, 5))
    for i, mask in enumerate([_ellipse(), two, np.zeros((NX, NY), bool)]):
        t({"pred": MetaTensor(torch.as_tensor(mask[None].astype(np.uint8)), meta={"filename_or_obj": f"/d/img_{i}.png"})})
        rows = _read_csv(tmp_path / "m.csv")  # complete after every image
        assert len({r["image"] for r in rows}) == i + 1
    rows = _read_csv(tmp_path / "m.csv")
    assert [(r["image"], r["lesion_index"], r["lesion_found"]) for r in rows] == [
        ("img_0.png", "0", "True"),
        ("img_1.png", "0", "True"),
        ("img_1.png", "1", "True"),
        ("img_2.png", "", "False"),
    ]
    assert float(rows[1]["area_mm2"]) > float(rows[2]["area_mm2"])  # largest lesion first
    assert rows[3]["long_axis_mm"] == ""
    # the same image again replaces its rows
    t({"pred": MetaTensor(torch.as_tensor(_ellipse()[None].astype(np.uint8)), meta={"filename_or_obj": "/d/img_1.png"})})
    assert len(_read_csv(tmp_path / "m.csv")) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_measurements_3d_volume_column(tmp_path):
    x, y, z = np.meshgrid(np.arange(40), np.arange(30), np.arange(20), indexing="ij")
    ball = ((x - 20) / 12.0) ** 2 + ((y - 15) / 6.0) ** 2 + ((z - 10) / 4.0) ** 2 <= 1
    w = MeasurementsWriter(tmp_path / "m.csv")
    from usseg_monai.calipers.measure import measure_mask

    w.add("/v/vol.nii.gz", measure_mask(ball, [1.0, 1.0, 2.0]), [1.0, 1.0, 2.0])
    r = _read_csv(tmp_path / "m.csv")[0]
    assert r["area_mm2"] == "" and float(r["volume_mm3"]) == pytest.approx(ball.sum() * 2.0, rel=1e-6)
    assert abs(float(r["long_axis_mm"]) - 24) <= 2.0 and float(r["third_axis_mm"]) > 0


def _colour_at(png: np.ndarray, x: float, y: float) -> tuple[int, ...]:
    return tuple(int(v) for v in png[int(round(y)), int(round(x))])


def test_overlay_png_size_orientation_contour_and_calipers(tmp_path):
    out = tmp_path / "ov"
    d = SaveOverlayd("pred", output_dir=out)(_data(tmp_path))
    path = Path(d["overlay_path"])
    assert path == out / "case_7_overlay.png" and path.is_file()
    assert not [p for p in out.iterdir() if p.name != path.name]  # atomic: no temporary files left
    png = np.asarray(Image.open(path).convert("RGB"))
    src = np.asarray(Image.open(tmp_path / "src" / "case_7.png"))
    assert png.shape[:2] == src.shape == (NY, NX)  # the input's size, rows = depth
    # the grayscale input is unchanged away from the drawing (marker at x=5, y=70 is where it is in the file)
    assert _colour_at(png, 5, 70) == (250, 250, 250)
    assert _colour_at(png, 110, 5) == (src[5, 110],) * 3
    # the contour colour lies on the ellipse boundary: the extreme points along y of the lesion (x = CX)
    mask = _ellipse()
    top = np.nonzero(mask[CX + 10])[0].min()  # boundary pixel at x = CX + 10 (off the short axis line)
    assert _colour_at(png, CX + 10, top) == CONTOUR_COLOR
    # caliper colours at the axis centre region: long axis along y = CY, short axis along x = ~CX
    assert _colour_at(png, CX - 15, CY) == LONG_AXIS_COLOR
    seg = d["measurements"][0]["calipers"][1]
    sx_mid = (seg[0][0] + seg[1][0]) / 2
    assert _colour_at(png, sx_mid, CY - 7) == SHORT_AXIS_COLOR
    # the interior off the calipers is untouched
    assert _colour_at(png, CX - 15, CY - 7) == (src[CY - 7, CX - 15],) * 3


def test_overlay_reloads_original_image_when_resized(tmp_path):
    d = _data(tmp_path)
    d["image"] = MetaTensor(torch.zeros(1, 64, 64), meta={"filename_or_obj": d["image"].meta["filename_or_obj"]})
    out = SaveOverlayd("pred", output_dir=tmp_path / "ov", image_reader="PILReader")(d)
    png = np.asarray(Image.open(out["overlay_path"]).convert("RGB"))
    assert png.shape[:2] == (NY, NX) and _colour_at(png, 5, 70) == (250, 250, 250)
    d["image"].meta["filename_or_obj"] = str(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="cannot be read"):
        SaveOverlayd("pred", output_dir=tmp_path / "ov")(d)


def test_overlay_no_lesion_and_errors(tmp_path):
    img = MetaTensor(torch.as_tensor(_image()[None].astype(np.float32)), meta={"filename_or_obj": "/s/empty.png"})
    path = SaveOverlay(tmp_path)(img, np.zeros((NX, NY), np.uint8))
    png = np.asarray(Image.open(path).convert("RGB"))
    assert (png[..., 0] == png[..., 1]).all() and (png[..., 1] == png[..., 2]).all()  # gray only: nothing drawn
    with pytest.raises(ValueError, match="differs from image shape"):
        SaveOverlay(tmp_path)(img, np.zeros((NX, NY + 1)))
    with pytest.raises(ValueError, match="filename_or_obj"):
        SaveOverlay(tmp_path)(torch.zeros(1, NX, NY), np.zeros((NX, NY)))


def test_overlay_3d_picks_largest_lesion_slice(tmp_path):
    shape = (40, 30, 12)
    vol = np.zeros(shape, dtype=np.float32)
    vol[:, :, 7] = 200.0  # slice 7 bright: tells which slice was drawn
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    mask = ((x - 20) / 10.0) ** 2 + ((y - 15) / 5.0) ** 2 + ((z - 7) / 3.0) ** 2 <= 1
    mask |= ((x - 5) / 2.0) ** 2 + ((y - 5) / 2.0) ** 2 + ((z - 2) / 1.0) ** 2 <= 1  # a small lesion elsewhere
    assert largest_lesion_slice(mask) == 7
    assert largest_lesion_slice(np.zeros(shape)) == 6
    f = tmp_path / "vol.nii.gz"
    save_volume(f, vol, [0.5, 0.5, 2.0])
    img = MetaTensor(torch.as_tensor(vol[None]), meta={"filename_or_obj": str(f)})
    path = SaveOverlay(tmp_path / "ov")(img, mask[None].astype(np.uint8))
    assert path.name == "vol_overlay.png"
    png = np.asarray(Image.open(path).convert("RGB"))
    assert png.shape[:2] == (30, 40)
    assert _colour_at(png, 35, 28) == (200, 200, 200)  # the bright slice 7 (8-bit range kept as is); others are 0
    assert (np.all(png == np.asarray(CONTOUR_COLOR), axis=-1)).any()
    assert (np.all(png == np.asarray(LONG_AXIS_COLOR), axis=-1)).any()


def test_overlay_image_array_layout():
    img = np.zeros((6, 4))
    img[5, 0] = 255  # x = 5, y = 0: top right of the picture
    rgb = overlay_image(img, np.zeros((6, 4)))
    assert rgb.shape == (4, 6, 3) and tuple(rgb[0, 5]) == (255, 255, 255)
    with pytest.raises(ValueError, match="equal 2D"):
        overlay_image(img, np.zeros((4, 6)))


def test_image_stem():
    assert image_stem("/a/b/case_1.nii.gz") == "case_1"
    assert image_stem("x/benign (3).png") == "benign (3)"
    assert image_stem("vol.nrrd") == "vol"


def test_measurements_ignore_specks_below_min_voxels(tmp_path):
    mask = _ellipse().copy()
    mask[100:102, 5:7] = True  # a 4-pixel speck beside the lesion
    d = {"pred": MetaTensor(torch.as_tensor(mask[None].astype(np.uint8)), meta={"filename_or_obj": "/d/s.png"})}
    SaveMeasurementsd("pred", output_dir=tmp_path / "all")(dict(d))
    assert len(_read_csv(tmp_path / "all" / "measurements.csv")) == 2  # default min_voxels=1 measures the speck
    out = SaveMeasurementsd("pred", output_dir=tmp_path / "f", min_voxels=20)(dict(d))
    rows = _read_csv(tmp_path / "f" / "measurements.csv")
    assert len(rows) == 1 and len(out["measurements"]) == 1
    assert abs(float(rows[0]["long_axis_mm"]) - 2 * AX) <= 1.0


def test_bundle_inference_configs_filter_specks():
    import json

    root = Path(__file__).resolve().parents[1] / "bundles"
    for cfg in sorted(root.glob("*/configs/inference.json")):
        conf = json.loads(cfg.read_text())
        savers = [t for t in conf["postprocessing"]["transforms"] if t["_target_"].endswith("SaveMeasurementsd")]
        assert savers and savers[0].get("min_voxels") == "@min_lesion_voxels", cfg
        assert int(conf["min_lesion_voxels"]) > 1, cfg

"""ApplySpacing(d): a datalist item's spacing (mm) travels into the loaded MetaTensor's affine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged

from usseg_monai.data.io import load_volume, save_png, save_volume
from usseg_monai.transforms import ApplySpacing, ApplySpacingd, MeasureLesiond, set_affine_spacing


@pytest.fixture
def png_item(tmp_path):
    img = np.zeros((30, 20), np.uint8)  # (x, y)
    img[5:25, 4:10] = 255
    save_png(tmp_path / "img.png", img)
    save_png(tmp_path / "lab.png", img)
    return {"image": str(tmp_path / "img.png"), "label": str(tmp_path / "lab.png")}


def _load(keys=("image", "label")):
    return Compose([LoadImaged(list(keys)), EnsureChannelFirstd(list(keys))])


def test_png_gets_datalist_spacing_and_measurements_follow(png_item):
    d = _load()(dict(png_item, spacing=[0.1, 0.25]))
    assert d["image"].pixdim.tolist() == [1.0, 1.0]
    d = ApplySpacingd(["image", "label"])(d)
    for k in ("image", "label"):
        np.testing.assert_allclose(d[k].pixdim.numpy(), [0.1, 0.25])
        assert d[k].shape == (1, 30, 20)
    assert torch.equal(d["image"].as_tensor(), _load()(dict(png_item))["image"].as_tensor())  # pixels untouched
    (m,) = MeasureLesiond("label")(d)["label_measurements"]
    assert m["width_mm"] == pytest.approx(20 * 0.1) and m["depth_mm"] == pytest.approx(6 * 0.25)


def test_without_spacing_nothing_changes(png_item):
    d = _load()(dict(png_item))
    out = ApplySpacingd(["image", "label"])(d)
    torch.testing.assert_close(out["image"].affine, d["image"].affine)
    assert out["image"] is d["image"]


def test_volume_direction_and_origin_are_kept(tmp_path):
    direction = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    save_volume(tmp_path / "v.nii.gz", np.zeros((6, 5, 4), np.uint8), (0.5, 0.6, 2.0), origin=(3, 4, 5),
                direction=direction)
    d = _load(["image"])({"image": str(tmp_path / "v.nii.gz"), "spacing": [1.0, 1.5, 3.0]})
    before = d["image"].affine.clone()
    out = ApplySpacingd("image")(d)["image"]
    np.testing.assert_allclose(out.pixdim.numpy(), [1.0, 1.5, 3.0])
    aff = out.affine.numpy()
    np.testing.assert_allclose(aff[:3, 3], before[:3, 3].numpy())  # origin
    cols_before = before.numpy()[:3, :3] / np.linalg.norm(before.numpy()[:3, :3], axis=0)
    np.testing.assert_allclose(aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0), cols_before, atol=1e-12)
    if "original_affine" in out.meta:
        np.testing.assert_allclose(np.linalg.norm(np.asarray(out.meta["original_affine"])[:3, :3], axis=0), [1, 1.5, 3])


def test_saved_output_carries_the_spacing(png_item, tmp_path):
    d = _load(["label"])(dict(png_item, spacing=[0.2, 0.3]))
    d = ApplySpacingd("label")(d)
    SaveImaged("label", output_dir=str(tmp_path / "out"), output_ext=".nii.gz", separate_folder=False,
               output_postfix="sp", resample=False, print_log=False)(d)
    (f,) = list((tmp_path / "out").glob("*.nii.gz"))
    arr, geom = load_volume(f)
    np.testing.assert_allclose(geom["spacing"][:2], [0.2, 0.3], rtol=1e-6)
    assert arr.shape[:2] == (30, 20)


def test_errors_name_the_field():
    img = MetaTensor(torch.zeros(1, 8, 8))
    msg = r"item field 'spacing' for key 'image': 'spacing' \[1.0, 2.0, 3.0\] has 3 values"
    with pytest.raises(ValueError, match=msg):
        ApplySpacingd("image")({"image": img, "spacing": [1, 2, 3]})
    with pytest.raises(ValueError, match="must be positive"):
        ApplySpacing()(img, [1.0, 0.0])
    with pytest.raises(ValueError, match="must be a list of numbers"):
        ApplySpacing()(img, "abc")
    with pytest.raises(KeyError):
        ApplySpacingd("label")({"image": img, "spacing": [1, 1]})
    assert ApplySpacingd("label", allow_missing_keys=True)({"image": img, "spacing": [1, 1]})["image"] is img


def test_array_form_and_helper():
    t = ApplySpacing([0.3, 0.4])(torch.zeros(1, 5, 6))  # plain tensor becomes a MetaTensor
    assert isinstance(t, MetaTensor)
    np.testing.assert_allclose(t.pixdim.numpy(), [0.3, 0.4])
    src = MetaTensor(torch.zeros(1, 5, 6))
    ApplySpacing()(src, [2.0, 2.0])
    assert src.pixdim.tolist() == [1.0, 1.0]  # the input is not modified in place
    aff = set_affine_spacing(np.diag([0.0, 2.0, 1.0, 1.0]), [0.5, 0.5])
    np.testing.assert_allclose(aff.numpy()[:2, :2], np.diag([0.5, 0.5]))
    d = ApplySpacingd("image")({"image": MetaTensor(torch.zeros(1, 5, 6)), "spacing": torch.tensor([0.7, 0.8])})
    np.testing.assert_allclose(d["image"].pixdim.numpy(), [0.7, 0.8])

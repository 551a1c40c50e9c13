"""MONAI caliper transforms: MetaTensor in/out, 2D and 3D, spacing from metadata, joint augmentation, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import (
    Compose,
    DeleteItemsd,
    RandAffined,
    RandFlipd,
    RandRotate90d,
    RandRotated,
)

from usseg_monai.calipers import CaliperAnnotation, CaliperLesion, save_calipers
from usseg_monai.data.io import DatasetError
from usseg_monai.transforms import (
    CaliperPseudoLabels,
    CaliperPseudoLabelsd,
    CalipersFromMask,
    CalipersFromPointsd,
    CalipersFromMaskd,
    ConstrainToCalipers,
    ConstrainToCalipersd,
    LoadCalipers,
    LoadCalipersd,
    MeasureLesion,
    MeasureLesiond,
    RandCaliperJitterd,
    image_spacing,
)

LABEL_KEYS = ["conservative_label", "radical_label", "caliper_axes"]


def ellipsoid(shape, centre, semi, angle_deg=0.0):
    g = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    x = [gi - c for gi, c in zip(g, centre)]
    t = np.radians(angle_deg)
    x[0], x[1] = x[0] * np.cos(t) + x[1] * np.sin(t), -x[0] * np.sin(t) + x[1] * np.cos(t)
    return sum((xi / s) ** 2 for xi, s in zip(x, semi)) <= 1.0


def item(nd: int, spacing):
    """A channel-first image / label pair as MetaTensors with the given spacing (diagonal affine)."""
    shape = (48, 40) if nd == 2 else (32, 28, 20)
    centre = [s / 2 - 0.3 for s in shape]
    semi = (14.0, 7.0) if nd == 2 else (11.0, 7.0, 5.0)
    m = ellipsoid(shape, centre, semi, 25.0).astype(np.float32)
    aff = np.diag(list(spacing) + [1.0] * (4 - nd))
    img = MetaTensor(torch.rand(1, *shape), affine=torch.as_tensor(aff))
    lab = MetaTensor(torch.as_tensor(m)[None], affine=torch.as_tensor(aff))
    return {"image": img, "label": lab}


@pytest.mark.parametrize("nd, spacing", [(2, (0.5, 0.8)), (3, (0.7, 0.7, 2.0))])
def test_chain_creates_label_keys(nd, spacing):
    d = item(nd, spacing)
    d = CalipersFromMaskd("label")(d)
    ann = d["calipers"]
    assert isinstance(ann, CaliperAnnotation) and len(ann.lesions) == 1
    np.testing.assert_allclose(ann.spacing, spacing)
    assert ann.lesions[0].segments.shape == (nd, 2, nd)
    d = CaliperPseudoLabelsd("calipers", ref_key="image")(d)
    for k in LABEL_KEYS:
        assert isinstance(d[k], MetaTensor), k
        assert d[k].shape == d["image"].shape and d[k].dtype == torch.float32
        torch.testing.assert_close(d[k].affine, d["image"].affine)
        np.testing.assert_allclose(d[k].pixdim, spacing)
        assert set(torch.unique(d[k]).tolist()) == {0.0, 1.0}
    assert torch.all(d["conservative_label"] <= d["radical_label"])
    assert torch.all(d["caliper_axes"] <= d["conservative_label"])
    dice = 2 * (d["radical_label"] * d["label"]).sum() / (d["radical_label"].sum() + d["label"].sum())
    assert dice > (0.9 if nd == 2 else 0.85)
    # array form gives the three labels stacked
    stacked = CaliperPseudoLabels()(ann, d["image"])
    assert stacked.shape == (3, *d["image"].shape[1:])
    torch.testing.assert_close(stacked[1:2], d["radical_label"].as_tensor())


@pytest.mark.parametrize("nd", [2, 3])
def test_spacing_read_from_metadata_changes_mm(nd):
    base = (1.0,) * nd
    d1 = MeasureLesiond("label")(item(nd, base))
    d2 = MeasureLesiond("label")(item(nd, tuple(2.5 * s for s in base)))
    (m1,), (m2,) = d1["label_measurements"], d2["label_measurements"]
    for key in ("long_axis_mm", "short_axis_mm", "width_mm", "depth_mm"):
        assert m2[key] == pytest.approx(2.5 * m1[key], rel=1e-9), key
    assert m2["aspect_ratio"] == pytest.approx(m1["aspect_ratio"])
    assert m1["voxels"] == m2["voxels"]
    # anisotropic: only the depth axis (axis 1) stretches
    aniso = (1.0, 3.0) + (1.0,) * (nd - 2)
    (m3,) = MeasureLesiond("label")(item(nd, aniso))["label_measurements"]
    assert m3["depth_mm"] == pytest.approx(3 * m1["depth_mm"]) and m3["width_mm"] == pytest.approx(m1["width_mm"])
    assert m3["taller_than_wide"] is True and m1["taller_than_wide"] is False
    assert image_spacing(item(nd, aniso)["image"]) == aniso
    assert image_spacing(torch.zeros(1, 4, 4)) == (1.0, 1.0)


def test_measure_prediction_forms():
    d = item(2, (0.5, 0.5))
    lab = d["label"]
    onehot = torch.cat([1 - lab, lab])  # [2, x, y] one-hot / softmax-like
    a = MeasureLesion()(lab)
    b = MeasureLesion()(MetaTensor(onehot, affine=lab.affine))
    c = MeasureLesion(threshold=0.3)(lab * 0.6)  # probabilities
    assert a == b == c and len(a) == 1
    assert MeasureLesion()(lab, spacing=(1.0, 1.0))[0]["long_axis_mm"] == pytest.approx(2 * a[0]["long_axis_mm"])
    assert MeasureLesion()(torch.zeros_like(lab)) == []
    out = MeasureLesiond(["label"], output_postfix="m")({"label": lab})
    assert out["label_m"] == a
    with pytest.raises(ValueError, match="lesion channel 3 does not exist"):
        MeasureLesion(channel=3)(lab)
    with pytest.raises(ValueError, match="channel-first"):
        MeasureLesion()(torch.zeros(5))


@pytest.mark.parametrize("nd", [2, 3])
def test_joint_augmentation_keeps_conservative_inside_radical(nd):
    keys = ["image", *LABEL_KEYS]
    d0 = CaliperPseudoLabelsd("calipers")(CalipersFromMaskd("label")(item(nd, (0.6,) * nd)))
    aug = Compose(
        [
            RandRotate90d(keys, prob=0.7, spatial_axes=(0, 1)),
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandAffined(keys, prob=1.0, rotate_range=[0.4] * (1 if nd == 2 else 3), scale_range=[0.15] * nd,
                        translate_range=[3] * nd, mode=["bilinear"] + ["nearest"] * 3, padding_mode="zeros"),
        ]
    )
    for seed in range(6):
        aug.set_random_state(seed)
        d = aug(dict(d0))
        cons, rad, axes = (d[k] for k in LABEL_KEYS)
        assert cons.shape == rad.shape == axes.shape == d["image"].shape
        assert cons.sum() > 0
        assert torch.all(cons <= rad), f"seed {seed}"
        assert torch.all(axes <= rad), f"seed {seed}"
        assert len(d["radical_label"].applied_operations) == len(d["image"].applied_operations)


def test_rotation_augmentation_with_interpolation_keeps_nesting_after_threshold():
    keys = LABEL_KEYS
    d0 = CaliperPseudoLabelsd("calipers")(CalipersFromMaskd("label")(item(2, (0.5, 0.5))))
    rot = RandRotated(keys, range_x=np.pi / 9, prob=1.0, mode="bilinear")  # CRBNet's +-20 degrees
    for seed in range(4):
        rot.set_random_state(seed)
        d = rot(dict(d0))
        assert torch.all((d["conservative_label"] > 0.5) <= (d["radical_label"] > 0.5))


def test_load_calipers_and_batching(tmp_path):
    d = item(2, (0.5, 0.8))
    ann = CalipersFromMask()(d["label"])
    path = save_calipers(tmp_path / "c.json", ann)
    loaded = LoadCalipersd("calipers")({"calipers": str(path)})["calipers"]
    assert loaded == ann
    assert LoadCalipers()(ann.to_dict()) == ann and LoadCalipers()(ann) is ann
    chain = Compose([LoadCalipersd("calipers"), CaliperPseudoLabelsd("calipers"), DeleteItemsd("calipers")])
    batch = list_data_collate([chain({"image": d["image"], "calipers": str(path)}) for _ in range(2)])
    assert batch["radical_label"].shape == (2, 1, 48, 40)


def test_jitter_transform_is_seeded():
    d = CalipersFromMaskd("label")(item(2, (0.5, 0.5)))
    t = RandCaliperJitterd("calipers", jitter_mm=0.5)
    t.set_random_state(7)
    a = t(dict(d))["calipers"]
    t.set_random_state(7)
    b = t(dict(d))["calipers"]
    assert a == b and a != d["calipers"]
    a.validate(angle_tolerance=1e-6)
    off = RandCaliperJitterd("calipers", jitter_mm=0.5, prob=0.0)(dict(d))["calipers"]
    assert off == d["calipers"]
    with pytest.raises(ValueError, match="jitter_mm"):
        RandCaliperJitterd("calipers", jitter_mm=-1)


def test_empty_masks():
    d = item(2, (1.0, 1.0))
    d["label"] = d["label"] * 0
    with pytest.raises(DatasetError, match=r"key 'label': empty mask"):
        CalipersFromMaskd("label")(dict(d))
    out = CaliperPseudoLabelsd("calipers")(CalipersFromMaskd("label", allow_empty=True)(dict(d)))
    assert out["calipers"].lesions == []
    for k in LABEL_KEYS:
        assert out[k].shape == (1, 48, 40) and out[k].sum() == 0


def test_pseudo_label_errors():
    d2, d3 = item(2, (1.0, 1.0)), item(3, (1.0, 1.0, 1.0))
    ann2 = CalipersFromMask()(d2["label"])
    with pytest.raises(DatasetError, match=r"calipers are 2D .* but the image is 3D"):
        CaliperPseudoLabels()(ann2, d3["image"])
    wrong = CaliperAnnotation((1.0, 1.0, 1.0), (32, 28, 20), [CaliperLesion(ann2.lesions[0].segments)])
    with pytest.raises(DatasetError, match="lesion 0 has 2 segments of 2D endpoints; a 3D image needs 3"):
        CaliperPseudoLabels()(wrong, d3["image"])
    smaller = MetaTensor(torch.zeros(1, 40, 40))
    with pytest.raises(DatasetError, match=r"made for an image of shape \[48, 40\], the image has shape \[40, 40\]"):
        CaliperPseudoLabels()(ann2, smaller)
    with pytest.warns(UserWarning, match="differs from the image spacing"):
        CaliperPseudoLabels()(ann2, MetaTensor(torch.zeros(1, 48, 40), affine=torch.diag(torch.tensor([2.0, 2, 1, 1]))))
    with pytest.raises(KeyError, match="reference image key 'img'"):
        CaliperPseudoLabelsd("calipers", ref_key="img")({"calipers": ann2})
    with pytest.raises(TypeError, match="use LoadCalipersd first"):
        CaliperPseudoLabelsd("calipers")({"calipers": "c.json", "image": d2["image"]})
    # perpendicular in pixels is not perpendicular in mm: validated with the image's spacing
    seg = np.array([[[10.0, 10.0], [30.0, 30.0]], [[25.0, 15.0], [15.0, 25.0]]])
    diag = CaliperAnnotation((1.0, 2.0), (48, 40), [CaliperLesion(seg)])
    aniso = MetaTensor(torch.zeros(1, 48, 40), affine=torch.diag(torch.tensor([1.0, 2, 1, 1])))
    with pytest.raises(DatasetError, match="degrees"):
        CaliperPseudoLabels()(diag, aniso)
    CaliperPseudoLabels(angle_tolerance=40)(diag, aniso)


# ------------------------------------------------------------------ ResampleCalipers
def _resample_case(shape, spacing, target, semi_mm, angle_deg=30.0):
    """An ellipse(-oid) mask on ``shape`` (mm ``spacing``), its calipers, the image and its Resize to ``target``."""
    from monai.transforms import Resize

    from usseg_monai.calipers import calipers_from_mask

    g = np.meshgrid(*[np.arange(s) * sp for s, sp in zip(shape, spacing)], indexing="ij")
    c = [0.5 * s * sp for s, sp in zip(shape, spacing)]
    x = [gi - ci for gi, ci in zip(g, c)]
    t = np.radians(angle_deg)
    x[0], x[1] = x[0] * np.cos(t) + x[1] * np.sin(t), -x[0] * np.sin(t) + x[1] * np.cos(t)
    mask = sum((xi / r) ** 2 for xi, r in zip(x, semi_mm)) <= 1.0
    ann = calipers_from_mask(mask, spacing)
    affine = torch.diag(torch.tensor([*spacing, 1.0] + [1.0] * (3 - len(shape)), dtype=torch.float64))
    image = MetaTensor(torch.rand(1, *shape), affine=affine)
    return ann, image, Resize(target)(image)


@pytest.mark.parametrize(
    "shape, spacing, target, semi_mm, min_dice_nearest",
    [
        ((200, 160), (0.1, 0.125), (64, 64), (6.0, 3.5), 0.95),
        # 3D: a lesion about 16x12x8 voxels after resizing, where nearest sampling of the full-resolution label is
        # itself off by a boundary layer; against area-averaged downsampling (fairer) both labels exceed 0.95
        ((96, 80, 48), (0.2, 0.25, 0.4), (48, 40, 24), (6.0, 4.5, 3.5), 0.90),
    ],
)
def test_resample_then_rasterise_matches_full_resolution(shape, spacing, target, semi_mm, min_dice_nearest):
    import warnings

    from monai.transforms import Resize
    from scipy import ndimage

    from usseg_monai.calipers import dice
    from usseg_monai.transforms.calipers import ResampleCalipers, ResampleCalipersd

    ann, image, small = _resample_case(shape, spacing, target, semi_mm)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the resampled spacing is the pixdim Resize writes: no spacing warning
        d = ResampleCalipersd("calipers", ref_key="image")({"calipers": ann, "image": small})
        d = CaliperPseudoLabelsd("calipers", ref_key="image")(d)
    res = d["calipers"]
    assert res.image_shape == target
    np.testing.assert_allclose(res.spacing, small.pixdim.numpy(), rtol=1e-12)
    np.testing.assert_allclose(res.spacing, np.asarray(spacing) * np.asarray(shape) / np.asarray(target))
    # physical geometry unchanged: lengths (mm) and angles
    np.testing.assert_allclose(res.lesions[0].lengths_mm(res.spacing), ann.lesions[0].lengths_mm(ann.spacing),
                               rtol=1e-12)
    np.testing.assert_allclose(res.lesions[0].angles_deg(res.spacing), ann.lesions[0].angles_deg(ann.spacing),
                               atol=1e-4)  # arccos near 1 amplifies rounding
    # voxel centres map as Resize (align_corners=False) maps them
    scale = np.asarray(target) / np.asarray(shape)
    np.testing.assert_allclose(res.lesions[0].segments, (ann.lesions[0].segments + 0.5) * scale - 0.5)
    full = CaliperPseudoLabels()(ann, image)
    down = Resize(target, mode="nearest")(full).numpy() > 0.5
    area = Resize(target, mode="area")(full).numpy() > 0.5
    low = {k: d[k][0].numpy() > 0.5 for k in LABEL_KEYS}
    for c, name in enumerate(LABEL_KEYS[:2]):
        assert dice(low[name], down[c]) > min_dice_nearest, name
        assert dice(low[name], area[c]) > 0.95, name
        assert abs(int(low[name].sum()) - int(down[c].sum())) < 0.06 * down[c].sum(), name  # no size bias
    axes = low["caliper_axes"]
    nd = len(shape)
    structure = np.ones((3,) * nd)
    assert axes.sum() > 0 and ndimage.label(axes, structure)[1] == 1  # present and connected
    assert not np.any(axes & ~low["conservative_label"])
    # the array form with a fixed size gives the same annotation; a same-size grid is a no-op
    assert ResampleCalipers(target)(ann) == res
    assert ResampleCalipers()(ann, image) is ann


def test_resample_nearest_downsampled_axes_fragment_2d():
    """Why ResampleCalipers exists: nearest-resizing the full-resolution axis mask breaks it into pieces."""
    from monai.transforms import Resize
    from scipy import ndimage

    ann, image, _ = _resample_case((200, 160), (0.1, 0.125), (64, 64), (6.0, 3.5))
    down = Resize((64, 64), mode="nearest")(CaliperPseudoLabels()(ann, image)).numpy()[2] > 0.5
    assert ndimage.label(down, np.ones((3, 3)))[1] > 1


def test_resample_no_lesion_and_errors():
    from usseg_monai.transforms.calipers import ResampleCalipers, ResampleCalipersd, resample_calipers

    empty = CaliperAnnotation((0.2, 0.3), (100, 80), [], {"source": "clinic"})
    out = resample_calipers(empty, (50, 40))
    assert out.lesions == [] and out.image_shape == (50, 40) and out.spacing == (0.4, 0.6)
    assert out.meta == {"source": "clinic", "original_image_shape": [100, 80]}
    labels = CaliperPseudoLabels()(out, MetaTensor(torch.zeros(1, 50, 40), affine=torch.diag(
        torch.tensor([0.4, 0.6, 1.0, 1.0], dtype=torch.float64))))
    assert labels.shape == (3, 50, 40) and labels.sum() == 0
    with pytest.raises(DatasetError, match="cannot resample a 2D annotation"):
        resample_calipers(empty, (10, 10, 10))
    with pytest.raises(ValueError, match="spatial_size or a reference image"):
        ResampleCalipers()(empty)
    with pytest.raises(ValueError, match="ref_key or spatial_size"):
        ResampleCalipersd("calipers", ref_key=None)
    with pytest.raises(KeyError, match="reference image key 'image'"):
        ResampleCalipersd("calipers")({"calipers": empty})
    with pytest.raises(TypeError, match="use LoadCalipersd first"):
        resample_calipers("c.json", (4, 4))


def test_load_calipers_falls_back_to_the_mask_only_without_a_caliper_file(tmp_path):
    """MONAI Label's training gives image + label only: calipers are then measured on the mask; a caliper file,
    when present, is read and the mask never is."""
    from usseg_monai.calipers import calipers_from_mask
    from usseg_monai.data.io import save_png
    from usseg_monai.transforms import LoadCalipersd

    grid = np.meshgrid(np.arange(60), np.arange(50), indexing="ij")
    mask = (((grid[0] - 30) / 14.0) ** 2 + ((grid[1] - 24) / 8.0) ** 2 <= 1).astype(np.uint8) * 255
    mask[2:4, 2:4] = 255  # a 4-pixel speck: below min_voxels, no caliper
    save_png(tmp_path / "m.png", mask)
    image = MetaTensor(torch.zeros(1, 60, 50), affine=torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0])))
    t = LoadCalipersd("calipers", mask_key="label", ref_key="image", min_voxels=20)
    ann = t({"image": image, "label": str(tmp_path / "m.png")})["calipers"]
    ref = calipers_from_mask(mask > 0, (0.5, 0.5), min_voxels=20)
    assert len(ann) == 1 and ann.image_shape == (60, 50) and ann.spacing == (0.5, 0.5)
    np.testing.assert_allclose(ann.lesions[0].segments, ref.lesions[0].segments)
    # a caliper file wins; the (missing) mask file is not touched
    save_calipers(tmp_path / "c.json", ref)
    out = t({"image": image, "calipers": str(tmp_path / "c.json"), "label": str(tmp_path / "gone.png")})
    np.testing.assert_allclose(out["calipers"].lesions[0].segments, ref.lesions[0].segments)
    with pytest.raises(KeyError, match="has no 'calipers' and no 'label'"):
        t({"image": image})
    with pytest.raises(KeyError, match="has no 'calipers'"):
        LoadCalipersd("calipers")({"image": image, "label": str(tmp_path / "m.png")})
    with pytest.raises(DatasetError, match="differs from the image"):
        t({"image": MetaTensor(torch.zeros(1, 40, 50)), "label": str(tmp_path / "m.png")})


@pytest.mark.parametrize("nd, spacing", [(2, (0.5, 0.8)), (3, (0.7, 0.7, 2.0))])
def test_constrain_to_calipers_lies_between_conservative_and_radical(nd, spacing, tmp_path):
    """(mask | conservative) & radical: a full mask becomes the radical label, an empty one the conservative
    label, a random one keeps its own voxels in between; metadata and dtype are kept."""
    d = CalipersFromMaskd("label")(item(nd, spacing))
    ann = d["calipers"]
    labels = CaliperPseudoLabels()(ann, d["image"])
    cons, rad = labels[0].bool(), labels[1].bool()
    assert cons.any() and (rad & ~cons).any()
    op = ConstrainToCalipers()
    full = MetaTensor(torch.ones_like(d["label"], dtype=torch.uint8), affine=d["label"].affine)
    out = op(full, ann)
    assert isinstance(out, MetaTensor) and out.dtype == torch.uint8 and torch.equal(out.affine, full.affine)
    assert torch.equal(out[0].bool(), rad)
    assert torch.equal(op(torch.zeros_like(full), ann)[0].bool(), cons)
    rnd = (torch.rand(full.shape, generator=torch.Generator().manual_seed(0)) > 0.5).to(torch.uint8)
    got = op(rnd, ann)[0].bool()
    assert torch.equal(got & ~rad, torch.zeros_like(got)) and torch.equal(got & cons, cons)
    between = rad & ~cons
    assert torch.equal(got[between], rnd[0].bool()[between])
    # dictionary form: from a JSON path, from the annotation, off, absent
    path = save_calipers(tmp_path / "c.json", ann)
    assert torch.equal(ConstrainToCalipersd("pred")({"pred": full, "calipers": str(path)})["pred"][0].bool(), rad)
    assert torch.equal(ConstrainToCalipersd("pred")({"pred": full, "calipers": ann})["pred"][0].bool(), rad)
    assert ConstrainToCalipersd("pred", enabled=False)({"pred": full, "calipers": ann})["pred"] is full
    assert ConstrainToCalipersd("pred")({"pred": full})["pred"] is full
    assert ConstrainToCalipersd("pred")({"pred": full, "calipers": ""})["pred"] is full
    # no lesion in the annotation: unchanged
    empty = CaliperAnnotation(ann.spacing, ann.image_shape, [])
    assert op(rnd, empty) is rnd


def test_constrain_to_calipers_errors(tmp_path):
    d = CalipersFromMaskd("label")(item(2, (0.5, 0.8)))
    ann = d["calipers"]
    with pytest.raises(DatasetError, match=r"made for an image of shape \[48, 40\].*\[40, 48\]"):
        ConstrainToCalipers()(torch.ones(1, 40, 48), ann, where="c.json")
    with pytest.raises(ValueError, match="one-channel mask"):
        ConstrainToCalipers()(torch.ones(2, 48, 40), ann)
    with pytest.raises(DatasetError, match="missing.json"):
        ConstrainToCalipersd("pred")({"pred": torch.ones(1, 48, 40), "calipers": str(tmp_path / "missing.json")})


@pytest.mark.parametrize("nd, spacing", [(2, (0.5, 0.8)), (3, (0.7, 0.7, 2.0))])
def test_calipers_from_points_on_the_image_grid(nd, spacing):
    """The endpoints a reader drew (long axis first) become the annotation of the image's grid and spacing; as
    a JSON string or dict it is the same annotation; with it the constrained mask lies between the labels."""
    d = CalipersFromMaskd("label")(item(nd, spacing))
    truth = d["calipers"]
    points = truth.lesions[0].segments.reshape(-1, nd).tolist()
    out = CalipersFromPointsd("image", points_key="points")({"image": d["image"], "points": points})
    ann = out["calipers"]
    assert ann.image_shape == tuple(d["image"].shape[1:]) and ann.spacing == pytest.approx(spacing)
    np.testing.assert_allclose(ann.lesions[0].segments, truth.lesions[0].segments)
    as_json = CalipersFromPointsd("image")({"image": d["image"], "points": truth.to_dict()})["calipers"]
    assert as_json == truth
    assert CalipersFromPointsd("image")({"image": d["image"], "points": json.dumps(truth.to_dict())})["calipers"] == truth
    labels = CaliperPseudoLabels()(ann, d["image"])
    got = ConstrainToCalipers()(torch.zeros_like(d["label"], dtype=torch.uint8), ann)[0].bool()
    assert torch.equal(got, labels[0].bool())
    # no points: nothing to constrain with
    for empty in (None, [], ""):
        assert "calipers" not in CalipersFromPointsd("image")({"image": d["image"], "points": empty})


@pytest.mark.parametrize(
    "points, message",
    [
        ([[10, 20], [30, 20], [20, 15]], r"needs 4 points \(long axis start, end, short axis start, end\), got 3"),
        ([[10, 20], [30, 20], [20, 15], [20, 25], [1, 1]], "needs 4 points"),
        ([[10, 20], [30, 20], [20, 15], [20]], r"point 3 must be 2 numbers"),
        ([[10, 20], [30, 20], [20, "15"], [20, 25]], r"point 2 must be 2 numbers"),
        ([[10, 20], [30, 20], [20, True], [20, 25]], r"point 2 must be 2 numbers"),
        ([[10, 20], [30, float("nan")], [20, 15], [20, 25]], "not finite"),
        ([[10, 20], [10, 20], [20, 15], [20, 25]], r"segment 0 \(long axis\): zero length"),
        ([[10, 20], [30, 20], [20, 15], [20, 45]], r"outside the image of shape \[48, 40\]"),
        ([[10, 20], [30, 20], [20, 15], [30, 25]], "from perpendicular"),
        ("[[10, 20], [30", "not valid JSON"),
        ({"format": "usseg-calipers", "version": 1, "spacing": [1, 1], "image_shape": [40, 48], "lesions": []},
         r"drawn on an image of shape \[40, 48\], this image has shape \[48, 40\]"),
        (17, "expected a list of 4 points"),
    ],
)
def test_calipers_from_points_errors_name_the_field(points, message):
    img = item(2, (0.5, 0.5))["image"]
    with pytest.raises(DatasetError, match=r"field 'points'.*" + message):
        CalipersFromPointsd("image")({"image": img, "points": points})

"""3D volume pairs: pairing rules, geometry kept, label selection, mismatches, real NRRD files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from usseg_monai.data.io import DatasetError, load_datalist, load_volume, save_volume
from usseg_monai.data.volumes import pair_volumes, prepare_volumes


def tree_hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


SPACING = (0.5, 0.8, 2.5)
ORIGIN = (10.0, -4.0, 3.0)


def _pair(folder: Path, img_name: str, lab_name: str, shape=(6, 5, 4), lab_shape=None, lab_spacing=None, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 1000, size=shape).astype(np.int16)
    lab = np.zeros(lab_shape or shape, dtype=np.int16)
    lab[1:3, 1:4, 1:3] = 7
    lab[4, 0, 0] = 1
    save_volume(folder / img_name, img, SPACING, ORIGIN, np.diag([-1.0, 1.0, 1.0]))
    save_volume(folder / lab_name, lab, lab_spacing or SPACING, ORIGIN, np.diag([-1.0, 1.0, 1.0]))
    return img, lab


def test_pairing_rules_geometry_and_label_value(tmp_path):
    from monai.transforms import LoadImage

    src = tmp_path / "src"
    src.mkdir()
    img_a, lab_a = _pair(src, "a_image.nii.gz", "a_label.nii.gz", seed=1)
    _pair(src, "b.nrrd", "b-label.nrrd", seed=2)
    _pair(src, "c.nii.gz", "c_seg.nrrd", seed=3)
    save_volume(src / "lonely.nii.gz", np.zeros((2, 2, 2)), (1, 1, 1))
    (src / "readme.txt").write_text("x")
    pairs, unpaired = pair_volumes(src)
    assert [(n, i.name, lab.name) for n, i, lab in pairs] == [
        ("a", "a_image.nii.gz", "a_label.nii.gz"),
        ("b", "b.nrrd", "b-label.nrrd"),
        ("c", "c.nii.gz", "c_seg.nrrd"),
    ]
    assert [p.name for p, _ in unpaired] == ["lonely.nii.gz"]

    before = tree_hashes(src)
    summary = prepare_volumes(src, tmp_path / "out", val_fraction=0.34, label_value=7)
    assert tree_hashes(src) == before
    assert summary["n_items"] == 3 and summary["skipped"] == 1 and summary["label_values"]["a"] == [1, 7]
    dl = load_datalist(tmp_path / "out" / "datalist.json")
    items = {it["case_id"]: it for s in ("training", "validation", "test") for it in dl[s]}
    assert dl["spatial_dims"] == 3 and items["a"]["image"] == "images/a.nii.gz"
    assert items["a"]["spacing"] == pytest.approx(SPACING, rel=1e-6)  # NIfTI keeps float32
    reader = LoadImage(image_only=True, reader="ITKReader")
    img = reader(str(tmp_path / "out" / items["a"]["image"]))
    seg = reader(str(tmp_path / "out" / items["a"]["label"]))
    assert np.array_equal(np.asarray(img), img_a)
    assert np.array_equal(np.asarray(seg), (lab_a == 7).astype(np.uint8))  # only label 7, not the 1
    np.testing.assert_allclose(np.asarray(img.affine), np.asarray(seg.affine))
    np.testing.assert_allclose(np.asarray(img.pixdim), SPACING, rtol=1e-6)
    _, geom = load_volume(tmp_path / "out" / items["a"]["image"])
    np.testing.assert_allclose(geom["origin"], ORIGIN)
    np.testing.assert_allclose(geom["direction"], np.diag([-1.0, 1.0, 1.0]))

    binary = prepare_volumes(src, tmp_path / "out_bin", val_fraction=0.0)
    assert binary["label_value"] is None
    seg_b, _ = load_volume(tmp_path / "out_bin" / "labels" / "a.nii.gz")
    assert np.array_equal(seg_b, (lab_a > 0).astype(np.uint8))


def test_volume_mismatches_and_empty(tmp_path):
    d1 = tmp_path / "size"
    d1.mkdir()
    _pair(d1, "x_image.nrrd", "x_label.nrrd", lab_shape=(6, 5, 3))
    msg = r"x_label\.nrrd has size \(6, 5, 3\) but image .*x_image\.nrrd has size \(6, 5, 4\)"
    with pytest.raises(DatasetError, match=msg):
        prepare_volumes(d1, tmp_path / "o1")
    d2 = tmp_path / "spacing"
    d2.mkdir()
    _pair(d2, "y.nii.gz", "y-label.nii.gz", lab_spacing=(0.5, 0.8, 3.0))
    with pytest.raises(DatasetError, match=r"y-label\.nii\.gz has spacing .* but image .*y\.nii\.gz"):
        prepare_volumes(d2, tmp_path / "o2")
    d3 = tmp_path / "none"
    d3.mkdir()
    with pytest.raises(DatasetError, match="no image/label volume pairs"):
        prepare_volumes(d3, tmp_path / "o3")
    d4 = tmp_path / "dup"
    d4.mkdir()
    _pair(d4, "z.nrrd", "z_seg.nrrd")
    save_volume(d4 / "z.nii.gz", np.zeros((6, 5, 4)), SPACING)
    with pytest.raises(DatasetError, match="same role"):
        prepare_volumes(d4, tmp_path / "o4")


@pytest.mark.realdata
def test_real_volumes(tmp_path):
    from conftest import require_shared

    src = require_shared("volumes")
    before = tree_hashes(src)
    summary = prepare_volumes(src, tmp_path / "vol", val_fraction=0.0)
    assert tree_hashes(src) == before
    assert summary["n_items"] == 3
    assert summary["label_values"]["prostate_phantom_subvolume"] == [1, 7, 8, 9]
    dl = load_datalist(tmp_path / "vol" / "datalist.json")
    items = {it["case_id"]: it for it in dl["training"]}
    for name, img_file, lab_file in (
        ("breast1", "breast1_image.nrrd", "breast1_label.nrrd"),
        ("prostate_phantom_subvolume", "prostate_phantom_subvolume.nrrd", "prostate_phantom_subvolume-label.nrrd"),
    ):
        ref_img, ref_geom = load_volume(src / img_file)
        ref_lab, _ = load_volume(src / lab_file)
        out_img, out_geom = load_volume(tmp_path / "vol" / items[name]["image"])
        out_lab, lab_geom = load_volume(tmp_path / "vol" / items[name]["label"])
        assert np.array_equal(out_img, ref_img) and np.array_equal(out_lab, (ref_lab > 0).astype(np.uint8))
        for key in ("spacing", "origin", "direction"):
            np.testing.assert_allclose(out_geom[key], ref_geom[key], rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(lab_geom[key], out_geom[key], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(items[name]["spacing"], ref_geom["spacing"], rtol=1e-9)
    # the NRRD header of breast1 says 0.664062 x 0.664062 x 2.1 mm
    np.testing.assert_allclose(items["breast1"]["spacing"], [0.664062, 0.664062, 2.1], rtol=1e-6)
    assert load_volume(src / "breast1_image.nrrd")[0].shape == (45, 120, 21)


def _raw_nrrd(path: Path, header: str) -> Path:
    data = np.zeros((6, 5, 4), np.uint8)
    data[1:3, 1:3, 1:3] = 1
    path.write_bytes(f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 6 5 4\n{header}\nencoding: raw\n\n".encode()
                     + data.tobytes(order="F"))
    return path


def _patched_nifti(path: Path, value: float) -> Path:
    """A NIfTI-1 file whose pixdim[1] is ``value`` (written byte-wise: nibabel's writer repairs such headers)."""
    import gzip
    import struct

    save_volume(path.with_name("tmp_ok.nii.gz"), np.zeros((6, 5, 4), np.uint8), SPACING)
    raw = bytearray(gzip.open(path.with_name("tmp_ok.nii.gz")).read())
    path.with_name("tmp_ok.nii.gz").unlink()
    struct.pack_into("<f", raw, 80, value)  # pixdim[1]: offset 76 + 4
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


LPS = "space: left-posterior-superior"


@pytest.mark.parametrize(
    "kind, value, shown",
    [
        ("nrrd-spacings", "spacings: 0 0.8 2.5", r"\[0\.0, 0\.8, 2\.5\]"),
        ("nrrd-spacings", "spacings: -0.5 0.8 2.5", r"\[-0\.5, 0\.8, 2\.5\]"),
        ("nrrd-spacings", "spacings: nan 0.8 2.5", r"\[nan, 0\.8, 2\.5\]"),  # ITK alone would read 1 mm
        ("nrrd-spacings", "spacings: 0.5 inf 2.5", r"\[0\.5, inf, 2\.5\]"),
        ("nrrd-directions", f"{LPS}\nspace directions: (0,0,0) (0,0.8,0) (0,0,2.5)", r"\[0\.0, 0\.8, 2\.5\]"),
        ("nrrd-directions", f"{LPS}\nspace directions: (nan,0,0) (0,0.8,0) (0,0,2.5)", r"\[nan, 0\.8"),
        ("nifti", 0.0, r"\[0\.0, 0\.8"),
        ("nifti", -0.5, r"\[-0\.5, 0\.8"),
        ("nifti", float("nan"), r"\[nan, 0\.8"),
    ],
)
def test_bad_spacing_is_refused_naming_the_file(tmp_path, kind, value, shown):
    """Zero, negative or non-finite voxel spacing in a NRRD or NIfTI header is an error naming the file (#19 item 3),
    in the converter and in ``load_volume``; the source is never changed."""
    src = tmp_path / "src"
    src.mkdir()
    _pair(src, "good_image.nii.gz", "good_label.nii.gz")
    if kind == "nifti":
        save_volume(src / "bad_label.nii.gz", np.ones((6, 5, 4), np.uint8), SPACING)
        bad = _patched_nifti(src / "bad_image.nii.gz", value)
    else:
        bad = _raw_nrrd(src / "bad_image.nrrd", value)
        _raw_nrrd(src / "bad_label.nrrd", "spacings: 0.5 0.8 2.5")
    before = tree_hashes(src)
    message = rf"volume {re.escape(str(bad))}: its header declares voxel spacing {shown}"
    message += r".*every spacing must be a finite positive"
    with pytest.raises(DatasetError, match=message):
        load_volume(bad)
    with pytest.raises(DatasetError, match=message):
        prepare_volumes(src, tmp_path / "out")
    assert tree_hashes(src) == before

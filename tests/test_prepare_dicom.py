"""DICOM reading: colour spaces to grayscale, frames, spacing rules, conversion, real files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from usseg_monai.data.dicom import prepare_dicom, read_ultrasound_dicom
from usseg_monai.data.io import DatasetError, load_datalist

pydicom = pytest.importorskip("pydicom")


def tree_hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _write(path: Path, arr: np.ndarray, pi: str, bits: int = 8, **tags) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "US"
    ds.set_pixel_data(arr, pi, bits)
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(path, enforce_file_format=True)
    return path


def _region(dx_cm: float, dy_cm: float, units: int = 3, fmt: int = 1, box=(0, 0, 19, 9)):
    from pydicom.dataset import Dataset

    r = Dataset()
    r.RegionSpatialFormat = fmt
    r.RegionDataType = 1
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
    r.PhysicalUnitsXDirection = units
    r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX = dx_cm
    r.PhysicalDeltaY = dy_cm
    return r


def test_monochrome_frames_spacing_orientation(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 10, 20), dtype=np.uint8)  # (frames, rows, cols)
    p = _write(tmp_path / "m2.dcm", frames, "MONOCHROME2", NumberOfFrames=3, PixelSpacing=[0.2, 0.1])
    out = read_ultrasound_dicom(p)
    assert len(out) == 3
    for k, (img, spacing) in enumerate(out):
        assert img.shape == (20, 10) and img.dtype == np.uint8
        assert np.array_equal(img, frames[k].T)  # (x, y) = (column, row)
        assert spacing == pytest.approx((0.1, 0.2))  # PixelSpacing is (row, column): sx = 0.1, sy = 0.2

    p1 = _write(tmp_path / "m1.dcm", frames[0], "MONOCHROME1")
    (img1, sp1), = read_ultrasound_dicom(p1)
    assert np.array_equal(img1, 255 - frames[0].T) and sp1 is None


def test_ultrasound_regions_win_over_pixel_spacing(tmp_path):
    arr = np.zeros((10, 20), dtype=np.uint8)
    regions = [_region(0.0, 0.0, units=0, fmt=0), _region(0.05, 0.04), _region(0.03, 0.03, box=(0, 0, 4, 4))]
    p = _write(tmp_path / "r.dcm", arr, "MONOCHROME2", PixelSpacing=[9.0, 9.0], SequenceOfUltrasoundRegions=regions)
    (_, spacing), = read_ultrasound_dicom(p)
    assert spacing == pytest.approx((0.5, 0.4))  # largest tissue region in cm -> mm


def test_rgb_and_ybr_full_to_luminance(tmp_path):
    from PIL import Image
    from pydicom.pixels import convert_color_space

    rgb = np.random.default_rng(1).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(rgb).convert("L")).T.astype(int)
    (g_rgb, _), = read_ultrasound_dicom(_write(tmp_path / "rgb.dcm", rgb, "RGB"))
    assert np.abs(g_rgb.astype(int) - expected).max() <= 1
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    (g_ybr, _), = read_ultrasound_dicom(_write(tmp_path / "ybr.dcm", ybr, "YBR_FULL"))
    assert np.abs(g_ybr.astype(int) - expected).max() <= 2


def test_prepare_dicom_folder_and_errors(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    arr = np.arange(200, dtype=np.uint8).reshape(10, 20)
    two = np.stack([arr, arr[::-1]])
    _write(src / "a.dcm", two, "MONOCHROME2", NumberOfFrames=2, PatientID="P1", PixelSpacing=[0.3, 0.3])
    _write(src / "sub" / "b", arr, "MONOCHROME2", PatientID="P2")  # no suffix, found by its DICM preamble
    (src / "notes.txt").write_text("not dicom")
    before = tree_hashes(src)
    summary = prepare_dicom(src, tmp_path / "out", val_fraction=0.4)
    assert tree_hashes(src) == before
    assert summary["n_items"] == 3 and summary["n_cases"] == 2 and summary["skipped"] == 1
    assert summary["spacing_sources"] == {"PixelSpacing": 2, "unknown": 1}
    dl = load_datalist(tmp_path / "out" / "datalist.json")
    items = {Path(it["image"]).stem: (s, it) for s in ("training", "validation", "test") for it in dl[s]}
    assert set(items) == {"a_f0000", "a_f0001", "sub_b"}
    assert items["a_f0000"][0] == items["a_f0001"][0]  # frames of one patient stay together
    assert items["a_f0001"][1]["frame"] == 1 and items["a_f0000"][1]["spacing"] == [0.3, 0.3]
    assert "spacing" not in items["sub_b"][1] and "label" not in items["sub_b"][1]

    from monai.transforms import LoadImage

    back = np.asarray(LoadImage(image_only=True)(str(tmp_path / "out" / "images" / "a_f0001.png")))
    assert np.array_equal(back, arr[::-1].T)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.dcm").write_bytes(b"garbage" * 40)
    with pytest.raises(DatasetError, match=r"cannot read DICOM file .*x\.dcm"):
        prepare_dicom(bad, tmp_path / "o2")
    empty = tmp_path / "emptydir"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no DICOM files"):
        prepare_dicom(empty, tmp_path / "o3")
    with pytest.raises(DatasetError, match="not found"):
        prepare_dicom(tmp_path / "missing.dcm", tmp_path / "o5")
    with pytest.raises(ValueError, match="only 0 have"):  # DICOM images have no masks
        prepare_dicom(src, tmp_path / "o4", labeled=1)


@pytest.mark.realdata
def test_real_dicom(tmp_path):
    from conftest import require_shared

    src = require_shared("dicom")
    uncr = read_ultrasound_dicom(src / "US1_UNCR.dcm")
    j2k = read_ultrasound_dicom(src / "US1_J2KR.dcm")
    aloka = read_ultrasound_dicom(src / "gdcm-US-ALOKA-16.dcm")
    for frames in (uncr, j2k, aloka):
        assert len(frames) == 1 and frames[0][0].shape == (640, 480) and frames[0][0].dtype == np.uint8
    assert np.abs(uncr[0][0].astype(int) - j2k[0][0].astype(int)).mean() < 0.5  # lossless J2K: near identical
    assert uncr[0][0].std() > 10
    sx, sy = aloka[0][1]
    assert round(sx, 3) == 0.383 and round(sy, 3) == 0.383
    assert 0 < aloka[0][0].mean() < 255 and aloka[0][0].std() > 10
    before = tree_hashes(src)
    summary = prepare_dicom(src, tmp_path / "out")
    assert tree_hashes(src) == before
    assert summary["n_items"] == 3 and summary["spacing_sources"]["ultrasound_regions"] == 1


@pytest.mark.parametrize(
    "tags, message",
    [
        ({"regions": [(0.0, 0.04)]}, r"ultrasound region 0 \(cm units\) has Physical Delta X/Y 0\.0/0\.04"),
        ({"regions": [(0.05, -0.04)]}, r"ultrasound region 0 \(cm units\) has Physical Delta X/Y 0\.05/-0\.04"),
        ({"regions": [(0.05, 0.04), (float("nan"), 0.04)]}, r"ultrasound region 1 .* nan/0\.04"),
        ({"regions": [(float("inf"), 0.04)]}, r"ultrasound region 0 .* inf/0\.04"),
        ({"PixelSpacing": [0.0, 0.1]}, r"PixelSpacing is \[.*0\.0.*\]; it must be two finite positive numbers"),
        ({"PixelSpacing": [0.2, -0.1]}, r"PixelSpacing is .*-0\.1.*; it must be two finite positive numbers"),
        ({"ImagerPixelSpacing": [0.2, 0.0]}, r"ImagerPixelSpacing is .*; it must be two finite positive numbers"),
    ],
    ids=["region-zero", "region-negative", "region-nan", "region-inf", "pixel-zero", "pixel-negative", "imager-zero"],
)
def test_bad_spacing_is_refused_naming_the_file(tmp_path, tags, message):
    """A present but zero, negative or non-finite spacing is an error, never a silent fall-back (#19 item 3)."""
    arr = np.zeros((10, 20), dtype=np.uint8)
    tags = dict(tags)
    if "regions" in tags:
        tags["SequenceOfUltrasoundRegions"] = [_region(dx, dy) for dx, dy in tags.pop("regions")]
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "good.dcm", arr, "MONOCHROME2", PixelSpacing=[0.2, 0.2])
    bad = _write(src / "bad.dcm", arr, "MONOCHROME2", **tags)
    before = tree_hashes(src)
    with pytest.raises(DatasetError, match=message) as e:
        read_ultrasound_dicom(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(DatasetError, match=message) as e:
        prepare_dicom(src, tmp_path / "out")
    assert "bad.dcm" in str(e.value)
    assert tree_hashes(src) == before

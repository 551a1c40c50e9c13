"""BUSI converter: real data counts and masks, orientation, duplicates, bad input, source untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from usseg_monai.data.busi import prepare_busi
from usseg_monai.data.io import DatasetError, load_datalist


def tree_hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _load_xy(path: Path) -> np.ndarray:
    from monai.transforms import LoadImage

    return np.asarray(LoadImage(image_only=True)(str(path)))


def _rgb(w: int, h: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).integers(0, 256, size=(h, w), dtype=np.uint8)
    return np.stack([g, g, g], axis=-1)  # BUSI: gray content stored as RGB


def _mask(w: int, h: int, box) -> Image.Image:
    m = np.zeros((h, w), dtype=np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    return Image.fromarray(m).convert("1")


def make_busi(root: Path, w: int = 16, h: int = 11) -> Path:
    """A tiny BUSI copy: 3 benign (one with two masks), 2 malignant (one a duplicate picture), 2 normal."""
    top = root / "Dataset_BUSI_with_GT"
    for cls in ("benign", "malignant", "normal"):
        (top / cls).mkdir(parents=True)
    for n in (1, 2, 3):
        Image.fromarray(_rgb(w, h, n)).save(top / "benign" / f"benign ({n}).png")
        _mask(w, h, (1, 2, 5, 6)).save(top / "benign" / f"benign ({n})_mask.png")
    _mask(w, h, (9, 1, 14, 4)).save(top / "benign" / "benign (2)_mask_1.png")
    Image.fromarray(_rgb(w, h, 10)).save(top / "malignant" / "malignant (1).png")
    _mask(w, h, (3, 3, 9, 9)).save(top / "malignant" / "malignant (1)_mask.png")
    Image.fromarray(_rgb(w, h, 3)).save(top / "malignant" / "malignant (2).png")  # same picture as benign (3)
    _mask(w, h, (1, 2, 5, 6)).save(top / "malignant" / "malignant (2)_mask.png")
    for n in (1, 2):
        Image.fromarray(_rgb(w, h, 20 + n)).save(top / "normal" / f"normal ({n}).png")
        _mask(w, h, (0, 0, 0, 0)).save(top / "normal" / f"normal ({n})_mask.png")
    return top


def test_synthetic_busi_layout_union_orientation_duplicates(tmp_path):
    top = make_busi(tmp_path / "src")
    before = tree_hashes(tmp_path / "src")
    out = tmp_path / "out"
    summary = prepare_busi(tmp_path / "src", out, val_fraction=0.3, seed=1)  # the parent folder is accepted
    assert tree_hashes(tmp_path / "src") == before
    assert summary["n_items"] == 7
    assert summary["per_class"] == {"benign": 3, "malignant": 2, "normal": 2}
    assert summary["empty_masks"] == 2 and summary["multi_mask_cases"] == 1
    assert summary["duplicates"] == [["benign_3", "malignant_2"]]

    dl = load_datalist(out / "datalist.json")
    items = {Path(it["image"]).stem: (s, it) for s in ("training", "validation", "test") for it in dl[s]}
    assert dl["classes"] == ["benign", "malignant", "normal"]
    s3, b3 = items["benign_3"]
    s2, m2 = items["malignant_2"]
    assert s3 == s2 and m2["duplicate_of"] == "benign_3" and m2["group"] == b3["group"] == "benign_3"
    assert items["malignant_1"][1]["class_index"] == 1 and items["normal_2"][1]["case_id"] == "normal_2"

    # image: grayscale, same (x, y) orientation as the source file read with PIL and transposed
    src_img = np.asarray(Image.open(top / "benign" / "benign (2).png").convert("L")).T
    got = _load_xy(out / "images" / "benign_2.png")
    assert got.shape == (16, 11) and np.array_equal(got, src_img)
    # mask: union of the two mask files, in the same orientation
    union = (np.asarray(Image.open(top / "benign" / "benign (2)_mask.png").convert("L")).T > 0) | (
        np.asarray(Image.open(top / "benign" / "benign (2)_mask_1.png").convert("L")).T > 0
    )
    got_mask = _load_xy(out / "labels" / "benign_2.png")
    assert np.array_equal(got_mask > 0, union) and union[10, 2] and not union[2, 10]
    assert set(np.unique(got_mask)) == {0, 255}
    assert not _load_xy(out / "labels" / "normal_1.png").any()
    assert json.loads((out / "summary.json").read_text())["n_items"] == 7


def test_busi_bad_input(tmp_path):
    top = make_busi(tmp_path / "a")
    (top / "benign" / "benign (1)_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"benign \(1\)\.png has no mask file"):
        prepare_busi(top, tmp_path / "o1")

    top = make_busi(tmp_path / "b")
    (top / "malignant" / "malignant (1).png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"cannot read image .*malignant \(1\)\.png"):
        prepare_busi(top, tmp_path / "o2")

    top = make_busi(tmp_path / "c")
    _mask(15, 11, (1, 1, 3, 3)).save(top / "benign" / "benign (2)_mask_1.png")
    msg = r"benign \(2\)_mask_1\.png is 15x11 but its image .*benign \(2\)\.png is 16x11"
    with pytest.raises(DatasetError, match=msg):
        prepare_busi(top, tmp_path / "o3")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="does not look like BUSI"):
        prepare_busi(empty, tmp_path / "o4")
    (empty / "benign").mkdir()
    with pytest.raises(DatasetError, match="no BUSI images"):
        prepare_busi(empty, tmp_path / "o4")

    top = make_busi(tmp_path / "d")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        prepare_busi(top, busy)
    assert (busy / "keep.txt").read_text() == "x"
    with pytest.raises(DatasetError, match="inside the source"):
        prepare_busi(top, top / "out")


@pytest.mark.realdata
def test_real_busi(tmp_path):
    from conftest import require_shared

    src = require_shared("BUSI", "Dataset_BUSI_with_GT")
    before = tree_hashes(src)
    out = tmp_path / "busi"
    summary = prepare_busi(src, out, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert tree_hashes(src) == before
    assert summary["n_items"] == 624
    assert summary["per_class"] == {"benign": 350, "malignant": 168, "normal": 106}
    assert summary["empty_masks"] >= 106 and summary["multi_mask_cases"] > 0
    for cls, n in summary["per_class"].items():
        assert abs(summary["per_class_split"]["validation"].get(cls, 0) - 0.2 * n) <= 1.5
    dl = load_datalist(out / "datalist.json")
    assert sum(len(dl[s]) for s in ("training", "validation", "test")) == 624

    # a multi-mask case equals the union of its mask files
    multi = sorted(p for p in (src / "benign").glob("benign (*)_mask_1.png"))[0]
    stem = multi.name[: -len("_mask_1.png")]
    files = sorted((src / "benign").glob(f"{stem.replace('(', '[(]').replace(')', '[)]')}_mask*.png"))
    assert len(files) >= 2
    union = np.zeros_like(np.asarray(Image.open(files[0]).convert("L")).T, dtype=bool)
    for f in files:
        union |= np.asarray(Image.open(f).convert("L")).T > 0
    item_id = "benign_" + stem.split("(")[1].rstrip(")")
    got = _load_xy(out / "labels" / f"{item_id}.png")
    first = np.asarray(Image.open(files[0]).convert("L")) > 0
    assert np.array_equal(got > 0, union) and union.sum() > first.sum()
    img = _load_xy(out / "images" / f"{item_id}.png")
    assert np.array_equal(img, np.asarray(Image.open(src / "benign" / f"{stem}.png").convert("L")).T)

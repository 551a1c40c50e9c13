"""PreparedDatasetWriter: layout, orientation round trip, geometry, errors, datalist and summary."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import pytest

from usseg_monai.data.io import DatasetError, load_datalist, save_png
from usseg_monai.data.prepared import PreparedDatasetWriter, safe_item_id


def _image(w=12, h=9, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(w, h), dtype=np.uint8)


def test_2d_layout_orientation_and_summary(tmp_path):
    from monai.transforms import LoadImage

    out = tmp_path / "out"
    w = PreparedDatasetWriter(out, name="T", description="test")
    img = _image()
    mask = np.zeros_like(img)
    mask[2:5, 6:8] = 1  # x in 2..4, y in 6..7
    item = w.add("a_1", img, mask, class_name="benign", case_id="a", spacing=(0.1, 0.2), tirads="4a")
    for i in range(2, 11):
        cls = "malignant" if i % 2 else "benign"
        w.add(f"b_{i}", _image(seed=i), np.zeros_like(img), class_name=cls, case_id=f"b{i // 2}")
    w.skip("x.png", "unreadable")
    summary = w.finalize(classes=["benign", "malignant"], val_fraction=0.2, seed=0)

    assert item == {
        "image": "images/a_1.png",
        "label": "labels/a_1.png",
        "class": "benign",
        "class_index": 0,
        "case_id": "a",
        "spacing": [0.1, 0.2],
        "tirads": "4a",
    }
    loader = LoadImage(image_only=True)
    back = np.asarray(loader(str(out / "images/a_1.png")))
    back_mask = np.asarray(loader(str(out / "labels/a_1.png")))
    assert back.shape == (12, 9) and np.array_equal(back, img)
    assert set(np.unique(back_mask)) == {0, 255} and np.array_equal(back_mask > 0, mask > 0)

    dl = load_datalist(out / "datalist.json")
    assert dl["classes"] == ["benign", "malignant"] and dl["spatial_dims"] == 2
    assert sum(len(dl[s]) for s in ("training", "validation", "test")) == 10
    cases = {}
    for s in ("training", "validation", "test"):
        for it in dl[s]:
            assert cases.setdefault(it["case_id"], s) == s
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["n_items"] == 10 and summary["empty_masks"] == 9 and summary["skipped"] == 1
    assert summary["skipped_items"] == [{"what": "x.png", "reason": "unreadable"}]
    assert summary["per_class"] == {"benign": 6, "malignant": 4}
    assert sum(summary["per_split"].values()) == 10
    assert summary["usseg_monai_version"] and summary["seconds"] >= 0


def test_3d_geometry_kept(tmp_path):
    from monai.transforms import LoadImage

    vol = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    lab = (vol % 7 == 0).astype(np.uint8) * 3
    geom = {"spacing": np.array([0.5, 0.7, 2.0]), "origin": np.array([1.0, -2.0, 3.0]), "direction": np.eye(3)}
    w = PreparedDatasetWriter(tmp_path / "o3", spatial_dims=3)
    item = w.add("v", vol, lab, geometry=geom)
    w.finalize(val_fraction=0.0)
    assert item["spacing"] == [0.5, 0.7, 2.0]
    img = LoadImage(image_only=True, reader="ITKReader")(str(tmp_path / "o3" / item["image"]))
    seg = LoadImage(image_only=True, reader="ITKReader")(str(tmp_path / "o3" / item["label"]))
    assert np.array_equal(np.asarray(img), vol)
    assert np.array_equal(np.asarray(seg), (lab > 0).astype(np.uint8))
    np.testing.assert_allclose(np.asarray(img.pixdim), [0.5, 0.7, 2.0], rtol=1e-6)


def test_partition_in_finalize(tmp_path):
    w = PreparedDatasetWriter(tmp_path / "p")
    for i in range(20):
        w.add(f"i{i}", _image(seed=i), _image(seed=i) > 128, class_name="c")
    summary = w.finalize(val_fraction=0.25, labeled=3, class_only="rest")
    dl = json.loads((tmp_path / "p" / "datalist.json").read_text())
    assert summary["training_supervision"] == {"mask": 3, "class": 12, "none": 0}
    assert all(("label" in it) == (it["supervision"] == "mask") for it in dl["training"])
    assert all("label" in it and "supervision" not in it for it in dl["validation"])
    assert dl["split"] == {"seed": 0, "test_fraction": 0.0, "val_fraction": 0.25, "labeled": 3, "class_only": "rest"}


def test_partition_keeps_calipers(tmp_path):
    """A partition drops the masks of class-only items but keeps their calipers (caliper supervision)."""
    w = PreparedDatasetWriter(tmp_path / "p", calipers=True, caliper_min_voxels=1)
    for i in range(8):
        m = np.zeros((12, 9), dtype=bool)
        m[2 : 4 + i % 4, 3:7] = True
        w.add(f"i{i}", _image(seed=i), m, class_name="c")
    summary = w.finalize(val_fraction=0.25, labeled=2, class_only="rest")
    dl = load_datalist(tmp_path / "p" / "datalist.json", check_files=True)
    assert sum("label" in it for it in dl["training"]) == 2
    assert all(it["calipers"] == f"calipers/{it['image'][7:-4]}.json" for it in dl["training"] + dl["validation"])
    assert summary["n_with_calipers"] == 8 and summary["calipers"]["lesions"] == 8


def test_writer_errors(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(DatasetError, match="inside the source"):
        PreparedDatasetWriter(src / "out", source=src)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "f.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        PreparedDatasetWriter(busy)
    w = PreparedDatasetWriter(tmp_path / "o")
    with pytest.raises(DatasetError, match=r"a\.png, a_mask\.png\): mask shape \(3, 9\) differs"):
        w.add("x", _image(), np.zeros((3, 9)), source_files=["a.png", "a_mask.png"])
    with pytest.raises(DatasetError, match="item id"):
        w.add("../x", _image())
    with pytest.raises(DatasetError, match=r"\[0, 255\]"):
        w.add("y", _image().astype(float) * 2)
    w.add("z", _image())
    with pytest.raises(DatasetError, match="duplicate"):
        w.add("z", _image())
    with pytest.raises(DatasetError, match="no images were converted"):
        PreparedDatasetWriter(tmp_path / "empty").finalize()
    assert safe_item_id("benign (12)") == "benign_12"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_failed_conversion_leaves_nothing_behind(tmp_path):
    """Files are staged beside the output and moved in by finalize (#19 item 5): an error leaves no output folder,
    no staging folder, and an --overwrite target exactly as it was."""
    with pytest.raises(DatasetError, match="mask shape"):
        with PreparedDatasetWriter(tmp_path / "out") as w:
            w.add("a", _image())
            assert (w.staging_dir / "images" / "a.png").is_file() and not (tmp_path / "out").exists()
            w.add("b", _image(), np.zeros((3, 3)))
    assert list(tmp_path.iterdir()) == []
    # an existing, non-empty output replaced with overwrite: untouched by a failure, updated file by file on success
    out = tmp_path / "old"
    with PreparedDatasetWriter(out) as w:
        w.add("a", _image(seed=1))
        w.add("keep", _image(seed=2))
        w.finalize(val_fraction=0.0)
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    with pytest.raises(DatasetError, match="no images were converted"):
        with PreparedDatasetWriter(out, overwrite=True) as w:
            w.finalize()
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    with PreparedDatasetWriter(out, overwrite=True) as w:
        w.add("a", _image(seed=3))
        w.finalize(val_fraction=0.0)
    after = _tree(out)
    assert after["notes.txt"] == b"mine" and after["images/keep.png"] == before["images/keep.png"]
    assert after["images/a.png"] != before["images/a.png"]
    assert [it["image"] for it in load_datalist(out / "datalist.json")["training"]] == ["images/a.png"]
    # an empty existing folder becomes the dataset; a writer dropped without finalize cleans up when collected
    (tmp_path / "empty").mkdir()
    w = PreparedDatasetWriter(tmp_path / "empty")
    w.add("x", _image())
    w.finalize(val_fraction=0.0)
    assert (tmp_path / "empty" / "images" / "x.png").is_file()
    w = PreparedDatasetWriter(tmp_path / "dropped")
    w.add("x", _image())
    staging = w.staging_dir
    del w
    gc.collect()
    assert not staging.exists() and not (tmp_path / "dropped").exists()


def test_failed_converter_leaves_nothing_behind(tmp_path):
    """The converters use the writer as a context manager: BUSI with an unreadable image fails cleanly."""
    from usseg_monai.data.busi import prepare_busi

    src = tmp_path / "busi" / "benign"
    src.mkdir(parents=True)
    for i in (1, 2):
        save_png(src / f"benign ({i}).png", _image(seed=i))
        save_png(src / f"benign ({i})_mask.png", (_image(seed=i) > 128).astype(np.uint8) * 255)
    (src / "benign (2).png").write_bytes(b"not a png")
    with pytest.raises(DatasetError):
        prepare_busi(tmp_path / "busi", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busi"]

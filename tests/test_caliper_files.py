"""Caliper files in prepared datasets: the writer's prepare-time option and ``derive_dataset_calipers``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from usseg_monai.calipers import calipers_from_mask, load_calipers
from usseg_monai.data.caliper_files import derive_dataset_calipers, load_mask
from usseg_monai.data.io import DatasetError, load_datalist, save_png
from usseg_monai.data.caliper_derivation import DEFAULT_CALIPER_MIN_VOXELS, CaliperDerivation, caliper_defaults
from usseg_monai.data.prepared import PreparedDatasetWriter


def _disk(shape, centre, radii):
    g = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum(((gi - c) / r) ** 2 for gi, c, r in zip(g, centre, radii)) <= 1.0


def _mask_2d():
    """An ellipse of ~200 px, a second lesion of ~50 px and a 3-pixel speckle blob, (x, y) = (40, 30)."""
    m = _disk((40, 30), (14, 12), (9, 7)) | _disk((40, 30), (32, 22), (4, 4))
    m[36:39, 2] = True
    return m


def _image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _same_geometry(a, b):
    assert a.spacing == b.spacing and a.image_shape == b.image_shape and len(a) == len(b)
    for la, lb in zip(a.lesions, b.lesions):
        np.testing.assert_allclose(la.segments, lb.segments, rtol=0, atol=1e-12)


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_writer_calipers_2d_round_trip_counts_and_keys(tmp_path):
    w = PreparedDatasetWriter(tmp_path / "out", calipers=True, name="t")
    mask = _mask_2d()
    w.add("a", _image(mask.shape), mask, spacing=(0.2, 0.25), class_name="benign")
    w.add("empty", _image(mask.shape, 1), np.zeros(mask.shape), class_name="normal")
    w.add("nomask", _image(mask.shape, 2), class_name="normal")
    summary = w.finalize(val_fraction=0.0)
    out = tmp_path / "out"
    items = {Path(it["image"]).stem: it for it in load_datalist(out / "datalist.json")["training"]}
    assert items["a"]["calipers"] == "calipers/a.json" and items["empty"]["calipers"] == "calipers/empty.json"
    assert "calipers" not in items["nomask"]
    assert sorted(p.name for p in (out / "calipers").iterdir()) == ["a.json", "empty.json"]
    # the JSON read back is calipers_from_mask of the mask (speckle under 20 voxels dropped)
    ann = load_calipers(out / "calipers/a.json")
    _same_geometry(ann, calipers_from_mask(mask, (0.2, 0.25), min_voxels=DEFAULT_CALIPER_MIN_VOXELS))
    assert len(ann) == 2 and ann.spacing == (0.2, 0.25) and ann.image_shape == (40, 30)
    assert ann.meta == {"derived_from": "mask", "min_voxels": 20, "jitter_mm": 0.0}
    empty = load_calipers(out / "calipers/empty.json")
    assert len(empty) == 0 and empty.spacing == (1.0, 1.0)  # no spacing given: pixel units
    assert summary["calipers"] == {
        "files": 2, "lesions": 2, "empty_annotations": 1, "small_components_ignored": 1,
        "jitter_mm": 0.0, "seed": 0, "min_voxels": 20,
    }
    assert summary["n_with_calipers"] == 2
    assert json.loads((out / "summary.json").read_text())["calipers"]["files"] == 2


def test_writer_calipers_3d_and_min_voxels(tmp_path):
    m = _disk((20, 16, 10), (9, 8, 5), (6, 4, 3))
    m[0, 0, 0] = True  # one-voxel speckle
    w = PreparedDatasetWriter(tmp_path / "o", spatial_dims=3, calipers=True, caliper_min_voxels=1)
    w.add("v", _image(m.shape).astype(np.float32), m, spacing=(0.5, 0.4, 1.0))
    s = w.finalize(val_fraction=0.0)
    ann = load_calipers(tmp_path / "o/calipers/v.json")
    _same_geometry(ann, calipers_from_mask(m, (0.5, 0.4, 1.0)))
    assert len(ann) == 2 and ann.lesions[0].segments.shape == (3, 2, 3)
    assert s["calipers"]["small_components_ignored"] == 0 and s["calipers"]["min_voxels"] == 1


def test_writer_without_calipers_writes_none(tmp_path):
    w = PreparedDatasetWriter(tmp_path / "o")
    w.add("a", _image((40, 30)), _mask_2d())
    s = w.finalize(val_fraction=0.0)
    assert not (tmp_path / "o/calipers").exists() and "calipers" not in s
    assert "calipers" not in load_datalist(tmp_path / "o/datalist.json")["training"][0]


def test_jitter_is_per_item_and_keeps_lengths_close(tmp_path):
    mask = _mask_2d()

    def write(folder, order):
        w = PreparedDatasetWriter(folder, calipers=True, caliper_jitter_mm=0.3, caliper_seed=5)
        for name in order:
            w.add(name, _image(mask.shape), mask, spacing=(0.2, 0.2))
        w.finalize(val_fraction=0.0)

    write(tmp_path / "ab", ["a", "b"])
    write(tmp_path / "ba", ["b", "a"])
    a1, a2 = (load_calipers(tmp_path / f / "calipers/a.json") for f in ("ab", "ba"))
    b1 = load_calipers(tmp_path / "ab/calipers/b.json")
    _same_geometry(a1, a2)  # an item's calipers do not depend on the order of the items
    assert not np.allclose(a1.lesions[0].segments, b1.lesions[0].segments)  # independent streams per item
    exact = calipers_from_mask(mask, (0.2, 0.2), min_voxels=20)
    assert not np.allclose(a1.lesions[0].segments, exact.lesions[0].segments)
    np.testing.assert_allclose(a1.lesions[0].lengths_mm(a1.spacing), exact.lesions[0].lengths_mm(exact.spacing),
                               atol=1.5)
    assert a1.meta["seed"] == 5 and a1.meta["jitter_mm"] == 0.3


def test_caliper_defaults_context_reaches_writers_and_resets(tmp_path):
    with caliper_defaults(jitter_mm=0.0, min_voxels=1) as opts:
        assert opts == CaliperDerivation(True, 0.0, 0, 1)
        inside = PreparedDatasetWriter(tmp_path / "a")
        off = PreparedDatasetWriter(tmp_path / "b", calipers=False)
    after = PreparedDatasetWriter(tmp_path / "c")
    assert inside.caliper_derivation.enabled and inside.caliper_derivation.min_voxels == 1
    assert not off.caliper_derivation.enabled and not after.caliper_derivation.enabled
    with pytest.raises(ValueError, match="jitter_mm"):
        CaliperDerivation(True, -1.0)
    with pytest.raises(ValueError, match="min_voxels"):
        PreparedDatasetWriter(tmp_path / "d", calipers=True, caliper_min_voxels=0)


def _prepared(root: Path, spatial_dims: int = 2) -> Path:
    w = PreparedDatasetWriter(root, spatial_dims=spatial_dims, name="src")
    if spatial_dims == 2:
        mask = _mask_2d()
        w.add("one", _image(mask.shape), mask, spacing=(0.2, 0.2), class_name="benign")
        w.add("two", _image(mask.shape, 1), np.flip(mask, 0), class_name="benign")
        w.add("empty", _image(mask.shape, 2), np.zeros(mask.shape), class_name="normal")
        w.add("nomask", _image(mask.shape, 3), class_name="normal")
    else:
        m = _disk((18, 14, 8), (9, 7, 4), (5, 4, 2.5))
        w.add("vol", _image(m.shape).astype(np.float32), m, spacing=(0.5, 0.4, 1.2))
    w.finalize(val_fraction=0.25 if spatial_dims == 2 else 0.0, seed=0)
    return root


def test_derive_dataset_calipers_new_folder_source_untouched(tmp_path):
    src = _prepared(tmp_path / "src")
    before = _tree_hash(src)
    summary = derive_dataset_calipers(src, tmp_path / "out")
    assert _tree_hash(src) == before
    out = tmp_path / "out"
    dl = load_datalist(out / "datalist.json", check_files=True)  # image/label paths resolve from OUT_DIR
    src_dl = load_datalist(src / "datalist.json")
    assert dl["derived_from"] == "../src/datalist.json" and dl["name"] == "src"
    n = 0
    for section in ("training", "validation", "test"):
        assert len(dl[section]) == len(src_dl[section])
        for it, orig in zip(dl[section], src_dl[section]):
            assert (out / it["image"]).resolve() == (src / orig["image"]).resolve()
            if "label" not in orig:
                assert "calipers" not in it
                continue
            n += 1
            mask, _ = load_mask(src / orig["label"])
            ann = load_calipers(out / it["calipers"])
            _same_geometry(ann, calipers_from_mask(mask, orig.get("spacing"), allow_empty=True, min_voxels=20))
    assert n == 3
    assert summary["calipers"]["files"] == 3 and summary["calipers"]["empty_annotations"] == 1
    assert summary["calipers"]["lesions"] == 4 and summary["calipers"]["small_components_ignored"] == 2
    assert json.loads((out / "summary.json").read_text())["calipers"] == summary["calipers"]


def test_derive_dataset_calipers_3d_spacing_absolute_sections(tmp_path):
    src = _prepared(tmp_path / "src3", spatial_dims=3)
    derive_dataset_calipers(src, tmp_path / "o3", absolute_paths=True, jitter_mm=0.2, seed=3)
    dl = load_datalist(tmp_path / "o3/datalist.json")
    it = dl["training"][0]
    assert Path(it["image"]).is_absolute() and Path(it["image"]) == (src / "images/vol.nii.gz").resolve()
    ann = load_calipers(tmp_path / "o3" / it["calipers"])
    assert ann.spacing == (0.5, 0.4, 1.2) and ann.image_shape == (18, 14, 8) and ann.meta["jitter_mm"] == 0.2
    # only the chosen sections get calipers; the others are copied
    s = derive_dataset_calipers(src, tmp_path / "o4", sections=["validation"])
    assert s["calipers"]["files"] == 0 and "calipers" not in load_datalist(tmp_path / "o4/datalist.json")["training"][0]


def test_derive_dataset_calipers_errors_name_the_file(tmp_path):
    src = _prepared(tmp_path / "src")
    derive_dataset_calipers(src, tmp_path / "out")
    with pytest.raises(DatasetError, match="not empty"):
        derive_dataset_calipers(src, tmp_path / "out")
    derive_dataset_calipers(src, tmp_path / "out", overwrite=True)
    with pytest.raises(DatasetError, match="inside the source"):
        derive_dataset_calipers(src, src / "calipers_out")
    with pytest.raises(DatasetError, match="inside the source"):
        derive_dataset_calipers(src, src)
    assert not (src / "calipers_out").exists() and not (src / "calipers").exists()
    with pytest.raises(ValueError, match="unknown datalist section"):
        derive_dataset_calipers(src, tmp_path / "o2", sections=["train"])
    with pytest.raises(DatasetError, match="datalist"):
        derive_dataset_calipers(src, tmp_path / "o3", datalist=src / "nope.json")
    # a corrupt mask: the error names the mask file
    bad = tmp_path / "bad"
    bad.mkdir()
    save_png(bad / "img.png", _image((8, 6)))
    (bad / "mask.png").write_bytes(b"not a png")
    (bad / "datalist.json").write_text(json.dumps({"training": [{"image": "img.png", "label": "mask.png"}]}))
    with pytest.raises(DatasetError, match="mask.png"):
        derive_dataset_calipers(bad, tmp_path / "o5")

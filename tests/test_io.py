"""usseg_monai.data.io: atomic writes, output folder rules, axis order round trips."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from monai.transforms import LoadImage

from usseg_monai.data.io import (
    DatasetError,
    atomic_path,
    atomic_write_json,
    load_datalist,
    load_png,
    load_volume,
    prepare_output_dir,
    save_png,
    save_volume,
    write_datalist,
)


def test_png_round_trip_keeps_monai_axis_order(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (20, 12), dtype=np.uint8)  # (x, y): 20 wide, 12 tall
    save_png(tmp_path / "a.png", a)
    from PIL import Image

    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (20, 12)  # PIL reports (width, height)
    loaded = LoadImage(image_only=True)(str(tmp_path / "a.png"))
    np.testing.assert_array_equal(loaded.numpy(), a)
    np.testing.assert_array_equal(load_png(tmp_path / "a.png"), a)


def test_volume_round_trip_keeps_spacing(tmp_path):
    v = np.random.default_rng(1).random((10, 7, 4)).astype(np.float32)
    save_volume(tmp_path / "v.nii.gz", v, [0.5, 0.7, 2.0])
    loaded = LoadImage(image_only=True, reader="ITKReader")(str(tmp_path / "v.nii.gz"))
    np.testing.assert_allclose(loaded.numpy(), v)
    np.testing.assert_allclose(loaded.pixdim.numpy(), [0.5, 0.7, 2.0], atol=1e-6)
    arr, geom = load_volume(tmp_path / "v.nii.gz")
    np.testing.assert_allclose(arr, v)
    np.testing.assert_allclose(geom["spacing"], [0.5, 0.7, 2.0], atol=1e-6)


def test_atomic_path_leaves_target_untouched_on_error(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        written = atomic_write_json(tmp_path / "atomic.json", {"a": 1})
        assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_json(tmp_path / "private.json", {}).stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_prepare_output_dir_rules(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(DatasetError, match="inside the source"):
        prepare_output_dir(src / "out", source=src)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "x").write_text("1")
    with pytest.raises(DatasetError, match="not empty"):
        prepare_output_dir(out)
    assert prepare_output_dir(out, overwrite=True) == out


def test_datalist_validation_names_missing_file(tmp_path):
    save_png(tmp_path / "images" / "a.png", np.zeros((4, 4), np.uint8))
    dl = {"training": [{"image": "images/a.png", "label": "labels/a.png"}]}
    with pytest.raises(DatasetError, match=r"training\[0\] 'label' names a missing file"):
        write_datalist(tmp_path, dl)
    dl["training"][0].pop("label")
    write_datalist(tmp_path, dl)
    assert load_datalist(tmp_path / "datalist.json")["training"][0]["image"] == "images/a.png"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_datalist(tmp_path / "bad.json")


def test_json_gz_round_trip_and_errors(tmp_path):
    from usseg_monai.data.io import atomic_write_json, read_json

    obj = {"runs": [{"dice": np.float32(0.5), "n": np.int64(3)}], "path": tmp_path}
    a = atomic_write_json(tmp_path / "a.json.gz", obj)
    assert gzip.decompress(a.read_bytes()).startswith(b"{")  # compressed
    assert read_json(a) == {"runs": [{"dice": 0.5, "n": 3}], "path": str(tmp_path)}
    b = atomic_write_json(tmp_path / "b.json.gz", obj)
    assert a.read_bytes() == b.read_bytes()  # no time stamp: the same object, the same bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json.gz", "b.json.gz"]  # no temporary left
    (tmp_path / "cut.json.gz").write_bytes(a.read_bytes()[:20])
    with pytest.raises(DatasetError, match="cut.json.gz is a truncated gzip file"):
        read_json(tmp_path / "cut.json.gz", "suite results")
    (tmp_path / "plain.json.gz").write_text("{}")
    with pytest.raises(DatasetError, match="cannot read suite results .*plain.json.gz"):
        read_json(tmp_path / "plain.json.gz", "suite results")


def test_load_png_names_unreadable_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        load_png(bad)

"""The datalist path rule: every file a datalist names lies inside its folder or one of its ``allowed_roots``.

Readers (``load_datalist``, ``load_datalist_section``, the bundles' data loading) and writers (``write_datalist``,
``usseg split``, ``usseg calipers``, pseudo-label datalists) apply it; the message names the datalist, the section,
the item, the key and the rule's documentation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from usseg_monai.calipers import calipers_from_mask, save_calipers
from usseg_monai.data.caliper_files import derive_dataset_calipers
from usseg_monai.data.datalist import load_datalist_section, load_semi_supervised_sections
from usseg_monai.data.io import DatasetError, derived_roots, load_datalist, save_png, write_datalist
from usseg_monai.data.resplit import split_datalist
from usseg_monai.data.pseudo_labels import pseudo_label_datalist


def _case(root: Path, name: str, cls: str = "benign") -> dict[str, str]:
    """An 24x20 image with an elliptic lesion under ``root/images`` and ``root/labels``; its datalist item."""
    yy, xx = np.mgrid[:24, :20]
    mask = (((yy - 12) / 7.0) ** 2 + ((xx - 10) / 5.0) ** 2) <= 1.0
    save_png(root / "images" / f"{name}.png", (mask * 180 + 20).astype(np.uint8))
    save_png(root / "labels" / f"{name}.png", mask.astype(np.uint8) * 255)
    return {"image": f"images/{name}.png", "label": f"labels/{name}.png", "class": cls, "case_id": name}


def _dataset(root: Path, n: int = 8) -> Path:
    """A prepared dataset of ``n`` cases (two classes), training/validation/test, at ``root/datalist.json``."""
    items = [_case(root, f"c{i}", "benign" if i % 2 else "malignant") for i in range(n)]
    sections = {"training": items[: n - 2], "validation": items[n - 2 : n - 1], "test": items[n - 1 :]}
    return write_datalist(root, sections)


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_relative_paths_inside_the_folder_load_as_absolute(tmp_path):
    ds = _dataset(tmp_path / "ds")
    items = load_datalist_section(ds, "training")
    assert len(items) == 6
    assert all(Path(it["image"]).is_absolute() and Path(it["image"]).is_file() for it in items)
    assert Path(items[0]["label"]) == (tmp_path / "ds" / "labels" / "c0.png")


@pytest.mark.parametrize(
    "value, shown",
    [
        ("../outside/x.png", "'../outside/x.png'"),
        ("images/../../outside/x.png", "'images/../../outside/x.png'"),
    ],
)
def test_climbing_out_of_the_dataset_is_refused(tmp_path, value, shown):
    ds = _dataset(tmp_path / "ds")
    _case(tmp_path / "outside", "x")
    data = json.loads(ds.read_text())
    data["training"][1]["image"] = value
    bad = _write(tmp_path / "ds" / "bad.json", data)
    for load in (lambda: load_datalist(bad), lambda: load_datalist_section(bad, "training")):
        with pytest.raises(DatasetError) as e:
            load()
        msg = str(e.value)
        assert str(bad) in msg and "training[1] 'image'" in msg and shown in msg
        assert "outside the dataset" in msg and "allowed_roots" in msg and "Path rule" in msg


def test_absolute_path_outside_is_refused_even_without_file_checks(tmp_path):
    ds = _dataset(tmp_path / "ds")
    other = _case(tmp_path / "elsewhere", "y")
    data = json.loads(ds.read_text())
    data["validation"][0]["label"] = str(tmp_path / "elsewhere" / other["label"])
    bad = _write(tmp_path / "ds" / "abs.json", data)
    with pytest.raises(DatasetError, match=r"validation\[0\] 'label' = .* outside the dataset"):
        load_datalist(bad, check_files=False)
    with pytest.raises(DatasetError, match=r"validation\[0\] 'label'"):
        load_datalist_section(bad, "validation", check_files=False)
    # absolute paths inside the datalist's own folder are fine
    data["validation"][0]["label"] = str(tmp_path / "ds" / "labels" / "c0.png")
    ok = _write(tmp_path / "ds" / "abs_inside.json", data)
    assert load_datalist_section(ok, "validation")[0]["label"] == str(tmp_path / "ds" / "labels" / "c0.png")


def test_allowed_roots_opt_in_relative_and_absolute(tmp_path):
    _case(tmp_path / "store", "z")
    items = [{"image": str(tmp_path / "store/images/z.png"), "label": "../store/labels/z.png"}]
    for roots in (["../store"], [str(tmp_path / "store")], ["/"]):
        path = _write(tmp_path / "lists" / "dl.json", {"test": items, "allowed_roots": roots})
        out = load_datalist_section(path, "test")
        assert out[0]["label"] == str(tmp_path / "store" / "labels" / "z.png")
    # the root is a folder boundary, not a string prefix: 'store2' is not inside 'store'
    _case(tmp_path / "store2", "w")
    dl = {"test": [{"image": "../store2/images/w.png"}], "allowed_roots": ["../store"]}
    path = _write(tmp_path / "lists" / "dl2.json", dl)
    with pytest.raises(DatasetError, match="outside the dataset"):
        load_datalist(path)


@pytest.mark.parametrize("roots", ["../store", [1], [""], {"a": "b"}])
def test_allowed_roots_must_be_a_list_of_folders(tmp_path, roots):
    ds = _dataset(tmp_path / "ds", n=3)
    data = json.loads(ds.read_text())
    data["allowed_roots"] = roots
    bad = _write(tmp_path / "ds" / "roots.json", data)
    with pytest.raises(DatasetError, match=r"roots\.json: 'allowed_roots' must be a list of folder paths"):
        load_datalist(bad)


@pytest.mark.parametrize("value", [3, None, "", "   ", ["images/c0.png"]])
def test_path_entries_must_be_non_empty_strings(tmp_path, value):
    ds = _dataset(tmp_path / "ds", n=3)
    data = json.loads(ds.read_text())
    data["training"][0]["label"] = value
    bad = _write(tmp_path / "ds" / "types.json", data)
    with pytest.raises(DatasetError, match=r"types\.json: training\[0\] 'label' must be a non-empty file path"):
        load_datalist(bad, check_files=False)
    with pytest.raises(DatasetError, match=r"training\[0\] 'label' must be a non-empty file path"):
        load_datalist_section(bad, "training", check_files=False)


def test_a_folder_is_not_an_image(tmp_path):
    ds = _dataset(tmp_path / "ds", n=3)
    data = json.loads(ds.read_text())
    data["training"][0]["image"] = "images"
    bad = _write(tmp_path / "ds" / "folder.json", data)
    with pytest.raises(DatasetError, match=r"training\[0\] 'image' names a folder, not a file"):
        load_datalist(bad)
    with pytest.raises(DatasetError, match=r"training\[0\] 'image' names a folder, not a file"):
        load_datalist_section(bad, "training")
    data["training"][0]["image"] = "images/none.png"
    bad = _write(tmp_path / "ds" / "missing.json", data)
    with pytest.raises(DatasetError, match=r"training\[0\] 'image' names a missing file: .*none\.png"):
        load_datalist_section(bad, "training")


def test_writer_refuses_a_path_outside(tmp_path):
    _case(tmp_path / "outside", "x")
    with pytest.raises(DatasetError, match="outside the dataset"):
        write_datalist(tmp_path / "ds", {"training": [{"image": "../outside/images/x.png"}]})
    assert not (tmp_path / "ds" / "datalist.json").exists()


@pytest.mark.skipif(os.name == "nt", reason="symbolic links")
def test_links_inside_the_dataset_are_followed_when_reading(tmp_path):
    """The check is lexical: a dataset folder may link to where its files are stored."""
    store = tmp_path / "store"
    _case(store, "s")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "images").symlink_to(store / "images")
    path = _write(tmp_path / "ds" / "dl.json", {"test": [{"image": "images/s.png"}]})
    assert load_datalist_section(path, "test", require_label=False)[0]["image"] == str(tmp_path / "ds/images/s.png")


def test_split_beside_and_elsewhere_and_never_onto_its_input(tmp_path):
    ds = _dataset(tmp_path / "ds")
    before = ds.read_bytes()
    with pytest.raises(DatasetError, match="is the input datalist"):
        split_datalist(ds, ds, labeled=0.5, overwrite=True)
    assert ds.read_bytes() == before
    # beside the source: no roots needed
    split_datalist(ds, tmp_path / "ds" / "half.json", labeled=0.5)
    beside = load_datalist(tmp_path / "ds" / "half.json")
    assert "allowed_roots" not in beside
    # elsewhere: the new datalist names the source folder as its root, relative to itself, and loads
    out = tmp_path / "runs" / "a" / "half.json"
    split_datalist(ds, out, labeled=0.5)
    data = load_datalist(out)
    assert data["allowed_roots"] == ["../../ds"]
    sections = load_semi_supervised_sections(out, "training", labeled=None)
    loaded = sections["labeled"] + sections["unlabeled"]
    assert len(loaded) == 6 and all(Path(it["image"]).is_file() for it in loaded)
    # a split of a split elsewhere keeps the original root (and not the intermediate folder's own)
    resplit = tmp_path / "runs" / "b" / "resplit.json"
    split_datalist(ds, resplit, resplit=True, val_fraction=0.2, test_fraction=0.2)
    split_datalist(resplit, tmp_path / "runs" / "c" / "again.json", labeled=0.5)
    again = load_datalist(tmp_path / "runs" / "c" / "again.json")
    assert sorted(again["allowed_roots"]) == ["../../ds", "../b"]
    assert len(load_datalist_section(tmp_path / "runs" / "c" / "again.json", "test")) >= 1


def test_calipers_and_pseudo_labels_record_the_source_root(tmp_path):
    ds = _dataset(tmp_path / "ds")
    derive_dataset_calipers(ds.parent, tmp_path / "cal")
    cal = load_datalist(tmp_path / "cal" / "datalist.json")
    assert cal["allowed_roots"] == ["../ds"]
    assert Path(load_datalist_section(tmp_path / "cal" / "datalist.json", "training")[0]["calipers"]).is_file()
    pseudo = pseudo_label_datalist(tmp_path / "cal" / "datalist.json", "radical", tmp_path / "pseudo")
    data = load_datalist(pseudo)
    assert set(data["allowed_roots"]) == {str(tmp_path / "cal"), str(tmp_path / "ds")}
    train = load_datalist_section(pseudo, "training")
    assert all(Path(it["label"]).parent == tmp_path / "pseudo" / "labels_radical" for it in train)
    assert Path(load_datalist_section(pseudo, "test")[0]["label"]) == tmp_path / "ds" / "labels" / "c7.png"


def test_derived_roots_skip_the_output_folder_itself(tmp_path):
    ds = _dataset(tmp_path / "ds", n=3)
    data = json.loads(ds.read_text())
    assert derived_roots(data, ds, tmp_path / "ds") == []
    assert derived_roots(data, ds, tmp_path / "x" / "y") == ["../../ds"]
    assert derived_roots(data, ds, tmp_path / "x", absolute=True) == [str(tmp_path / "ds")]
    data["allowed_roots"] = ["../x"]
    assert derived_roots(data, ds, tmp_path / "x") == ["../ds"]


def test_caliper_file_entries_obey_the_rule(tmp_path):
    ds = _dataset(tmp_path / "ds", n=3)
    yy, xx = np.mgrid[:24, :20]
    ann = calipers_from_mask((((yy - 12) / 7.0) ** 2 + ((xx - 10) / 5.0) ** 2) <= 1.0)
    save_calipers(tmp_path / "loose" / "c0.json", ann)
    data = json.loads(ds.read_text())
    data["training"][0]["calipers"] = "../loose/c0.json"
    bad = _write(tmp_path / "ds" / "cal.json", data)
    with pytest.raises(DatasetError, match=r"training\[0\] 'calipers' = '\.\./loose/c0\.json'"):
        load_datalist_section(bad, "training", label_key="calipers")
    data["allowed_roots"] = ["../loose"]
    ok = _write(tmp_path / "ds" / "cal_ok.json", data)
    assert load_datalist_section(ok, "training", require_label=False)[0]["calipers"] == str(tmp_path / "loose/c0.json")

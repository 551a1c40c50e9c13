"""load_semi_supervised_sections: the labeled / unlabeled streams of the semi-supervised bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_utils import make_tiny_dataset

from usseg_monai.data.datalist import load_semi_supervised_sections
from usseg_monai.data.io import DatasetError
from usseg_monai.data.splits import partition_training


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_semi"), counts=(10, 2, 2))


def _rewrite(root: Path, name: str, training: list[dict]) -> Path:
    data = json.loads((root / "datalist.json").read_text())
    data["training"] = training
    out = root / name
    out.write_text(json.dumps(data))
    return out


def test_unpartitioned_section_is_partitioned_by_fraction(tiny):
    r = load_semi_supervised_sections(tiny / "datalist.json", labeled=0.3, seed=0)
    assert len(r["labeled"]) == 3 and len(r["unlabeled"]) == 7
    assert all("label" in it and Path(it["label"]).is_absolute() for it in r["labeled"])
    assert all("label" not in it for it in r["unlabeled"])
    images = {it["image"] for it in r["labeled"]} | {it["image"] for it in r["unlabeled"]}
    assert len(images) == 10
    # deterministic for a seed, and nested: the 3 labeled items are among the 5 of labeled=0.5
    again = load_semi_supervised_sections(tiny / "datalist.json", labeled=0.3, seed=0)
    assert [it["image"] for it in again["labeled"]] == [it["image"] for it in r["labeled"]]
    more = load_semi_supervised_sections(tiny / "datalist.json", labeled=0.5, seed=0)
    assert {it["image"] for it in r["labeled"]} <= {it["image"] for it in more["labeled"]}


def test_tiny_fraction_keeps_one_labeled_and_one_unlabeled(tiny):
    r = load_semi_supervised_sections(tiny / "datalist.json", labeled=0.04)  # 0.4 items rounds to 0
    assert len(r["labeled"]) == 1 and len(r["unlabeled"]) == 9
    r = load_semi_supervised_sections(tiny / "datalist.json", labeled=1.0)
    assert len(r["labeled"]) == 9 and len(r["unlabeled"]) == 1


def test_partitioned_datalist_is_used_as_is(tiny):
    data = json.loads((tiny / "datalist.json").read_text())
    parted = partition_training(data["training"], labeled=4, class_only=3, seed=1)
    path = _rewrite(tiny, "parted.json", parted)
    r = load_semi_supervised_sections(path, labeled=0.9, class_key="class_index", num_classes=3)
    masked = [it["image"] for it in parted if it["supervision"] == "mask"]
    class_only = [it["image"] for it in parted if it["supervision"] == "class"]
    assert [Path(it["image"]).name for it in r["labeled"]] == [Path(m).name for m in masked]
    # class-only stream: exactly the 3 class-only items (the 3 marked 'none' keep a class in the file but
    # the partition says it is not to be used)
    assert [Path(it["image"]).name for it in r["unlabeled"]] == [Path(c).name for c in class_only]
    assert all("label" not in it for it in r["unlabeled"])
    # without a class key (CRII-Net) both the class-only and the unlabeled items are the unlabeled stream
    r = load_semi_supervised_sections(path)
    assert len(r["labeled"]) == 4 and len(r["unlabeled"]) == 6


def test_class_only_stream_requires_a_class_and_fills_labeled_without_class(tiny):
    data = json.loads((tiny / "datalist.json").read_text())
    training = [dict(it) for it in data["training"]]
    del training[0]["class_index"]  # a labeled item without class -> -1
    for it in training[5:]:
        it.pop("label")  # no mask
    del training[9]["class_index"]  # neither mask nor class: left out
    path = _rewrite(tiny, "classes.json", training)
    r = load_semi_supervised_sections(path, class_key="class_index", num_classes=3)
    assert len(r["labeled"]) == 5 and r["labeled"][0]["class_index"] == -1
    assert len(r["unlabeled"]) == 4 and all(it["class_index"] in (0, 1, 2) for it in r["unlabeled"])


def test_class_only_fraction_on_unpartitioned_section(tiny):
    r = load_semi_supervised_sections(tiny / "datalist.json", class_only=4, class_key="class_index", num_classes=3)
    assert len(r["labeled"]) == 6 and len(r["unlabeled"]) == 4
    assert all("class_index" in it and "label" not in it for it in r["unlabeled"])


def test_errors_name_datalist_section_and_item(tiny):
    with pytest.raises(DatasetError, match="no item without a mask"):
        load_semi_supervised_sections(tiny / "datalist.json")  # nothing partitioned, nothing asked
    empty = load_semi_supervised_sections(tiny / "datalist.json", require_unlabeled=False)
    assert empty["unlabeled"] == [] and len(empty["labeled"]) == 10
    data = json.loads((tiny / "datalist.json").read_text())
    bad = [dict(it) for it in data["training"]]
    bad[2]["class_index"] = 7
    path = _rewrite(tiny, "bad_class.json", bad)
    with pytest.raises(DatasetError, match=r"bad_class.json: training\[2\] .* class_index=7"):
        load_semi_supervised_sections(path, class_only=3, class_key="class_index", num_classes=3)
    nomask = [{k: v for k, v in it.items() if k != "label"} for it in data["training"]]
    path = _rewrite(tiny, "nomask.json", nomask)
    with pytest.raises(DatasetError, match="nomask.json: section 'training' has no item with a 'label'"):
        load_semi_supervised_sections(path)
    with pytest.raises(DatasetError, match="labeled"):
        load_semi_supervised_sections(tiny / "datalist.json", labeled=-0.5)

"""Splits and supervision partitions: stratification, grouping, determinism, k-fold cover, counts."""

from __future__ import annotations

import copy
import random
from collections import Counter

import pytest

from usseg_monai.data.splits import SplitOptions, partition_training, resolve_count, split_items


def _items(n=200, classes=("benign", "malignant", "normal"), weights=(0.55, 0.28, 0.17), per_case=1, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        case = i // per_case
        # all images of a case share the class, as in DDTI
        cls = random.Random(case * 7919 + seed).choices(classes, weights)[0]
        out.append({"image": f"images/{i}.png", "label": f"labels/{i}.png", "class": cls, "case_id": f"case{case}"})
    rng.shuffle(out)
    return out


def _ids(items):
    return sorted(it["image"] for it in items)


def test_stratified_proportions_singletons():
    items = _items(300)
    parts = split_items(items, val_fraction=0.2, test_fraction=0.1, seed=3)
    total = Counter(it["class"] for it in items)
    assert sum(len(v) for v in parts.values()) == 300
    assert len(parts["validation"]) == 60 and len(parts["test"]) == 30
    for section, frac in (("validation", 0.2), ("test", 0.1), ("training", 0.7)):
        got = Counter(it["class"] for it in parts[section])
        for cls, n in total.items():
            assert abs(got[cls] - frac * n) <= 1.0, (section, cls, got[cls], frac * n)


def test_no_group_on_two_sides_and_partition_is_complete():
    items = _items(240, per_case=4)
    parts = split_items(items, val_fraction=0.25, test_fraction=0.15, seed=1)
    sides = {}
    for section, its in parts.items():
        for it in its:
            assert sides.setdefault(it["case_id"], section) == section, it["case_id"]
    assert _ids(sum(parts.values(), [])) == _ids(items)
    # group sizes are 4: proportions hold within one group
    assert abs(len(parts["validation"]) - 60) <= 4
    assert abs(len(parts["test"]) - 36) <= 4


def test_deterministic_per_seed_and_input_order():
    items = _items(150, per_case=2)
    a = split_items(items, val_fraction=0.2, test_fraction=0.1, seed=5)
    shuffled = list(items)
    random.Random(9).shuffle(shuffled)
    b = split_items(shuffled, val_fraction=0.2, test_fraction=0.1, seed=5)
    c = split_items(items, val_fraction=0.2, test_fraction=0.1, seed=6)
    for s in a:
        assert _ids(a[s]) == _ids(b[s])
    assert _ids(a["validation"]) != _ids(c["validation"])


def test_inputs_untouched_and_copies_returned():
    items = _items(50)
    before = copy.deepcopy(items)
    parts = split_items(items, seed=0)
    parts["training"][0]["class"] = "changed"
    assert items == before


def test_kfold_covers_every_non_test_item_once():
    items = _items(203, per_case=3)
    k = 5
    tests = set()
    seen = Counter()
    for fold in range(k):
        parts = split_items(items, test_fraction=0.1, seed=2, n_folds=k, fold=fold)
        t = set(_ids(parts["test"]))
        if fold == 0:
            tests = t
        assert t == tests  # the test set does not depend on the fold
        assert not set(_ids(parts["validation"])) & set(_ids(parts["training"]))
        for it in parts["validation"]:
            seen[it["image"]] += 1
        sizes = len(parts["validation"])
        assert abs(sizes - (203 - len(tests)) / k) <= 3  # groups of 3
    non_test = set(_ids(items)) - tests
    assert set(seen) == non_test and set(seen.values()) == {1}
    assert abs(len(tests) - 20.3) <= 3


def test_stratify_and_group_optional():
    items = [{"image": f"{i}.png"} for i in range(10)]
    parts = split_items(items, val_fraction=0.3, seed=0, stratify_key=None, group_key=None)
    assert [len(parts[s]) for s in ("training", "validation", "test")] == [7, 3, 0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, "below 1"),
        ({"n_folds": 1}, "n_folds"),
        ({"n_folds": 5, "fold": 5}, "fold"),
        ({"n_folds": 5, "fold": -1}, "fold"),
        ({"n_folds": 50}, "folds"),
    ],
)
def test_bad_split_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        split_items(_items(20), **kwargs)


def test_empty_items_rejected():
    with pytest.raises(ValueError, match="no items"):
        split_items([])


def test_partition_counts_fraction_and_label_removed():
    items = _items(100)
    before = copy.deepcopy(items)
    out = partition_training(items, labeled=0.04, class_only=20, seed=0)
    assert items == before
    sup = Counter(it["supervision"] for it in out)
    assert sup == {"mask": 4, "class": 20, "none": 76}
    for it in out:
        assert ("label" in it) == (it["supervision"] == "mask")
        assert it["class"]  # class kept for every level
    # stratified: 20 class-only drawn in proportion to the classes
    total = Counter(it["class"] for it in items)
    got = Counter(it["class"] for it in out if it["supervision"] == "class")
    for cls, n in total.items():
        assert abs(got[cls] - 20 * n / 100) <= 1.5


def test_partition_rest_and_nested_and_default():
    items = _items(120)
    small = partition_training(items, labeled=0.05, seed=4)
    large = partition_training(items, labeled=0.20, class_only="rest", seed=4)
    s_mask = {it["image"] for it in small if it["supervision"] == "mask"}
    l_mask = {it["image"] for it in large if it["supervision"] == "mask"}
    assert len(s_mask) == 6 and len(l_mask) == 24 and s_mask < l_mask
    assert Counter(it["supervision"] for it in large) == {"mask": 24, "class": 96}
    everything = partition_training(items, seed=0)
    assert all(it["supervision"] == "mask" and "label" in it for it in everything)
    some_class = partition_training(items, class_only=0.25, seed=0)
    assert Counter(it["supervision"] for it in some_class) == {"mask": 90, "class": 30}


def test_partition_errors():
    items = _items(10)
    with pytest.raises(ValueError, match="exceeds"):
        partition_training(items, labeled=11)
    with pytest.raises(ValueError, match="class-only"):
        partition_training(items, labeled=8, class_only=3)
    with pytest.raises(ValueError, match="fraction"):
        partition_training(items, labeled=1.5)
    with pytest.raises(ValueError, match="'rest'"):
        partition_training(items, class_only="all")
    with pytest.raises(ValueError, match="labeled"):
        partition_training(items, class_only="rest")
    unlabeled = [{k: v for k, v in it.items() if k != "label"} for it in items]
    with pytest.raises(ValueError, match="only 0 have"):
        partition_training(unlabeled, labeled=1)


def test_resolve_count():
    assert resolve_count("x", 0.04, 100) == 4
    assert resolve_count("x", 1, 100) == 1
    assert resolve_count("x", 1.0, 100) == 100
    assert resolve_count("x", None, 100) == 0
    with pytest.raises(ValueError):
        resolve_count("x", True, 100)


def test_split_options_defaults_and_resolve():
    opts = SplitOptions()
    assert (opts.seed, opts.val_fraction, opts.test_fraction, opts.n_folds, opts.fold) == (0, 0.2, 0.0, None, 0)
    assert opts.labeled is None and opts.class_only is None and not opts.partitions
    assert opts.record() == {"seed": 0, "test_fraction": 0.0, "val_fraction": 0.2}
    assert SplitOptions.resolve() == opts
    base = SplitOptions(seed=1, test_fraction=0.1)
    assert SplitOptions.resolve(base) is base
    # keywords are merged into the given options and win
    assert SplitOptions.resolve(base, seed=2, n_folds=5) == SplitOptions(seed=2, test_fraction=0.1, n_folds=5)
    assert SplitOptions(n_folds=5, fold=4, labeled=3).record() == {
        "seed": 0, "test_fraction": 0.0, "n_folds": 5, "fold": 4, "labeled": 3, "class_only": None
    }
    with pytest.raises(TypeError, match="'val_fracton'"):
        SplitOptions.resolve(val_fracton=0.1)
    with pytest.raises(TypeError, match="SplitOptions"):
        SplitOptions.resolve({"seed": 1})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, "below 1"),
        ({"n_folds": 1}, "n_folds"),
        ({"n_folds": 5, "fold": 5}, "fold"),
        ({"labeled": -1}, "labeled"),
        ({"labeled": 1.5}, "labeled"),
        ({"labeled": 0.1, "class_only": "all"}, "class_only"),
        ({"class_only": "rest"}, "explicit"),
    ],
)
def test_split_options_checked_on_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SplitOptions(**kwargs)


def test_split_options_apply_matches_functions():
    items = _items(60, per_case=2)
    opts = SplitOptions(seed=3, val_fraction=0.25, test_fraction=0.1, labeled=10, class_only="rest")
    parts = opts.apply(items)
    expected = split_items(items, val_fraction=0.25, test_fraction=0.1, seed=3)
    expected["training"] = partition_training(expected["training"], labeled=10, class_only="rest", seed=3)
    assert parts == expected


def test_prepare_unknown_keyword_is_type_error(tmp_path):
    from usseg_monai.data.busi import prepare_busi
    from usseg_monai.data.phantom import prepare_phantom

    with pytest.raises(TypeError, match="'val_fracton'"):
        prepare_busi(tmp_path / "missing", tmp_path / "out", val_fracton=0.2)
    with pytest.raises(TypeError, match="'n_fold'"):
        prepare_phantom(tmp_path / "ph", n_images=8, image_size=32, n_fold=3)
    assert not (tmp_path / "out").exists() and not (tmp_path / "ph").exists()


def test_split_options_object_or_keywords_same_datalist(tmp_path):
    import json

    from usseg_monai.data.phantom import prepare_phantom

    def datalist(out, **kw):
        prepare_phantom(tmp_path / out, n_images=8, image_size=32, seed=2, **kw)
        return json.loads((tmp_path / out / "datalist.json").read_text())

    as_object = datalist("obj", split=SplitOptions(seed=2, val_fraction=0.25, test_fraction=0.25, labeled=2))
    as_keywords = datalist("kw", test_fraction=0.25, labeled=2)  # seed and val_fraction: phantom defaults
    assert as_object == as_keywords
    assert as_object["split"] == {
        "seed": 2, "test_fraction": 0.25, "val_fraction": 0.25, "labeled": 2, "class_only": None
    }
    assert [len(as_object[s]) for s in ("training", "validation", "test")] == [4, 2, 2]
    # the phantom default split is val_fraction 0.25 with the image seed
    assert datalist("default")["split"] == {"seed": 2, "test_fraction": 0.0, "val_fraction": 0.25}

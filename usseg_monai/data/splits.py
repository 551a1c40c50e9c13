"""Seeded, stratified, grouped data splits and the supervision partition of a training list.

Two operations on lists of datalist items (dicts as in ``docs/conventions.md``):

- :func:`split_items` divides items into ``training`` / ``validation`` / ``test``, stratified by class
  and grouped by case (all images of one case, or identical images, land on the same side), either by
  fractions or as fold ``fold`` of a k-fold cross-validation.
- :func:`partition_training` marks each training item's ``supervision``: ``"mask"`` (mask and class),
  ``"class"`` (class only, as in SemiSeg-CAW) or ``"none"`` (unlabeled, as in CRII-Net). Items that are
  not ``"mask"`` lose their ``"label"`` key, so a training pipeline can never read those masks.

Both are deterministic for a given seed and independent of the input order.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["split_items", "partition_training", "resolve_count", "SUPERVISION_LEVELS"]

SUPERVISION_LEVELS = ("mask", "class", "none")


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def _item_key(item: dict, index: int) -> str:
    """A stable identity for ordering: the image path when present, else the position."""
    return str(item.get("image", f"#{index:09d}"))


def _groups(
    items: Sequence[dict], group_key: str | None, stratify_key: str | None
) -> tuple[list[list[int]], list[Hashable]]:
    """Group item indices; each group's stratum is its most common class (ties: smallest name).

    Groups are returned sorted by a stable key, so the result does not depend on the input order.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        g = item.get(group_key) if group_key is not None else None
        gid = f"g:{g}" if g is not None else f"i:{_item_key(item, i)}"
        members[gid].append(i)
    groups, strata = [], []
    for gid in sorted(members):
        idx = members[gid]
        if stratify_key is None:
            stratum: Hashable = ""
        else:
            counts = Counter(str(items[i].get(stratify_key, "")) for i in idx)
            best = max(counts.values())
            stratum = min(c for c, n in counts.items() if n == best)
        groups.append(idx)
        strata.append(stratum)
    return groups, strata


def _assign(
    groups: list[list[int]], strata: list[Hashable], fractions: Sequence[float], rng: np.random.Generator
) -> list[int]:
    """Greedily assign groups to bins so that each stratum is divided in ``fractions``.

    Groups are visited largest first (random order among equal sizes); each goes to the bin whose
    item count in the group's stratum is furthest below its target ``fraction * n_stratum``, ties
    broken by the bin furthest below its overall target, then by bin order. With single-image groups
    this gives every bin ``round(fraction * n_stratum)`` items per stratum (within one).
    """
    n_bins = len(fractions)
    stratum_size: Counter = Counter()
    for g, s in zip(groups, strata):
        stratum_size[s] += len(g)
    total = sum(stratum_size.values())
    order = rng.permutation(len(groups))
    order = sorted(order, key=lambda k: -len(groups[k]))  # stable: random order within a size
    count = defaultdict(lambda: [0] * n_bins)
    overall = [0] * n_bins
    out = [0] * len(groups)
    for k in order:
        s, size = strata[k], len(groups[k])
        deficit = [fractions[b] * stratum_size[s] - count[s][b] for b in range(n_bins)]
        overall_deficit = [fractions[b] * total - overall[b] for b in range(n_bins)]
        b = max(range(n_bins), key=lambda j: (round(deficit[j], 9), round(overall_deficit[j], 9), -j))
        out[k] = b
        count[s][b] += size
        overall[b] += size
    return out


def split_items(
    items: list[dict],
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    stratify_key: str | None = "class",
    group_key: str | None = "case_id",
    n_folds: int | None = None,
    fold: int = 0,
) -> dict[str, list[dict]]:
    """Split datalist items into training, validation and test, stratified and grouped.

    Args:
        items: datalist items (dicts). They are copied, never modified.
        val_fraction: fraction of all items for validation, in ``[0, 1)``; ignored when ``n_folds`` is set.
        test_fraction: fraction of all items held out for test, in ``[0, 1)``.
        seed: seed of the random assignment; the same seed and items give the same split, whatever
            the input order.
        stratify_key: item key whose value is the stratum (class); each split keeps the class
            proportions. ``None``: no stratification.
        group_key: item key naming a group (case); all items of a group go to one split. Items without
            the key are their own group. ``None``: no grouping.
        n_folds: k-fold mode: the test items are set aside first (``test_fraction``), the rest is dealt
            into ``n_folds`` stratified, grouped folds, and fold ``fold`` is the validation set.
        fold: the validation fold in k-fold mode, ``0 <= fold < n_folds``.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` with items in input order.

    Raises:
        ValueError: no items, a fraction outside ``[0, 1)``, fractions summing to 1 or more, a bad
            ``n_folds``/``fold``, or fewer groups than folds.
    """
    if not items:
        raise ValueError("split_items: there are no items to split")
    test_fraction = _check_fraction("test_fraction", test_fraction)
    groups, strata = _groups(items, group_key, stratify_key)
    rng = np.random.default_rng(seed)
    side = [""] * len(items)
    if n_folds is None:
        val_fraction = _check_fraction("val_fraction", val_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1 (training would be empty), got "
                f"{val_fraction} + {test_fraction}"
            )
        names = ("training", "validation", "test")
        bins = _assign(groups, strata, (1.0 - val_fraction - test_fraction, val_fraction, test_fraction), rng)
        for g, b in zip(groups, bins):
            for i in g:
                side[i] = names[b]
    else:
        if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
            raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < n_folds:
            raise ValueError(f"fold must be an integer in [0, {n_folds - 1}] for n_folds={n_folds}, got {fold!r}")
        test_bins = _assign(groups, strata, (1.0 - test_fraction, test_fraction), rng)
        rest = [k for k, b in enumerate(test_bins) if b == 0]
        if len(rest) < n_folds:
            raise ValueError(f"{len(rest)} groups outside the test set cannot be dealt into {n_folds} folds")
        fold_bins = _assign([groups[k] for k in rest], [strata[k] for k in rest], [1.0 / n_folds] * n_folds, rng)
        for k, b in zip(rest, fold_bins):
            for i in groups[k]:
                side[i] = "validation" if b == fold else "training"
        for k, b in enumerate(test_bins):
            if b == 1:
                for i in groups[k]:
                    side[i] = "test"
    out: dict[str, list[dict]] = {"training": [], "validation": [], "test": []}
    for item, s in zip(items, side):
        out[s].append(dict(item))
    return out


def resolve_count(name: str, value: int | float | None, n: int) -> int:
    """Turn a count (int) or a fraction (float in ``[0, 1]``) of ``n`` items into a count.

    A fraction is rounded half up (``0.04`` of 100 items is 4); ``None`` is 0. An int is a number of
    items, so ``1`` means one item and ``1.0`` means all of them.

    Raises:
        ValueError: negative values, fractions above 1, or counts above ``n``.
    """
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a count (int) or a fraction (float in [0, 1]), got {value!r}")
    if isinstance(value, (float, np.floating)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} as a fraction must be in [0, 1], got {value}")
        return int(math.floor(value * n + 0.5))
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    if value > n:
        raise ValueError(f"{name}={value} exceeds the {n} training items available")
    return int(value)


def _stratified_order(items: Sequence[dict], stratify_key: str | None, rng: np.random.Generator) -> list[int]:
    """An order of item indices whose every prefix is (close to) stratified by class.

    Each stratum is shuffled; the item of rank ``r`` in a stratum of size ``n`` gets the key
    ``(r + u) / n`` with ``u`` uniform in ``[0, 1)``, and items are sorted by key. Taking the first
    ``m`` items then takes about ``m * n / N`` from every stratum, and smaller prefixes are subsets of
    larger ones (4% labeled images are among the 10% of the same seed).
    """
    base = sorted(range(len(items)), key=lambda i: _item_key(items[i], i))
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for i in base:
        s = "" if stratify_key is None else str(items[i].get(stratify_key, ""))
        by_stratum[s].append(i)
    keyed = []
    for s in sorted(by_stratum):
        members = by_stratum[s]
        perm = rng.permutation(len(members))
        offsets = rng.random(len(members))
        for r, p in enumerate(perm):
            keyed.append(((r + offsets[r]) / len(members), members[p]))
    keyed.sort()
    return [i for _, i in keyed]


def partition_training(
    items: list[dict],
    *,
    labeled: int | float | None = None,
    class_only: int | float | str | None = None,
    seed: int = 0,
    stratify_key: str | None = "class",
) -> list[dict]:
    """Mark each training item's supervision: ``"mask"``, ``"class"`` or ``"none"``.

    Args:
        items: training items; copied, never modified.
        labeled: how many items keep their mask: a count (int) or a fraction of ``len(items)`` (float,
            e.g. ``0.04`` for the 4% of CRII-Net). ``None``: every item not chosen as class-only.
            Only items with a ``"label"`` can be chosen.
        class_only: how many of the others keep only their class (SemiSeg-CAW): count, fraction of
            ``len(items)``, or ``"rest"`` for all of them. ``None``: none. Only items with the
            ``stratify_key`` (class) can be chosen.
        seed: seed of the choice; the choice is stratified by class and nested (the labeled items of a
            smaller ``labeled`` are among those of a larger one for the same seed).
        stratify_key: item key of the class.

    Returns:
        New item dicts in input order, each with ``"supervision"``; items that are not ``"mask"`` have
        no ``"label"`` key.

    Raises:
        ValueError: counts or fractions out of range, more labeled items requested than items with a
            mask, or more class-only items than remain.
    """
    n = len(items)
    rng = np.random.default_rng(seed)
    order = _stratified_order(items, stratify_key, rng)
    has_label = [("label" in it) for it in items]
    has_class = [stratify_key is not None and stratify_key in it for it in items]
    if isinstance(class_only, str) and class_only != "rest":
        raise ValueError(f"class_only must be a count, a fraction or 'rest', got {class_only!r}")
    if labeled is None and class_only == "rest":
        raise ValueError("class_only='rest' needs an explicit `labeled` count or fraction")

    n_class = 0 if class_only in (None, "rest") else resolve_count("class_only", class_only, n)
    if labeled is None:
        n_mask = None
    else:
        n_mask = resolve_count("labeled", labeled, n)
        if n_mask > sum(has_label):
            raise ValueError(f"labeled={labeled} asks for {n_mask} items with masks but only {sum(has_label)} have one")
    supervision = ["none"] * n
    if n_mask is not None:
        chosen = [i for i in order if has_label[i]][:n_mask]
        for i in chosen:
            supervision[i] = "mask"
    remaining = [i for i in order if supervision[i] != "mask" and has_class[i]]
    if class_only == "rest":
        n_class = len(remaining)
    elif n_class > len(remaining):
        raise ValueError(
            f"class_only={class_only} asks for {n_class} class-only items but only {len(remaining)} items "
            f"with a '{stratify_key}' remain after the {n_mask or 0} labeled ones"
        )
    for i in remaining[:n_class]:
        supervision[i] = "class"
    if n_mask is None:  # every item not chosen as class-only keeps its mask
        for i in range(n):
            if supervision[i] == "none":
                if not has_label[i]:
                    raise ValueError(f"item {_item_key(items[i], i)} has no 'label' but labeled=None keeps all masks")
                supervision[i] = "mask"
    out = []
    for item, sup in zip(items, supervision):
        new = dict(item)
        new["supervision"] = sup
        if sup != "mask":
            new.pop("label", None)
        out.append(new)
    return out

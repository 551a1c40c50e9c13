"""Seeded, stratified, grouped data splits and the supervision partition of a training list.

Two operations on lists of datalist items (dicts as in ``docs/conventions.md``):

- :func:`split_items` divides items into ``training`` / ``validation`` / ``test``, stratified by class
  and grouped by case (all images of one case, or identical images, land on the same side), either by
  fractions or as fold ``fold`` of a k-fold cross-validation.
- :func:`partition_training` marks each training item's ``supervision``: ``"mask"`` (mask and class),
  ``"class"`` (class only, as in SemiSeg-CAW) or ``"none"`` (unlabeled, as in CRII-Net). Items that are
  not ``"mask"`` lose their ``"label"`` key, so a training pipeline can never read those masks.

Both are deterministic for a given seed and independent of the input order. :class:`SplitOptions`
bundles the settings of both (what the converters, ``PreparedDatasetWriter.finalize`` and
``split_datalist`` take) and applies them: split, then optional partition.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "SplitOptions", "split_items", "partition_training", "resolve_count", "SUPERVISION_LEVELS", "apply_split", "stratify_key",
]

SUPERVISION_LEVELS = ("mask", "class", "none")


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def _check_split_settings(
    val_fraction: float, test_fraction: float, n_folds: int | None, fold: int
) -> tuple[float, float]:
    """Check the settings of :func:`split_items`; returns ``(val_fraction, test_fraction)`` as floats.

    ``val_fraction`` is only checked without ``n_folds`` and ``fold`` only with it (the other is ignored).
    """
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if n_folds is None:
        val_fraction = _check_fraction("val_fraction", val_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1 (training would be empty), got "
                f"{val_fraction} + {test_fraction}"
            )
    else:
        if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
            raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < n_folds:
            raise ValueError(f"fold must be an integer in [0, {n_folds - 1}] for n_folds={n_folds}, got {fold!r}")
    return val_fraction, test_fraction


def _check_amount(name: str, value: int | float | None) -> None:
    """Check a count (int >= 0) or fraction (float in ``[0, 1]``) before the number of items is known."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a count (int) or a fraction (float in [0, 1]), got {value!r}")
    if isinstance(value, (float, np.floating)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} as a fraction must be in [0, 1], got {value}")
    elif value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def _check_partition_settings(labeled: int | float | None, class_only: int | float | str | None) -> None:
    """Check the settings of :func:`partition_training` that do not depend on the number of items."""
    if isinstance(class_only, str) and class_only != "rest":
        raise ValueError(f"class_only must be a count, a fraction or 'rest', got {class_only!r}")
    if labeled is None and class_only == "rest":
        raise ValueError("class_only='rest' needs an explicit `labeled` count or fraction")
    _check_amount("labeled", labeled)
    if not isinstance(class_only, str):
        _check_amount("class_only", class_only)


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
    val_fraction, test_fraction = _check_split_settings(val_fraction, test_fraction, n_folds, fold)
    groups, strata = _groups(items, group_key, stratify_key)
    rng = np.random.default_rng(seed)
    side = [""] * len(items)
    if n_folds is None:
        names = ("training", "validation", "test")
        bins = _assign(groups, strata, (1.0 - val_fraction - test_fraction, val_fraction, test_fraction), rng)
        for g, b in zip(groups, bins):
            for i in g:
                side[i] = names[b]
    else:
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
    _check_amount(name, value)
    if isinstance(value, (float, np.floating)):
        return int(math.floor(value * n + 0.5))
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
    _check_partition_settings(labeled, class_only)

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


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """How a prepared dataset is split and its training set partitioned (one set of settings for all).

    Converters (``prepare_busi``, ``prepare_ddti``, ``prepare_dicom``, ``prepare_volumes``,
    ``prepare_phantom``), :meth:`usseg_monai.data.prepared.PreparedDatasetWriter.finalize` and
    :func:`usseg_monai.data.resplit.split_datalist` take ``split=SplitOptions(...)`` or the same fields
    as keywords (see :meth:`resolve`).

    Attributes:
        seed: seed of the split and of the partition; the same seed and items give the same result,
            whatever the input order.
        val_fraction: fraction of all items for validation, in ``[0, 1)``; ignored when ``n_folds`` is
            set (:func:`split_items`).
        test_fraction: fraction of all items held out for test, in ``[0, 1)`` (:func:`split_items`).
        n_folds: k-fold mode: the test items are set aside first, the rest is dealt into ``n_folds``
            stratified, grouped folds and fold ``fold`` is validation; ``None``: fractions
            (:func:`split_items`).
        fold: the validation fold in k-fold mode, ``0 <= fold < n_folds``; ignored without ``n_folds``.
        labeled: training items that keep their mask: a count (int) or a fraction (float, ``0.04`` for
            4%) (:func:`partition_training`).
        class_only: training items among the others that keep only their class: count, fraction or
            ``"rest"`` (:func:`partition_training`). ``labeled`` and ``class_only`` both ``None``: no
            partition; training items get no ``supervision`` key (all fully supervised).

    The settings that do not depend on the items (ranges, types, fractions summing below 1, ``fold``
    within ``n_folds``) are checked on construction (``ValueError``), before any file is converted;
    counts larger than the items available are found when the options are applied.
    """

    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    n_folds: int | None = None
    fold: int = 0
    labeled: int | float | None = None
    class_only: int | float | str | None = None

    def __post_init__(self) -> None:
        _check_split_settings(self.val_fraction, self.test_fraction, self.n_folds, self.fold)
        _check_partition_settings(self.labeled, self.class_only)

    @classmethod
    def resolve(cls, split: SplitOptions | None = None, /, **kwargs: Any) -> SplitOptions:
        """The options of ``split`` (default: ``SplitOptions()``) with the fields in ``kwargs`` replaced.

        This is how functions taking ``split=None, **split_kwargs`` build their options: keywords are
        merged into ``split`` and win over its values (``resolve(SplitOptions(seed=1), seed=2).seed == 2``).

        Raises:
            TypeError: a keyword that is not a field of :class:`SplitOptions` (named), or ``split`` that is
                not a :class:`SplitOptions`.
            ValueError: bad values (see the class docstring).
        """
        if split is None:
            split = cls()
        elif not isinstance(split, SplitOptions):
            raise TypeError(f"split must be a SplitOptions, got {type(split).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in kwargs if k not in fields]
        if unknown:
            raise TypeError(
                f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(k) for k in unknown)} (split options are: {', '.join(fields)})"
            )
        return dataclasses.replace(split, **kwargs) if kwargs else split

    @property
    def partitions(self) -> bool:
        """Whether the training set is partitioned (``labeled`` or ``class_only`` is set)."""
        return self.labeled is not None or self.class_only is not None

    def record(self) -> dict[str, Any]:
        """The settings as stored under ``"split"`` in ``datalist.json`` and ``summary.json``."""
        params: dict[str, Any] = {"seed": self.seed, "test_fraction": self.test_fraction}
        if self.n_folds is None:
            params["val_fraction"] = self.val_fraction
        else:
            params.update(n_folds=self.n_folds, fold=self.fold)
        if self.partitions:
            params.update(labeled=self.labeled, class_only=self.class_only)
        return params

    def partition(self, training: list[dict], *, stratify_key: str | None = "class") -> list[dict]:
        """:func:`partition_training` of ``training`` with these settings (the items unchanged without)."""
        if not self.partitions:
            return training
        return partition_training(
            training, labeled=self.labeled, class_only=self.class_only, seed=self.seed, stratify_key=stratify_key
        )

    def apply(
        self, items: list[dict], *, stratify_key: str | None = "class", group_key: str | None = "case_id"
    ) -> dict[str, list[dict]]:
        """Split ``items`` (:func:`split_items`), then partition the training part (:meth:`partition`).

        Returns:
            New item dicts per section: ``{"training": [...], "validation": [...], "test": [...]}``.
        """
        parts = split_items(
            items,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            stratify_key=stratify_key,
            group_key=group_key,
            n_folds=self.n_folds,
            fold=self.fold,
        )
        parts["training"] = self.partition(parts["training"], stratify_key=stratify_key)
        return parts


def apply_split(
    items: list[dict[str, Any]], split: SplitOptions | None = None, **split_kwargs: Any
) -> dict[str, list[dict[str, Any]]]:
    """Split prepared items and optionally partition the training part (:meth:`SplitOptions.apply`).

    ``split``/``split_kwargs``: see :class:`usseg_monai.data.splits.SplitOptions`. Items are stratified
    by ``class`` (when any item has one) and grouped by ``group`` if present, else ``case_id``. Returns
    new item dicts per section (``training``/``validation``/``test``).
    """
    opts = SplitOptions.resolve(split, **split_kwargs)
    split_key = "_split_group"
    keyed = [dict(it, **{split_key: it.get("group", it.get("case_id", it["image"]))}) for it in items]
    parts = opts.apply(keyed, stratify_key=stratify_key(items), group_key=split_key)
    for section in parts.values():
        for it in section:
            it.pop(split_key, None)
    return parts


def stratify_key(items: list[dict[str, Any]]) -> str | None:
    return "class" if any("class" in it for it in items) else None

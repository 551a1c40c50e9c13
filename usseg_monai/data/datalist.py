"""Load one section of a datalist for a bundle: absolute paths, checked files, clear errors.

Bundles call :func:`load_datalist_section` from their configs, e.g.::

    "$usseg_monai.data.datalist.load_datalist_section(@data_list_file_path, @train_data_list_key)"

The datalist format is the one in ``docs/conventions.md`` (decathlon style, paths relative to the datalist's
folder). Errors are :class:`usseg_monai.data.io.DatasetError` naming the datalist, the section, the item and
the file that is wrong.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .io import (
    DATALIST_PATH_KEYS,
    DatasetError,
    datalist_roots,
    load_datalist,
    resolve_item_paths,
)
from .splits import partition_training, resolve_count

__all__ = ["load_datalist_section", "load_semi_supervised_sections", "datalist_class_names", "PATH_KEYS"]

#: item keys that hold file paths (made absolute and checked when present).
PATH_KEYS = DATALIST_PATH_KEYS

logger = logging.getLogger(__name__)


def load_datalist_section(
    data_list_file_path: str | os.PathLike,
    data_list_key: str = "training",
    require_label: bool = True,
    labeled_only: bool = False,
    path_keys: Sequence[str] = PATH_KEYS,
    check_files: bool = True,
    keep_keys: Sequence[str] | None = None,
    label_key: str = "label",
) -> list[dict[str, Any]]:
    """Return the items of one datalist section with absolute file paths.

    Args:
        data_list_file_path: the datalist JSON.
        data_list_key: the section to load (``"training"``, ``"validation"``, ``"test"`` or any list-valued key).
        require_label: every item must have a ``label_key`` entry (by default the ``label`` mask file); an item
            without one is an error.
        labeled_only: drop items without ``label_key`` instead (e.g. the fully supervised baseline trained on
            the mask-supervised part of a partitioned training list); takes precedence over ``require_label``
            for the check, but the section must still hold at least one labelled item.
        path_keys: item keys holding file paths; present ones are made absolute (relative ones are relative to the
            datalist's folder) and must obey the path rule (inside the datalist's folder or one of its
            ``allowed_roots``: :func:`usseg_monai.data.io.resolve_datalist_path`).
        check_files: every path named by a returned item must be an existing file.
        keep_keys: when given, returned items hold only these keys (those present): e.g. inference keeps
            ``("image", "spacing")`` so that per-dataset extras (DDTI's report fields, BUSI's source names)
            never reach batching, whatever keys another dataset adds.
        label_key: the key holding the annotation this workflow trains from: ``"label"`` (a mask) for the
            supervised bundles, ``"calipers"`` (a caliper JSON file) for CRBNet, which never reads masks in
            training.

    Returns:
        new dicts (the datalist is not modified), other keys (``spacing``, ``class``, ``case_id``, ...) kept.

    Raises:
        DatasetError: datalist missing/invalid, section missing or empty, an item without ``image`` (or
            ``label`` when required), a path outside the dataset, or a named file that does not exist or is a
            folder. The message names the datalist, the section, the item index and the file.
    """
    path = Path(data_list_file_path)
    data = load_datalist(path, check_files=False)
    if data_list_key not in data:
        available = [k for k, v in data.items() if isinstance(v, list) and all(isinstance(i, dict) for i in v)]
        raise DatasetError(f"{path}: no section '{data_list_key}' (sections with items: {available})")
    items = data[data_list_key]
    if not isinstance(items, list):
        raise DatasetError(f"{path}: section '{data_list_key}' must be a list, got {type(items).__name__}")
    if len(items) == 0:
        raise DatasetError(f"{path}: section '{data_list_key}' is empty")
    roots = datalist_roots(data, path)
    out: list[dict[str, Any]] = []
    dropped = 0
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "image" not in item:
            raise DatasetError(f"{path}: {data_list_key}[{i}] has no 'image' key")
        if label_key not in item:
            if labeled_only:
                dropped += 1
                continue
            if require_label:
                what = "a mask" if label_key == "label" else f"a '{label_key}' entry"
                raise DatasetError(
                    f"{path}: {data_list_key}[{i}] ({item['image']}) has no '{label_key}' but this workflow needs "
                    f"{what} for every item (use labeled_only to train on the items that have one)"
                )
        new = dict(item) if keep_keys is None else {k: item[k] for k in keep_keys if k in item}
        resolved = resolve_item_paths(new, path_keys, roots, f"{path}: {data_list_key}[{i}]", check_files)
        new.update({k: str(p) for k, p in resolved.items()})
        out.append(new)
    if not out:
        raise DatasetError(f"{path}: section '{data_list_key}' has no item with a '{label_key}' ({dropped} without)")
    if dropped:
        logger.info("%s: %s: %d of %d items without '%s' left out", path, data_list_key, dropped, len(items), label_key)
    return out


def load_semi_supervised_sections(
    data_list_file_path: str | os.PathLike,
    data_list_key: str = "training",
    labeled: int | float | None = None,
    class_only: int | float | str | None = None,
    seed: int = 0,
    label_key: str = "label",
    class_key: str | None = None,
    num_classes: int | None = None,
    require_unlabeled: bool = True,
    check_files: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Split one datalist section into a labeled and an unlabeled stream for a semi-supervised bundle.

    The partition comes from the datalist when it has one (``usseg split --labeled ... --class-only ...``: some
    items have ``supervision`` other than ``"mask"`` or no ``label_key``); ``labeled`` / ``class_only`` are then
    ignored (logged). For a section that is not partitioned (every item has a mask, e.g. a plain prepared dataset
    or the phantom) the section is partitioned here with
    :func:`usseg_monai.data.splits.partition_training` (stratified by ``class``, nested, seeded by ``seed``)
    using ``labeled`` (CRII-Net's ``labeled_fraction``) and ``class_only`` (SemiSeg-CAW); at least one item stays
    labeled, and at least one goes to the other stream when there are two or more.

    Items of the unlabeled stream never carry ``label_key`` (their mask is dropped here even if the datalist
    still names it), so a training pipeline cannot read it.

    Args:
        data_list_file_path, data_list_key, check_files: as :func:`load_datalist_section`.
        labeled: items that keep their mask when the section is not partitioned: count (int) or fraction
            (float); ``None``: all items not chosen as class-only.
        class_only: items that keep only their class when the section is not partitioned (count, fraction or
            ``"rest"``); ``None``: none.
        seed: seed of that partition.
        label_key: the mask key (``"label"``).
        class_key: when given (e.g. ``"class_index"``), the class label every unlabeled item must have (the
            class-only stream of SemiSeg-CAW; items without it, or marked ``supervision: "none"`` by the
            partition, are left out, logged), and that labeled items
            get as ``-1`` (no class: ignored by the classification loss) when they have none.
        num_classes: when given with ``class_key``, every class index must be in ``[0, num_classes)``.
        require_unlabeled: an empty unlabeled stream is an error (otherwise an empty list is returned).

    Returns:
        ``{"labeled": [...], "unlabeled": [...]}``: new dicts with absolute paths.

    Raises:
        DatasetError: no labeled item, no unlabeled item (with ``require_unlabeled``), or a class index out of
            range; the message names the datalist, the section and the item.
    """
    path = Path(data_list_file_path)
    items = load_datalist_section(
        path, data_list_key, require_label=False, check_files=check_files, label_key=label_key
    )
    partitioned = any(it.get("supervision", "mask") != "mask" or label_key not in it for it in items)
    if partitioned:
        if labeled is not None or class_only is not None:
            logger.info(
                "%s: %s is already partitioned (%d of %d items with '%s'): its partition is used, labeled=%s "
                "class_only=%s ignored", path, data_list_key, sum(label_key in it for it in items), len(items),
                label_key, labeled, class_only,
            )
    elif labeled is not None or class_only is not None:
        n = len(items)
        n_labeled = None
        if labeled is not None:
            try:
                n_labeled = resolve_count("labeled", labeled, n)
            except ValueError as e:
                raise DatasetError(f"{path}: {data_list_key}: {e}") from None
            n_labeled = max(1, min(n_labeled, n - 1 if n > 1 else n))
        try:
            items = partition_training(items, labeled=n_labeled, class_only=class_only, seed=seed)
        except ValueError as e:
            raise DatasetError(f"{path}: {data_list_key}: {e}") from None
        if n_labeled is not None and label_key != "label":  # partition_training drops 'label' only
            items = [
                it if it["supervision"] == "mask" else {k: v for k, v in it.items() if k != label_key}
                for it in items
            ]
    labeled_items, unlabeled_items = [], []
    dropped = 0
    for i, it in enumerate(items):
        if class_key is not None and class_key in it:
            value = it[class_key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (
                num_classes is not None and value >= num_classes
            ):
                raise DatasetError(
                    f"{path}: {data_list_key}[{i}] ({it['image']}) has {class_key}={value!r}; expected an integer in "
                    f"[0, {num_classes if num_classes is not None else 'num_classes'})"
                )
        if label_key in it and it.get("supervision", "mask") == "mask":
            new = dict(it)
            if class_key is not None:
                new.setdefault(class_key, -1)
            labeled_items.append(new)
        else:
            if class_key is not None and (class_key not in it or it.get("supervision") == "none"):
                dropped += 1
                continue
            unlabeled_items.append({k: v for k, v in it.items() if k != label_key})
    if dropped:
        logger.info(
            "%s: %s: %d items with neither a mask nor a usable '%s' left out", path, data_list_key, dropped, class_key
        )
    if not labeled_items:
        raise DatasetError(f"{path}: section '{data_list_key}' has no item with a '{label_key}' (a mask) to train on")
    if require_unlabeled and not unlabeled_items:
        what = f"with a '{class_key}' and no mask" if class_key is not None else "without a mask"
        raise DatasetError(
            f"{path}: section '{data_list_key}' has no item {what} for the unlabeled stream: partition it "
            "(usseg split --labeled/--class-only) or set the bundle's labeled / class-only amount"
        )
    if not unlabeled_items:
        logger.warning(
            "%s: %s: no item for the unlabeled / class-only stream: training on the %d labeled items only",
            path, data_list_key, len(labeled_items),
        )
    else:
        logger.info(
            "%s: %s: %d labeled, %d unlabeled items", path, data_list_key, len(labeled_items), len(unlabeled_items)
        )
    return {"labeled": labeled_items, "unlabeled": unlabeled_items}


def datalist_class_names(data_list_file_path: str | os.PathLike, num_classes: int) -> list[str] | None:
    """The datalist's ``classes`` (names of ``class_index`` 0, 1, ...) when it has ``num_classes`` of them, else ``None``."""
    try:
        data = load_datalist(Path(data_list_file_path), check_files=False)
    except DatasetError:
        return None
    names = data.get("classes")
    if isinstance(names, list) and len(names) == int(num_classes):
        return [str(n) for n in names]
    return None

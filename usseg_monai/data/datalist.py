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

from .io import DatasetError, load_datalist

__all__ = ["load_datalist_section", "PATH_KEYS"]

#: item keys that hold file paths (made absolute and checked when present).
PATH_KEYS = ("image", "label", "calipers")

logger = logging.getLogger(__name__)


def load_datalist_section(
    data_list_file_path: str | os.PathLike,
    data_list_key: str = "training",
    require_label: bool = True,
    labeled_only: bool = False,
    base_dir: str | os.PathLike | None = None,
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
        base_dir: folder relative paths are resolved against; default: the datalist's folder.
        path_keys: item keys holding file paths; present ones are made absolute (and checked).
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
            ``label`` when required), or a named file that does not exist. The message names the datalist,
            the section, the item index and the file.
    """
    path = Path(data_list_file_path)
    data = load_datalist(path, check_files=False)
    if data_list_key not in data:
        available = [k for k, v in data.items() if isinstance(v, list)]
        raise DatasetError(f"{path}: no section '{data_list_key}' (sections with items: {available})")
    items = data[data_list_key]
    if not isinstance(items, list):
        raise DatasetError(f"{path}: section '{data_list_key}' must be a list, got {type(items).__name__}")
    if len(items) == 0:
        raise DatasetError(f"{path}: section '{data_list_key}' is empty")
    base = Path(base_dir) if base_dir is not None else path.parent
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
        for key in path_keys:
            if key not in new:
                continue
            p = Path(new[key])
            p = p if p.is_absolute() else base / p
            if check_files and not p.is_file():
                raise DatasetError(f"{path}: {data_list_key}[{i}] '{key}' names a missing file: {p}")
            new[key] = str(p)
        out.append(new)
    if not out:
        raise DatasetError(f"{path}: section '{data_list_key}' has no item with a '{label_key}' ({dropped} without)")
    if dropped:
        logger.info("%s: %s: %d of %d items without '%s' left out", path, data_list_key, dropped, len(items), label_key)
    return out

"""``usseg split``: a new datalist from a prepared one, re-split and/or with its training section partitioned into
masked, class-only and unlabeled images (the masks of the others are dropped from the new file)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from usseg_monai.data.io import DATALIST_SECTIONS, ROOTS_KEY, DatasetError, derived_roots, load_datalist, write_datalist
from usseg_monai.data.splits import SplitOptions, apply_split, stratify_key
from usseg_monai.data.summary import build_summary

__all__ = ["split_datalist"]

logger = logging.getLogger(__name__)


def _rebase(item: dict[str, Any], src_dir: Path, dst_dir: Path) -> dict[str, Any]:
    out = dict(item)
    for key in ("image", "label", "calipers"):
        if key in out and not os.path.isabs(out[key]):
            out[key] = Path(os.path.relpath((src_dir / out[key]).resolve(), dst_dir.resolve())).as_posix()
    return out


def split_datalist(
    datalist_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    split: SplitOptions | None = None,
    resplit: bool = False,
    overwrite: bool = False,
    **split_kwargs: Any,
) -> dict[str, Any]:
    """Write a new datalist from a prepared one: re-split it and/or partition its training set.

    Args:
        datalist_path: a prepared ``datalist.json`` (its files must exist).
        output_path: the new datalist file; paths are rewritten relative to its folder.
        split, **split_kwargs: the settings, see :class:`usseg_monai.data.splits.SplitOptions` (keywords
            override ``split``): the split ones are used with ``resplit``; ``labeled``/``class_only``
            partition the training set (e.g. ``labeled=0.04`` for 4% masks), with ``seed``.
        resplit: pool all sections and split again; otherwise the sections are kept as they are.
        overwrite: replace an existing ``output_path``.

    Returns:
        The counts of the new datalist (:func:`build_summary`).

    Raises:
        DatasetError: unreadable datalist, an existing output without ``overwrite``, or a datalist whose
            training set was already partitioned (its removed masks cannot be restored: start from the
            converter's ``datalist.json``).
        ValueError: nothing to do, or bad split/partition parameters.
        TypeError: a keyword that is not a :class:`~usseg_monai.data.splits.SplitOptions` field.
    """
    opts = SplitOptions.resolve(split, **split_kwargs)
    src = Path(datalist_path)
    dst = Path(output_path)
    if not resplit and not opts.partitions:
        raise ValueError("nothing to do: give --resplit and/or --labeled/--class-only")
    data = load_datalist(src, check_files=True)
    if dst.resolve() == src.resolve():
        raise DatasetError(f"output datalist {dst} is the input datalist; write the new datalist to another file")
    if dst.exists() and not overwrite:
        raise DatasetError(f"output datalist {dst} exists; pass overwrite=True (--overwrite) to replace it")
    partial = [it["image"] for it in data.get("training", []) if it.get("supervision", "mask") != "mask"]
    if partial:
        raise DatasetError(
            f"{src} is already partitioned ({len(partial)} training items without masks, e.g. {partial[0]}); "
            "split the converter's original datalist.json instead"
        )
    sections = {s: [dict(it) for it in data.get(s, [])] for s in DATALIST_SECTIONS}
    for its in sections.values():
        for it in its:
            it.pop("supervision", None)
    if resplit:
        pooled = [it for s in DATALIST_SECTIONS for it in sections[s]]
        sections = apply_split(pooled, opts)
        params = opts.record()
    else:
        sections["training"] = opts.partition(sections["training"], stratify_key=stratify_key(sections["training"]))
        params = dict(data.get("split", {}))
        params.update(partition_seed=opts.seed, labeled=opts.labeled, class_only=opts.class_only)
    out = {k: v for k, v in data.items() if k not in DATALIST_SECTIONS and k != ROOTS_KEY}
    roots = derived_roots(data, src, dst.parent)
    if roots:
        out[ROOTS_KEY] = roots
    out["split"] = params
    out["derived_from"] = os.path.relpath(src.resolve(), dst.parent.resolve())
    for s in DATALIST_SECTIONS:
        out[s] = [_rebase(it, src.parent, dst.parent) for it in sections[s]]
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_datalist(dst.parent, out, name=dst.name)
    summary = build_summary(out, name=out.get("name", ""), source=src, output_dir=dst)
    logger.info(
        "%s: %s%s",
        dst,
        ", ".join(f"{k} {v}" for k, v in summary["per_split"].items()),
        f"; training supervision {summary['training_supervision']}" if "training_supervision" in summary else "",
    )
    return summary

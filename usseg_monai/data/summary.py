"""The ``summary.json`` of a prepared dataset: counts per split, class, case and supervision level."""

from __future__ import annotations

from collections import Counter
from typing import Any

from usseg_monai import __version__
from usseg_monai.data.io import DATALIST_SECTIONS

__all__ = ["build_summary"]


def build_summary(
    datalist: dict[str, Any], *, name: str = "", source: Any = None, output_dir: Any = None
) -> dict[str, Any]:
    """Counts of a datalist: per split, per class, per class and split, cases, supervision levels."""
    per_split = {s: len(datalist.get(s, [])) for s in DATALIST_SECTIONS}
    all_items = [it for s in DATALIST_SECTIONS for it in datalist.get(s, [])]
    per_class = dict(sorted(Counter(it.get("class", "") for it in all_items if "class" in it).items()))
    per_class_split = {
        s: dict(sorted(Counter(it["class"] for it in datalist.get(s, []) if "class" in it).items()))
        for s in DATALIST_SECTIONS
    }
    summary: dict[str, Any] = {
        "name": name or datalist.get("name", ""),
        "source": str(source) if source is not None else None,
        "output": str(output_dir) if output_dir is not None else None,
        "usseg_monai_version": __version__,
        "spatial_dims": datalist.get("spatial_dims"),
        "n_items": len(all_items),
        "n_cases": len({it.get("case_id", it["image"]) for it in all_items}),
        "n_with_mask": sum("label" in it for it in all_items),
        "n_with_calipers": sum("calipers" in it for it in all_items),
        "n_with_spacing": sum("spacing" in it for it in all_items),
        "per_split": per_split,
        "per_class": per_class,
        "per_class_split": per_class_split,
        "split": datalist.get("split", {}),
    }
    sup = Counter(it["supervision"] for it in datalist.get("training", []) if "supervision" in it)
    if sup:
        summary["training_supervision"] = {k: sup.get(k, 0) for k in ("mask", "class", "none")}
    return summary

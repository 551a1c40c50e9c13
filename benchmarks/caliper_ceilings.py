"""Ceiling of caliper-only supervision on BUSI and DDTI: pseudo-labels of each mask's own calipers vs the mask.

For every lesion mask (BUSI: union of ``_mask*.png``; DDTI: the XML polygons rasterised by
``usseg_monai.data.ddti``), derive calipers as a clinician measures, rasterise the conservative and radical
labels and report the mean Dice(radical, mask), Dice(conservative, mask), the precision of the conservative
label, the recall of the radical label, and the mean absolute error between measuring the radical label and
the mask's calipers (pixels: neither dataset has a spacing). Normal / empty masks are skipped (counted).

Usage::

    python benchmarks/caliper_ceilings.py --data ../shared/data [--limit N] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from usseg_monai.calipers import caliper_ceiling
from usseg_monai.data.io import atomic_write_json, load_png


def busi_masks(root: Path) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, (x, y) mask)`` for every BUSI image: union of its ``_mask*.png`` files."""
    base = root / "BUSI" / "Dataset_BUSI_with_GT"
    for cls_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for img in sorted(cls_dir.glob("*.png")):
            if "_mask" in img.name:
                continue
            masks = sorted(cls_dir.glob(img.stem + "_mask*.png"))
            if not masks:
                continue
            m = None
            for mp in masks:
                a = load_png(mp) > 0
                m = a if m is None else (m | a)
            yield f"BUSI/{cls_dir.name}/{img.stem}", m


def ddti_masks(root: Path) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, (x, y) mask)`` for every DDTI image that has its JPEG: its polygons rasterised."""
    from PIL import Image

    from usseg_monai.data.ddti import parse_ddti_xml, rasterize_polygons

    base = root / "DDTI"
    for xml in sorted(base.glob("*.xml"), key=lambda p: (len(p.stem), p.stem)):
        case = parse_ddti_xml(xml)
        for img_no, polys in sorted(case["marks"].items()):
            jpg = base / f"{xml.stem}_{img_no}.jpg"
            if not jpg.is_file():
                continue
            with Image.open(jpg) as im:
                w, h = im.size
            yield f"DDTI/{jpg.stem}", rasterize_polygons(polys, (w, h))


def summarise(rows: list[dict]) -> dict:
    """Means (ignoring nan) of the numeric fields of per-image rows."""
    keys = ["dice_radical", "dice_conservative", "precision_conservative", "recall_radical", "precision_radical",
            "long_abs_err_mm", "short_abs_err_mm", "aspect_abs_err"]
    out = {"images": len(rows), "lesions": int(sum(r["lesions"] for r in rows)),
           "fallback_lesions": int(sum(r["fallback"] for r in rows))}
    for k in keys:
        vals = np.asarray([r[k] for r in rows], dtype=np.float64)
        out[f"mean_{k}"] = float(np.nanmean(vals)) if len(vals) else float("nan")
    out["min_dice_radical"] = float(min(r["dice_radical"] for r in rows)) if rows else float("nan")
    out["min_precision_conservative"] = float(min(r["precision_conservative"] for r in rows)) if rows else float("nan")
    return out


def run(data: Path, limit: int | None = None) -> dict:
    results = {}
    for name, gen in (("BUSI", busi_masks), ("DDTI", ddti_masks)):
        rows, empty, t0 = [], 0, time.perf_counter()
        for i, (item, mask) in enumerate(gen(data)):
            if limit is not None and i >= limit:
                break
            r = caliper_ceiling(mask)
            if r is None:
                empty += 1
                continue
            r["item"] = item
            rows.append(r)
        s = summarise(rows)
        s["empty_masks_skipped"] = empty
        s["seconds"] = round(time.perf_counter() - t0, 1)
        results[name] = s
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder holding BUSI/ and DDTI/")
    ap.add_argument("--limit", type=int, default=None, help="at most this many images per dataset")
    ap.add_argument("--out", type=Path, default=None, help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    res = run(args.data, args.limit)
    print(json.dumps(res, indent=2))
    if args.out:
        atomic_write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Write a datalist whose training masks are caliper pseudo-labels (radical or conservative).

The CRBNet comparison (issue #6) trains the reference UNet bundle "directly on the radical labels" and "on the
conservative labels": this script rasterises each training item's calipers (``calipers`` key, e.g. from
``usseg prepare ... --calipers`` or ``usseg calipers``) with :func:`usseg_monai.calipers.rasterize_calipers` on
the image's own grid and writes them as masks (2D: PNG 0/255; 3D: NIfTI 0/1) into ``OUTPUT/labels_<kind>/``,
then a datalist ``OUTPUT/datalist.json`` in which every training item's ``label`` is its pseudo-label. The other
sections are copied with absolute paths (their real masks stay the validation / test references). The source
dataset is never written to.

    python benchmarks/pseudo_label_datalist.py /tmp/crb/busi/datalist.json --kind radical --output /tmp/crb/busi_radical
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from usseg_monai.calipers import load_calipers, rasterize_calipers
from usseg_monai.data.datalist import load_datalist_section
from usseg_monai.data.io import (
    DATALIST_SECTIONS,
    DatasetError,
    load_datalist,
    prepare_output_dir,
    save_png,
    save_volume,
    write_datalist,
)

KINDS = ("radical", "conservative")


def pseudo_label_datalist(datalist: str | Path, kind: str, output: str | Path, train_key: str = "training",
                          overwrite: bool = False) -> Path:
    """Write ``output/datalist.json`` with ``train_key``'s masks replaced by ``kind`` pseudo-labels; return it."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    datalist = Path(datalist).resolve()
    out = prepare_output_dir(Path(output).resolve(), overwrite=overwrite, source=datalist.parent)
    data = load_datalist(datalist, check_files=False)
    new = {k: v for k, v in data.items() if k not in DATALIST_SECTIONS}
    new["description"] = f"{data.get('description', '')} (training masks: {kind} caliper pseudo-labels)".strip()
    for section in DATALIST_SECTIONS:
        if section not in data or not data[section]:
            continue
        items = load_datalist_section(datalist, section, require_label=False)
        if section != train_key:
            new[section] = items
            continue
        rows = []
        for i, item in enumerate(items):
            if "calipers" not in item:
                raise DatasetError(f"{datalist}: {section}[{i}] ({item['image']}) has no 'calipers'")
            ann = load_calipers(item["calipers"])
            mask = rasterize_calipers(ann, ann.image_shape, ann.spacing, warn=False)[f"{kind}_label"]
            path = out / f"labels_{kind}" / Path(item["image"]).name
            if ann.ndim == 2:
                save_png(path, mask.astype(np.uint8) * 255)
            else:
                save_volume(path, mask.astype(np.uint8), ann.spacing)
            rows.append({**item, "label": str(path)})
        new[section] = rows
    write_datalist(out, new)
    return out / "datalist.json"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datalist", help="datalist JSON whose training items have 'calipers'")
    ap.add_argument("--kind", choices=KINDS, required=True)
    ap.add_argument("--output", required=True, help="new folder (labels_<kind>/ + datalist.json)")
    ap.add_argument("--train-key", default="training")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    path = pseudo_label_datalist(args.datalist, args.kind, args.output, args.train_key, args.overwrite)
    print(f"{path} ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()

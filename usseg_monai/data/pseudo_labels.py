"""Datalists whose training masks are caliper pseudo-labels (radical or conservative).

The CRBNet comparison (issue #6, and the ``calipers`` protocol of the results suite) trains the reference UNet
"directly on the radical labels" and "on the conservative labels": :func:`pseudo_label_datalist` rasterises each
training item's calipers (``calipers`` key, from ``usseg prepare ... --calipers`` or ``usseg calipers``) with
:func:`usseg_monai.calipers.rasterize_calipers` on the image's own grid and writes them as masks (2D: PNG 0/255;
3D: NIfTI 0/1) into ``OUTPUT/labels_<kind>/``, then ``OUTPUT/datalist.json`` in which every training item's
``label`` is its pseudo-label. The other sections are copied with absolute paths (their real masks stay the
validation / test references). The source dataset is never written to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from usseg_monai.calipers import load_calipers, rasterize_calipers
from usseg_monai.data.datalist import load_datalist_section
from usseg_monai.data.io import (
    DATALIST_SECTIONS,
    ROOTS_KEY,
    DatasetError,
    derived_roots,
    load_datalist,
    prepare_output_dir,
    save_png,
    save_volume,
    write_datalist,
)

__all__ = ["pseudo_label_datalist", "KINDS"]

KINDS = ("radical", "conservative")


def pseudo_label_datalist(datalist: str | Path, kind: str, output: str | Path, train_key: str = "training",
                          overwrite: bool = False) -> Path:
    """Write ``output/datalist.json`` with ``train_key``'s masks replaced by ``kind`` pseudo-labels; return it."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    datalist = Path(datalist).resolve()
    out = prepare_output_dir(Path(output).resolve(), overwrite=overwrite, source=datalist.parent)
    data = load_datalist(datalist, check_files=False)
    new = {k: v for k, v in data.items() if k not in DATALIST_SECTIONS and k != ROOTS_KEY}
    roots = derived_roots(data, datalist, out, absolute=True)  # the copied sections name the source's files
    if roots:
        new[ROOTS_KEY] = roots
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

#!/usr/bin/env python
"""Write a copy of a prepared datalist without the images of some classes (default: BUSI 'normal').

The yardstick comparison is on lesion images only (benign + malignant). The new datalist is written beside
the original (same folder, so the relative paths stay valid), atomically; the original is not modified.

    python benchmarks/lesion_only_datalist.py /tmp/busi_prepared/datalist.json \
        --output /tmp/busi_prepared/datalist_lesions.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from usseg_monai.data.io import DATALIST_SECTIONS, DatasetError, load_datalist, write_datalist


def lesion_only(datalist: dict, exclude: list[str]) -> dict:
    """The datalist with items whose ``class`` is in ``exclude`` removed from every section."""
    out = {k: v for k, v in datalist.items() if k not in DATALIST_SECTIONS}
    for s in DATALIST_SECTIONS:
        if s in datalist:
            out[s] = [it for it in datalist[s] if it.get("class") not in exclude]
    out["description"] = f"{datalist.get('description', '')} (classes {exclude} left out)".strip()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datalist")
    ap.add_argument("--output", required=True, help="new datalist JSON, in the same folder as the original")
    ap.add_argument("--exclude", nargs="+", default=["normal"])
    args = ap.parse_args(argv)
    src, dst = Path(args.datalist).resolve(), Path(args.output).resolve()
    if src.parent != dst.parent:
        raise DatasetError(f"{dst}: write the new datalist into {src.parent} so that its relative paths stay valid")
    if src == dst:
        raise DatasetError(f"{dst}: the output would overwrite the source datalist")
    new = lesion_only(load_datalist(src), args.exclude)
    write_datalist(dst.parent, new, name=dst.name)
    print(dst, {s: len(new[s]) for s in DATALIST_SECTIONS if s in new})


if __name__ == "__main__":
    main()

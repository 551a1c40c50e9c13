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

from usseg_monai.data.pseudo_labels import KINDS, pseudo_label_datalist


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

#!/usr/bin/env python
"""Print a Markdown table comparing results JSONs (from ``usseg benchmark`` or the yardstick script).

    python benchmarks/compare_results.py /tmp/bench_busi/results.json /tmp/yardstick_busi.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _fmt(m: dict | None, digits: int = 3) -> str:
    if not m or m.get("mean") is None:
        return "n/a"
    return f"{m['mean']:.{digits}f} [{m['ci_low']:.{digits}f}, {m['ci_high']:.{digits}f}]"


def row(path: Path) -> str:
    r = json.loads(path.read_text())
    name = r.get("bundle") or r.get("method", path.stem)
    b = r["budget"]
    size = "x".join(map(str, b.get("image_size", [])))
    epochs = b.get("max_epochs", b.get("epochs"))
    t = r["timing"]
    met = r["metrics"]
    return (
        f"| {name} | {size}, {epochs} ep, batch {b.get('batch_size')} | {_fmt(met['dice'])} | {_fmt(met['hd95_mm'], 1)} | "
        f"{t['seconds_per_iteration']:.3f} | {t['train_wall_s']:.0f} | {t['inference_ms_per_image']:.0f} | {met['dice']['n']} |"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+")
    args = ap.parse_args(argv)
    print("| method | budget | Dice [95% CI] | HD95 [95% CI] | s/iteration | train wall s | inference ms/image | n test |")
    print("|---|---|---|---|---|---|---|---|")
    for p in args.results:
        print(row(Path(p)))


if __name__ == "__main__":
    main()

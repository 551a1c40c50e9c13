#!/usr/bin/env python
"""Print a Markdown table comparing results JSONs (from ``usseg benchmark`` or the yardstick script), then the
paired Dice difference of the first against each of the others.

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
    if path.name == "results.json":  # a `usseg benchmark` run folder: its name tells runs of one bundle apart
        name = f"{name} ({path.parent.name})"
    b = r["budget"]
    size = "x".join(map(str, b.get("image_size", [])))
    epochs = b.get("max_epochs", b.get("epochs"))
    t = r["timing"]
    met = r["metrics"]
    ar = _fmt((r.get("measurement_error") or {}).get("aspect_ratio_mae"), 2)
    return (
        f"| {name} | {size}, {epochs} ep, batch {b.get('batch_size')} | {_fmt(met['dice'])} | {_fmt(met['hd95_mm'], 1)} | "
        f"{ar} | {t['seconds_per_iteration']:.3f} | {t['train_wall_s']:.0f} | {t['inference_ms_per_image']:.0f} | {met['dice']['n']} |"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+")
    args = ap.parse_args(argv)
    print(
        "| method | budget | Dice [95% CI] | HD95 [95% CI] | aspect-ratio abs. error [95% CI] | s/iteration | "
        "train wall s | inference ms/image | n test |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for p in args.results:
        print(row(Path(p)))
    if len(args.results) >= 2:
        print()
        for other in args.results[1:]:
            print(f"{Path(args.results[0]).parent.name} vs {Path(other).parent.name}: "
                  + paired_difference(Path(args.results[0]), Path(other)))


def paired_difference(a: Path, b: Path, key: str = "dice", n_resamples: int = 2000, seed: int = 0) -> str:
    """Paired percentile bootstrap of the per-case difference ``a - b`` of ``key`` over the images both scored."""
    import numpy as np

    from usseg_monai.metrics import bootstrap_ci

    def cases(p: Path) -> dict:
        return {Path(c["image"]).name: c[key] for c in json.loads(p.read_text())["cases"]}

    ca, cb = cases(a), cases(b)
    common = sorted(set(ca) & set(cb))
    diff = np.asarray([ca[k] - cb[k] for k in common], dtype=np.float64)
    r = bootstrap_ci(diff, n_resamples=n_resamples, seed=seed)
    return f"paired {key} difference (first - second) over {r['n']} common images: {r['mean']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] (95% bootstrap CI)"


if __name__ == "__main__":
    main()

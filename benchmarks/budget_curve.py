#!/usr/bin/env python
"""Budget curve: Dice against training iterations, from several suite runs of one protocol at different budgets.

    python benchmarks/budget_curve.py WORK/it260/results.json WORK/it520/results.json WORK/it1040/results.json \
        --methods "UNet, full masks" "UNet, radical labels" "CRBNet (calipers only)" \
        --output docs/figures/budget_curve_BUSI-lesions_calipers.png [--markdown WORK/budget_curve.md]

Every suite results file (``usseg benchmark --suite ... --iterations N``, ``benchmarks/deciding_budget.sh``) gives
one point per (dataset, table, method): its iterations (``timing.train_iterations``) and test Dice (mean and
bootstrap 95% CI). The figure has one panel per (dataset, table); the Markdown table one row per method and
point. Nothing is trained here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from usseg_monai.data.io import atomic_write_text


def collect(paths: list[Path], methods: list[str] | None) -> dict[tuple[str, str], dict[str, list[dict[str, Any]]]]:
    """``{(dataset, table): {method: [point, ...]}}``, points sorted by iterations; a point is
    ``{"iterations", "dice", "ci_low", "ci_high", "image_size", "budget", "file"}``."""
    out: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for p in paths:
        data = json.loads(p.read_text(encoding="utf-8"))
        for r in data.get("runs", []):
            if methods and r["method"] not in methods:
                continue
            d = (r.get("metrics") or {}).get("dice") or {}
            its = (r.get("timing") or {}).get("train_iterations")
            if d.get("mean") is None or not its:
                continue
            out[(r["dataset"], r["protocol"])][r["method"]].append({
                "iterations": int(its), "dice": d["mean"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                "image_size": (r.get("budget") or {}).get("image_size"), "budget": (r.get("budget") or {}).get("name"),
                "file": str(p),
            })  # fmt: skip
    for table in out.values():
        for pts in table.values():
            pts.sort(key=lambda q: q["iterations"])
    return out


def markdown(curves: dict[tuple[str, str], dict[str, list[dict[str, Any]]]]) -> str:
    lines = []
    for (dataset, table), by_method in curves.items():
        lines += [f"**{dataset}: {table}**", "", "| method | iterations | size | Dice [95% CI] |", "|---|---|---|---|"]
        for method, pts in by_method.items():
            for q in pts:
                size = "x".join(str(v) for v in q["image_size"] or [])
                lines.append(f"| {method} | {q['iterations']} | {size} | {q['dice']:.3f} [{q['ci_low']:.3f}, {q['ci_high']:.3f}] |")
        lines.append("")
    return "\n".join(lines)


def figure(curves: dict[tuple[str, str], dict[str, list[dict[str, Any]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4), squeeze=False)
    for ax, ((dataset, table), by_method) in zip(axes[0], curves.items()):
        for method, pts in by_method.items():
            x = [q["iterations"] for q in pts]
            y = [q["dice"] for q in pts]
            lo = [q["dice"] - q["ci_low"] for q in pts]
            hi = [q["ci_high"] - q["dice"] for q in pts]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=method)
        ax.set_xlabel("training iterations")
        ax.set_ylabel("test Dice (mean, 95% CI)")
        ax.set_title(f"{dataset}: {table}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="suite results.json files, one per budget point")
    ap.add_argument("--methods", nargs="+", default=None, help="only these rows (default: every row)")
    ap.add_argument("--output", type=Path, required=True, help="the figure (PNG)")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        raise SystemExit(f"budget_curve: results file(s) not found: {missing}")
    curves = collect(args.results, args.methods)
    if not curves:
        raise SystemExit("budget_curve: no run with Dice and iterations in the files given")
    figure(curves, args.output)
    text = markdown(curves)
    if args.markdown is not None:
        atomic_write_text(args.markdown, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

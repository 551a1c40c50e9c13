#!/usr/bin/env python
"""CRBNet ablations on a validation split carved from the training section (never on a test section).

    python benchmarks/crbnet_ablation.py WORK/busi/datalist_lesions.json --output WORK/crbnet_ablation \
        [--budget cpu-quick] [--threads 2] [--seed 0] [--val-fraction 0.2] [--only NAME ...]

1. The training section of the datalist (prepared with ``--calipers``) is split, stratified by class and grouped by
   case (:func:`usseg_monai.data.splits.split_items`, ``--seed``), into ``training`` and ``validation``; the carved
   datalist is written beside the original (its relative paths stay valid) as ``<name>_carved_s<seed>.json``. The
   datalist's own validation / test sections are not read.
2. Every variant of :data:`VARIANTS` trains the CRBNet bundle (or the reference UNet, for context) at the budget with
   :func:`usseg_monai.benchmark.run_benchmark` and is scored on the carved validation section; each CRBNet run is
   scored three ways (the mean of the branches, the radical branch, the conservative branch: the inference-mode
   ablation). A variant whose ``results.json`` exists is not run again (the script resumes).
3. ``WORK/ablation.md`` and ``WORK/ablation.json``: per variant and inference mode the validation Dice with its
   bootstrap 95% CI, and the paired per-image difference against the bundle default (mean inference).

Load: run it alone on the machine (one training at a time, ``--threads`` torch threads).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from usseg_monai.benchmark import BUDGETS, get_budget, run_benchmark
from usseg_monai.data.io import atomic_write_json, atomic_write_text, load_datalist, write_datalist
from usseg_monai.data.splits import split_items
from usseg_monai.metrics import bootstrap_ci
from usseg_monai.recipes import RECIPES

CRBNET, UNET = "crbnet_us_2d_segmentation", "unet_us_2d_segmentation"
BRANCHES = {"radical": {"inference_mode": "radical"}, "conservative": {"inference_mode": "conservative"}}

#: name -> (bundle, training labels, overrides, what it tests); the bundle default is CRBNet's reference settings
#: (SGD 0.01 + poly, reference augmentation, IDMPS ramp over the whole run, CAP for the first third, CE weights
#: radical [1, 3] / conservative [3, 1])
VARIANTS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "default": (CRBNET, "calipers", {}, "bundle default (reference settings; IDMPS ramp over the run, CAP first 1/3)"),
    "idmps_paper_steps": (
        CRBNET, "calipers", {"idmps_ramp_fraction": "$30000 / @total_iterations"},
        "IDMPS ramp in the paper's absolute steps: floor(t / 150) of 200 (full weight at t = 30000)",
    ),
    "idmps_early": (CRBNET, "calipers", {"idmps_ramp_fraction": 0.25}, "IDMPS at full weight after the first quarter of the run"),
    "cap_whole_run": (CRBNET, "calipers", {"cap_fraction": 1.0}, "CAP on for the whole run"),
    "cap_off": (CRBNET, "calipers", {"cap_weight": 0.0}, "no CAP"),
    "weights_swapped": (
        CRBNET, "calipers", {"radical_class_weights": [3.0, 1.0], "conservative_class_weights": [1.0, 3.0]},
        "CE class weights swapped: radical [3, 1], conservative [1, 3]",
    ),
    "recipe_project": (CRBNET, "calipers", RECIPES["project"].overrides(), "the project recipe (AdamW + cosine + flip/affine)"),
    "unet_full": (UNET, "full", RECIPES["crbnet_official"].overrides(), "context: UNet on the full masks, CRBNet's recipe"),
    "unet_radical": (UNET, "radical", RECIPES["crbnet_official"].overrides(), "context: UNet on the radical labels, CRBNet's recipe"),
    "unet_full_project": (UNET, "full", RECIPES["project"].overrides(), "context: UNet on the full masks, the project recipe"),
}


def carve(datalist: Path, seed: int, val_fraction: float, train_key: str = "training") -> Path:
    """Write ``<datalist stem>_carved_s<seed>.json`` beside ``datalist``: its ``train_key`` section split into
    ``training`` / ``validation`` (stratified by class, grouped by case); reused when present."""
    out = datalist.with_name(f"{datalist.stem}_carved_s{seed}.json")
    if out.is_file():
        return out
    data = load_datalist(datalist, check_files=False)
    items = data.get(train_key) or []
    if not items:
        raise SystemExit(f"{datalist}: section {train_key!r} is empty")
    parts = split_items(items, val_fraction=val_fraction, seed=seed)
    carved = {k: v for k, v in data.items() if not isinstance(v, list)}
    carved.update(
        training=parts["training"], validation=parts["validation"],
        description=f"{data.get('description', '')} (training section carved: {val_fraction:g} validation, seed {seed})".strip(),
        carved_from={"datalist": str(datalist), "section": train_key, "val_fraction": val_fraction, "seed": seed},
    )
    write_datalist(out.parent, carved, name=out.name)
    return out


def _pseudo_label_datalist(carved: Path, variant: str, work: Path) -> Path:
    from usseg_monai.data.pseudo_labels import pseudo_label_datalist

    out = work / "datalists" / f"labels_{variant}" / "datalist.json"
    if not out.is_file():
        pseudo_label_datalist(carved, variant, out.parent, train_key="training", overwrite=True)
    return out


def _cases(res: dict[str, Any], mode: str | None) -> dict[str, float]:
    cases = res["cases"] if mode is None else res["test_variants"][mode]["cases"]
    return {c["image"]: float(c["dice"]) for c in cases if c.get("dice") is not None and math.isfinite(float(c["dice"]))}


def summarize(results: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Rows (variant, inference mode, Dice [CI], paired difference vs the default) and the Markdown table."""
    ref = _cases(results["default"], None) if "default" in results else {}
    rows = []
    for name, res in results.items():
        modes: list[str | None] = [None] + (list(res.get("test_variants") or {}))
        for mode in modes:
            dice = res["metrics"]["dice"] if mode is None else res["test_variants"][mode]["metrics"]["dice"]
            cases = _cases(res, mode)
            shared = sorted(set(cases) & set(ref))
            diff = bootstrap_ci([cases[k] - ref[k] for k in shared], n_resamples=1000, seed=0) if shared and ref else None
            rows.append({
                "variant": name, "inference": mode or ("mean" if res["bundle"] == CRBNET else "-"),
                "dice": dice, "vs_default": diff, "what": VARIANTS[name][3],
                "iterations": res["timing"]["train_iterations"], "s_per_it": res["timing"]["seconds_per_iteration"],
            })  # fmt: skip
    lines = [
        "| variant | inference | Dice [95% CI] | vs default (mean) [95% CI] | iterations | s/it | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, v = r["dice"], r["vs_default"]
        vs = "-" if v is None or (r["variant"] == "default" and r["inference"] == "mean") else f"{v['mean']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]"
        lines.append(
            f"| {r['variant']} | {r['inference']} | {d['mean']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}] | {vs} | "
            f"{r['iterations']} | {r['s_per_it']:.3f} | {r['what']} |"
        )
    return rows, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datalist", type=Path, help="prepared datalist with calipers (its training section is carved)")
    ap.add_argument("--output", type=Path, required=True, help="work folder (runs, ablation.md, ablation.json)")
    ap.add_argument("--budget", default="cpu-quick", choices=sorted(BUDGETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--only", nargs="+", default=None, choices=sorted(VARIANTS), help="run only these variants")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    work = args.output.resolve()
    work.mkdir(parents=True, exist_ok=True)
    carved = carve(args.datalist.resolve(), args.seed, args.val_fraction)
    budget = get_budget(args.budget)
    results: dict[str, dict[str, Any]] = {}
    for name in args.only or list(VARIANTS):
        bundle, labels, overrides, _ = VARIANTS[name]
        run_dir = work / name
        path = run_dir / "results.json"
        if path.is_file():
            results[name] = json.loads(path.read_text(encoding="utf-8"))
            continue
        train = carved if labels in ("calipers", "full") else _pseudo_label_datalist(carved, labels, work)
        results[name] = run_benchmark(
            bundle, train, carved, run_dir, train_key="training", val_key="validation", test_key="validation",
            budget=budget, seed=args.seed, threads=args.threads, bundle_overrides=overrides,
            test_variants=BRANCHES if bundle == CRBNET else None,
        )
    for name in VARIANTS:  # rows of earlier invocations too
        path = work / name / "results.json"
        if name not in results and path.is_file():
            results[name] = json.loads(path.read_text(encoding="utf-8"))
    results = {k: results[k] for k in VARIANTS if k in results}
    rows, table = summarize(results)
    n_val = len(load_datalist(carved, check_files=False)["validation"])
    head = (
        f"CRBNet ablation on a validation split carved from the training section of `{args.datalist}` "
        f"({n_val} validation images, seed {args.seed}), budget `{budget.name}` "
        f"({'x'.join(map(str, budget.image_size_2d))} px, {budget.max_epochs} epochs, batch {budget.batch_size}), "
        f"one seed; device {next(iter(results.values()))['device'] if results else '-'}.\n\n"
    )
    atomic_write_text(work / "ablation.md", head + table)
    atomic_write_json(work / "ablation.json", {"carved_datalist": str(carved), "budget": budget.name, "rows": rows})
    print(head + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

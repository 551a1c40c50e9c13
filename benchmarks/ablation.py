#!/usr/bin/env python
"""Ablations of a method's own choices on a validation split carved from the training section (never on a test section).

    python benchmarks/ablation.py {crbnet,crii_net,semiseg_caw} DATALIST --output WORK \
        [--budget cpu-quick] [--threads 2] [--seed 0] [--val-fraction 0.2] [--only NAME ...]

1. The training section of ``DATALIST`` is split, stratified by class and grouped by case
   (:func:`usseg_monai.data.splits.split_items`, ``--seed``), into ``training`` and ``validation``; the carved
   datalist is written beside the original (its relative paths stay valid) as ``<name>_carved_s<seed>.json``. The
   datalist's own validation / test sections are not read.
2. Every variant of the method (:data:`VARIANTS`) trains its bundle at the budget with
   :func:`usseg_monai.evaluation.runner.run_benchmark` on its training variant of the carved datalist (the results
   suite's: ``full``, caliper pseudo-labels ``radical`` / ``conservative``, ``class_only:<n>``,
   ``labeled:<fraction>``, :func:`usseg_monai.evaluation.plan.variant_datalist`) and is scored on the carved validation
   section; every CRBNet run is also scored with each branch alone (the inference-mode ablation). Within a method
   every run trains with one recipe unless the variant is about the recipe (:data:`METHOD_RECIPES`). A variant
   whose ``results.json`` exists is not run again (the script resumes).
3. ``WORK/ablation.md`` and ``WORK/ablation.json``: per variant (and inference mode) the validation Dice with its
   bootstrap 95% CI, and the paired per-image difference against the method's ``default`` variant.

What each method needs in ``DATALIST``: ``crbnet`` calipers (``usseg prepare ... --calipers``; BUSI lesion images),
``semiseg_caw`` a ``class_index`` per item (BUSI, all three classes), ``crii_net`` masks (BUSI lesion images).

Load: run it alone on the machine (one training at a time, ``--threads`` torch threads).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

from usseg_monai.evaluation import BUDGETS, get_budget, run_benchmark
from usseg_monai.data.io import atomic_write_json, atomic_write_text, load_datalist, write_datalist
from usseg_monai.data.splits import split_items
from usseg_monai.metrics import bootstrap_ci
from usseg_monai.recipes import PROTOCOL_RECIPES, RECIPES
from usseg_monai.evaluation import variant_datalist

CRBNET, UNET = "crbnet_us_2d_segmentation", "unet_us_2d_segmentation"
CRII, CAW = "crii_net_us_2d_segmentation", "semiseg_caw_us_2d_segmentation"
BRANCHES = {"radical": {"inference_mode": "radical"}, "conservative": {"inference_mode": "conservative"}}
#: the labeled fraction of the CRII-Net ablation (the paper's 4% setting) and the class-only count of SemiSeg-CAW's
#: (80 of the ~400 carved BUSI training images: the 100-of-499 share of the results suite's BUSI protocol)
FEW, CLASS_ONLY = "labeled:0.04", "class_only:80"


class Variant(NamedTuple):
    """One run of an ablation: ``bundle`` trained on ``train_variant`` of the carved datalist with ``overrides``."""

    bundle: str
    train_variant: str
    overrides: dict[str, Any]
    what: str


#: per method, the protocol its budget and recipe are taken from (:meth:`usseg_monai.evaluation.budgets.Budget.for_protocol`)
METHOD_PROTOCOLS = {"crbnet": "calipers", "crii_net": "few_masks", "semiseg_caw": "class_labels"}
#: per method, the recipe every variant trains with (``None``: the bundle's own; the CRBNet variants name theirs,
#: since its ablation compares recipes); as the results suite's tables
METHOD_RECIPES: dict[str, str | None] = {"crbnet": None, "crii_net": PROTOCOL_RECIPES["few_masks"][0], "semiseg_caw": None}

VARIANTS: dict[str, dict[str, Variant]] = {
    # the bundle default is CRBNet's reference settings (SGD 0.01 + poly, reference augmentation, IDMPS ramp over the
    # whole run, CAP for the first third, CE weights radical [1, 3] / conservative [3, 1])
    "crbnet": {
        "default": Variant(CRBNET, "full", {}, "bundle default (reference settings; IDMPS ramp over the run, CAP first 1/3)"),
        "idmps_paper_steps": Variant(
            CRBNET, "full", {"idmps_ramp_fraction": "$30000 / @total_iterations"},
            "IDMPS ramp in the paper's absolute steps: floor(t / 150) of 200 (full weight at t = 30000)",
        ),
        "idmps_early": Variant(CRBNET, "full", {"idmps_ramp_fraction": 0.25}, "IDMPS at full weight after the first quarter of the run"),
        "cap_whole_run": Variant(CRBNET, "full", {"cap_fraction": 1.0}, "CAP on for the whole run"),
        "cap_off": Variant(CRBNET, "full", {"cap_weight": 0.0}, "no CAP"),
        "weights_swapped": Variant(
            CRBNET, "full", {"radical_class_weights": [3.0, 1.0], "conservative_class_weights": [1.0, 3.0]},
            "CE class weights swapped: radical [3, 1], conservative [1, 3]",
        ),
        "recipe_project": Variant(CRBNET, "full", RECIPES["project"].overrides(), "the project recipe (AdamW + cosine + flip/affine)"),
        "unet_full": Variant(UNET, "full", RECIPES["crbnet_official"].overrides(), "context: UNet on the full masks, CRBNet's recipe"),
        "unet_radical": Variant(UNET, "radical", RECIPES["crbnet_official"].overrides(), "context: UNet on the radical labels, CRBNet's recipe"),
        "unet_full_project": Variant(UNET, "full", RECIPES["project"].overrides(), "context: UNet on the full masks, the project recipe"),
    },
    # 4% masks; the bundle default: patch 1/16 of the input per axis, unlabeled consistency on the coarse head,
    # intra and inter weights 0.5, consistency weight 1 (every choice here is the project's: the paper gives none)
    "crii_net": {
        "default": Variant(CRII, FEW, {"method": "crii_net"}, "bundle default (patch 1/16 of the input, unlabeled target coarse)"),
        "patch_16px": Variant(CRII, FEW, {"method": "crii_net", "patch_size": 16}, "fixed 16 px patches (before #16: 1/4 of a 64 px input)"),
        "unlabeled_both": Variant(
            CRII, FEW, {"method": "crii_net", "unlabeled_target": "both"},
            "unlabeled consistency on the coarse and the refined (inference) head",
        ),
        "unlabeled_refined": Variant(
            CRII, FEW, {"method": "crii_net", "unlabeled_target": "refined"}, "unlabeled consistency on the refined head only",
        ),
        "no_intra": Variant(CRII, FEW, {"method": "crii_net", "intra_weight": 0.0}, "without the intra-patch ranked loss"),
        "no_inter": Variant(CRII, FEW, {"method": "crii_net", "inter_weight": 0.0}, "without the inter-patch ranked loss"),
        "no_consistency": Variant(
            CRII, FEW, {"method": "crii_net", "consistency_weight": 0.0}, "without the coarse-refined consistency (no unlabeled term)",
        ),
        "consistency_x10": Variant(
            CRII, FEW, {"method": "crii_net", "consistency_weight": 10.0},
            "consistency weight 10 (the softmax MSE is ~0.01 once ramped: is the unlabeled term too weak?)",
        ),
        "labeled_only": Variant(CRII, FEW, {"method": "labeled_only"}, "context: the UNet on the labeled images alone"),
        "mean_teacher": Variant(CRII, FEW, {"method": "mean_teacher"}, "context: mean teacher, same UNet"),
        "cps": Variant(CRII, FEW, {"method": "cps"}, "context: cross pseudo supervision, same UNet"),
    },
    # MALUNet backbone, 80 class-only images; the bundle default: WGM (learned log-variance weights), class-only
    # target 1(p > 0.5) weighted by |2p - 1| at weight 1, 5 pre-training epochs of ClassElevateSeg
    "semiseg_caw": {
        "default": Variant(CAW, CLASS_ONLY, {"backbone": "malunet"}, "bundle default (WGM weights, class-only weight 1, 5 pre-training epochs)"),
        "weights_static": Variant(CAW, CLASS_ONLY, {"backbone": "malunet", "loss_weighting": "static"}, "fixed loss weights instead of WGM"),
        "weights_imtl": Variant(
            CAW, CLASS_ONLY, {"backbone": "malunet", "loss_weighting": "imtl"},
            "IMTL instead of WGM (loss balance IMTL-L + gradient balance IMTL-G on both bottlenecks)",
        ),
        "weights_imtl_l": Variant(
            CAW, CLASS_ONLY,
            {"backbone": "malunet", "loss_weighting": "imtl", "loss#shared_modules": None, "pretrain#loss#shared_modules": None},
            "IMTL's loss balance only (IMTL-L, no gradient balance)",
        ),
        "no_class_only_seg": Variant(
            CAW, CLASS_ONLY, {"backbone": "malunet", "class_only_weight": 0.0},
            "no segmentation term on the class-only images (their classes still train the class head)",
        ),
        "no_pretrain": Variant(CAW, CLASS_ONLY, {"backbone": "malunet", "pretrain_epochs": 0}, "no ClassElevateSeg pre-training (stage 1)"),
        "backbone_reduced": Variant(
            CAW, CLASS_ONLY, {"backbone": "malunet", "method": "supervised"}, "context: MALUNet on the reduced masks",
        ),
        "backbone_full": Variant(CAW, "full", {"backbone": "malunet", "method": "supervised"}, "context: MALUNet on all masks"),
    },
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
    if isinstance(data.get("classes"), list):
        carved["classes"] = data["classes"]
    carved.update(
        training=parts["training"], validation=parts["validation"],
        description=f"{data.get('description', '')} (training section carved: {val_fraction:g} validation, seed {seed})".strip(),
        carved_from={"datalist": str(datalist), "section": train_key, "val_fraction": val_fraction, "seed": seed},
    )
    write_datalist(out.parent, carved, name=out.name)
    return out


def run_overrides(method: str, variant: Variant, num_cls_classes: int | None = None) -> dict[str, Any]:
    """The bundle overrides of ``variant``: the method's recipe (:data:`METHOD_RECIPES`), then the variant's own;
    SemiSeg-CAW's ``num_cls_classes`` from the datalist's ``classes`` (as the results suite sets it)."""
    recipe = METHOD_RECIPES[method]
    out = {**(RECIPES[recipe].overrides() if recipe else {}), **variant.overrides}
    if variant.bundle == CAW and num_cls_classes:
        out.setdefault("num_cls_classes", int(num_cls_classes))
    return out


def _cases(res: dict[str, Any], mode: str | None) -> dict[str, float]:
    cases = res["cases"] if mode is None else res["test_variants"][mode]["cases"]
    return {c["image"]: float(c["dice"]) for c in cases if c.get("dice") is not None and math.isfinite(float(c["dice"]))}


def summarize(method: str, results: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Rows (variant, inference mode, Dice [CI], paired difference vs the ``default`` variant) and the Markdown table."""
    ref = _cases(results["default"], None) if "default" in results else {}
    rows = []
    for name, res in results.items():
        modes: list[str | None] = [None] + list(res.get("test_variants") or {})
        for mode in modes:
            dice = res["metrics"]["dice"] if mode is None else res["test_variants"][mode]["metrics"]["dice"]
            cases = _cases(res, mode)
            shared = sorted(set(cases) & set(ref))
            diff = bootstrap_ci([cases[k] - ref[k] for k in shared], n_resamples=1000, seed=0) if shared and ref else None
            rows.append({
                "variant": name, "inference": mode or ("mean" if res["bundle"] == CRBNET else "-"),
                "dice": dice, "vs_default": diff, "what": VARIANTS[method][name].what,
                "iterations": res["timing"]["train_iterations"], "s_per_it": res["timing"]["seconds_per_iteration"],
            })  # fmt: skip
    lines = [
        "| variant | inference | Dice [95% CI] | vs default [95% CI] | iterations | s/it | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, v = r["dice"], r["vs_default"]
        is_ref = r["variant"] == "default" and r["inference"] in ("mean", "-")
        vs = "-" if v is None or is_ref else f"{v['mean']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]"
        lines.append(
            f"| {r['variant']} | {r['inference']} | {d['mean']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}] | {vs} | "
            f"{r['iterations']} | {r['s_per_it']:.3f} | {r['what']} |"
        )
    return rows, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("method", choices=sorted(VARIANTS), help="whose choices to ablate")
    ap.add_argument("datalist", type=Path, help="a prepared datalist (its training section is carved)")
    ap.add_argument("--output", type=Path, required=True, help="work folder (runs, ablation.md, ablation.json)")
    ap.add_argument("--budget", default="cpu-quick", choices=sorted(BUDGETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--only", nargs="+", default=None, help="run only these variants")
    args = ap.parse_args(argv)
    variants = VARIANTS[args.method]
    unknown = sorted(set(args.only or ()) - set(variants))
    if unknown:
        ap.error(f"unknown {args.method} variant(s) {unknown}; choose from {sorted(variants)}")
    if not args.datalist.is_file():
        ap.error(f"datalist not found: {args.datalist}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    work = args.output.resolve()
    work.mkdir(parents=True, exist_ok=True)
    carved = carve(args.datalist.resolve(), args.seed, args.val_fraction)
    budget = get_budget(args.budget).for_protocol(METHOD_PROTOCOLS[args.method])
    classes = load_datalist(carved, check_files=False).get("classes")
    n_classes = len(classes) if isinstance(classes, list) else None
    for name in args.only or list(variants):
        path = work / name / "results.json"
        if path.is_file():
            continue
        v = variants[name]
        train = variant_datalist(v.train_variant, carved, "training", work, args.seed)
        run_benchmark(
            v.bundle, train, carved, work / name, train_key="training", val_key="validation", test_key="validation",
            budget=budget, seed=args.seed, threads=args.threads, bundle_overrides=run_overrides(args.method, v, n_classes),
            test_variants=BRANCHES if v.bundle == CRBNET else None,
        )
    # every finished variant, those of earlier invocations too
    results = {
        name: json.loads((work / name / "results.json").read_text(encoding="utf-8"))
        for name in variants if (work / name / "results.json").is_file()
    }  # fmt: skip
    rows, table = summarize(args.method, results)
    n_val = len(load_datalist(carved, check_files=False)["validation"])
    head = (
        f"{args.method} ablation on a validation split carved from the training section of `{args.datalist}` "
        f"({n_val} validation images, seed {args.seed}), budget `{budget.name}` "
        f"({'x'.join(map(str, budget.image_size_2d))} px, {budget.max_epochs} epochs, batch {budget.batch_size}), "
        f"recipe {METHOD_RECIPES[args.method] or 'the bundle default'}, one seed; "
        f"device {next(iter(results.values()))['device'] if results else '-'}.\n\n"
    )
    atomic_write_text(work / "ablation.md", head + table)
    atomic_write_json(work / "ablation.json", {"method": args.method, "carved_datalist": str(carved), "budget": budget.name, "rows": rows})
    print(head + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

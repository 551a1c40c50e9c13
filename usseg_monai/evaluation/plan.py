"""The results suite's plan: which runs (rows) each protocol's tables hold, and the datalists they train on.

:func:`plan_suite` lists a :class:`RunSpec` per row: the calipers tables (one per recipe of
:data:`usseg_monai.recipes.PROTOCOL_RECIPES`: the UNet on full masks, on the radical and conservative caliper
pseudo-labels, CRBNet scored three ways), the class-label tables (per backbone and class-only amount) and the
few-mask tables (per labeled fraction). Rows with the same run id are one run. :func:`variant_datalist` writes a
row's training datalist (pseudo-labels, or a partition of the training section).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from usseg_monai.bundle_paths import resolve_bundle
from usseg_monai.data.resplit import split_datalist
from usseg_monai.data.pseudo_labels import pseudo_label_datalist
from usseg_monai.evaluation.claims import BACKBONES, CRBNET_BRANCHES, PROTOCOLS, protocol_key
from usseg_monai.recipes import PROTOCOL_RECIPES, RECIPE_KEYS, RECIPES, check_bundle_accepts

__all__ = ["RunSpec", "plan_suite", "check_row_overrides", "run_budgets", "check_recipes_accepted", "variant_datalist"]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the suite.

    Attributes:
        run_id: folder name under ``WORK/<dataset>/`` (runs with the same id are the same run).
        protocol: the protocol it is listed under (a run may be listed under several, see :func:`plan_suite`).
        method: the method's name in the tables.
        bundle: bundle folder name under ``bundles/``.
        train_variant: ``"full"`` (the training datalist as given), ``"radical"`` / ``"conservative"`` (pseudo-label
            masks), ``"class_only:<n>"`` or ``"labeled:<fraction>"`` (a partition of the training section).
        overrides: bundle overrides (``--set``) for this run.
        note: a line printed above the protocol's table.
        recipe: the :data:`usseg_monai.recipes.RECIPES` name every row of the table trains with (``None``: the
            bundle's own; the rows of such a table are one bundle). ``overrides`` may not set a recipe key.
        test_variants: further test passes of the run (``{name: inference overrides}``,
            :func:`usseg_monai.evaluation.runner.run_benchmark`).
        test_variant: the test pass this row reports (``None``: the main one).
        section_epochs: epochs of ``ceil(training items / batch)`` iterations whatever part of the training section
            the row's loader iterates (:func:`usseg_monai.evaluation.runner.run_benchmark`), so that the rows of a table
            that train on different parts of one section train the same number of iterations.
    """

    run_id: str
    protocol: str
    method: str
    bundle: str
    train_variant: str = "full"
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    note: str = ""
    recipe: str | None = None
    test_variants: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    test_variant: str | None = None
    section_epochs: bool = False


def _amount_label(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, int) else f"{100 * float(value):g}%"


def plan_suite(
    protocols: Sequence[str],
    spatial_dims: int,
    class_only: Sequence[int] = (100,),
    fractions: Sequence[float] = (0.04, 0.10),
    num_cls_classes: int | None = None,
    recipes: Sequence[str] | None = None,
) -> list[RunSpec]:
    """The runs of ``protocols`` for a ``spatial_dims`` dataset, in table order.

    ``recipes``: keep only the tables of these :data:`usseg_monai.recipes.RECIPES` names (tables with the bundle's
    own recipe are kept); ``None``: every recipe of :data:`usseg_monai.recipes.PROTOCOL_RECIPES`.

    Raises:
        ValueError: an unknown protocol, or ``class_labels`` on a 3D dataset (SemiSeg-CAW's backbones are 2D).
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)} or 'all'")
    d = f"{int(spatial_dims)}d"
    unet, crbnet, crii = f"unet_us_{d}_segmentation", f"crbnet_us_{d}_segmentation", f"crii_net_us_{d}_segmentation"
    runs: list[RunSpec] = []
    if "calipers" in protocols:
        names = PROTOCOL_RECIPES["calipers"]
        for rname in names:
            protocol = "calipers" if len(names) == 1 else f"calipers (recipe {rname})"
            tag = f"-{rname}"
            base = dict(protocol=protocol, recipe=rname)
            runs += [
                RunSpec(f"unet_full{tag}", method="UNet, full masks", bundle=unet, **base),
                RunSpec(f"unet_radical{tag}", method="UNet, radical labels", bundle=unet, train_variant="radical", **base),
                RunSpec(
                    f"unet_conservative{tag}", method="UNet, conservative labels", bundle=unet,
                    train_variant="conservative", **base,
                ),
            ]
            # one CRBNet run, scored three ways: the bundle's inference (the branches' mean) and each branch alone
            runs += [
                RunSpec(f"crbnet{tag}", method=method, bundle=crbnet, test_variants=CRBNET_BRANCHES, test_variant=v, **base)
                for method, v in (
                    ("CRBNet (calipers only)", None),
                    ("CRBNet, radical branch", "radical"),
                    ("CRBNet, conservative branch", "conservative"),
                )
            ]
    if "class_labels" in protocols:
        if spatial_dims != 2:
            raise ValueError("the class_labels protocol (SemiSeg-CAW) is 2D only; this dataset is 3D")
        semiseg = "semiseg_caw_us_2d_segmentation"
        cls = {} if num_cls_classes is None else {"num_cls_classes": int(num_cls_classes)}
        for n in class_only:
            protocol = f"class_labels ({n} class-only)"
            note = f"{n} training images keep only their class label; the reduced-mask rows train on the others' masks."
            for key, name in BACKBONES:
                sup = {"backbone": key, "method": "supervised", **cls}
                runs += [
                    RunSpec(f"{key}_full", protocol, f"{name}, full masks", semiseg, "full", sup, note, section_epochs=True),
                    RunSpec(
                        f"{key}_reduced_c{n}", protocol, f"{name}, reduced masks", semiseg, f"class_only:{n}", sup, note,
                        section_epochs=True,
                    ),
                    RunSpec(
                        f"semiseg_{key}_c{n}", protocol, f"SemiSeg-CAW ({name})", semiseg, f"class_only:{n}",
                        {"backbone": key, **cls}, note, section_epochs=True,
                    ),
                ]
    if "few_masks" in protocols:
        (rname,) = PROTOCOL_RECIPES["few_masks"]
        for f in fractions:
            protocol = f"few_masks ({_amount_label(float(f))} masks)"
            tag = f"{float(f):g}"
            base = dict(protocol=protocol, bundle=crii, train_variant=f"labeled:{tag}", recipe=rname, section_epochs=True)
            runs += [
                RunSpec(f"crii_labeled_only_{tag}-{rname}", method="labeled only", overrides={"method": "labeled_only"}, **base),
                RunSpec(f"crii_mean_teacher_{tag}-{rname}", method="mean teacher", overrides={"method": "mean_teacher"}, **base),
                RunSpec(f"crii_cps_{tag}-{rname}", method="cross pseudo supervision", overrides={"method": "cps"}, **base),
                RunSpec(f"crii_net_{tag}-{rname}", method="CRII-Net", overrides={"method": "crii_net"}, **base),
                # the ablation of #16: the unlabeled signal also reaches the refinement head used at inference
                RunSpec(
                    f"crii_net_both_{tag}-{rname}", method="CRII-Net, unlabeled signal to both heads",
                    overrides={"method": "crii_net", "unlabeled_target": "both"}, **base,
                ),
                RunSpec(f"unet_full-{rname}", protocol, "UNet, full masks (reference)", unet, recipe=rname, section_epochs=True),
            ]
    if recipes is not None:
        unknown_r = sorted(set(recipes) - set(RECIPES))
        if unknown_r:
            raise ValueError(f"unknown recipe(s) {unknown_r}; recipes are {sorted(RECIPES)}")
        runs = [r for r in runs if r.recipe is None or r.recipe in recipes]
    check_row_overrides(runs)
    return runs


def check_row_overrides(plan: Sequence[RunSpec]) -> None:
    """Refuse a row whose own overrides set a recipe key (:data:`usseg_monai.recipes.RECIPE_KEYS`): within a
    table only the method's own terms may differ.

    Raises:
        ValueError: naming the row, its table and the keys.
    """
    for spec in plan:
        clash = sorted(set(spec.overrides) & set(RECIPE_KEYS))
        if clash:
            raise ValueError(f"row {spec.method!r} of {spec.protocol!r} overrides recipe key(s) {clash}; one recipe per table")


def run_budgets(plan: Sequence[RunSpec], budget: Any) -> list[tuple[Any, str]]:
    """Each planned run's budget (:meth:`usseg_monai.evaluation.budgets.Budget.for_protocol`) and run id, in plan order.

    A run listed under several protocols (the reference UNet) is shared only where the protocols train it with the
    same budget; under a protocol with other settings (the ``paper`` budget) it becomes its own run,
    ``<run_id>__<protocol>``."""
    first: dict[str, Any] = {}
    out: list[tuple[Any, str]] = []
    for spec in plan:
        key = protocol_key(spec.protocol)
        rb = budget.for_protocol(key)
        run_id = spec.run_id
        if first.setdefault(run_id, rb) != rb:
            run_id = f"{run_id}__{key}"
        out.append((rb, run_id))
    return out


def check_recipes_accepted(plan: Sequence[RunSpec]) -> None:
    """Before any training: every row with a recipe is a bundle that declares all of the recipe's keys."""
    seen: set[tuple[str, str]] = set()
    for spec in plan:
        if spec.recipe is None or (spec.bundle, spec.recipe) in seen:
            continue
        if spec.recipe not in RECIPES:
            raise ValueError(f"row {spec.method!r}: unknown recipe {spec.recipe!r}; recipes are {sorted(RECIPES)}")
        config = ConfigParser.load_config_file(str(resolve_bundle(spec.bundle) / "configs" / "train.json"))
        check_bundle_accepts(config, RECIPES[spec.recipe], spec.bundle)
        seen.add((spec.bundle, spec.recipe))


def variant_datalist(variant: str, train_datalist: Path, train_key: str, work: Path, seed: int) -> Path:
    """The training datalist of a variant, written under ``work/datalists`` once (reused when present).

    ``variant``: ``"full"`` (``train_datalist`` itself), ``"radical"`` / ``"conservative"`` (the caliper
    pseudo-label masks of its ``train_key`` section), ``"class_only:<n>"`` (``n`` training images keep only their
    class) or ``"labeled:<fraction>"`` (that fraction keeps its mask); the partitions are seeded with ``seed``.

    Raises:
        ValueError: an unknown variant.
    """
    if variant == "full":
        return train_datalist
    folder = work / "datalists"
    if variant in ("radical", "conservative"):
        out = folder / f"labels_{variant}" / "datalist.json"
        if not out.is_file():
            pseudo_label_datalist(train_datalist, variant, out.parent, train_key=train_key, overwrite=True)
        return out
    kind, _, value = variant.partition(":")
    if kind not in ("class_only", "labeled") or not value:
        raise ValueError(f"unknown training variant {variant!r}")
    out = folder / f"datalist_{kind}_{value}.json"
    if not out.is_file():
        amount: int | float = int(value) if kind == "class_only" else float(value)
        split_datalist(train_datalist, out, seed=seed, overwrite=True, **{kind: amount})
    return out

"""The results suite: the papers' protocols on one dataset at a named budget, merged into one report.

``usseg benchmark --suite PROTOCOLS --budget BUDGET --dataset-name NAME --train-datalist ... --test-datalist ...
--output WORK [--report docs/results.md]`` runs, with :func:`usseg_monai.benchmark.run_benchmark` (same budget,
seed and test section for every run):

- ``calipers`` (CRBNet's protocol), one table per recipe of :data:`usseg_monai.recipes.PROTOCOL_RECIPES` (the
  project's and CRBNet's official one): the reference UNet on the full masks, on the radical and on the
  conservative caliper pseudo-labels (:func:`usseg_monai.data.pseudo_labels.pseudo_label_datalist`), and CRBNet on
  the calipers alone, scored three ways (the mean of its branches, each branch alone); the training datalist must
  carry ``calipers`` (``usseg prepare ... --calipers``).
- ``class_labels`` (SemiSeg-CAW's): per backbone (MALUNet, UNeXt) the backbone on all masks, on the reduced masks
  (the masked part of the partition) and SemiSeg-CAW with the rest class-only, for every ``--class-only`` amount
  (BUSI 100; DDTI 48, 96, 144 in the paper); the partitions are written with
  :func:`usseg_monai.data.prepared.split_datalist` (seeded). 2D only; the bundle's own recipe (one bundle).
- ``few_masks`` (CRII-Net's), under the project recipe: at every ``--fractions`` value (4% and 10%) the labeled
  part alone, a mean teacher, cross pseudo supervision, CRII-Net, and CRII-Net with the unlabeled signal also on its inference head (the
  ``unlabeled_target`` ablation); with the reference UNet on all masks.
- the measurement protocol (long/short axis and aspect-ratio errors, taller-than-wide agreement of each
  method's predicted masks) is part of every run's results and of every table.

Every run writes ``WORK/<dataset>/<run id>/results.json``; a run whose results exist is not repeated (so a suite
can be resumed, and a run shared by two protocols, the reference UNet, trains once; ``--reuse-runs RESULTS`` also
reuses the runs of a suite results file from another machine, :func:`runs_of_results`). ``WORK/results.json`` holds
every run of every dataset run into ``WORK`` (merged, so BUSI and DDTI can be run one after the other) with the
settings, device, versions and wall time, and the report (:func:`usseg_monai.report.write_report`) is written
from it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from usseg_monai.bundle_paths import config_digest, resolve_bundle
from usseg_monai.data.io import DatasetError, atomic_write_json, load_datalist, read_json
from usseg_monai.recipes import PROTOCOL_RECIPES, RECIPE_KEYS, RECIPES, check_bundle_accepts, check_same_recipe, recipe_line

__all__ = [
    "PROTOCOLS", "CLAIMS", "TARGETS", "RunSpec", "plan_suite", "protocol_key", "variant_datalist", "runs_of_results",
    "reuse_mismatch", "run_suite", "add_suite_arguments",
]

logger = logging.getLogger("usseg_monai.suite")

PROTOCOLS = ("calipers", "class_labels", "few_masks")

#: CRBNet's extra test passes: each branch alone (the reference code's test script scores one branch)
CRBNET_BRANCHES: dict[str, dict[str, str]] = {
    "radical": {"inference_mode": "radical"},
    "conservative": {"inference_mode": "conservative"},
}
BACKBONES = (("malunet", "MALUNet"), ("unext", "UNeXt"))


#: per protocol: the paper's claim and, for each method it is about, the rows it is compared with (method names as
#: :func:`plan_suite` gives them); the report's "at a glance" table tests each pair on the same test images
CLAIMS: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {
    "calipers": (
        "CRBNet from calipers alone reaches full supervision and beats a UNet on either pseudo-label (Zhao et al. 2024)",
        [("CRBNet (calipers only)", ["UNet, full masks", "UNet, radical labels", "UNet, conservative labels"])],
    ),
    "class_labels": (
        "SemiSeg-CAW beats its backbone on the reduced masks and reaches it on all masks (Barzegar & Khan 2025)",
        [(f"SemiSeg-CAW ({name})", [f"{name}, reduced masks", f"{name}, full masks"]) for _, name in BACKBONES],
    ),
    "few_masks": (
        "CRII-Net beats semi-supervised baselines with few masks (+7.49% Dice at 4%, Du et al. 2023)",
        [("CRII-Net", ["labeled only", "mean teacher", "cross pseudo supervision"])],
    ),
}


#: per protocol, the targets of #16 the report tests (paired per-image Dice difference, method minus the row(s) it
#: is compared with): ``(method, rows, margin, strict)``; with several rows the best of them (highest mean Dice in
#: the table) is the one compared with. ``strict``: the difference must exceed the margin (else reach it).
TARGETS: dict[str, list[tuple[str, list[str], float, bool]]] = {
    "calipers": [
        ("CRBNet (calipers only)", ["UNet, full masks"], 0.0, False),
        ("CRBNet (calipers only)", ["UNet, radical labels"], 0.0, True),
    ],
    "class_labels": [(f"SemiSeg-CAW ({name})", [f"{name}, reduced masks"], 0.02, False) for _, name in BACKBONES],
    "few_masks": [
        ("CRII-Net", ["mean teacher", "cross pseudo supervision"], 0.07, False),
        ("CRII-Net", ["labeled only"], 0.0, True),
    ],
}


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
            :func:`usseg_monai.benchmark.run_benchmark`).
        test_variant: the test pass this row reports (``None``: the main one).
        section_epochs: epochs of ``ceil(training items / batch)`` iterations whatever part of the training section
            the row's loader iterates (:func:`usseg_monai.benchmark.run_benchmark`), so that the rows of a table
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


def protocol_key(protocol: str) -> str:
    """The protocol a table title belongs to: ``"class_labels (100 class-only)"`` -> ``"class_labels"``."""
    return protocol.split(" (", 1)[0]


def _run_budgets(plan: Sequence[RunSpec], budget: Any) -> list[tuple[Any, str]]:
    """Each planned run's budget (:meth:`usseg_monai.benchmark.Budget.for_protocol`) and run id, in plan order.

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


def _check_recipes_accepted(plan: Sequence[RunSpec]) -> None:
    """Before any training: every row with a recipe is a bundle that declares all of the recipe's keys."""
    from monai.bundle import ConfigParser

    seen: set[tuple[str, str]] = set()
    for spec in plan:
        if spec.recipe is None or (spec.bundle, spec.recipe) in seen:
            continue
        if spec.recipe not in RECIPES:
            raise ValueError(f"row {spec.method!r}: unknown recipe {spec.recipe!r}; recipes are {sorted(RECIPES)}")
        config = ConfigParser.load_config_file(str(resolve_bundle(spec.bundle) / "configs" / "train.json"))
        check_bundle_accepts(config, RECIPES[spec.recipe], spec.bundle)
        seen.add((spec.bundle, spec.recipe))


def _check_tables(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """After the runs: every table's rows trained with one recipe (:func:`usseg_monai.recipes.check_same_recipe`)
    and for the same number of iterations (the calipers rows train on the same images; the class-label and
    few-mask rows count epochs over the whole training section, ``RunSpec.section_epochs``); per table its recipe
    name and line (printed above the table). Runs from before recipes were recorded are not checked for recipes.

    Raises:
        ValueError: a table whose rows differ.
    """
    tables: dict[str, dict[str, Any]] = {}
    for title in dict.fromkeys(str(r["protocol"]) for r in runs):
        group = [r for r in runs if r["protocol"] == title]
        trained = [(str(r["method"]), r["training_recipe"]) for r in group if r.get("training_recipe")]
        check_same_recipe(trained, title)
        its = {str(r["method"]): (r.get("timing") or {}).get("train_iterations") for r in group}
        if len(set(its.values())) > 1:
            raise ValueError(f"table {title!r}: the rows trained for different numbers of iterations {its}")
        name = group[0].get("recipe")
        recipe = RECIPES.get(name) if name else None
        tables[title] = {"recipe": name, "line": recipe_line(recipe, trained[0][1] if trained else None)}
    return tables


def variant_datalist(variant: str, train_datalist: Path, train_key: str, work: Path, seed: int) -> Path:
    """The training datalist of a variant, written under ``work/datalists`` once (reused when present).

    ``variant``: ``"full"`` (``train_datalist`` itself), ``"radical"`` / ``"conservative"`` (the caliper
    pseudo-label masks of its ``train_key`` section), ``"class_only:<n>"`` (``n`` training images keep only their
    class) or ``"labeled:<fraction>"`` (that fraction keeps its mask); the partitions are seeded with ``seed``.

    Raises:
        ValueError: an unknown variant.
    """
    from usseg_monai.data.prepared import split_datalist
    from usseg_monai.data.pseudo_labels import pseudo_label_datalist

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


#: the keys the suite adds to a run's record in its table entries (:func:`run_suite`); the rest is the run's own
ENTRY_KEYS = frozenset({
    "dataset", "protocol", "method", "run_id", "run_dir", "predictions_dir", "train_variant", "recipe", "note",
    "recipe_line", "test_variant", "test_overrides",
})  # fmt: skip


def runs_of_results(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, Any]]:
    """The per-run records (as :func:`usseg_monai.benchmark.run_benchmark` wrote them, without the prediction files)
    rebuilt from a suite results file (``results.json`` or ``.json.gz``, e.g. one committed beside a report), keyed by
    ``(dataset, run id)``; each has ``restored_from`` set to ``path``.

    A run's main entry gives the record and its further test passes (rows with ``test_overrides``, e.g. CRBNet's
    branches) its ``test_variants``; a pass is named by the entry's ``test_variant`` (or, in files written before it
    was recorded, by its ``predictions_<name>`` folder).

    Raises:
        DatasetError: a missing or unreadable file, or one without a ``runs`` list.
    """
    data = read_json(path, "suite results to reuse")
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise DatasetError(f"{path}: no 'runs' list (a suite results.json from `usseg benchmark --suite`)")
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in data["runs"]:
        rec = records.setdefault((str(entry.get("dataset")), str(entry.get("run_id"))), {"test_variants": {}})
        if "test_overrides" in entry:
            name = entry.get("test_variant") or Path(str(entry.get("predictions_dir"))).name.removeprefix("predictions_")
            rec["test_variants"][name] = {
                "overrides": entry["test_overrides"], "metrics": entry["metrics"],
                "measurement_error": entry.get("measurement_error"), "cases": entry.get("cases") or [],
            }  # fmt: skip
        elif "bundle" not in rec:
            rec.update({k: v for k, v in entry.items() if k not in ENTRY_KEYS})
    return {k: {**v, "restored_from": str(path)} for k, v in records.items() if "bundle" in v}


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def record_epoch_length(record: Mapping[str, Any]) -> float | None:
    """Iterations per epoch of a run record: ``timing.epoch_length``, or for records written before it was kept
    the iterations run over the budget's epochs (``None`` when neither is known)."""
    timing = record.get("timing") or {}
    if timing.get("epoch_length"):
        return float(timing["epoch_length"])
    epochs = (record.get("budget") or {}).get("max_epochs")
    its = timing.get("train_iterations")
    return float(its) / float(epochs) if its and epochs else None


def epoch_length_mismatch(record: Mapping[str, Any], expected: int | None) -> str | None:
    """Why ``record`` did not train epochs of ``expected`` iterations (``None``: it did, or nothing is expected)."""
    if expected is None:
        return None
    have = record_epoch_length(record)
    if have is None or abs(have - expected) > 1e-9:
        return f"epochs of {have:g} iterations, not {expected}" if have is not None else "no epoch length recorded"
    return None


def reuse_mismatch(
    record: Mapping[str, Any],
    budget: Any,
    overrides: Mapping[str, Any],
    seed: int,
    digest: str | None = None,
    epoch_length: int | None = None,
) -> str | None:
    """Why ``record`` is not the run the suite would train with ``budget``, ``overrides`` and ``seed`` (``None``: it
    is): the budget's settings (its description aside), the bundle overrides and the seed must be equal, the
    bundle's configs (:func:`usseg_monai.bundle_paths.config_digest` ``digest``) where the record has their digest
    (records written before it was kept have none), and with ``epoch_length`` the iterations per epoch
    (:func:`epoch_length_mismatch`)."""
    want = {k: v for k, v in dataclasses.asdict(budget).items() if k != "description"}
    have = {k: v for k, v in (record.get("budget") or {}).items() if k in want}
    if _as_json(want) != _as_json(have):
        return f"budget {have} differs from {want}"
    if _as_json(dict(overrides)) != _as_json(record.get("bundle_overrides") or {}):
        return f"overrides {record.get('bundle_overrides')} differ from {dict(overrides)}"
    if record.get("seed") != seed:
        return f"seed {record.get('seed')} differs from {seed}"
    if digest is not None and record.get("bundle_config_sha256") not in (None, digest):
        return f"the bundle's configs changed since the run (digest {str(record['bundle_config_sha256'])[:12]} now {digest[:12]})"
    return epoch_length_mismatch(record, epoch_length)


def _merge_results(path: Path, new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` merged into the suite results at ``path``: a run of the same dataset, protocol and method is
    replaced, every other run is kept (so protocols and datasets can be run one invocation at a time)."""
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
    datasets = {**(old.get("datasets") or {}), **new["datasets"]}
    key = lambda r: (r.get("dataset"), r.get("protocol"), r.get("method"))  # noqa: E731
    replaced = {key(r) for r in new["runs"]}
    runs = [r for r in old.get("runs", []) if key(r) not in replaced] + list(new["runs"])
    # one entry per distinct invocation (its command line; without one, its dataset and protocols)
    inv = lambda s: s.get("command") or (s.get("dataset"), tuple(s.get("protocols", ())))  # noqa: E731
    this = inv(new["suite"])
    suites = [s for s in old.get("suites", []) if inv(s) != this]
    suites.append(new["suite"])
    # the time the runs took (each run once, reused runs included), not the time of the invocations
    unique = {r.get("run_dir"): r for r in runs}
    wall = sum(float((r.get("timing") or {}).get("total_wall_s") or 0.0) for r in unique.values())
    suite = {
        **new["suite"],
        "wall_s": wall,
        "wall_note": "sum of every run's training + test time, each run counted once",
        "datasets_run": list(dict.fromkeys(s.get("dataset") for s in suites)),
    }
    return {"suite": suite, "suites": suites, "datasets": datasets, "runs": runs}


def run_suite(
    protocols: Sequence[str],
    dataset_name: str,
    train_datalist: str | os.PathLike,
    test_datalist: str | os.PathLike,
    work_dir: str | os.PathLike,
    *,
    train_key: str = "training",
    val_key: str = "validation",
    test_key: str = "test",
    budget: str = "cpu-quick",
    budget_overrides: Mapping[str, Any] | None = None,
    class_only: Sequence[int] = (100,),
    fractions: Sequence[float] = (0.04, 0.10),
    num_cls_classes: int | None = None,
    seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    n_resamples: int = 1000,
    report: str | os.PathLike | None = None,
    command: str | None = None,
    recipes: Sequence[str] | None = None,
    reuse_runs: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run the protocols on one dataset, merge into ``work_dir/results.json``, write the report; return the merged results.

    Args:
        protocols: names from :data:`PROTOCOLS`.
        dataset_name: the dataset's name in the tables (e.g. ``"BUSI"``).
        train_datalist, test_datalist, train_key, val_key, test_key: as :func:`usseg_monai.benchmark.run_benchmark`
            (the test datalist is used as it is, e.g. a held-back set).
        work_dir: folder of the runs, the derived datalists and ``results.json``.
        budget, budget_overrides: the runner's named budget (``cpu-quick``, ``paper``, ...) and field overrides.
        class_only: class-only amounts of the ``class_labels`` protocol.
        fractions: labeled fractions of the ``few_masks`` protocol.
        num_cls_classes: classification classes for SemiSeg-CAW (default: the datalist's ``classes`` count, else
            the bundle's default).
        seed, device, threads, n_resamples: passed to every run (the seed also seeds the partitions).
        report: Markdown report to write (figures beside it in ``figures/``); ``None``: none.
        recipes: run only the tables of these recipes (:func:`plan_suite`).
        command: the command line, recorded in the report.
        reuse_runs: a suite results file (``results.json`` / ``.json.gz``, e.g. one committed beside a report, from
            another machine): a run missing under ``work_dir`` whose record is in it, trained with the same budget,
            overrides and seed (:func:`reuse_mismatch`), is written back (:func:`runs_of_results`) and not trained
            again. Its predictions are not in the file, so its tables have no gallery.
    """
    from usseg_monai.benchmark import get_budget, run_benchmark, section_epoch_length

    t0 = time.perf_counter()
    train_datalist, test_datalist = Path(train_datalist).resolve(), Path(test_datalist).resolve()
    for p, what in ((train_datalist, "training"), (test_datalist, "test")):
        if not p.is_file():
            raise DatasetError(f"{what} datalist not found: {p}")
    data = load_datalist(train_datalist, check_files=False)
    n_train = len(data.get(train_key) or [])
    spatial_dims = int(data.get("spatial_dims", 2))
    if num_cls_classes is None and isinstance(data.get("classes"), list) and data["classes"]:
        num_cls_classes = len(data["classes"])
    b = get_budget(budget, **dict(budget_overrides or {}))
    plan = plan_suite(protocols, spatial_dims, class_only, fractions, num_cls_classes, recipes)
    work = Path(work_dir).resolve()
    ds_dir = work / "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_name)
    ds_dir.mkdir(parents=True, exist_ok=True)
    budgets = _run_budgets(plan, b)
    _check_recipes_accepted(plan)
    logger.info("suite: %d rows (%d distinct runs) on %s at budget %s", len(plan), len({i for _, i in budgets}), dataset_name, b.name)
    variants_of: dict[str, dict[str, Mapping[str, Any]]] = {}
    for spec, (_, run_id) in zip(plan, budgets):
        variants_of.setdefault(run_id, {}).update(spec.test_variants)
    reusable = runs_of_results(reuse_runs) if reuse_runs is not None else {}
    done: dict[str, dict[str, Any]] = {}
    runs: list[dict[str, Any]] = []
    for spec, (run_b, run_id) in zip(plan, budgets):
        spec = dataclasses.replace(spec, run_id=run_id)
        run_dir = ds_dir / spec.run_id
        if spec.run_id not in done:
            results_path = run_dir / "results.json"
            wanted = variants_of.get(spec.run_id) or {}
            res = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else None
            # the rows of a section-epochs table train epochs of ceil(training items / batch) iterations
            length = section_epoch_length(n_train, run_b.batch_size) if spec.section_epochs else None
            if res is not None and set(wanted) - set(res.get("test_variants") or {}):
                logger.info("suite: %s lacks test pass(es) %s, run again", results_path, sorted(set(wanted) - set(res.get("test_variants") or {})))
                res = None
            if res is not None and epoch_length_mismatch(res, length):
                logger.info("suite: %s trained %s, run again", results_path, epoch_length_mismatch(res, length))
                res = None
            overrides = {**(RECIPES[spec.recipe].overrides() if spec.recipe else {}), **dict(spec.overrides)}
            kept = reusable.get((dataset_name, spec.run_id))
            if res is None and kept is not None:
                why = reuse_mismatch(kept, run_b, overrides, seed, config_digest(resolve_bundle(spec.bundle)), length) or (
                    f"lacks test pass(es) {sorted(set(wanted) - set(kept['test_variants']))}"
                    if set(wanted) - set(kept["test_variants"]) else None
                )  # fmt: skip
                if why:
                    logger.info("suite: %s of %s not reused: %s", spec.run_id, reuse_runs, why)
                else:
                    res = kept
                    atomic_write_json(results_path, res)
                    logger.info("suite: %s reused from %s", spec.run_id, reuse_runs)
            if res is not None:
                logger.info("suite: %s exists, kept", results_path)
            else:
                dl = variant_datalist(spec.train_variant, train_datalist, train_key, ds_dir, seed)
                logger.info("suite: run %s (%s, %s, recipe %s) on %s", spec.run_id, spec.method, spec.bundle, spec.recipe, dl)
                res = run_benchmark(
                    spec.bundle, dl, test_datalist, run_dir, train_key=train_key, val_key=val_key, test_key=test_key,
                    budget=run_b, seed=seed, device=device, n_resamples=n_resamples,
                    bundle_overrides=overrides, threads=threads, test_variants=wanted, section_epochs=spec.section_epochs,
                )
            done[spec.run_id] = res
        entry = {k: v for k, v in done[spec.run_id].items() if k != "test_variants"}
        predictions = run_dir / "predictions"
        if spec.test_variant is not None:
            variant = done[spec.run_id]["test_variants"][spec.test_variant]
            entry.update(metrics=variant["metrics"], measurement_error=variant["measurement_error"], cases=variant["cases"])
            entry.update(test_overrides=variant["overrides"], test_variant=spec.test_variant)
            predictions = run_dir / f"predictions_{spec.test_variant}"
        entry.update(
            dataset=dataset_name, protocol=spec.protocol, method=spec.method, run_id=spec.run_id,
            run_dir=str(run_dir), predictions_dir=str(predictions), train_variant=spec.train_variant,
            recipe=spec.recipe,
        )
        if spec.note:
            entry["note"] = spec.note
        runs.append(entry)
    tables = _check_tables(runs)
    for entry in runs:
        entry["recipe_line"] = tables[str(entry["protocol"])]["line"]
    first = next(iter(done.values()), {})
    suite = {
        "dataset": dataset_name,
        "protocols": list(protocols),
        "budget": b.name,
        "budget_settings": {**dataclasses.asdict(b), "image_size": b.image_size(spatial_dims)},
        "protocol_budgets": {
            key: {**dataclasses.asdict(pb), "image_size": pb.image_size(spatial_dims)}
            for key, pb in ((k, b.for_protocol(k)) for k in dict.fromkeys(protocol_key(r.protocol) for r in plan))
        },
        "recipes": tables,
        "seed": seed,
        "device": first.get("device"),
        "versions": first.get("versions"),
        "wall_s": time.perf_counter() - t0,
        "command": command,
    }
    test_n = len(load_datalist(test_datalist, check_files=False).get(test_key) or [])
    datasets = {
        dataset_name: {
            "train": {"path": str(train_datalist), "section": train_key, "n": len(data.get(train_key) or [])},
            "test": {"path": str(test_datalist), "section": test_key, "n": test_n},
            "split": data.get("split"),
        }
    }
    merged = _merge_results(work / "results.json", {"suite": suite, "datasets": datasets, "runs": runs})
    atomic_write_json(work / "results.json", merged)
    if report is not None:
        from usseg_monai.report import write_report

        write_report(merged, report)
    return merged


def add_suite_arguments(parser: Any) -> None:
    """The ``--suite`` options of ``usseg benchmark``."""
    g = parser.add_argument_group("suite (usseg benchmark --suite ...)")
    g.add_argument(
        "--suite", default=None, metavar="PROTOCOLS",
        help=f"run the results protocols instead of one bundle: 'all' or a comma list of {','.join(PROTOCOLS)}",
    )
    g.add_argument("--dataset-name", default=None, help="the dataset's name in the report (default: the datalist's 'name')")
    g.add_argument("--class-only", type=int, nargs="+", default=[100], help="class-only amounts (class_labels protocol)")
    g.add_argument("--fractions", type=float, nargs="+", default=[0.04, 0.10], help="labeled fractions (few_masks protocol)")
    g.add_argument("--num-cls-classes", type=int, default=None, help="SemiSeg-CAW classes (default: the datalist's 'classes')")
    g.add_argument(
        "--recipe", nargs="+", default=None, choices=sorted(RECIPES),
        help="run only the tables of these recipes (default: every recipe of each protocol, PROTOCOL_RECIPES)",
    )
    g.add_argument("--report", default=None, help="write the Markdown report here (figures in figures/ beside it)")
    g.add_argument(
        "--reuse-runs", default=None, metavar="RESULTS",
        help="a suite results.json(.gz) from an earlier run (e.g. docs/results.json.gz): its runs with the same budget, "
        "overrides and seed are not trained again",
    )


def _argv_of(args: Any) -> list[str]:
    """The suite's options as a command line (recorded in the report)."""
    out = ["--suite", shlex.quote(args.suite)]
    for flag, value in (
        ("--dataset-name", args.dataset_name), ("--budget", args.budget), ("--epochs", args.epochs),
        ("--iterations", args.iterations), ("--recipe", args.recipe),
        ("--batch-size", args.batch_size), ("--image-size", args.image_size), ("--train-datalist", args.train_datalist),
        ("--train-key", args.train_key), ("--test-datalist", args.test_datalist), ("--test-key", args.test_key),
        ("--class-only", args.class_only), ("--fractions", args.fractions), ("--seed", args.seed),
        ("--threads", args.threads), ("--output", args.output), ("--reuse-runs", args.reuse_runs),
    ):
        if value is None:
            continue
        out.append(flag)
        out += [shlex.quote(str(v)) for v in value] if isinstance(value, (list, tuple)) else [shlex.quote(str(value))]
    return out


def suite_main(args: Any) -> int:
    """``usseg benchmark --suite ...``."""
    protocols = list(PROTOCOLS) if args.suite.strip() == "all" else [p.strip() for p in args.suite.split(",") if p.strip()]
    name = args.dataset_name
    if name is None:
        data = load_datalist(Path(args.train_datalist), check_files=False)
        name = str(data.get("name") or Path(args.train_datalist).parent.name)
    overrides: dict[str, Any] = {
        "max_epochs": args.epochs, "max_iterations": args.iterations, "batch_size": args.batch_size,
        "val_interval": args.val_interval,
    }
    if args.image_size:
        overrides["image_size_2d" if len(args.image_size) == 2 else "image_size_3d"] = tuple(args.image_size)
    run_suite(
        protocols, name, args.train_datalist, args.test_datalist, args.output,
        train_key=args.train_key, val_key=args.val_key, test_key=args.test_key, budget=args.budget,
        budget_overrides=overrides, class_only=args.class_only, fractions=args.fractions,
        num_cls_classes=args.num_cls_classes, seed=args.seed, device=args.device, threads=args.threads,
        n_resamples=args.n_resamples, report=args.report, recipes=args.recipe, reuse_runs=args.reuse_runs,
        command="usseg benchmark " + " ".join(_argv_of(args)),
    )
    print(Path(args.output) / "results.json")
    return 0

"""The results suite: the papers' protocols on one dataset at a named budget, merged into one report.

``usseg benchmark --suite PROTOCOLS --budget BUDGET --dataset-name NAME --train-datalist ... --test-datalist ...
--output WORK [--report docs/results.md]`` runs the plan of :func:`usseg_monai.evaluation.plan.plan_suite`, each row with
:func:`usseg_monai.evaluation.runner.run_benchmark` (same budget,
seed and test section for every run):

- ``calipers`` (CRBNet's protocol), one table per recipe of :data:`usseg_monai.recipes.PROTOCOL_RECIPES` (the
  project's and CRBNet's official one): the reference UNet on the full masks, on the radical and on the
  conservative caliper pseudo-labels (:func:`usseg_monai.data.pseudo_labels.pseudo_label_datalist`), and CRBNet on
  the calipers alone, scored three ways (the mean of its branches, each branch alone); the training datalist must
  carry ``calipers`` (``usseg prepare ... --calipers``).
- ``class_labels`` (SemiSeg-CAW's): per backbone (MALUNet, UNeXt) the backbone on all masks, on the reduced masks
  (the masked part of the partition) and SemiSeg-CAW with the rest class-only, for every ``--class-only`` amount
  (BUSI 100; DDTI 48, 96, 144 in the paper); the partitions are written with
  :func:`usseg_monai.data.resplit.split_datalist` (seeded). 2D only; the bundle's own recipe (one bundle).
- ``few_masks`` (CRII-Net's), under the project recipe: at every ``--fractions`` value (4% and 10%) the labeled
  part alone, a mean teacher, cross pseudo supervision, CRII-Net, and CRII-Net with the unlabeled signal also on its inference head (the
  ``unlabeled_target`` ablation); with the reference UNet on all masks.
- the measurement protocol (long/short axis and aspect-ratio errors, taller-than-wide agreement of each
  method's predicted masks) is part of every run's results and of every table.

Every run writes ``WORK/<dataset>/<run id>/results.json``; a run whose results exist is not repeated, and one
interrupted mid-training resumes from its last epoch (:mod:`usseg_monai.evaluation.runner`, "Resuming"; so a suite
can be resumed, and a run shared by two protocols, the reference UNet, trains once; ``--reuse-runs RESULTS`` also
reuses the runs of a suite results file from another machine, :func:`runs_of_results`). ``WORK/results.json`` holds
every run of every dataset run into ``WORK`` (merged, so BUSI and DDTI can be run one after the other) with the
settings, device, versions and wall time, and the report (:func:`usseg_monai.evaluation.report.write_report`) is written
from it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from usseg_monai.bundle_paths import config_digest, resolve_bundle
from usseg_monai.data.io import DatasetError, atomic_write_json, load_datalist, read_json
from usseg_monai.evaluation.budgets import get_budget, section_epoch_length
from usseg_monai.evaluation.claims import protocol_key
from usseg_monai.evaluation.plan import RunSpec, check_recipes_accepted, plan_suite, run_budgets, variant_datalist
from usseg_monai.evaluation.report import WALL_NOTE, runs_wall_s, write_report
from usseg_monai.evaluation.runner import run_benchmark
from usseg_monai.recipes import RECIPES, check_same_recipe, recipe_line

__all__ = [
    "ENTRY_KEYS", "runs_of_results", "record_epoch_length", "epoch_length_mismatch", "reuse_mismatch", "check_tables",
    "run_suite",
]

logger = logging.getLogger(__name__)


#: the keys the suite adds to a run's record in its table entries (:func:`run_suite`); the rest is the run's own
ENTRY_KEYS = frozenset({
    "dataset", "protocol", "method", "run_id", "run_dir", "predictions_dir", "train_variant", "recipe", "note",
    "recipe_line", "test_variant", "test_overrides",
})  # fmt: skip


def runs_of_results(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, Any]]:
    """The per-run records (as :func:`usseg_monai.evaluation.runner.run_benchmark` wrote them, without the prediction files)
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


def check_tables(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
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


def _merge_results(path: Path, new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` merged into the suite results at ``path`` (``.json`` or ``.json.gz``): a run of the same dataset,
    protocol and method is replaced, every other run is kept (so protocols and datasets can be run one invocation at
    a time). A missing or unreadable file merges as empty."""
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = read_json(path, "suite results")
        except DatasetError:
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
    suite = {
        **new["suite"],
        "wall_s": runs_wall_s(runs),
        "wall_note": WALL_NOTE,
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
    keep: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run the protocols on one dataset, merge into ``work_dir/results.json``, write the report; return the merged results.

    ``work_dir/results.json`` is written after every run the suite trains (the runs so far) and at the end, so an
    interrupted suite leaves its finished runs in it (and in ``keep``).

    Args:
        protocols: names from :data:`PROTOCOLS`.
        dataset_name: the dataset's name in the tables (e.g. ``"BUSI"``).
        train_datalist, test_datalist, train_key, val_key, test_key: as :func:`usseg_monai.evaluation.runner.run_benchmark`
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
        keep: a suite results file (``.json.gz``: compressed) the runs are merged into as well, whenever
            ``work_dir/results.json`` is written; its other runs are kept (a run of the same dataset, protocol and
            method is replaced). Used to carry a long benchmark across machines: commit it, and pass it as
            ``reuse_runs`` next time (``benchmarks/deciding_budget.sh``).
    """
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
    budgets = run_budgets(plan, b)
    check_recipes_accepted(plan)
    logger.info("suite: %d rows (%d distinct runs) on %s at budget %s", len(plan), len({i for _, i in budgets}), dataset_name, b.name)
    variants_of: dict[str, dict[str, Mapping[str, Any]]] = {}
    for spec, (_, run_id) in zip(plan, budgets):
        variants_of.setdefault(run_id, {}).update(spec.test_variants)
    reusable = runs_of_results(reuse_runs) if reuse_runs is not None else {}
    test_n = len(load_datalist(test_datalist, check_files=False).get(test_key) or [])
    datasets = {
        dataset_name: {
            "train": {"path": str(train_datalist), "section": train_key, "n": n_train},
            "test": {"path": str(test_datalist), "section": test_key, "n": test_n},
            "split": data.get("split"),
        }
    }
    done: dict[str, dict[str, Any]] = {}
    specs = [dataclasses.replace(spec, run_id=run_id) for spec, (_, run_id) in zip(plan, budgets)]
    suite_info = {"dataset": dataset_name, "protocols": list(protocols), "seed": seed, "command": command}
    write = functools.partial(
        _write_results, work, ds_dir, specs, done, keep=keep, report=report, suite_info=suite_info,
        datasets=datasets, started=t0, spatial_dims=spatial_dims, budget=b,
    )  # fmt: skip
    for spec, (run_b, _) in zip(specs, budgets):
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
            stale = epoch_length_mismatch(res, length) if res is not None else None
            if stale:
                logger.info("suite: %s trained %s, run again", results_path, stale)
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
            trained = res is None
            if not trained:
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
            if trained:
                write(final=False)  # the runs so far, so that an interrupted suite keeps them
    return write(final=True)


def _entries(specs: Sequence[RunSpec], done: Mapping[str, Mapping[str, Any]], dataset: str, ds_dir: Path) -> list[dict[str, Any]]:
    """The results rows of the ``specs`` whose run is in ``done``: the run's record, its test pass's metrics for a
    row of a further test pass (``RunSpec.test_variant``), and the row's names and folders."""
    runs = []
    for spec in specs:
        if spec.run_id not in done:
            continue
        run_dir = ds_dir / spec.run_id
        entry = {k: v for k, v in done[spec.run_id].items() if k != "test_variants"}
        predictions = run_dir / "predictions"
        if spec.test_variant is not None:
            variant = done[spec.run_id]["test_variants"][spec.test_variant]
            entry.update(metrics=variant["metrics"], measurement_error=variant["measurement_error"], cases=variant["cases"])
            entry.update(test_overrides=variant["overrides"], test_variant=spec.test_variant)
            predictions = run_dir / f"predictions_{spec.test_variant}"
        entry.update(
            dataset=dataset, protocol=spec.protocol, method=spec.method, run_id=spec.run_id,
            run_dir=str(run_dir), predictions_dir=str(predictions), train_variant=spec.train_variant,
            recipe=spec.recipe,
        )
        if spec.note:
            entry["note"] = spec.note
        runs.append(entry)
    return runs


def _write_results(
    work: Path,
    ds_dir: Path,
    specs: Sequence[RunSpec],
    done: Mapping[str, Mapping[str, Any]],
    *,
    final: bool,
    keep: str | os.PathLike | None,
    report: str | os.PathLike | None,
    suite_info: Mapping[str, Any],
    datasets: Mapping[str, Any],
    started: float,
    spatial_dims: int,
    budget: Any,
) -> dict[str, Any]:
    """Merge the rows of the runs in ``done`` (:func:`_entries`) into ``work/results.json`` (and ``keep``); on the
    ``final`` write check the tables (:func:`check_tables`), print each table's recipe line into its rows and write
    the report."""
    runs = _entries(specs, done, str(suite_info["dataset"]), ds_dir)
    if final:
        tables = check_tables(runs)
        for entry in runs:
            entry["recipe_line"] = tables[str(entry["protocol"])]["line"]
    else:
        tables = {}
    first = next(iter(done.values()), {})
    suite = {
        **suite_info,
        "budget": budget.name,
        "budget_settings": {**dataclasses.asdict(budget), "image_size": budget.image_size(spatial_dims)},
        "protocol_budgets": {
            key: {**dataclasses.asdict(pb), "image_size": pb.image_size(spatial_dims)}
            for key, pb in ((k, budget.for_protocol(k)) for k in dict.fromkeys(protocol_key(r.protocol) for r in specs))
        },
        "recipes": tables,
        "device": first.get("device"),
        "versions": first.get("versions"),
        "wall_s": time.perf_counter() - started,
    }
    if not final:
        suite["unfinished"] = True
    new = {"suite": suite, "datasets": dict(datasets), "runs": list(runs)}
    merged = _merge_results(work / "results.json", new)
    atomic_write_json(work / "results.json", merged)
    if keep is not None:
        atomic_write_json(keep, _merge_results(Path(keep), new))
    if final and report is not None:
        write_report(merged, report)
    return merged

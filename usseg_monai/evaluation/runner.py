"""Train, score and time one bundle run: the benchmark runner behind ``usseg benchmark`` and the results suite.

The runner drives any bundle that follows ``docs/bundles.md`` through ``monai.bundle.ConfigWorkflow`` with
overrides (so a new method bundle plugs in unchanged); :func:`run_benchmark` takes these steps:

1. **inputs**: the training and test datalist sections are checked (:func:`check_section`) and the budget
   resolved (:mod:`usseg_monai.evaluation.budgets`);
2. **train** (:func:`train_run`): ``configs/train.json`` with the training datalist, the budget (``image_size``,
   ``max_epochs``, ``batch_size``, ``val_interval``), ``ckpt_dir`` / ``output_dir`` inside the run folder,
   ``seed``, ``device``, ``amp``; the time of every training iteration is recorded by an ignite handler;
   an interrupted training **resumes** (below);
3. **test** (:func:`test_pass`): ``configs/inference.json`` on the test datalist section as it is (a held-back
   test set is never copied or rewritten), loading the **final** checkpoint (``checkpoint.pt``: the last epoch's
   weights, so that no choice is made on the test set); the postprocessed predictions (on each image's own grid,
   after ``Invertd``) are captured from the evaluator and scored against the labels at the original resolution
   with :func:`usseg_monai.metrics.case_metrics` and :func:`usseg_monai.metrics.case_measurement_error`;
4. **record**: per-case values, bootstrap means with percentile 95% CIs, timing (seconds per training iteration,
   training wall time, inference milliseconds per image), peak memory, device, versions, budget, seed and
   datalists, written atomically to ``<run_dir>/results.json``.

**Resuming**: an interrupted training continues from its last epoch (:mod:`usseg_monai.evaluation.train_state`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import MetaTensor

from usseg_monai.bundle_paths import config_digest, resolve_bundle
from usseg_monai.data.io import DatasetError, atomic_write_json, load_datalist, load_png, load_volume
from usseg_monai.engines import loss_terms
from usseg_monai.evaluation.budgets import Budget, get_budget, section_epoch_length
from usseg_monai.evaluation.measure import IterationTimer, LossCurve, device_name, peak_memory_mb, versions
from usseg_monai.evaluation.train_state import TRAIN_STATE, resume_point
from usseg_monai.handlers.class_probabilities import read_class_probabilities
from usseg_monai.metrics import (
    SEGMENTATION_METRICS,
    case_measurement_error,
    case_metrics,
    measurement_error_summary,
    summarize_cases,
)
from usseg_monai.recipes import describe_training

__all__ = ["run_benchmark", "run_budget", "check_section", "train_run", "test_pass", "TrainedRun"]

logger = logging.getLogger(__name__)


def check_section(path: str | os.PathLike, key: str, what: str, require_label: bool) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{what} datalist not found: {p}")
    data = load_datalist(p)
    items = data.get(key)
    if not items:
        raise DatasetError(f"{what} datalist {p}: section '{key}' is missing or empty (sections: {[k for k in data if isinstance(data[k], list)]})")
    if require_label:
        for i, it in enumerate(items):
            if "label" not in it:
                raise DatasetError(f"{what} datalist {p}: {key}[{i}] ({it.get('image')}) has no 'label'")
    return items


def _classification_accuracy(csv_path: Path, test_items: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Accuracy of a bundle's ``class_probabilities.csv`` (SemiSeg-CAW) against the test items' ``class_index``.

    ``None`` when the bundle wrote no such file. Items without a class index are not scored.
    """
    if not csv_path.is_file():
        return None
    rows = read_class_probabilities(csv_path)
    truth = {Path(it["image"]).name: int(it["class_index"]) for it in test_items if "class_index" in it}
    scored = [(rows[name]["predicted"], c) for name, c in truth.items() if name in rows]
    if not scored:
        return {"accuracy": None, "n": 0, "file": str(csv_path)}
    correct = sum(int(p == c) for p, c in scored)
    return {"accuracy": correct / len(scored), "n": len(scored), "n_correct": correct, "file": str(csv_path)}


def _load_label(path: Path) -> np.ndarray:
    name = path.name.lower()
    if name.endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
        return load_png(path) > 0
    arr, _ = load_volume(path)
    return arr > 0


class _PredictionCollector:
    """Keep every postprocessed prediction of an evaluator as ``(filename, (x, y[, z]) bool mask)``."""

    def __init__(self, output_key: str = "pred", image_key: str = "image") -> None:
        self.output_key = output_key
        self.image_key = image_key
        self.items: list[tuple[str, np.ndarray]] = []

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        outputs = engine.state.output
        for d in outputs if isinstance(outputs, list) else [outputs]:
            pred = d[self.output_key]
            fname = None
            for t in (pred, d.get(self.image_key)):
                if isinstance(t, MetaTensor) and t.meta.get("filename_or_obj"):
                    fname = str(t.meta["filename_or_obj"])
                    break
            if fname is None:
                raise ValueError("benchmark: a prediction has no 'filename_or_obj' metadata; cannot match it to its label")
            arr = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
            self.items.append((fname, arr))


def _workflow(config_files: Sequence[Path], workflow_type: str, bundle_root: Path, overrides: Mapping[str, Any]) -> Any:
    logging_file = bundle_root / "configs" / "logging.conf"
    wf = ConfigWorkflow(
        config_file=[str(c) for c in config_files] if len(config_files) > 1 else str(config_files[0]),
        workflow_type=workflow_type,
        logging_file=str(logging_file) if logging_file.is_file() else None,
        **{"bundle_root": str(bundle_root), **overrides},
    )
    wf.initialize()
    return wf


def test_pass(
    *,
    bundle_dir: Path,
    test_datalist: Path,
    test_key: str,
    test_items: Sequence[Mapping[str, Any]],
    image_size: Sequence[int],
    ckpt_dir: Path,
    final_ckpt: Path,
    sync_cuda: bool,
    overrides: Mapping[str, Any],
    output_dir: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[float]]:
    """One test pass: ``configs/inference.json`` on ``test_datalist[test_key]`` with ``final_ckpt``; per-case
    metrics, per-case measurement errors and the per-image inference times (seconds)."""
    infer_overrides = {
        **dict(overrides),
        "dataset_dir": str(test_datalist.parent),
        "data_list_file_path": str(test_datalist),
        "infer_data_list_key": test_key,
        "image_size": list(image_size),
        "ckpt_dir": str(ckpt_dir),
        "ckpt_path": str(final_ckpt),
        "output_dir": str(output_dir),
    }
    iwf = _workflow([bundle_dir / "configs" / "inference.json"], "infer", bundle_dir, infer_overrides)
    evaluator = iwf.parser.get_parsed_content("evaluator")
    collector = _PredictionCollector(
        output_key=str(iwf.parser.get("output_key", "pred")), image_key=str(iwf.parser.get("image_key", "image"))
    )
    collector.attach(evaluator)
    infer_timer = IterationTimer(sync_cuda=sync_cuda)
    infer_timer.attach(evaluator)
    iwf.run()
    iwf.finalize()

    by_image = {str(Path(test_datalist.parent, it["image"]).resolve()): it for it in test_items}
    cases: list[dict[str, Any]] = []
    meas: list[dict[str, Any]] = []
    for fname, pred in collector.items:
        item = by_image.get(str(Path(fname).resolve()))
        if item is None:
            raise DatasetError(f"benchmark: prediction for {fname} matches no image of {test_datalist}[{test_key}]")
        label = _load_label(test_datalist.parent / item["label"])
        pred = np.squeeze(pred)
        if pred.shape != label.shape:
            raise ValueError(f"benchmark: prediction for {fname} has shape {pred.shape}, its label {label.shape}")
        spacing = item.get("spacing")
        c = case_metrics(pred, label, spacing)
        m = case_measurement_error(pred, label, spacing)
        c.update(image=item["image"], measurement_status=m["status"])
        for k in ("long_axis_abs_err_mm", "short_axis_abs_err_mm", "aspect_ratio_abs_err", "taller_than_wide_agree"):
            if k in m:
                c[k] = m[k]
        cases.append(c)
        meas.append(m)
    if len(cases) != len(test_items):
        raise RuntimeError(f"benchmark: {len(cases)} predictions for {len(test_items)} test images")
    return cases, meas, list(infer_timer.times)


def _spatial_dims(bundle_dir: Path) -> int:
    return int(ConfigParser.load_config_file(str(bundle_dir / "configs" / "train.json")).get("spatial_dims", 2))


def run_budget(budget: str | Budget, budget_overrides: Mapping[str, Any] | None, n_train: int) -> Budget:
    """The budget a run trains with: ``budget`` (a name or a :class:`Budget`) with ``budget_overrides`` applied and,
    where it counts iterations, ``max_epochs`` set for ``n_train`` training items."""
    b = budget if isinstance(budget, Budget) else get_budget(budget)
    if budget_overrides:
        b = replace(b, **{k: v for k, v in budget_overrides.items() if v is not None})
    if b.max_iterations > 0:
        b = replace(b, max_epochs=b.epochs_for(n_train))
        logger.info(
            "budget %s: %d iterations at batch %d over %d items = %d epochs",
            b.name, b.max_iterations, b.batch_size, n_train, b.max_epochs,
        )
    return b


@dataclass
class TrainedRun:
    """What :func:`train_run` leaves for the test passes and the run's record."""

    ckpt_dir: Path
    final_ckpt: Path
    image_size: list[int]
    device: torch.device
    n_params: int
    recipe: dict[str, Any]
    iteration_s: list[float]
    iterations: int
    resumed_at_iterations: list[int]
    epoch_length: int
    curve: list[dict[str, float]]
    t_train: float
    wall_s: float
    resumed_s: float = 0.0  # training seconds of the earlier processes this run was resumed from


def train_run(
    bundle_dir: Path,
    train_datalist: Path,
    train_key: str,
    val_key: str,
    b: Budget,
    run_dir: Path,
    common: Mapping[str, Any],
    image_size: Sequence[int],
    section_epochs: bool = False,
    n_train: int = 0,
) -> TrainedRun:
    """Train ``bundle_dir``'s ``configs/train.json`` on ``train_datalist[train_key]`` at budget ``b`` with the
    overrides ``common`` (seed, device, amp, the row's own) at ``image_size``, checkpoints in ``run_dir/models``; with
    ``section_epochs`` every epoch is :func:`section_epoch_length` of ``n_train`` iterations. Logs progress per
    epoch; times every iteration; resumes an interrupted training of the same settings in ``run_dir``
    (:mod:`usseg_monai.evaluation.train_state`).

    Raises:
        RuntimeError: the training wrote no final checkpoint.
    """
    ckpt_dir = run_dir / "models"
    train_overrides = {
        **common,
        "dataset_dir": str(train_datalist.parent),
        "data_list_file_path": str(train_datalist),
        "train_data_list_key": train_key,
        "val_data_list_key": val_key,
        "image_size": list(image_size),
        "max_epochs": int(b.max_epochs),
        "batch_size": int(b.batch_size),
        "val_interval": int(b.val_interval) if b.val_interval > 0 else int(b.max_epochs),
        "ckpt_dir": str(ckpt_dir),
        "output_dir": str(run_dir / "train"),
        "progress_bar": False,
    }
    final_ckpt = ckpt_dir / "checkpoint.pt"
    length = section_epoch_length(n_train, b.batch_size) if section_epochs else None
    settings = {
        "bundle_config_sha256": config_digest(bundle_dir),
        "overrides": {k: v for k, v in train_overrides.items() if k != "resume"},
        "epoch_length": length,
    }
    resumed = resume_point(run_dir, final_ckpt, settings)
    done_before = resumed["iteration"] if resumed else 0
    if resumed and done_before:
        train_overrides["resume"] = True
    wf = _workflow([bundle_dir / "configs" / "train.json"], "train", bundle_dir, train_overrides)
    dev = torch.device(wf.parser.get_parsed_content("device"))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    trainer = wf.parser.get_parsed_content("train#trainer")
    if length is not None and int(trainer.state.epoch_length or 0) != length:
        logger.info(
            "epochs of %d iterations (ceil(%d training items / batch %d)) instead of the loader's %s",
            length, n_train, b.batch_size, trainer.state.epoch_length,
        )
        trainer.state.epoch_length = length
    network_def = wf.parser.get_parsed_content("network_def")
    recipe = describe_training(wf.parser)
    n_params = int(sum(p.numel() for p in network_def.parameters()))
    timer = IterationTimer(sync_cuda=dev.type == "cuda")
    timer.attach(trainer)
    curve = LossCurve()
    curve.attach(trainer)
    before = resumed or {"iteration_s": [], "curve": [], "train_wall_s": 0.0, "resumed_at_iterations": []}
    t_train = time.perf_counter()

    def _progress_so_far() -> dict[str, Any]:
        return {
            "iteration_s": [*before["iteration_s"], *timer.times],
            "curve": [*before["curve"], *curve.summary()],
            "train_wall_s": before["train_wall_s"] + time.perf_counter() - t_train,
            "resumed_at_iterations": before["resumed_at_iterations"],
        }

    @trainer.on(Events.EPOCH_COMPLETED)
    def _progress(engine: Any) -> None:
        loss = loss_terms(engine.state.output).get("loss", float("nan"))  # a dict, or a decollated list
        progress = _progress_so_far()  # training time of this run, the resumed parts included
        logger.info(
            "epoch %d/%d  last loss %.4f  %.1f s of training so far",
            engine.state.epoch, b.max_epochs, float(loss), progress["train_wall_s"],
        )
        atomic_write_json(run_dir / TRAIN_STATE, {"settings": settings, "progress": progress})

    epoch_length = int(trainer.state.epoch_length or length or 0)
    if resumed and epoch_length and done_before >= int(b.max_epochs) * epoch_length:
        logger.info("resume: %s is at iteration %d, the last: not trained again", final_ckpt, done_before)
    else:
        if resumed and done_before:
            logger.info("resume: training from iteration %d of %s", done_before, final_ckpt)
        wf.run()
    progress = _progress_so_far()
    wf.finalize()
    if not final_ckpt.is_file():
        raise RuntimeError(f"training finished without writing the final checkpoint {final_ckpt}")
    iterations = int(trainer.state.iteration or done_before)
    times = progress["iteration_s"]
    logger.info(
        "training done in %.1f s (%d iterations, %.3f s/iteration)",
        progress["train_wall_s"], iterations, float(np.mean(times)) if times else float("nan"),
    )
    return TrainedRun(
        ckpt_dir=ckpt_dir, final_ckpt=final_ckpt, image_size=list(image_size), device=dev, n_params=n_params,
        recipe=recipe, iteration_s=progress["iteration_s"], iterations=iterations,
        resumed_at_iterations=list(progress["resumed_at_iterations"]), epoch_length=int(trainer.state.epoch_length),
        curve=progress["curve"], t_train=t_train, wall_s=progress["train_wall_s"], resumed_s=before["train_wall_s"],
    )


def run_benchmark(
    bundle: str | os.PathLike,
    train_datalist: str | os.PathLike,
    test_datalist: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    train_key: str = "training",
    val_key: str | None = "validation",
    test_key: str = "test",
    budget: str | Budget = "smoke",
    budget_overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | None = None,
    amp: bool | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    bundle_overrides: Mapping[str, Any] | None = None,
    results_name: str = "results.json",
    threads: int | None = None,
    test_variants: Mapping[str, Mapping[str, Any]] | None = None,
    section_epochs: bool = False,
) -> dict[str, Any]:
    """Train ``bundle`` at ``budget`` on ``train_datalist[train_key]``, score it on ``test_datalist[test_key]``.

    Args:
        bundle: a bundle folder, or the name of one under the repository's ``bundles/``.
        train_datalist: datalist JSON whose ``train_key`` section is trained on (paths relative to it).
        test_datalist: datalist JSON whose ``test_key`` section is scored, used as it is; every item needs
            a ``label``. It may be the same file as ``train_datalist`` with another section.
        run_dir: folder for checkpoints, logs, predictions and ``results.json`` (created).
        train_key, test_key: datalist sections.
        val_key: section of ``train_datalist`` validated on during training (logging and the bundle's
            best-model file only; the final model is scored). ``None`` or absent: the training section.
        budget: a name in :data:`BUDGETS` or a :class:`Budget`.
        budget_overrides: budget fields to change (``max_epochs``, ``batch_size``, ``image_size_2d`` ...).
        seed: bundle ``seed`` (``set_determinism``) and bootstrap seed.
        device: ``"cpu"``, ``"cuda:0"``...; default the bundle's (CUDA when available).
        amp: mixed precision; default the bundle's.
        n_resamples, confidence: bootstrap settings.
        bundle_overrides: extra bundle keys (e.g. ``{"learning_rate": 3e-3}``), applied to both configs; a nested
            id whose root the inference config lacks (e.g. ``"train#random_transforms"``) to training only.
        results_name: results file name inside ``run_dir``.
        threads: ``torch.set_num_threads`` for CPU runs (``None``: torch's default, one per core).
        test_variants: further test passes of the same final checkpoint, ``{name: inference overrides}`` (e.g.
            CRBNet's ``{"radical": {"inference_mode": "radical"}}``); each is scored like the main pass and stored
            under ``results["test_variants"][name]`` (predictions in ``run_dir/predictions_<name>``).
        section_epochs: every epoch is :func:`section_epoch_length` iterations (``ceil(training items / batch)``,
            ignite's ``epoch_length``), whatever part of the training section the bundle's loader iterates (the
            masked images of SemiSeg-CAW and its reduced-mask baselines, CRII-Net's unlabeled stream): the rows of
            a table that train on parts of one training section then train the same number of iterations.
            ``False``: an epoch is one pass of the bundle's loader.

    Returns:
        The results dictionary (also written to ``run_dir / results_name``).

    Raises:
        DatasetError: a missing datalist, section, label or bundle (the message names it).
    """
    t_start = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(int(threads))
    for vname in test_variants or {}:
        if not vname or not all(c.isalnum() or c in "-_" for c in vname):
            raise ValueError(f"test variant name {vname!r}: use letters, digits, '-' and '_' (it names a folder)")
    bundle_dir = resolve_bundle(bundle)
    train_datalist, test_datalist = Path(train_datalist).resolve(), Path(test_datalist).resolve()
    # training items may lack a mask (class-only / unlabeled items of a semi-supervised datalist, calipers):
    # the bundle decides what it needs and names what is missing
    train_items = check_section(train_datalist, train_key, "training", require_label=False)
    test_items = check_section(test_datalist, test_key, "test", require_label=True)
    train_data = json.loads(train_datalist.read_text(encoding="utf-8"))
    if not val_key or not train_data.get(val_key):
        logger.info("no '%s' section in %s: validating on the training section", val_key, train_datalist)
        val_key = train_key
    b = run_budget(budget, budget_overrides, len(train_items))
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {"seed": int(seed)}
    if device is not None:
        common["device"] = f"$torch.device('{device}')"
    if amp is not None:
        common["amp"] = bool(amp)
    common.update(dict(bundle_overrides or {}))
    image_size = b.image_size(_spatial_dims(bundle_dir))
    logger.info(
        "benchmark: bundle %s, budget %s (%s px, %d epochs, batch %d), %d training / %d test images",
        bundle_dir.name, b.name, "x".join(map(str, image_size)), b.max_epochs,
        b.batch_size, len(train_items), len(test_items),
    )
    trained = train_run(
        bundle_dir, train_datalist, train_key, val_key, b, run_dir, common, image_size,
        section_epochs=section_epochs, n_train=len(train_items),
    )
    # overrides of ids the inference config does not have (e.g. "train#random_transforms") are train-only
    infer_ids = set(ConfigParser.load_config_file(str(bundle_dir / "configs" / "inference.json")))
    infer_common = {k: v for k, v in common.items() if "#" not in k or k.split("#")[0] in infer_ids}
    test = dict(
        bundle_dir=bundle_dir, test_datalist=test_datalist, test_key=test_key, test_items=test_items,
        image_size=trained.image_size, ckpt_dir=trained.ckpt_dir, final_ckpt=trained.final_ckpt,
        sync_cuda=trained.device.type == "cuda",
    )
    cases, meas, infer_times = test_pass(**test, overrides=infer_common, output_dir=run_dir / "predictions")
    variants: dict[str, Any] = {}
    for vname, vover in dict(test_variants or {}).items():
        logger.info("test variant %s: %s", vname, dict(vover))
        v_cases, v_meas, _ = test_pass(
            **test, overrides={**infer_common, **dict(vover)}, output_dir=run_dir / f"predictions_{vname}"
        )
        variants[vname] = {
            "overrides": dict(vover),
            "metrics": summarize_cases(v_cases, keys=SEGMENTATION_METRICS, n_resamples=n_resamples, confidence=confidence, seed=seed),
            "measurement_error": measurement_error_summary(v_meas, n_resamples=n_resamples, confidence=confidence, seed=seed),
            "cases": v_cases,
        }
    classification = _classification_accuracy(run_dir / "predictions" / "class_probabilities.csv", test_items)
    results: dict[str, Any] = {
        "bundle": bundle_dir.name,
        "bundle_path": str(bundle_dir),
        "bundle_config_sha256": config_digest(bundle_dir),
        "budget": {**asdict(b), "image_size": trained.image_size},
        "seed": int(seed),
        "bundle_overrides": dict(bundle_overrides or {}),
        "section_epochs": bool(section_epochs),
        "datalists": {
            "train": {
                "path": str(train_datalist),
                "section": train_key,
                "n": len(train_items),
                "n_with_mask": sum("label" in it for it in train_items),
            },
            "validation": {"path": str(train_datalist), "section": val_key},
            "test": {"path": str(test_datalist), "section": test_key, "n": len(test_items)},
        },
        "checkpoint": str(trained.final_ckpt),
        "params": trained.n_params,
        "metrics": summarize_cases(cases, keys=SEGMENTATION_METRICS, n_resamples=n_resamples, confidence=confidence, seed=seed),
        "measurement_error": measurement_error_summary(meas, n_resamples=n_resamples, confidence=confidence, seed=seed),
        "spacing_note": "distances in mm where the test datalist gives 'spacing', else in pixels",
        "timing": {
            "train_wall_s": trained.wall_s,
            # the run's start-up in this process (argument checks, config parsing, input checks, dataset caching,
            # network construction): apart from training; the suite imports MONAI once per process
            "setup_s": trained.t_train - t_start,
            "train_iterations": trained.iterations,
            "resumed_at_iterations": trained.resumed_at_iterations,
            "epoch_length": trained.epoch_length,
            "seconds_per_iteration": float(np.mean(trained.iteration_s)) if trained.iteration_s else None,
            "seconds_per_iteration_median": float(np.median(trained.iteration_s)) if trained.iteration_s else None,
            "inference_ms_per_image": float(np.mean(infer_times) * 1000.0) if infer_times else None,
            "inference_note": "forward pass + postprocessing (Invertd, argmax, mask writing) per image, loading excluded",
            # this process's setup, training and test, plus the training of the processes it resumed from
            "total_wall_s": time.perf_counter() - t_start + trained.resumed_s,
        },
        "training_curve": trained.curve,
        "training_recipe": trained.recipe,
        **({"test_variants": variants} if variants else {}),
        **({"classification": classification} if classification is not None else {}),
        "memory": peak_memory_mb(trained.device),
        "device": device_name(trained.device),
        "versions": versions(),
        "cases": cases,
    }
    atomic_write_json(run_dir / results_name, results)
    d = results["metrics"]["dice"]
    logger.info("results: Dice %.4f [%.4f, %.4f] over %d cases -> %s", d["mean"], d["ci_low"], d["ci_high"], d["n"], run_dir / results_name)
    return results

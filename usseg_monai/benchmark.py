"""Benchmark runner: train a bundle at a named budget, score it on a test datalist, write a results JSON.

The runner drives any bundle that follows ``docs/bundles.md`` through ``monai.bundle.ConfigWorkflow`` with
overrides (so a new method bundle plugs in unchanged):

1. **train**: ``configs/train.json`` with the training datalist, the budget (``image_size``,
   ``max_epochs``, ``batch_size``, ``val_interval``), ``ckpt_dir`` / ``output_dir`` inside the run folder,
   ``seed``, ``device``, ``amp``; the time of every training iteration is recorded by an ignite handler;
2. **test**: ``configs/inference.json`` on the test datalist section as it is (a held-back test set is
   never copied or rewritten), loading the **final** checkpoint (``checkpoint.pt``: the last epoch's
   weights, so that no choice is made on the test set); the postprocessed predictions (on each image's
   own grid, after ``Invertd``) are captured from the evaluator and scored against the labels at the
   original resolution with :func:`usseg_monai.metrics.case_metrics` and
   :func:`usseg_monai.metrics.case_measurement_error`;
3. **report**: per-case values, bootstrap means with percentile 95% CIs, timing (seconds per training
   iteration, training wall time, inference milliseconds per image), peak memory, device, versions,
   budget, seed and datalists, written atomically to ``<run_dir>/results.json``.

Budgets are named in :data:`BUDGETS`; any field can be overridden.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from usseg_monai.bundle_paths import config_digest, resolve_bundle
from usseg_monai.data.io import DatasetError, atomic_write_json, load_datalist, load_png, load_volume
from usseg_monai.engines import loss_terms
from usseg_monai.metrics import (
    SEGMENTATION_METRICS,
    case_measurement_error,
    case_metrics,
    measurement_error_summary,
    summarize_cases,
)
from usseg_monai.recipes import describe_training

__all__ = [
    "Budget",
    "BUDGETS",
    "get_budget",
    "section_epoch_length",
    "run_benchmark",
    "add_benchmark_arguments",
    "add_benchmark_parser",
    "benchmark_main",
]

logger = logging.getLogger("usseg_monai.benchmark")


@dataclass(frozen=True)
class Budget:
    """A training budget.

    Attributes:
        name: the budget's name.
        image_size_2d, image_size_3d: network input size ``(x, y[, z])`` for 2D / 3D bundles (pixels).
        max_epochs: training epochs.
        batch_size: training batch size.
        val_interval: validate every N epochs during training (``0``: once, after the last epoch).
        description: what the budget is for.
        max_iterations: when ``> 0``, train for this many iterations instead of ``max_epochs``: the runner sets
            ``max_epochs = ceil(max_iterations / ceil(training items / batch_size))`` (CRBNet's reference trains
            30000 iterations), and records the iterations actually run.
        protocols: the results suite's per-protocol settings (``{"calipers": {"batch_size": 24, ...}}``), applied by
            :meth:`for_protocol`; the ``paper`` budget uses them to give every protocol its own paper's settings.
    """

    name: str
    image_size_2d: tuple[int, int]
    image_size_3d: tuple[int, int, int]
    max_epochs: int
    batch_size: int
    val_interval: int = 0
    description: str = ""
    max_iterations: int = 0
    protocols: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def image_size(self, spatial_dims: int) -> list[int]:
        """Input size for a bundle of ``spatial_dims`` dimensions."""
        return list(self.image_size_2d if spatial_dims == 2 else self.image_size_3d)

    def for_protocol(self, protocol: str) -> Budget:
        """The budget a run of the suite's ``protocol`` (``calipers``, ``class_labels``, ``few_masks``) trains with:
        this budget with the protocol's settings applied and no per-protocol table left (so it is what ran)."""
        settings = dict(self.protocols.get(protocol) or {})
        return replace(self, protocols={}, **settings)

    def epochs_for(self, n_items: int) -> int:
        """Training epochs over ``n_items`` items: ``max_epochs``, or enough epochs for ``max_iterations``."""
        if self.max_iterations <= 0:
            return int(self.max_epochs)
        return max(1, math.ceil(int(self.max_iterations) / section_epoch_length(n_items, self.batch_size)))


#: per-protocol settings of the ``paper`` budget (``../shared/docs/methods.md``): CRBNet's reference code trains
#: 30000 iterations at batch 24 (the caliper protocol's UNet rows get the same); SemiSeg-CAW trains with
#: MALUNet's settings (256x256, batch 8, 300 epochs, MALUNet's ``configs/config_setting.py``); CRII-Net's paper
#: gives none here, so the few-masks protocol keeps the budget's own 200 epochs at batch 8 (a design choice).
PAPER_PROTOCOLS: dict[str, dict[str, Any]] = {
    "calipers": {"batch_size": 24, "max_iterations": 30000, "val_interval": 100},
    "class_labels": {"batch_size": 8, "max_epochs": 300, "val_interval": 30},
    "few_masks": {"batch_size": 8, "max_epochs": 200, "val_interval": 10},
}

#: named budgets (override any field with ``run_benchmark(..., budget_overrides={...})`` / CLI flags)
BUDGETS: dict[str, Budget] = {
    b.name: b
    for b in (
        Budget("smoke", (64, 64), (32, 32, 16), 1, 2, 0, "plumbing check: 1 epoch at 64 px"),
        Budget(
            "cpu-quick",
            (64, 64),
            (32, 32, 16),
            12,
            8,
            0,
            "the whole results suite (every protocol on BUSI and DDTI, 40 runs) in about an hour on 2 CPU cores: 64x64, 12 epochs",
        ),
        Budget(
            "cpu-standard",
            (96, 96),
            (48, 48, 24),
            10,
            8,
            0,
            "a closer CPU look: 96x96, 10 epochs (a UNet step costs about 1.9x the 64x64 one)",
        ),
        Budget(
            "cpu-yardstick",
            (128, 128),
            (64, 64, 32),
            40,
            16,
            0,
            "the project's CPU yardstick: 128x128, 40 epochs, batch 16 (benchmarks/plain_monai_unet_yardstick.py)",
        ),
        Budget(
            "cpu-decide",
            (128, 128),
            (64, 64, 32),
            40,
            16,
            0,
            "the deciding CPU budget (#16): the yardstick's 128x128 at batch 16 for 1040 iterations (40 epochs of the "
            "414 BUSI lesion images, where the reference UNet reaches Dice ~0.75), counted in iterations so that every "
            "dataset and training set trains as long; --iterations N for the points of a budget curve",
            max_iterations=1040,
        ),
        Budget(
            "paper",
            (256, 256),
            (128, 128, 64),
            200,
            8,
            10,
            "the papers' settings, for a GPU: 256x256; in the suite calipers 30000 iterations at batch 24 (CRBNet), "
            "class labels 300 epochs at batch 8 (MALUNet/SemiSeg-CAW), few masks 200 epochs at batch 8",
            protocols=PAPER_PROTOCOLS,
        ),
    )
}


def section_epoch_length(n_items: int, batch_size: int) -> int:
    """Iterations of one epoch over a training section of ``n_items`` items at ``batch_size``:
    ``ceil(n_items / batch_size)`` (at least 1)."""
    return max(1, math.ceil(int(n_items) / int(batch_size)))


def get_budget(name: str, **overrides: Any) -> Budget:
    """The named budget with ``overrides`` applied (``None`` values ignored).

    An overridden field also wins over the budget's per-protocol settings (``--epochs 5`` with ``paper`` trains
    every protocol 5 epochs: an explicit ``max_epochs`` also drops the per-protocol ``max_iterations``).

    Raises:
        ValueError: unknown name or field.
    """
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; choose one of {sorted(BUDGETS)}")
    fields = set(Budget.__dataclass_fields__)
    bad = sorted(k for k in overrides if k not in fields)
    if bad:
        raise ValueError(f"unknown budget field(s) {bad}; fields are {sorted(fields)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    base = BUDGETS[name]
    dropped = set(given) | ({"max_iterations"} if "max_epochs" in given else set())
    protocols = {p: {k: v for k, v in s.items() if k not in dropped} for p, s in base.protocols.items()}
    if "max_epochs" in given and "max_iterations" not in given:
        given["max_iterations"] = 0
    return replace(base, **{"protocols": protocols, **given})


def _check_section(path: str | os.PathLike, key: str, what: str, require_label: bool) -> list[dict[str, Any]]:
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
    from usseg_monai.handlers.class_probabilities import read_class_probabilities

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


def device_name(device: torch.device) -> str:
    """Human-readable device: the GPU's name, or the CPU model with the number of torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


def _versions() -> dict[str, str]:
    import monai

    import usseg_monai

    return {"torch": torch.__version__, "monai": monai.__version__, "usseg_monai": usseg_monai.__version__, "python": platform.python_version()}


def _peak_memory_mb(device: torch.device) -> dict[str, float]:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}  # Linux: KiB
    if device.type == "cuda":
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


class _IterationTimer:
    """Record the wall time of every iteration of an ignite engine (seconds)."""

    def __init__(self, sync_cuda: bool) -> None:
        self.times: list[float] = []
        self.sync_cuda = sync_cuda
        self._t0 = 0.0

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._stop)

    def _start(self, engine: Any) -> None:
        if self.sync_cuda:
            torch.cuda.synchronize()
        self._t0 = time.perf_counter()

    def _stop(self, engine: Any) -> None:
        if self.sync_cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t0)


class _LossCurve:
    """Per-epoch means of the trainer's ``loss`` and ``loss/<term>`` outputs (the training curve of the report)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._n = 0

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)

    def _iteration(self, engine: Any) -> None:
        for k, v in loss_terms(engine.state.output).items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._n += 1

    def _epoch(self, engine: Any) -> None:
        if self._n:
            self.epochs.append({"epoch": int(engine.state.epoch), **{k: v / self._n for k, v in self._sums.items()}})
        self._sums, self._n = {}, 0

    def summary(self) -> list[dict[str, float]]:
        return list(self.epochs)


class _PredictionCollector:
    """Keep every postprocessed prediction of an evaluator as ``(filename, (x, y[, z]) bool mask)``."""

    def __init__(self, output_key: str = "pred", image_key: str = "image") -> None:
        self.output_key = output_key
        self.image_key = image_key
        self.items: list[tuple[str, np.ndarray]] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        from monai.data import MetaTensor

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
    from monai.bundle import ConfigWorkflow

    logging_file = bundle_root / "configs" / "logging.conf"
    wf = ConfigWorkflow(
        config_file=[str(c) for c in config_files] if len(config_files) > 1 else str(config_files[0]),
        workflow_type=workflow_type,
        logging_file=str(logging_file) if logging_file.is_file() else None,
        **{"bundle_root": str(bundle_root), **overrides},
    )
    wf.initialize()
    return wf


def _test_pass(
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
    infer_timer = _IterationTimer(sync_cuda=sync_cuda)
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
    train_items = _check_section(train_datalist, train_key, "training", require_label=False)
    test_items = _check_section(test_datalist, test_key, "test", require_label=True)
    train_data = json.loads(train_datalist.read_text(encoding="utf-8"))
    if not val_key or not train_data.get(val_key):
        logger.info("no '%s' section in %s: validating on the training section", val_key, train_datalist)
        val_key = train_key
    b = budget if isinstance(budget, Budget) else get_budget(budget)
    if budget_overrides:
        b = replace(b, **{k: v for k, v in budget_overrides.items() if v is not None})
    if b.max_iterations > 0:
        b = replace(b, max_epochs=b.epochs_for(len(train_items)))
        logger.info(
            "budget %s: %d iterations at batch %d over %d items = %d epochs",
            b.name, b.max_iterations, b.batch_size, len(train_items), b.max_epochs,
        )
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "models"

    from monai.bundle import ConfigParser

    spatial_dims = int(ConfigParser.load_config_file(str(bundle_dir / "configs" / "train.json")).get("spatial_dims", 2))
    common: dict[str, Any] = {"seed": int(seed)}
    if device is not None:
        common["device"] = f"$torch.device('{device}')"
    if amp is not None:
        common["amp"] = bool(amp)
    common.update(dict(bundle_overrides or {}))
    image_size = b.image_size(spatial_dims)
    train_overrides = {
        **common,
        "dataset_dir": str(train_datalist.parent),
        "data_list_file_path": str(train_datalist),
        "train_data_list_key": train_key,
        "val_data_list_key": val_key,
        "image_size": image_size,
        "max_epochs": int(b.max_epochs),
        "batch_size": int(b.batch_size),
        "val_interval": int(b.val_interval) if b.val_interval > 0 else int(b.max_epochs),
        "ckpt_dir": str(ckpt_dir),
        "output_dir": str(run_dir / "train"),
        "progress_bar": False,
    }
    logger.info(
        "benchmark: bundle %s, budget %s (%s px, %d epochs, batch %d), %d training / %d test images",
        bundle_dir.name, b.name, "x".join(map(str, image_size)), b.max_epochs, b.batch_size, len(train_items), len(test_items),
    )
    wf = _workflow([bundle_dir / "configs" / "train.json"], "train", bundle_dir, train_overrides)
    dev = torch.device(wf.parser.get_parsed_content("device"))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    trainer = wf.parser.get_parsed_content("train#trainer")
    if section_epochs:
        length = section_epoch_length(len(train_items), b.batch_size)
        if int(trainer.state.epoch_length or 0) != length:
            logger.info(
                "epochs of %d iterations (ceil(%d training items / batch %d)) instead of the loader's %s",
                length, len(train_items), b.batch_size, trainer.state.epoch_length,
            )
            trainer.state.epoch_length = length
    network_def = wf.parser.get_parsed_content("network_def")
    training_recipe = describe_training(wf.parser)
    n_params = int(sum(p.numel() for p in network_def.parameters()))
    timer = _IterationTimer(sync_cuda=dev.type == "cuda")
    timer.attach(trainer)
    curve = _LossCurve()
    curve.attach(trainer)
    from ignite.engine import Events

    @trainer.on(Events.EPOCH_COMPLETED)
    def _progress(engine: Any) -> None:
        out = engine.state.output
        loss = loss_terms(out).get("loss", float("nan"))  # a dict, or a decollated list
        logger.info("epoch %d/%d  last loss %.4f  %.1f s so far", engine.state.epoch, b.max_epochs, float(loss), time.perf_counter() - t_train)

    t_train = time.perf_counter()
    wf.run()
    train_wall = time.perf_counter() - t_train
    wf.finalize()
    final_ckpt = ckpt_dir / "checkpoint.pt"
    if not final_ckpt.is_file():
        raise RuntimeError(f"training finished without writing the final checkpoint {final_ckpt}")
    logger.info("training done in %.1f s (%d iterations, %.3f s/iteration)", train_wall, len(timer.times), float(np.mean(timer.times)))

    # overrides of ids the inference config does not have (e.g. "train#random_transforms") are train-only
    infer_ids = set(ConfigParser.load_config_file(str(bundle_dir / "configs" / "inference.json")))
    infer_common = {k: v for k, v in common.items() if "#" not in k or k.split("#")[0] in infer_ids}
    test = dict(
        bundle_dir=bundle_dir, test_datalist=test_datalist, test_key=test_key, test_items=test_items,
        image_size=image_size, ckpt_dir=ckpt_dir, final_ckpt=final_ckpt, sync_cuda=dev.type == "cuda",
    )
    cases, meas, infer_times = _test_pass(**test, overrides=infer_common, output_dir=run_dir / "predictions")
    variants: dict[str, Any] = {}
    for vname, vover in dict(test_variants or {}).items():
        logger.info("test variant %s: %s", vname, dict(vover))
        v_cases, v_meas, _ = _test_pass(
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
        "budget": {**asdict(b), "image_size": image_size},
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
        "checkpoint": str(final_ckpt),
        "params": n_params,
        "metrics": summarize_cases(cases, keys=SEGMENTATION_METRICS, n_resamples=n_resamples, confidence=confidence, seed=seed),
        "measurement_error": measurement_error_summary(meas, n_resamples=n_resamples, confidence=confidence, seed=seed),
        "spacing_note": "distances in mm where the test datalist gives 'spacing', else in pixels",
        "timing": {
            "train_wall_s": train_wall,
            # the run's start-up in this process (argument checks, config parsing, input checks, dataset caching,
            # network construction): apart from training; the suite imports MONAI once per process
            "setup_s": t_train - t_start,
            "train_iterations": len(timer.times),
            "epoch_length": int(trainer.state.epoch_length),
            "seconds_per_iteration": float(np.mean(timer.times)) if timer.times else None,
            "seconds_per_iteration_median": float(np.median(timer.times)) if timer.times else None,
            "inference_ms_per_image": float(np.mean(infer_times) * 1000.0) if infer_times else None,
            "inference_note": "forward pass + postprocessing (Invertd, argmax, mask writing) per image, loading excluded",
            "total_wall_s": time.perf_counter() - t_start,
        },
        "training_curve": curve.summary(),
        "training_recipe": training_recipe,
        **({"test_variants": variants} if variants else {}),
        **({"classification": classification} if classification is not None else {}),
        "memory": _peak_memory_mb(dev),
        "device": device_name(dev),
        "versions": _versions(),
        "cases": cases,
    }
    atomic_write_json(run_dir / results_name, results)
    d = results["metrics"]["dice"]
    logger.info("results: Dice %.4f [%.4f, %.4f] over %d cases -> %s", d["mean"], d["ci_low"], d["ci_high"], d["n"], run_dir / results_name)
    return results


def add_benchmark_arguments(parser: Any) -> Any:
    """Add the ``usseg benchmark`` arguments to an ``argparse`` parser and return it."""
    parser.add_argument(
        "bundle", nargs="?", default=None,
        help="bundle folder, or a name under bundles/ (e.g. unet_us_2d_segmentation); omitted with --suite",
    )
    parser.add_argument("--train-datalist", required=True, help="datalist JSON trained on")
    parser.add_argument("--train-key", default="training", help="section trained on (default: training)")
    parser.add_argument("--val-key", default="validation", help="section of the training datalist validated on during training")
    parser.add_argument("--test-datalist", required=True, help="datalist JSON scored (used as is, e.g. a held-back test set)")
    parser.add_argument("--test-key", default="test", help="section scored (default: test)")
    parser.add_argument("--budget", default="smoke", choices=sorted(BUDGETS), help="named budget")
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's max_epochs")
    parser.add_argument(
        "--iterations", type=int, default=None, help="override the budget's max_iterations (train this many iterations)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="override the budget's batch size")
    parser.add_argument("--image-size", type=int, nargs="+", default=None, help="override the input size (x y [z])")
    parser.add_argument("--val-interval", type=int, default=None, help="validate every N epochs (0: after the last)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda:0 ... (default: the bundle's)")
    parser.add_argument("--amp", default=None, choices=["true", "false"], help="mixed precision (default: the bundle's)")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one per core)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="extra bundle override, e.g. --set learning_rate=0.003")
    parser.add_argument("--output", required=True, help="run folder (checkpoints, predictions, results.json); with --suite the suite's folder")
    parser.add_argument(
        "--section-epochs", action="store_true",
        help="every epoch is ceil(training items / batch) iterations, whatever part of them the bundle's loader "
        "iterates (as the suite's class-label and few-mask tables train every row)",
    )
    from usseg_monai.suite import add_suite_arguments

    add_suite_arguments(parser)
    return parser


def benchmark_main(args: Any) -> int:
    """Run ``usseg benchmark`` from parsed arguments (one bundle, or ``--suite``); print the results path."""
    if getattr(args, "suite", None):
        if args.bundle is not None:
            raise ValueError(f"give either a bundle ({args.bundle!r}) or --suite, not both")
        if args.set:
            raise ValueError("--set applies to one bundle; the suite sets each run's overrides itself")
        if args.section_epochs:
            raise ValueError("--section-epochs applies to one bundle; the suite sets it for the tables that need it")
        from usseg_monai.suite import suite_main

        return suite_main(args)
    if args.bundle is None:
        raise ValueError("give a bundle (e.g. unet_us_2d_segmentation) or --suite PROTOCOLS")
    from usseg_monai.cli import parse_set_options

    overrides = parse_set_options(args.set)
    budget_overrides: dict[str, Any] = {
        "max_epochs": args.epochs, "max_iterations": args.iterations, "batch_size": args.batch_size,
        "val_interval": args.val_interval,
    }
    if args.image_size:
        n = len(args.image_size)
        if n not in (2, 3):
            raise ValueError(f"--image-size takes 2 or 3 numbers, got {args.image_size}")
        budget_overrides["image_size_2d" if n == 2 else "image_size_3d"] = tuple(args.image_size)
    run_benchmark(
        args.bundle,
        args.train_datalist,
        args.test_datalist,
        args.output,
        train_key=args.train_key,
        val_key=args.val_key,
        test_key=args.test_key,
        budget=get_budget(args.budget, **budget_overrides),
        seed=args.seed,
        device=args.device,
        amp=None if args.amp is None else args.amp == "true",
        n_resamples=args.n_resamples,
        bundle_overrides=overrides,
        threads=args.threads,
        section_epochs=args.section_epochs,
    )
    print(Path(args.output) / "results.json")
    return 0


def add_benchmark_parser(subparsers: Any) -> None:
    """Register ``usseg benchmark`` (see :mod:`usseg_monai.cli`)."""
    from usseg_monai.cli import common_options

    p = subparsers.add_parser(
        "benchmark",
        parents=[common_options()],
        help="train a bundle at a named budget, score it on a test datalist, write results.json",
        description=__doc__.split("\n\n")[0] + " Budgets: "
        + "; ".join(f"{b.name}: {b.description}" for b in BUDGETS.values()),
    )
    add_benchmark_arguments(p)
    p.set_defaults(func=benchmark_main)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m usseg_monai.benchmark ...`` (same arguments as ``usseg benchmark``)."""
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = add_benchmark_arguments(argparse.ArgumentParser(prog="usseg benchmark", description=__doc__.split("\n\n")[0]))
    return benchmark_main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

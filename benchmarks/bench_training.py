"""Training iteration time of every bundle against its compute floor, run start-up and data time (#20 item 1).

For each bundle, a fresh Python process (so that start-up includes importing MONAI, as a user's
``python -m monai.bundle run`` does) builds ``configs/train.json`` through ``monai.bundle.ConfigWorkflow`` with
the given dataset, image size and batch size, and then measures:

- **floor** (ms): forward + backward + optimiser step(s) of the bundle's own network on one fixed batch taken from
  its own loaders, repeated: the tensors the trainer feeds the network in one iteration (supervised: the batch;
  CRBNet: the batch through both branches, both optimisers stepped; semi-supervised: the labeled batch and the
  unlabeled views, concatenated when the trainer concatenates them). The loss is the sum of the outputs' means,
  so the floor holds no loss, data loading, augmentation or handler cost: what the loop adds on top is the gap.
- **iteration** (ms): the median wall time between two consecutive ``ITERATION_COMPLETED`` events of the real
  trainer (``train#trainer.run()``: loading and augmenting the batch, the method's loss, handlers), over every
  iteration after the first ``--skip`` of the run (validation is off: ``val_interval`` > ``max_epochs``).
- **data** (ms): the median time of ignite's ``GET_BATCH_STARTED`` -> ``GET_BATCH_COMPLETED`` (the labeled loader;
  the semi-supervised trainers draw their unlabeled batch inside the iteration, so that part counts as iteration).
- **start-up** (s): from the parent starting the child process to the trainer's first ``ITERATION_STARTED``
  (interpreter, imports, config parsing, input checks, dataset caching); **import** (s) of monai alone.

The ratio iteration / floor is printed per bundle; #20 asks for <= 1.15. This is a benchmark, not a test: the
figures depend on the machine and its load (name both beside them).

    python benchmarks/bench_training.py --threads 1 --output /tmp/bench_training.json
    python benchmarks/bench_training.py --bundles unet_us_2d_segmentation crbnet_us_2d_segmentation \\
        --dataset-dir <a prepared 2D dataset> --image-size 64 64 --batch-size 8 --epochs 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from usseg_monai.data.io import atomic_write_json  # numpy only: the child's timed import of monai stays first

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZE = {2: [64, 64], 3: [32, 32, 16]}


def _tensors(out: Any) -> Iterable[Any]:
    """Every tensor in a network output (a tensor, a tuple/list or a dict of them)."""
    import torch

    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, Mapping):
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from _tensors(v)


def _network_inputs(trainer: Any, batch: Mapping, unlabeled: Mapping | None) -> tuple[list[Any], bool]:
    """The tensors ``trainer`` gives its network in one iteration, and whether it concatenates them."""
    device = trainer.state.device if hasattr(trainer.state, "device") else trainer.device
    if hasattr(trainer, "labeled_keys"):  # SemiSupervisedTrainer
        inputs = [batch[trainer.labeled_keys[0]]]
        if unlabeled is not None:
            inputs += [unlabeled[k] for k in trainer.unlabeled_image_keys if k in unlabeled]
        concat = bool(trainer.concat_streams) and len(inputs) > 1
    else:  # SupervisedTrainer, TwoBranchTrainer
        inputs, concat = [batch[getattr(trainer, "image_key", "image")]], False
    return [x.to(device) for x in inputs], concat


def compute_floor_ms(trainer: Any, batch: Mapping, unlabeled: Mapping | None, warmup: int, repeats: int) -> float:
    """Median ms of forward + backward + step(s) of ``trainer.network`` on the fixed inputs of one iteration."""
    import torch

    inputs, concat = _network_inputs(trainer, batch, unlabeled)
    optimizers = [o for o in (trainer.optimizer, getattr(trainer, "second_optimizer", None)) if o is not None]
    net = trainer.network
    net.train()

    def step() -> None:
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        outs = [net(torch.cat(inputs, dim=0))] if concat else [net(x) for x in inputs]
        loss = sum(t.float().mean() for o in outs for t in _tensors(o) if t.requires_grad)
        loss.backward()
        for o in optimizers:
            o.step()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def run_child(args: argparse.Namespace) -> dict:
    """Measure one bundle in this process (see the module docstring); returns the figures."""
    t_import = time.perf_counter()
    import monai  # noqa: F401  (timed: the import a bundle run pays first)

    import_s = time.perf_counter() - t_import
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    torch.set_num_threads(args.threads)
    bundle = REPO / "bundles" / args.child
    dims = int(json.loads((bundle / "configs" / "train.json").read_text())["spatial_dims"])
    size = args.image_size or DEFAULT_SIZE[dims]
    with tempfile.TemporaryDirectory(prefix="bench_training_") as work:
        overrides: dict[str, Any] = {
            "bundle_root": work, "image_size": size, "batch_size": args.batch_size, "max_epochs": args.epochs,
            "val_interval": args.epochs + 1, "progress_bar": False, "checkpoint_interval": 0, "num_workers": 0,
            "seed": args.seed,
        }
        if args.dataset_dir:
            overrides["dataset_dir"] = str(Path(args.dataset_dir).resolve())
        wf = ConfigWorkflow(config_file=str(bundle / "configs" / "train.json"),
                            meta_file=str(bundle / "configs" / "metadata.json"), logging_file=False,
                            workflow_type="train", **overrides)
        wf.initialize()
        trainer = wf.parser.get_parsed_content("train#trainer")
        marks: dict[str, list[float]] = {"done": [], "get0": [], "get1": []}
        first: list[float] = []
        trainer.add_event_handler(Events.ITERATION_STARTED(once=1), lambda e: first.append(time.time()))
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: marks["done"].append(time.perf_counter()))
        trainer.add_event_handler(Events.GET_BATCH_STARTED, lambda e: marks["get0"].append(time.perf_counter()))
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, lambda e: marks["get1"].append(time.perf_counter()))
        trainer.run()
        iters = [1000.0 * (b - a) for a, b in zip(marks["done"][:-1], marks["done"][1:])][args.skip:]
        data = [1000.0 * (b - a) for a, b in zip(marks["get0"], marks["get1"])][args.skip:]
        if not iters:
            raise SystemExit(f"{bundle.name}: {len(marks['done'])} iterations ran; raise --epochs or lower --skip")
        batch = next(iter(trainer.data_loader))
        stream = getattr(trainer, "unlabeled_data_loader", None)
        unlabeled = next(iter(stream)) if stream is not None else None
        floor = compute_floor_ms(trainer, batch, unlabeled, args.warmup, args.repeats)
    iteration = statistics.median(iters)
    return {
        "bundle": bundle.name, "image_size": size, "batch_size": args.batch_size, "threads": args.threads,
        "iterations_timed": len(iters), "iteration_ms": round(iteration, 1), "floor_ms": round(floor, 1),
        "ratio": round(iteration / floor, 3), "data_ms": round(statistics.median(data), 1) if data else None,
        "startup_s": round(first[0] - args.t0, 2) if first else None, "import_monai_s": round(import_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", nargs="*", help="bundle folder names (default: every bundle)")
    p.add_argument("--dataset-dir", help="a prepared dataset (default: each bundle's phantom)")
    p.add_argument("--image-size", type=int, nargs="+", help="default 64 64 (2D), 32 32 16 (3D)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--skip", type=int, default=3, help="iterations not timed at the start (warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="floor: untimed steps")
    p.add_argument("--repeats", type=int, default=10, help="floor: timed steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads (state the machine's load beside figures)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="write the results here as JSON (atomically)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(run_child(args)), flush=True)
        return 0
    names = args.bundles or sorted(b.name for b in (REPO / "bundles").iterdir() if (b / "configs").is_dir())
    rows = []
    for name in names:
        if not (REPO / "bundles" / name / "configs" / "train.json").is_file():
            p.error(f"--bundles: no bundle {name!r} under {REPO / 'bundles'}")
        cmd = [sys.executable, __file__, "--child", name, "--t0", str(time.time())]
        for opt in ("dataset_dir", "batch_size", "epochs", "skip", "warmup", "repeats", "threads", "seed"):
            value = getattr(args, opt)
            if value is not None:
                cmd += [f"--{opt.replace('_', '-')}", str(value)]
        if args.image_size:
            cmd += ["--image-size", *map(str, args.image_size)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode != 0 or not lines:
            print(r.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{name}: the measurement failed (exit status {r.returncode})")
        row = json.loads(lines[-1][len("RESULT "):])
        rows.append(row)
        print(f"{name:34s} size {'x'.join(map(str, row['image_size'])):9s} batch {row['batch_size']:2d}  "
              f"iteration {row['iteration_ms']:7.1f} ms  floor {row['floor_ms']:7.1f} ms  ratio {row['ratio']:5.2f}  "
              f"data {row['data_ms']} ms  start-up {row['startup_s']} s (import monai {row['import_monai_s']} s)",
              flush=True)
    if args.output:
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                   "python": platform.python_version()}
        atomic_write_json(Path(args.output), {"machine": machine, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

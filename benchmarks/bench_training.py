"""Training iteration time of every bundle against its compute floor, run start-up and data time (#20 item 1).

For each bundle, a fresh Python process (so that start-up includes importing MONAI, as a user's
``python -m monai.bundle run`` does) builds ``configs/train.json`` through ``monai.bundle.ConfigWorkflow`` with
the given dataset, image size and batch size, and then measures:

- **floor** (ms): forward + backward + optimiser step(s) of a copy of the bundle's own network and optimisers on
  one fixed batch taken from its own loaders, as plain tensors: the tensors the trainer feeds the network in one
  iteration (supervised: the batch; CRBNet: the batch through both branches, both optimisers stepped;
  semi-supervised: the labeled batch and the unlabeled views, concatenated when the trainer concatenates them).
  The loss is the sum of the outputs' means, so the floor holds no loss, data loading, augmentation, metadata or
  handler cost: what the loop adds on top is the gap. One floor step runs after each iteration of the real run
  (after its last handler), so both are measured under the same load; the median over the timed iterations.
- **iteration** (ms): the median wall time from ignite's ``GET_BATCH_STARTED`` to the end of
  ``ITERATION_COMPLETED`` of the real trainer (``train#trainer.run()``: loading and augmenting the batch, the
  method's loss, handlers), over every iteration after the first ``--skip`` of the run (validation is off:
  ``val_interval`` > ``max_epochs``), with its **phases**: data (``GET_BATCH_STARTED`` -> ``GET_BATCH_COMPLETED``;
  the semi-supervised trainers draw their unlabeled batch inside the iteration: "unlabeled data", taken out of
  forward), forward, loss, backward, step (MONAI's ``IterationEvents``) and after (post-processing, metrics,
  handlers).
- **start-up** (s): from the parent starting the child process to the trainer's first ``ITERATION_STARTED``
  (interpreter, imports, config parsing, input checks, dataset caching); **import** (s) of monai alone.

The ratio is the median over the timed iterations of each iteration over the floor step right after it (with its
interquartile range), printed per bundle; #20 asks for <= 1.15. This is a benchmark, not a test: the
figures depend on the machine and its load (name both beside them).

    python benchmarks/bench_training.py --threads 1 --output /tmp/bench_training.json
    python benchmarks/bench_training.py --bundles unet_us_2d_segmentation crbnet_us_2d_segmentation \\
        --dataset-dir <a prepared 2D dataset> --image-size 64 64 --batch-size 8 --epochs 2 --threads 2
"""

from __future__ import annotations

import argparse
import copy
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


def _plain(x: Any) -> Any:
    """``x`` without MONAI's metadata (a MetaTensor's ``as_tensor()``): the floor runs on plain tensors."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def _now(sync: bool) -> float:
    """``time.perf_counter()``, after waiting for the GPU's queued work when ``sync`` (CUDA runs asynchronously)."""
    if sync:
        import torch

        torch.cuda.synchronize()
    return time.perf_counter()


class FloorStep:
    """Forward + backward + optimiser step(s) of a copy of ``trainer``'s network and optimisers on fixed inputs
    of one iteration (plain tensors, a trivial loss: the sum of the outputs' means); calling it returns its ms.

    The copies (``copy.deepcopy`` of the network and its optimisers together, so the optimisers step the copied
    parameters) leave the trained network untouched; the benchmark runs one step after every timed iteration, so
    floor and iteration are measured in the same seconds of the machine's load.
    """

    def __init__(self, trainer: Any, batch: Mapping, unlabeled: Mapping | None, sync: bool = False) -> None:
        self.sync = sync
        inputs, self.concat = _network_inputs(trainer, batch, unlabeled)
        self.inputs = [_plain(x).contiguous() for x in inputs]
        optimizers = [o for o in (trainer.optimizer, getattr(trainer, "second_optimizer", None)) if o is not None]
        self.net, self.optimizers = copy.deepcopy((trainer.network, optimizers))
        self.net.train()

    def __call__(self) -> float:
        import torch

        t0 = _now(self.sync)
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        outs = [self.net(torch.cat(self.inputs, dim=0))] if self.concat else [self.net(x) for x in self.inputs]
        loss = sum(t.float().mean() for o in outs for t in _tensors(o) if t.requires_grad)
        loss.backward()
        for o in self.optimizers:
            o.step()
        return (_now(self.sync) - t0) * 1000.0


class TimedStream:
    """An iterator proxy that appends the ms of each ``next()`` to ``times`` (the unlabeled stream's draws)."""

    def __init__(self, stream: Any, times: list[float]) -> None:
        self.stream, self.times = stream, times

    def __iter__(self) -> TimedStream:
        return self

    def __next__(self) -> Any:
        t0 = time.perf_counter()
        try:
            return next(self.stream)
        finally:
            self.times.append((time.perf_counter() - t0) * 1000.0)


#: the phases of one iteration, each between two events (ignite's and MONAI's ``IterationEvents``)
PHASES = (
    ("data", "GET_BATCH_STARTED", "GET_BATCH_COMPLETED"),
    ("forward", "ITERATION_STARTED", "FORWARD_COMPLETED"),
    ("loss", "FORWARD_COMPLETED", "LOSS_COMPLETED"),
    ("backward", "LOSS_COMPLETED", "BACKWARD_COMPLETED"),
    ("step", "BACKWARD_COMPLETED", "MODEL_COMPLETED"),
    ("after", "MODEL_COMPLETED", "ITERATION_COMPLETED"),
)


def phase_times(marks: Mapping[str, list[float]], skip: int) -> dict[str, float]:
    """Median ms of each of :data:`PHASES` over the iterations after the first ``skip`` (``marks``: event name ->
    ``perf_counter`` times, one per iteration, in order); a phase whose events did not fire is left out."""
    out = {}
    for name, start, end in PHASES:
        a, b = marks.get(start, []), marks.get(end, [])
        spans = [1000.0 * (t1 - t0) for t0, t1 in zip(a, b)][skip:]
        if spans and len(a) == len(b):
            out[name] = round(statistics.median(spans), 1)
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs -> config overrides; VALUE is JSON where it parses as JSON, else the string itself.

    Raises:
        SystemExit: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--override: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_child(args: argparse.Namespace) -> dict:
    """Measure one bundle in this process (see the module docstring); returns the figures."""
    t_import = time.perf_counter()
    import monai  # noqa: F401  (timed: the import a bundle run pays first)

    import_s = time.perf_counter() - t_import
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow
    from monai.engines.utils import IterationEvents

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
        if args.datalist:
            overrides["data_list_file_path"] = str(Path(args.datalist).resolve())
        if args.device:
            overrides["device"] = f"$torch.device('{args.device}')"
        overrides.update(parse_overrides(args.override or []))
        wf = ConfigWorkflow(config_file=str(bundle / "configs" / "train.json"),
                            meta_file=str(bundle / "configs" / "metadata.json"), logging_file=False,
                            workflow_type="train", **overrides)
        wf.initialize()
        trainer = wf.parser.get_parsed_content("train#trainer")
        cuda = torch.device(wf.parser.get_parsed_content("device")).type == "cuda"
        stream = getattr(trainer, "unlabeled_data_loader", None)
        t_floor = time.time()  # the floor's set-up is not the bundle's start-up: subtracted below
        floor_step = FloorStep(trainer, next(iter(trainer.data_loader)), next(iter(stream)) if stream else None,
                               sync=cuda)
        for _ in range(args.warmup):
            floor_step()
        t_floor = time.time() - t_floor
        first: list[float] = []
        trainer.add_event_handler(Events.ITERATION_STARTED(once=1), lambda e: first.append(time.time()))
        marks: dict[str, list[float]] = {}
        for event in {e for _, a, b in PHASES for e in (a, b)}:
            enum = getattr(Events, event, None) or getattr(IterationEvents, event)
            stamps = marks.setdefault(event, [])
            trainer.add_event_handler(enum, lambda e, stamps=stamps: stamps.append(_now(cuda)))
        unlabeled_ms: list[float] = []
        if getattr(trainer, "unlabeled_stream", None) is not None:
            trainer.unlabeled_stream = TimedStream(trainer.unlabeled_stream, unlabeled_ms)
        floors: list[float] = []
        # registered last: runs after every handler of the iteration, whose end ITERATION_COMPLETED stamped above
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: floors.append(floor_step()))
        trainer.run()
        starts, done = marks["GET_BATCH_STARTED"], marks["ITERATION_COMPLETED"]
        iters = [1000.0 * (b - a) for a, b in zip(starts, done)][args.skip:]
        if not iters or len(starts) != len(done):
            raise SystemExit(f"{bundle.name}: {len(done)} iterations ran; raise --epochs or lower --skip")
    floors = floors[args.skip:]
    iteration, floor = statistics.median(iters), statistics.median(floors)
    # each iteration against the floor step right after it: the pairing cancels the machine's slower drifts
    paired = sorted(i / f for i, f in zip(iters, floors))
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
    phases = phase_times(marks, args.skip)
    if unlabeled_ms[args.skip:]:  # drawn inside the iteration, before the forward pass: taken out of "forward"
        phases["unlabeled data"] = round(statistics.median(unlabeled_ms[args.skip:]), 1)
        phases["forward"] = round(phases["forward"] - phases["unlabeled data"], 1)
    return {
        "bundle": bundle.name, "device": torch.cuda.get_device_name() if cuda else "cpu", "image_size": size,
        "batch_size": args.batch_size, "threads": args.threads,
        "iterations_timed": len(iters), "iteration_ms": round(iteration, 1), "floor_ms": round(floor, 1),
        "ratio": round(statistics.median(paired), 3),
        "ratio_iqr": [round(quartiles[0], 3), round(quartiles[2], 3)],
        "phases_ms": phases, "data_ms": phases.get("data"),
        "startup_s": round(first[0] - args.t0 - t_floor, 2) if first else None, "import_monai_s": round(import_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", nargs="*", help="bundle folder names (default: every bundle)")
    p.add_argument("--dataset-dir", help="a prepared dataset (default: each bundle's phantom)")
    p.add_argument("--datalist", help="a datalist JSON of the dataset other than its datalist.json (e.g. the "
                   "lesion images only)")
    p.add_argument("--image-size", type=int, nargs="+", help="default 64 64 (2D), 32 32 16 (3D)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--skip", type=int, default=3, help="iterations not timed at the start (warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="floor: untimed steps before the run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (state the machine's load beside figures)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="torch device, e.g. cuda:0 (default: the bundle's own, cuda when available); on "
                   "CUDA every phase boundary synchronises, so the phases add up")
    p.add_argument("--project-iterations", type=int, help="also print the training time this many iterations "
                   "would take at the measured iteration time (e.g. a paper budget)")
    p.add_argument("--override", nargs="*", metavar="KEY=VALUE",
                   help="config overrides for every bundle (VALUE as JSON, else a string), e.g. num_workers=1")
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
        for opt in ("dataset_dir", "datalist", "batch_size", "epochs", "skip", "warmup", "threads", "seed", "device"):
            value = getattr(args, opt)
            if value is not None:
                cmd += [f"--{opt.replace('_', '-')}", str(value)]
        if args.image_size:
            cmd += ["--image-size", *map(str, args.image_size)]
        if args.override:
            parse_overrides(args.override)  # refuse a malformed item here, before any child starts
            cmd += ["--override", *args.override]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode != 0 or not lines:
            print(r.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{name}: the measurement failed (exit status {r.returncode})")
        row = json.loads(lines[-1][len("RESULT "):])
        rows.append(row)
        print(f"{name:34s} size {'x'.join(map(str, row['image_size'])):9s} batch {row['batch_size']:2d}  "
              f"iteration {row['iteration_ms']:7.1f} ms  floor {row['floor_ms']:7.1f} ms  ratio {row['ratio']:5.2f} "
              f"[{row['ratio_iqr'][0]:.2f}, {row['ratio_iqr'][1]:.2f}]  "
              f"start-up {row['startup_s']} s (import monai {row['import_monai_s']} s)", flush=True)
        print(" " * 36 + "phases (ms): " + "  ".join(f"{k} {v}" for k, v in row["phases_ms"].items()), flush=True)
        if args.project_iterations:
            row["projected_iterations"] = args.project_iterations
            row["projected_hours"] = round(args.project_iterations * row["iteration_ms"] / 3.6e6, 2)
            print(" " * 36 + f"{args.project_iterations} iterations at {row['iteration_ms']} ms: "
                  f"{row['projected_hours']} h of training", flush=True)
    if args.output:
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                   "python": platform.python_version(), "device": args.device or "the bundles' default"}
        atomic_write_json(Path(args.output), {"machine": machine, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How often a two-process ``torchrun`` training of a bundle aborts at exit: a reliability check, not a test.

Each run trains ``--bundle`` with ``train.json`` + ``multi_gpu_train.json`` for one epoch on two CPU processes
(gloo). The data is a tiny phantom (8 images at 32x32, generated once into the usseg_monai cache) or
``--dataset_dir``. It counts the runs that exit non-zero, and those among them whose output shows the abort
described in ``docs/bundles.md`` ("Ending a torchrun run"): ``terminate called without an active exception``.

``--ending barrier`` replaces the bundle's ``finalize`` with the plain ending (a barrier, then
``destroy_process_group``), for comparison with the bundle's own ``shutdown_process_group``. The abort is a race,
so its rate depends on the machine; give it enough runs (on the 2-core development machine, ``--runs 60``: the
plain ending aborted in 5 of 60 runs, the bundle's own in 0 of 60).

    python benchmarks/torchrun_exit.py --runs 80
    python benchmarks/torchrun_exit.py --runs 80 --ending barrier --keep-logs /tmp/torchrun_logs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ABORT = "terminate called without an active exception"
PLAIN_ENDING = ["$dist.is_initialized() and dist.barrier()", "$dist.is_initialized() and dist.destroy_process_group()"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default="unet_us_2d_segmentation", help="a folder under bundles/ (default: %(default)s)")
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--ending", choices=("bundle", "barrier"), default="bundle", help="the bundle's finalize or the plain one")
    p.add_argument("--dataset_dir", default=None, help="a prepared dataset (default: an 8-image 32x32 phantom)")
    p.add_argument("--keep-logs", default=None, help="write the output of every failed run into this folder")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")

    bundle = REPO / "bundles" / args.bundle
    if not (bundle / "configs" / "multi_gpu_train.json").is_file():
        p.error(f"--bundle {args.bundle}: {bundle}/configs/multi_gpu_train.json not found")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    dims = len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"])
    size = [32] * 2 if dims == 2 else [32, 32, 16]
    if args.dataset_dir is None:
        from usseg_monai.data.phantom import ensure_phantom_dataset

        args.dataset_dir = ensure_phantom_dataset(dims, n_images=8, image_size=size)
    logs = Path(args.keep_logs) if args.keep_logs else None
    if logs:
        logs.mkdir(parents=True, exist_ok=True)

    failed = aborted = 0
    with tempfile.TemporaryDirectory(prefix="torchrun_exit_") as work:
        configs = [str(bundle / "configs" / "train.json"), str(bundle / "configs" / "multi_gpu_train.json")]
        if args.ending == "barrier":
            ending = Path(work) / "plain_ending.json"
            ending.write_text(json.dumps({"finalize": PLAIN_ENDING}))
            configs.append(str(ending))
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        start = time.perf_counter()
        for i in range(args.runs):
            cmd = [
                sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "monai.bundle", "run", "--config_file", json.dumps(configs),
                "--bundle_root", str(Path(work) / f"run{i}"), "--dataset_dir", str(args.dataset_dir),
                "--image_size", json.dumps(size), "--max_epochs", "1", "--batch_size", "2",
                "--progress_bar", "false", "--cache_rate", "1.0",
            ]  # fmt: skip
            r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
            out = r.stdout + r.stderr
            if r.returncode:
                failed += 1
                aborted += ABORT in out
                if logs:
                    (logs / f"run{i}.log").write_text(out)
            print(f"run {i + 1}/{args.runs}: exit {r.returncode}{' (abort at exit)' if ABORT in out else ''}", flush=True)
        minutes = (time.perf_counter() - start) / 60
    print(
        f"{args.bundle}, ending '{args.ending}': {failed} of {args.runs} runs failed, {aborted} of them with "
        f"'{ABORT}' ({minutes:.1f} min)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

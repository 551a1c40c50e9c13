#!/usr/bin/env python
"""Iteration time of the official CRBNet training code on CPU, beside this project's CRBNet bundle (#20 item 5).

The official code (NeuronXJTU/CRBNet, ``code/train_IDAMP.py``: two SSL4MIS UNets, SGD, the radical /
conservative / axis labels from disk, ``num_workers=16``) is not part of this project and is not changed: this
script copies a checkout's ``code/`` folder into ``WORK/code`` and runs ``train_IDAMP.py`` there, unmodified, in a
child process whose only changes are made from outside the file:

- the device lines point at the CPU: ``Tensor.cuda()`` and ``Module.cuda()`` return the object itself (the code
  calls ``.cuda()`` unconditionally; ``CUDA_VISIBLE_DEVICES`` is emptied);
- ``--patch_size`` is given as a list (the script declares it ``type=list``, so the command line cannot carry it:
  ``list('64')`` would be ``['6', '4']``); ``--max_iterations`` and ``--batch_size`` are passed as arguments;
- every ``SGD.step()`` call is time-stamped: an iteration ends at its second optimiser's step, so the iteration
  time is the span between two consecutive second steps (loading, both networks, the loss, logging), the median
  over the iterations after ``--skip``.

The data is written in the layout the official loader reads (``imgs/``, ``masks/``, ``only_ellipse_all/``
(radical), ``only_conservative_all/``, ``only_axis_all/``, ``train_fold1.txt``, ``test_fold1.txt``) from a prepared
datalist with ``calipers``: the image and mask at their own size, the three caliper labels rasterised on the
image's grid by :func:`usseg_monai.calipers.rasterize_calipers` (this project's pseudo-labels: the timing does not
depend on their content). The official code needs its own Python packages (tensorboardX, medpy, opencv, timm,
einops, yacs, kornia, efficientnet_pytorch, batchgenerators, torchsummary, scikit-image, torchvision): give that
environment's interpreter with ``--python``. This is a benchmark, not a test; name the machine and load beside
its figures.

    python benchmarks/crbnet_official_peer.py --official-code /path/to/CRBNet --datalist PREP/datalist_lesions.json \\
        --work /tmp/crbnet_peer --python /tmp/peer_venv/bin/python --image-size 64 --batch-size 8 --iterations 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from usseg_monai.calipers import load_calipers, rasterize_calipers
from usseg_monai.data.datalist import load_datalist_section
from usseg_monai.data.io import atomic_write_json, load_png, save_png

#: the official loader's folders: our label name -> its folder
LABEL_FOLDERS = {"radical_label": "only_ellipse_all", "conservative_label": "only_conservative_all",
                 "caliper_axes": "only_axis_all"}

#: run in the child, in WORK/code: CPU device lines, the patch size, SGD step stamps, then the official script
CHILD = textwrap.dedent("""
    import argparse, json, os, runpy, sys, time
    import torch
    size, threads, stamps_path = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(threads)
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.manual_seed = lambda *a, **k: None
    _parse = argparse.ArgumentParser.parse_args
    def parse_args(self, args=None, namespace=None):
        ns = _parse(self, args, namespace)
        if hasattr(ns, "patch_size"):
            ns.patch_size = list(size)
        return ns
    argparse.ArgumentParser.parse_args = parse_args
    stamps = []
    _step = torch.optim.SGD.step
    def step(self, *a, **k):
        out = _step(self, *a, **k)
        stamps.append(time.perf_counter())
        return out
    torch.optim.SGD.step = step
    sys.argv = ["train_IDAMP.py"] + sys.argv[4:]
    try:
        runpy.run_path("train_IDAMP.py", run_name="__main__")
    finally:
        with open(stamps_path, "w") as f:
            json.dump(stamps, f)
""")


def write_official_layout(datalist: Path, out: Path, train_key: str, test_key: str) -> dict[str, int]:
    """Write the training and test items of ``datalist`` in the official loader's layout under ``out``."""
    counts = {}
    for section, split_file in ((train_key, "train_fold1.txt"), (test_key, "test_fold1.txt")):
        names = []
        for i, item in enumerate(load_datalist_section(datalist, section, require_label=True)):
            name = f"{section}_{i:04d}.png"
            image = load_png(item["image"])
            save_png(out / "imgs" / name, image)
            save_png(out / "masks" / name, (load_png(item["label"]) > 0).astype(np.uint8) * 255)
            labels = rasterize_calipers(load_calipers(item["calipers"]), shape=image.shape, spacing=(1.0, 1.0),
                                        warn=False)
            for key, folder in LABEL_FOLDERS.items():
                save_png(out / folder / name, labels[key].astype(np.uint8) * 255)
            names.append(name)
        (out / split_file).write_text("\n".join(names) + "\n", encoding="utf-8")
        counts[section] = len(names)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official-code", required=True, help="a checkout of NeuronXJTU/CRBNet (the folder holding code/)")
    p.add_argument("--datalist", required=True, help="a prepared datalist whose items have 'calipers'")
    p.add_argument("--train-key", default="training")
    p.add_argument("--test-key", default="validation")
    p.add_argument("--work", required=True, help="a new folder for the data, the code copy and the logs")
    p.add_argument("--python", default=sys.executable, help="the interpreter of the official code's environment")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--skip", type=int, default=5, help="iterations not timed at the start (warm-up)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    p.add_argument("--output", help="write the figures here as JSON")
    args = p.parse_args(argv)
    code = Path(args.official_code) / "code" / "train_IDAMP.py"
    if not code.is_file():
        p.error(f"--official-code: {code} not found (give the CRBNet checkout's folder)")
    if args.iterations <= args.skip + 1:
        p.error("--iterations must exceed --skip + 1")
    work = Path(args.work).resolve()
    data = work / "data"
    if not (data / "test_fold1.txt").is_file():
        counts = write_official_layout(Path(args.datalist), data, args.train_key, args.test_key)
        print(f"data: {counts} in the official layout under {data}", flush=True)
    if (work / "code").exists():
        shutil.rmtree(work / "code")
    shutil.copytree(code.parent, work / "code", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    stamps_path = work / "sgd_steps.json"
    cmd = [args.python, "-c", CHILD, json.dumps([args.image_size] * 2), str(args.threads), str(stamps_path),
           "--root_path", str(data), "--exp", "peer", "--max_iterations", str(args.iterations),
           "--batch_size", str(args.batch_size)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(args.threads)}
    with open(work / "train.log", "w") as log:
        r = subprocess.run(cmd, cwd=work / "code", env=env, stdout=log, stderr=subprocess.STDOUT)
    stamps = json.loads(stamps_path.read_text()) if stamps_path.is_file() else []
    ends = stamps[1::2]  # two SGD optimisers: an iteration ends at its second step
    if r.returncode != 0 or len(ends) < args.iterations:
        print((work / "train.log").read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"the official training failed or stopped early (exit {r.returncode}, {len(ends)} iterations)")
    spans = [1000.0 * (b - a) for a, b in zip(ends, ends[1:])][args.skip:]
    row = {"code": "NeuronXJTU/CRBNet train_IDAMP.py (unmodified; CPU device lines)", "image_size": args.image_size,
           "batch_size": args.batch_size, "threads": args.threads, "iterations_timed": len(spans),
           "iteration_ms": round(statistics.median(spans), 1),
           "iteration_ms_iqr": [round(q, 1) for q in statistics.quantiles(spans, n=4)[::2]]}
    print(f"official CRBNet  size {args.image_size}x{args.image_size}  batch {args.batch_size}  threads {args.threads}  "
          f"iteration {row['iteration_ms']} ms [IQR {row['iteration_ms_iqr'][0]}, {row['iteration_ms_iqr'][1]}] "
          f"over {len(spans)} iterations", flush=True)
    if args.output:
        atomic_write_json(Path(args.output), row)
    return 0


if __name__ == "__main__":
    sys.exit(main())

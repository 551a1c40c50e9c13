#!/usr/bin/env python
"""Train and evaluate every bundle with its default config on its default dataset (the phantom), as a user would.

For each bundle, a copy of the bundle folder (configs, docs, LICENSE) becomes the run folder and ``--bundle_root``,
so that after training it is a complete trained bundle (``models/model.pt`` inside) on which the model-zoo's
checks run (``python -m usseg_monai.bundle_checks``, or the zoo's own ci/verify_bundle.py). Then:

    python -m monai.bundle run --config_file RUN/configs/train.json --bundle_root RUN
    python -m monai.bundle run --config_file "['RUN/configs/train.json','RUN/configs/evaluate.json']" --bundle_root RUN

and the mean Dice of ``RUN/eval/summary.json`` (validation section, scored at each image's own resolution) is the
figure. Results go to ``OUTPUT/<bundle>/defaults_result.json`` (written atomically); a bundle with a result is not
run again, so an interrupted run resumes. ``--write-metadata`` stores the figure in the bundle's
``configs/metadata.json`` ``eval_metrics`` under a key naming dataset, budget and device.

    python benchmarks/bundle_defaults.py --output WORK/defaults --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from usseg_monai.data.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def metric_key(spatial_dims: int, max_epochs: int) -> str:
    """The eval_metrics key of a default-config figure: dataset, section, budget and device."""
    return f"phantom_{spatial_dims}d_validation_mean_dice_default_config_{max_epochs}_epochs_cpu"


def _run(cmd: list[str], env: dict, log: Path) -> None:
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"command failed with exit code {r.returncode} (log: {log}): {' '.join(cmd)}")


def run_bundle(bundle: Path, out: Path, threads: int) -> dict:
    result_file = out / bundle.name / "defaults_result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    run = out / bundle.name
    train = json.loads((bundle / "configs" / "train.json").read_text())
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONWARNINGS"] = "ignore:parsing config_file:UserWarning"
    log = run / "run.log"
    cfg = str(run / "configs" / "train.json")
    trained = run / "train_done.json"
    if not trained.is_file():
        if run.exists():
            shutil.rmtree(run)  # an unfinished training: start again from a clean copy
        shutil.copytree(bundle, run, ignore=shutil.ignore_patterns("models", "eval"))
        t0 = time.time()
        _run([sys.executable, "-m", "monai.bundle", "run", "--config_file", cfg, "--bundle_root", str(run)], env, log)
        atomic_write_json(trained, {"train_seconds": round(time.time() - t0, 1)})
    t_train = json.loads(trained.read_text())["train_seconds"]
    both = f"['{cfg}','{run / 'configs' / 'evaluate.json'}']"
    _run([sys.executable, "-m", "monai.bundle", "run", "--config_file", both, "--bundle_root", str(run)], env, log)
    summary = json.loads((run / "eval" / "summary.json").read_text())
    result = {
        "bundle": bundle.name,
        "spatial_dims": train["spatial_dims"],
        "max_epochs": train["max_epochs"],
        "image_size": train["image_size"],
        "batch_size": train["batch_size"],
        "mean_dice": summary_mean_dice(summary),
        "n_cases": summary["cases"],
        "train_seconds": t_train,
        "threads": threads,
        "device": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores",
        "key": metric_key(train["spatial_dims"], train["max_epochs"]),
    }
    atomic_write_json(result_file, result)
    return result


def summary_mean_dice(summary: dict) -> float:
    """Mean Dice of an eval/summary.json written by the bundles' evaluate.json (``metrics.dice``)."""
    try:
        return round(float(summary["metrics"]["dice"]), 3)
    except (KeyError, TypeError, ValueError) as e:
        raise KeyError(f"no metrics.dice in eval/summary.json (keys {sorted(summary)})") from e


def write_metadata(bundle: Path, result: dict) -> None:
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    metrics = {k: v for k, v in meta.get("eval_metrics", {}).items() if isinstance(v, (int, float))}
    metrics[result["key"]] = result["mean_dice"]
    meta["eval_metrics"] = metrics
    tmp = meta_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=4, ensure_ascii=False) + "\n")
    os.replace(tmp, meta_file)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", required=True, help="work folder: one trained bundle copy per bundle")
    ap.add_argument("--bundles", nargs="*", default=None, help="bundle names (default: every folder in bundles/)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)")
    ap.add_argument("--write-metadata", action="store_true", help="store each figure in the bundle's metadata.json")
    args = ap.parse_args(argv)
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = args.bundles or sorted(p.name for p in (ROOT / "bundles").iterdir() if (p / "configs").is_dir())
    print("| bundle | size | epochs | batch | validation mean Dice | cases | train s | threads |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        bundle = ROOT / "bundles" / name
        if not (bundle / "configs" / "train.json").is_file():
            raise SystemExit(f"{bundle}: not a bundle folder (no configs/train.json)")
        r = run_bundle(bundle, out, args.threads)
        size = "x".join(str(s) for s in r["image_size"])
        print(
            f"| {name} | {size} | {r['max_epochs']} | {r['batch_size']} | {r['mean_dice']:.3f} | {r['n_cases']} | "
            f"{r['train_seconds']:.0f} | {r['threads']} |",
            flush=True,
        )
        if args.write_metadata:
            write_metadata(bundle, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())

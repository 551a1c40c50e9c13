"""Caliper-guided segmentation in MONAI Label, measured: Dice of guided vs unguided vs the radical label alone.

For each image of a prepared dataset's section (a validation section: not trained on), the calipers are
derived from its mask as a sonographer measures (``calipers_from_mask``) and sent to a real MONAI Label server
running the project's app (``monailabel_app/``) as foreground clicks in order (long axis first):

- **guided**: ``/infer/<bundle>_calipers`` (the mask constrained to conservative <= mask <= radical);
- **unguided**: ``/infer/<bundle>`` (the same network, no calipers);
- **radical** / **conservative**: the caliper pseudo-labels alone (no network).

Dice with the mask per image, the mean with its 95% bootstrap CI, the paired difference guided - unguided with
its CI, and the wall time per request (median and 90th percentile, the server on this machine, one thread).

Usage (the model trained at the bundle's default image size; the MONAI Label environment built by
``scripts/monailabel_env.sh``)::

    python benchmarks/monailabel_calipers.py --bundle crbnet_us_2d_segmentation \\
        --model outputs/crbnet_us_2d_segmentation/models/model.pt \\
        --datalist /data/busi_prepared/datalist.json --section validation --output runs/ml_calipers_busi

Writes ``<output>/results.json`` (per case and summary) and prints a Markdown table. A finished output folder
is reused (delete ``results.json`` to measure again).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from usseg_monai.bundle_paths import resolve_bundle, trains_from_calipers
from usseg_monai.calipers import calipers_from_mask, rasterize_calipers
from usseg_monai.data.io import DatasetError, atomic_write_json, load_datalist, load_png
from usseg_monai.metrics.bootstrap import bootstrap_ci
from usseg_monai.monailabel_client import APP_DIR, MonaiLabelServer, form_request, request

ROOT = Path(__file__).resolve().parents[1]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / s) if s else 1.0


def _mask_of_response(body: bytes, suffix: str, folder: Path) -> np.ndarray:
    """The returned 2D mask as an (x, y) boolean array (the PNG's transpose: MONAI's index order)."""
    from PIL import Image

    path = folder / f"response{suffix}"
    path.write_bytes(body)
    return np.asarray(Image.open(path)).T > 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="a caliper-trained 2D bundle (folder or name)")
    ap.add_argument("--model", required=True, help="its trained model.pt")
    ap.add_argument("--datalist", required=True, help="a prepared dataset's datalist.json")
    ap.add_argument("--section", default="validation", help="datalist section (default validation)")
    ap.add_argument("--limit", type=int, default=0, help="first N images with a lesion (0: all)")
    ap.add_argument("--output", required=True, help="folder for results.json, the app copy and the server log")
    ap.add_argument("--venv", help="the MONAI Label environment (default: built or found by scripts/monailabel_env.sh)")
    args = ap.parse_args(argv)

    out = Path(args.output)
    if (out / "results.json").is_file():
        print(f"reusing {out / 'results.json'}")
        print(_table(json.loads((out / "results.json").read_text())))
        return 0
    bundle = resolve_bundle(args.bundle)
    if not trains_from_calipers(bundle):
        raise SystemExit(f"{bundle.name} does not train from calipers: it has no caliper-guided task")
    model = Path(args.model)
    if not model.is_file():
        raise SystemExit(f"--model {model}: no such file")
    datalist = Path(args.datalist)
    items = load_datalist(datalist)[args.section]
    items = [it for it in items if it.get("label") and load_png(datalist.parent / it["label"]).any()]
    if args.limit:
        items = items[: args.limit]
    if not items:
        raise SystemExit(f"{datalist}: section {args.section!r} has no image with a lesion")
    venv = Path(args.venv) if args.venv else Path(subprocess.run(
        ["bash", str(ROOT / "scripts" / "monailabel_env.sh")], check=True, capture_output=True, text=True
    ).stdout.strip().splitlines()[-1])

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work.", dir=out))
    app, studies = work / "app", work / "studies"
    shutil.copytree(APP_DIR, app, ignore=shutil.ignore_patterns("model", "__pycache__"))
    (app / "model" / bundle.name / "models").mkdir(parents=True)
    shutil.copy2(model, app / "model" / bundle.name / "models" / "model.pt")
    studies.mkdir()
    cases = []
    for it in items:
        image = datalist.parent / it["image"]
        case = Path(it["image"]).name.rsplit(".", 1)[0]
        (studies / f"{case}{image.suffix}").symlink_to(image.resolve())
        cases.append((case, image.suffix, load_png(datalist.parent / it["label"]) > 0))

    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), BUNDLE_DOWNLOAD_SRC="ngc")
    conf = {"models": bundle.name, "bundles_dir": str(bundle.parent), "outputs_dir": str(work / "none"),
            "skip_trainers": "true"}
    rows = []
    with MonaiLabelServer(venv, app, studies, conf, out / "server.log", env=env) as server:
        names = json.loads(request(server.url + "/info/")[2])["models"]
        assert f"{bundle.name}_calipers" in names, sorted(names)
        for k, (case, suffix, truth) in enumerate(cases):
            annotation = calipers_from_mask(truth, (1.0, 1.0))
            points = annotation.lesions[0].segments.reshape(-1, 2).tolist()
            labels = rasterize_calipers(annotation)
            row = {"case": case, "radical": _dice(labels["radical_label"], truth),
                   "conservative": _dice(labels["conservative_label"], truth)}
            for task, params in (("unguided", {}), ("guided", {"foreground": points})):
                name = bundle.name + ("_calipers" if task == "guided" else "")
                start = time.perf_counter()
                status, _, body = form_request(f"{server.url}/infer/{name}?image={case}&output=image", params)
                row[f"{task}_s"] = time.perf_counter() - start
                if status != 200:
                    raise DatasetError(f"{case}: /infer/{name} answered {status}: {body[:500]!r}")
                row[task] = _dice(_mask_of_response(body, ".png", work), truth)
            rows.append(row)
            print(f"[{k + 1}/{len(cases)}] {case}: guided {row['guided']:.3f} unguided {row['unguided']:.3f} "
                  f"radical {row['radical']:.3f} ({row['guided_s']:.2f} s)", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    summary = {key: bootstrap_ci([r[key] for r in rows]) for key in ("guided", "unguided", "radical", "conservative")}
    summary["guided_minus_unguided"] = bootstrap_ci([r["guided"] - r["unguided"] for r in rows])
    summary["guided_minus_radical"] = bootstrap_ci([r["guided"] - r["radical"] for r in rows])
    times = {t: [r[f"{t}_s"] for r in rows] for t in ("guided", "unguided")}
    result = {
        "bundle": bundle.name, "model": str(model), "datalist": str(datalist), "section": args.section,
        "n": len(rows), "summary": summary,
        "seconds_per_request": {t: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90))}
                                for t, v in times.items()},
        "machine": f"{os.cpu_count()} CPU cores, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}",
        "cases": rows,
    }
    atomic_write_json(out / "results.json", result)
    print(_table(result))
    return 0


def _table(result: dict) -> str:
    s, t = result["summary"], result["seconds_per_request"]

    def ci(key: str) -> str:
        c = s[key]
        return f"{c['mean']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"

    lines = [
        f"{result['bundle']} on {result['datalist']} ({result['section']}, n={result['n']}); {result['machine']}",
        "",
        "| mask | Dice (95% CI) | s per request (median / p90) |",
        "|---|---|---|",
        f"| caliper-guided (`_calipers` task) | {ci('guided')} | {t['guided']['median']:.2f} / {t['guided']['p90']:.2f} |",
        f"| unguided (auto-segmentation) | {ci('unguided')} | {t['unguided']['median']:.2f} / {t['unguided']['p90']:.2f} |",
        f"| radical label alone | {ci('radical')} | - |",
        f"| conservative label alone | {ci('conservative')} | - |",
        "",
        f"guided - unguided: {ci('guided_minus_unguided')}; guided - radical: {ci('guided_minus_radical')} (paired)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

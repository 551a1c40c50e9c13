"""Inference time per image of every bundle's network: eager vs TorchScript vs torch.export, on CPU.

For each bundle under ``bundles/`` the network ``network_def`` of ``configs/inference.json`` (randomly
initialised: timing does not depend on the weights) is saved as a checkpoint and
exported the way users export it: TorchScript by ``monai.bundle.ckpt_export`` (scripting) and torch.export by
:func:`usseg_monai.export.export_bundle_checkpoint` (dynamic batch and spatial size). The files are loaded
back and each runs ``--repeats`` forward passes on one image of the bundle's ``image_size`` (batch 1,
``torch.no_grad``) after ``--warmup`` passes; the table gives the median and the minimum in milliseconds per
image. This is a benchmark, not a test: figures depend on the machine and its load (report both).

    python benchmarks/bench_export.py                      # every bundle, 1 thread
    python benchmarks/bench_export.py --threads 2 --repeats 50 --bundles unet_us_2d_segmentation
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from usseg_monai.data.io import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def _time_ms(fn, x: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            out.append((time.perf_counter() - t0) * 1000.0)
    return out


def bench_bundle(bundle: Path, work: Path, warmup: int, repeats: int) -> dict:
    """Export ``bundle``'s network to TorchScript and torch.export in ``work`` and time the three forms."""
    from monai.bundle import ConfigParser, ckpt_export

    from usseg_monai.export import export_bundle_checkpoint, load_exported_network

    cfg = str(bundle / "configs" / "inference.json")
    meta = str(bundle / "configs" / "metadata.json")
    parser = ConfigParser()
    parser.read_config(cfg)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    size = [int(s) for s in parser.get_parsed_content("image_size")]
    ckpt = work / "model.pt"
    torch.save(net.state_dict(), ckpt)
    ts = work / "model.ts"
    ckpt_export(
        net_id="network_def", filepath=str(ts), ckpt_file=str(ckpt), meta_file=meta, config_file=cfg,
        bundle_root=str(bundle),
    )  # fmt: skip
    pt2 = export_bundle_checkpoint(cfg, ckpt, work / "model.pt2", meta_file=meta, bundle_root=str(bundle))
    scripted = torch.jit.load(str(ts), map_location="cpu").eval()
    exported = load_exported_network(pt2).eval()
    x = torch.rand(1, 1, *size)
    with torch.no_grad():
        ref = net(x)
        diffs = {k: (m(x) - ref).abs().max().item() for k, m in (("torchscript", scripted), ("torch.export", exported))}
    row = {"bundle": bundle.name, "image_size": size, "max_abs_diff": diffs}
    for name, fn in (("eager", net), ("torchscript", scripted), ("torch.export", exported)):
        t = _time_ms(fn, x, warmup, repeats)
        row[name] = {"median_ms": statistics.median(t), "min_ms": min(t)}
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", nargs="*", default=None, help="bundle folder names (default: all under bundles/)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundles = sorted(b for b in (REPO / "bundles").iterdir() if (b / "configs" / "metadata.json").is_file())
    if args.bundles:
        bundles = [b for b in bundles if b.name in args.bundles]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in bundles:
            work = Path(tmp) / b.name
            work.mkdir()
            rows.append(bench_bundle(b, work, args.warmup, args.repeats))
    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} thread(s), batch 1, {args.repeats} timed runs after {args.warmup} warm-up, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print("| bundle | image size | eager ms | TorchScript ms | torch.export ms | max abs diff TS / export |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        forms = ("eager", "torchscript", "torch.export")
        cells = [f"{r[k]['median_ms']:.1f} (min {r[k]['min_ms']:.1f})" for k in forms]
        d = r["max_abs_diff"]
        print(
            f"| {r['bundle']} | {'x'.join(map(str, r['image_size']))} | "
            + " | ".join(cells)
            + f" | {d['torchscript']:.1e} / {d['torch.export']:.1e} |"
        )
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

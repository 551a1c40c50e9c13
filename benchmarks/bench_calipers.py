"""Speed of the caliper geometry on one core: pseudo-labels from calipers and calipers from a mask.

Measures, single-threaded (``torch.set_num_threads(1)``, BLAS/OpenMP threads 1):

- rasterising the three pseudo-labels (conservative, radical, axes) of a 256x256 image, one lesion,
  ``rasterize_calipers`` (target >= 1000 images/s) and the MONAI transform ``CaliperPseudoLabelsd``;
- the same for a 128^3 volume (target < 100 ms);
- deriving calipers from a mask (``calipers_from_mask``) in 2D (256x256) and 3D (128^3);
- measuring a mask (``measure_mask``, what inference reports).

Lesions are random ellipses/ellipsoids (seeded) covering roughly 5-25% of the field of view.

Usage::

    python benchmarks/bench_calipers.py [--repeats 200] [--out bench.json]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.data import MetaTensor  # noqa: E402

from usseg_monai.calipers import (  # noqa: E402
    CaliperFallbackWarning,
    calipers_from_mask,
    measure_mask,
    rasterize_calipers,
)
from usseg_monai.data.io import atomic_write_json  # noqa: E402
from usseg_monai.transforms import CaliperPseudoLabelsd  # noqa: E402


def random_masks(shape: tuple[int, ...], n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` random rotated ellipses/ellipsoids in a grid of ``shape``."""
    rng = np.random.default_rng(seed)
    nd = len(shape)
    g = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    out = []
    for _ in range(n):
        size = np.asarray(shape, dtype=float)
        centre = rng.uniform(0.35, 0.65, nd) * size
        semi = rng.uniform(0.08, 0.3, nd) * size.min()
        q, _ = np.linalg.qr(rng.normal(size=(nd, nd)))
        x = np.stack([gi - c for gi, c in zip(g, centre)], axis=-1) @ q.astype(np.float32)
        out.append(((x / semi.astype(np.float32)) ** 2).sum(-1) <= 1.0)
    return out


def per_second(fn, items, repeats: int) -> tuple[float, float]:
    """(items per second, ms per item) of ``fn`` over ``items`` cycled ``repeats`` times."""
    fn(items[0])  # warm-up
    t0 = time.perf_counter()
    for i in range(repeats):
        fn(items[i % len(items)])
    dt = (time.perf_counter() - t0) / repeats
    return 1.0 / dt, 1e3 * dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200, help="timed calls per 2D figure (3D: a tenth)")
    ap.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", CaliperFallbackWarning)
    res: dict[str, dict[str, float]] = {}

    masks2 = random_masks((256, 256), 20)
    sp2 = (0.1, 0.12)
    anns2 = [calipers_from_mask(m, sp2) for m in masks2]
    res["rasterize_2d_256"] = dict(zip(("per_s", "ms"), per_second(rasterize_calipers, anns2, args.repeats)))
    t = CaliperPseudoLabelsd("calipers", ref_key="image")
    img = MetaTensor(torch.zeros(1, 256, 256), affine=torch.diag(torch.tensor([*sp2, 1.0, 1.0], dtype=torch.float64)))
    items2 = [{"image": img, "calipers": a} for a in anns2]
    res["transform_2d_256"] = dict(zip(("per_s", "ms"), per_second(t, items2, args.repeats)))
    derive2 = per_second(lambda m: calipers_from_mask(m, sp2), masks2, args.repeats)
    res["derive_2d_256"] = dict(zip(("per_s", "ms"), derive2))
    res["measure_2d_256"] = dict(zip(("per_s", "ms"), per_second(lambda m: measure_mask(m, sp2), masks2, args.repeats)))

    masks3 = random_masks((128, 128, 128), 4, seed=1)
    sp3 = (0.5, 0.5, 1.0)
    anns3 = [calipers_from_mask(m, sp3) for m in masks3]
    r3 = max(args.repeats // 10, 4)
    res["rasterize_3d_128"] = dict(zip(("per_s", "ms"), per_second(rasterize_calipers, anns3, r3)))
    res["derive_3d_128"] = dict(zip(("per_s", "ms"), per_second(lambda m: calipers_from_mask(m, sp3), masks3, r3)))
    res["measure_3d_128"] = dict(zip(("per_s", "ms"), per_second(lambda m: measure_mask(m, sp3), masks3, r3)))

    res["targets"] = {"rasterize_2d_256_per_s_min": 1000, "rasterize_3d_128_ms_max": 100}
    print(json.dumps(res, indent=2))
    ok = res["rasterize_2d_256"]["per_s"] >= 1000 and res["rasterize_3d_128"]["ms"] < 100
    print("targets met" if ok else "targets NOT met")
    if args.out:
        atomic_write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

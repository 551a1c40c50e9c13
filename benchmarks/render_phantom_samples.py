"""Render ``docs/images/phantom_samples.png``: phantom samples with their lesion contours.

Usage::

    python benchmarks/render_phantom_samples.py [--out docs/images/phantom_samples.png] [--seed 0]
        [--busi ../shared/data/BUSI/Dataset_BUSI_with_GT/benign/benign (100).png]

Panels: two benign, two malignant, one normal (128x128, 0.2 mm), one sector-probe benign, and the axial
(x-y) and elevational (x-z) planes through a 3D malignant volume (64x64x32, 0.4x0.4x0.8 mm). With
``--busi`` a real BUSI image is added for comparison (not committed with the figure by default: the
dataset's licence covers research use; the committed figure holds phantom images only).
Images are shown in physical proportions (mm), y (depth, axis 1) downwards as on a scanner screen.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from usseg_monai.data.io import atomic_path
from usseg_monai.data.phantom import generate_phantom


def _show(ax, image_xy: np.ndarray, mask_xy: np.ndarray | None, spacing, title: str) -> None:
    """Draw an ``(x, y)`` array as the scanner shows it: x to the right, depth down, axes in mm."""
    extent = (0, image_xy.shape[0] * spacing[0], image_xy.shape[1] * spacing[1], 0)
    ax.imshow(image_xy.T, cmap="gray", vmin=0, vmax=255, extent=extent, interpolation="nearest")
    if mask_xy is not None and mask_xy.any():
        xs = (np.arange(mask_xy.shape[0]) + 0.5) * spacing[0]
        ys = (np.arange(mask_xy.shape[1]) + 0.5) * spacing[1]
        ax.contour(xs, ys, mask_xy.T.astype(float), levels=[0.5], colors="#ffd400", linewidths=0.8)
    ax.set_title(title, fontsize=7.5)
    ax.tick_params(labelsize=6, length=2)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/images/phantom_samples.png")
    parser.add_argument("--seed", type=int, default=0, help="offset added to the panel seeds")
    parser.add_argument("--busi", default=None, help="optional real BUSI image to show beside the phantoms")
    args = parser.parse_args()

    panels = [
        ("benign", 1, {}),
        ("benign", 3, {}),
        ("malignant", 0, {}),
        ("malignant", 3, {}),
        ("normal", 0, {}),
        ("benign", 2, {"probe": "sector"}),
    ]
    n_cols = 4 if args.busi is None else 5
    fig, axes = plt.subplots(2, n_cols, figsize=(2.3 * n_cols, 5.4), layout="constrained")
    flat = list(axes.flat)
    for ax, (class_name, seed, opts) in zip(flat, panels):
        s = generate_phantom((128, 128), class_name=class_name, seed=seed + args.seed, **opts)
        lesion = s.params["lesion"]
        detail = "" if lesion is None else f", {lesion['margin']}, {lesion['posterior']}"
        probe = " sector" if opts.get("probe") == "sector" else ""
        title = f"{class_name}{probe}{detail}\nseed {seed + args.seed}, 128x128, {s.spacing[0]} mm"
        _show(ax, s.image, s.mask, s.spacing, title)

    v = generate_phantom((64, 64, 32), class_name="malignant", seed=args.seed)
    cx, cy, cz = (int(round(c)) for c in v.params["lesion"]["centre_px"])
    title = f"3D malignant 64x64x32, seed {args.seed}\nx-y plane z={cz}"
    _show(flat[6], v.image[:, :, cz], v.mask[:, :, cz], v.spacing[:2], title)
    _show(flat[7], v.image[:, cy, :], v.mask[:, cy, :], (v.spacing[0], v.spacing[2]),
          f"3D, x-z plane y={cy}\n(elevational spacing {v.spacing[2]} mm)")
    used = 8
    if args.busi is not None:
        from usseg_monai.data.io import load_png

        real = load_png(args.busi)
        _show(flat[used], real, None, (1.0, 1.0), f"real BUSI (pixels)\n{Path(args.busi).name}")
        used += 1
    for ax in flat[used:]:
        ax.axis("off")
    for ax in flat[:used]:
        ax.set_xlabel("x (mm)", fontsize=6, labelpad=1)
    flat[0].set_ylabel("depth y (mm)", fontsize=6)
    flat[4].set_ylabel("depth y (mm)", fontsize=6)
    flat[7].set_ylabel("elevation z (mm)", fontsize=6)
    out = Path(args.out)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    # gray speckle does not compress: store a 128-colour palette image (keeps the file small for the docs)
    with Image.open(buf) as im, atomic_path(out) as tmp:
        im.convert("RGB").quantize(colors=128, dither=Image.Dither.NONE).save(tmp, format="PNG", optimize=True)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()

"""The report's figures (PNG): Dice per method with its CI, per-case Dice, training curves, and a gallery of
overlays (ground-truth and predicted contours and calipers on the same test cases). Needs matplotlib
(``pip install usseg-monai[plot]``), imported on first use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.calipers.measure import measure_mask
from usseg_monai.data.io import atomic_path, load_png, load_volume
from usseg_monai.transforms.output_meta import image_stem
from usseg_monai.transforms.overlay import largest_lesion_slice, overlay_image

__all__ = ["CONTOUR_GT", "CONTOUR_PRED", "figure_dice", "figure_cases", "figure_curves", "figure_gallery", "choose_gallery_cases"]


CONTOUR_GT = (0, 200, 0)


CONTOUR_PRED = (255, 60, 60)


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise RuntimeError("the report's figures need matplotlib: pip install 'usseg-monai[plot]'") from e
    return plt


def _save(fig: Any, path: Path, dpi: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")


def figure_dice(group: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Dice mean per method with its bootstrap CI as error bars."""
    plt = _plt()
    names = [str(r["method"]) for r in group]
    d = [r["metrics"].get("dice") or {} for r in group]
    means = np.array([np.nan if x.get("mean") is None else x["mean"] for x in d], dtype=float)
    lo = np.array([np.nan if x.get("ci_low") is None else x["ci_low"] for x in d], dtype=float)
    hi = np.array([np.nan if x.get("ci_high") is None else x["ci_high"] for x in d], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.2))
    x = np.arange(len(names))
    ax.bar(x, means, color="#7aa6c2")
    ax.errorbar(x, means, yerr=np.vstack([means - lo, hi - means]), fmt="none", ecolor="black", capsize=4)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice (95% CI)")
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)


def figure_cases(group: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Per-case Dice distribution per method (box plot with the cases as points)."""
    plt = _plt()
    values = [
        [float(c["dice"]) for c in r.get("cases", []) if c.get("dice") is not None and math.isfinite(float(c["dice"]))]
        for r in group
    ]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(group), 3.2))
    ax.boxplot(values, showfliers=False)
    rng = np.random.default_rng(0)
    for i, v in enumerate(values, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=6, alpha=0.5, color="#555555")
    ax.set_xticks(range(1, len(group) + 1), [str(r["method"]) for r in group], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice per test case")
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)


def figure_curves(group: Sequence[Mapping[str, Any]], path: Path, title: str) -> bool:
    """Training loss per epoch per method; ``False`` (nothing written) when no run has a curve."""
    curves = [(str(r["method"]), r.get("training_curve") or []) for r in group]
    if not any(c for _, c in curves):
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, c in curves:
        pts = [(e["epoch"], e["loss"]) for e in c if "loss" in e]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (each method its own loss)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)
    return True


def _load_any(path: Path) -> np.ndarray:
    name = path.name.lower()
    if name.endswith((".png", ".jpg", ".jpeg", ".bmp")):
        return np.asarray(load_png(path))
    arr, _ = load_volume(path)
    return np.asarray(arr)


def _prediction_path(run: Mapping[str, Any], image: str) -> Path | None:
    run_dir = run.get("run_dir")
    if not run_dir:
        return None
    stem = image_stem(image)
    folder = Path(run["predictions_dir"]) if run.get("predictions_dir") else Path(run_dir, "predictions")
    for p in sorted(folder.glob(f"{stem}_seg.*")):
        return p
    return None


def _tile(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float] | None, color: Sequence[int]) -> np.ndarray:
    image = np.squeeze(image)
    mask = np.squeeze(mask) > 0
    if image.ndim == 3 and mask.ndim == 3:
        z = largest_lesion_slice(mask)
        image, mask = image[:, :, z], mask[:, :, z]
        spacing = spacing[:2] if spacing else None
    meas = measure_mask(mask, spacing=spacing, min_voxels=20) if mask.any() else []
    return overlay_image(image, mask, meas[:1], contour_color=color)


def choose_gallery_cases(group: Sequence[Mapping[str, Any]], n: int = 4) -> list[str]:
    """Test images present in every run, picked at evenly spaced quantiles of the first run's Dice (worst to best)."""
    per_run = [{c["image"]: c for c in r.get("cases", []) if "image" in c} for r in group]
    common = set(per_run[0]) if per_run else set()
    for pr in per_run[1:]:
        common &= set(pr)
    scored = sorted(
        (c for img, c in per_run[0].items() if img in common and c.get("dice") is not None and math.isfinite(float(c["dice"]))),
        key=lambda c: (float(c["dice"]), c["image"]),
    )
    if not scored:
        return []
    idx = np.unique(np.linspace(0, len(scored) - 1, min(n, len(scored))).round().astype(int))
    return [scored[i]["image"] for i in idx]


def figure_gallery(group: Sequence[Mapping[str, Any]], path: Path, title: str, n_cases: int = 4) -> bool:
    """Rows: test cases; columns: image + ground truth (green contour, calipers), then each method's prediction.

    ``False`` (nothing written) when the test images or predictions cannot be found (e.g. moved run folders).
    """
    test = (group[0].get("datalists") or {}).get("test") or {}
    if not test.get("path"):
        return False
    base = Path(test["path"]).parent
    try:
        items = {it["image"]: it for it in json.loads(Path(test["path"]).read_text())[test["section"]]}
    except (OSError, KeyError, json.JSONDecodeError):
        return False
    cases = [c for c in choose_gallery_cases(group, n_cases) if c in items]
    rows = []
    for image_rel in cases:
        it = items[image_rel]
        img = _load_any(base / it["image"])
        gt = _load_any(base / it["label"]) > 0
        spacing = it.get("spacing")
        row = [_tile(img, gt, spacing, CONTOUR_GT)]
        for r in group:
            p = _prediction_path(r, it["image"])
            if p is None:
                return False
            row.append(_tile(img, _load_any(p) > 0, spacing, CONTOUR_PRED))
        dices = [next((c.get("dice") for c in r["cases"] if c.get("image") == image_rel), None) for r in group]
        rows.append((Path(image_rel).name, row, dices))
    if not rows:
        return False
    plt = _plt()
    ncol = 1 + len(group)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.2 * ncol, 2.2 * len(rows)), squeeze=False)
    for i, (name, tiles, dices) in enumerate(rows):
        for j, t in enumerate(tiles):
            ax = axes[i][j]
            ax.imshow(t)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_title(f"{name}\nground truth" if i == 0 else name, fontsize=7)
            else:
                label = str(group[j - 1]["method"]) if i == 0 else ""
                d = dices[j - 1]
                ax.set_title(f"{label}\nDice {d:.2f}" if label else f"Dice {d:.2f}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path, dpi=60)  # photographs, kept small: BUSI 4 cases x 8 columns 309 kB at 72 dpi, 245 kB at 60
    plt.close(fig)
    return True

"""The results report: tables (Markdown) and figures (PNG) from a suite's ``results.json``.

A suite (:mod:`usseg_monai.suite`, ``usseg benchmark --suite``) writes one ``results.json`` holding its settings
and one entry per run (the benchmark runner's results of one method on one dataset, tagged with its
protocol and method name). :func:`write_report` turns it into

- ``results.md``: what was run (data, split, budget, device, versions, wall time), then per dataset and protocol a
  table of the segmentation metrics (mean and bootstrap 95% CI of Dice; means of IoU, HD95, recall, precision,
  specificity, accuracy; classification accuracy where a method predicts classes; parameters; seconds per
  training iteration), and the measurement table (mean absolute error of the long and short axis, of the aspect
  ratio, and taller-than-wide agreement of each method's predicted masks against the ground truth's);
- figures under ``figures/``: Dice per method with its CI (``dice_<dataset>_<protocol>.png``), per-case Dice
  distributions (``cases_...``), training curves (``curves_...``: loss per epoch) and a gallery of overlays on the
  same test cases (``gallery_...``: image with the ground-truth contour and calipers, then each method's predicted
  contour and calipers).

Numbers are carried over from ``results.json`` unchanged (only formatted). Requires matplotlib
(``pip install usseg-monai[plot]``) for the figures.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.data.io import DatasetError, atomic_path, atomic_write_text, load_png, load_volume

__all__ = ["load_suite_results", "markdown_report", "write_report", "METRIC_COLUMNS", "MEASUREMENT_COLUMNS"]

#: (results key, column title, decimals) of the segmentation table
METRIC_COLUMNS = (
    ("dice", "Dice [95% CI]", 3),
    ("iou", "IoU", 3),
    ("hd95_mm", "HD95", 1),
    ("recall", "recall", 3),
    ("precision", "precision", 3),
    ("specificity", "specificity", 3),
    ("accuracy", "accuracy", 3),
)
#: (results key under ``measurement_error``, column title, decimals) of the measurement table
MEASUREMENT_COLUMNS = (
    ("long_axis_mae_mm", "long-axis MAE", 2),
    ("short_axis_mae_mm", "short-axis MAE", 2),
    ("aspect_ratio_mae", "aspect-ratio MAE", 3),
    ("taller_than_wide_agreement", "taller-than-wide agreement", 3),
)
REQUIRED_RUN_KEYS = ("dataset", "protocol", "method", "metrics")
CONTOUR_GT = (0, 200, 0)
CONTOUR_PRED = (255, 60, 60)


def load_suite_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a suite ``results.json``: a ``suite`` dict and a non-empty ``runs`` list.

    Raises:
        DatasetError: missing or unreadable file, or a run without ``dataset``, ``protocol``, ``method`` or
            ``metrics`` (named by index).
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"suite results not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{p}: not valid JSON ({e})") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not runs:
        raise DatasetError(f"{p}: no 'runs' list (a suite results.json from `usseg benchmark --suite`)")
    for i, r in enumerate(runs):
        missing = [k for k in REQUIRED_RUN_KEYS if k not in r]
        if missing:
            raise DatasetError(f"{p}: runs[{i}] has no {', '.join(repr(k) for k in missing)}")
    data.setdefault("suite", {})
    return data


def _fmt(value: Any, decimals: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value):.{decimals}f}"


def _groups(runs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, list[Mapping[str, Any]]]]:
    """Runs grouped by (dataset, protocol) in first-appearance order."""
    order: list[tuple[str, str]] = []
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in runs:
        key = (str(r["dataset"]), str(r["protocol"]))
        if key not in groups:
            order.append(key)
            groups[key] = []
        groups[key].append(r)
    return [(d, p, groups[(d, p)]) for d, p in order]


def _slug(*parts: str) -> str:
    return "_".join("".join(c if c.isalnum() or c in "-." else "-" for c in str(p)) for p in parts)


def _metric_row(run: Mapping[str, Any]) -> list[str]:
    m = run.get("metrics", {})
    cells = [str(run["method"])]
    for key, _, dec in METRIC_COLUMNS:
        s = m.get(key) or {}
        if key == "dice":
            cells.append(f"{_fmt(s.get('mean'), dec)} [{_fmt(s.get('ci_low'), dec)}, {_fmt(s.get('ci_high'), dec)}]")
        else:
            cells.append(_fmt(s.get("mean"), dec))
    cls = run.get("classification") or {}
    cells.append(_fmt(cls.get("accuracy"), 3) if cls else "-")
    cells.append(f"{int(run['params']):,}" if run.get("params") is not None else "n/a")
    t = run.get("timing") or {}
    cells.append(_fmt(t.get("seconds_per_iteration"), 3))
    return cells


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(results: Mapping[str, Any], figures: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> str:
    """The Markdown text of the report (``figures``: per (dataset, protocol) figure kind -> relative path)."""
    suite = results.get("suite", {})
    runs = results["runs"]
    out = ["# Results", ""]
    out.append(
        "Generated by `usseg benchmark --suite` from `results.json`; every number below is copied from that file. "
        "Dice: mean over test cases with a bootstrap 95% confidence interval; distances (HD95, axis errors) in mm "
        "where the test datalist gives a spacing, else in pixels; s/it: seconds per training iteration on the "
        "device named."
    )
    out.append("")
    facts = [
        ("budget", suite.get("budget")),
        ("budget settings", json.dumps(suite.get("budget_settings")) if suite.get("budget_settings") else None),
        ("device", suite.get("device") or (runs[0].get("device") if runs else None)),
        ("versions", ", ".join(f"{k} {v}" for k, v in (suite.get("versions") or runs[0].get("versions") or {}).items())),
        ("seed", suite.get("seed")),
        ("wall time", f"{suite['wall_s'] / 60.0:.1f} min" if suite.get("wall_s") is not None else None),
        ("command", f"`{suite['command']}`" if suite.get("command") else None),
    ]
    out += [f"- {k}: {v}" for k, v in facts if v not in (None, "")]
    datasets = results.get("datasets") or {}
    for name, d in datasets.items():
        train, test = d.get("train", {}), d.get("test", {})
        out.append(
            f"- data {name}: train `{train.get('path')}` [{train.get('section')}] ({train.get('n')} images), "
            f"test `{test.get('path')}` [{test.get('section')}] ({test.get('n')} images)"
            + (f"; split {json.dumps(d['split'])}" if d.get("split") else "")
        )
    out.append("")
    header = ["method"] + [c[1] for c in METRIC_COLUMNS] + ["cls acc", "params", "s/it"]
    for dataset, protocol, group in _groups(runs):
        out += [f"## {dataset}: {protocol}", ""]
        notes = {str(r.get("note")) for r in group if r.get("note")}
        out += [f"{n}" for n in sorted(notes)] + ([""] if notes else [])
        out.append(_table(header, [_metric_row(r) for r in group]))
        out.append("")
        mrows = []
        for r in group:
            me = r.get("measurement_error") or {}
            if not me:
                continue
            cells = [str(r["method"])]
            for key, _, dec in MEASUREMENT_COLUMNS:
                cells.append(_fmt((me.get(key) or {}).get("mean"), dec))
            cells.append(str(me.get("n_measured", "n/a")))
            mrows.append(cells)
        if mrows:
            out.append("Measurement (predicted masks vs ground-truth masks):")
            out.append("")
            out.append(_table(["method"] + [c[1] for c in MEASUREMENT_COLUMNS] + ["cases measured"], mrows))
            out.append("")
        figs = (figures or {}).get((dataset, protocol), {})
        for kind, rel in figs.items():
            out.append(f"![{kind} {dataset} {protocol}]({rel})")
        if "gallery" in figs:
            out.append("")
            out.append(
                "Gallery: first column the ground truth (green contour), then each method's prediction (red contour); "
                "the lines are the calipers measured on each mask (long and short axis of the largest lesion); cases "
                "picked at evenly spaced quantiles of the first method's Dice."
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------- figures


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise RuntimeError("the report's figures need matplotlib: pip install 'usseg-monai[plot]'") from e
    return plt


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")


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
    from usseg_monai.transforms.outputs import image_stem

    run_dir = run.get("run_dir")
    if not run_dir:
        return None
    stem = image_stem(image)
    for p in sorted(Path(run_dir, "predictions").glob(f"{stem}_seg.*")):
        return p
    return None


def _tile(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float] | None, color: Sequence[int]) -> np.ndarray:
    from usseg_monai.calipers.measure import measure_mask
    from usseg_monai.transforms.outputs import largest_lesion_slice, overlay_image

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
    _save(fig, path)
    plt.close(fig)
    return True


def write_report(
    results: Mapping[str, Any] | str | os.PathLike,
    output_md: str | os.PathLike,
    figures_dir: str | os.PathLike | None = None,
    n_gallery_cases: int = 4,
) -> dict[str, Any]:
    """Write ``output_md`` and the figures (default ``<output_md's folder>/figures``); return what was written.

    Args:
        results: a suite results dict or the path of its ``results.json``.
        output_md: the Markdown file (e.g. ``docs/results.md``), written atomically.
        figures_dir: folder of the PNG figures (linked from the Markdown by relative paths).
        n_gallery_cases: test cases per gallery.

    Returns:
        ``{"markdown": path, "figures": [paths]}``.
    """
    if not isinstance(results, Mapping):
        results = load_suite_results(results)
    out_md = Path(output_md)
    fig_dir = Path(figures_dir) if figures_dir is not None else out_md.parent / "figures"
    written: list[str] = []
    figures: dict[tuple[str, str], dict[str, str]] = {}
    for dataset, protocol, group in _groups(results["runs"]):
        slug = _slug(dataset, protocol)
        title = f"{dataset}: {protocol}"
        entry: dict[str, str] = {}
        for kind, fn in (("dice", figure_dice), ("cases", figure_cases), ("curves", figure_curves), ("gallery", figure_gallery)):
            path = fig_dir / f"{kind}_{slug}.png"
            ok = fn(group, path, title)
            if ok is False:
                continue
            entry[kind] = os.path.relpath(path, out_md.parent)
            written.append(str(path))
        figures[(dataset, protocol)] = entry
    text = markdown_report(results, figures)
    atomic_write_text(out_md, text)
    return {"markdown": str(out_md), "figures": written}

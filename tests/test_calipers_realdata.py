"""Caliper geometry on real lesion masks (BUSI, DDTI) and the 3D chain on real NRRD volumes.

Figures are printed (run with ``-s``); the full-dataset figures come from ``benchmarks/caliper_ceilings.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_shared
from monai.transforms import Compose, LoadImaged
from PIL import Image

from usseg_monai.calipers import caliper_ceiling, measure_mask
from usseg_monai.transforms import ApplySpacingd, CaliperPseudoLabelsd, CalipersFromMaskd, MeasureLesiond

pytestmark = pytest.mark.realdata
SUBSET = 120  # images per dataset (seeded); the whole sets take ~20 s, see benchmarks/caliper_ceilings.py


def _busi_masks(base: Path) -> list[tuple[str, np.ndarray]]:
    images = sorted(p for p in base.rglob("*.png") if "_mask" not in p.name)
    out = []
    for img in random.Random(0).sample(images, min(SUBSET, len(images))):
        masks = sorted(img.parent.glob(img.stem + "_mask*.png"))
        m = np.zeros(Image.open(img).size, bool)  # (x, y): PIL size is (width, height)
        for mp in masks:
            m |= np.asarray(Image.open(mp).convert("L")).T > 0
        out.append((img.stem, m))
    return out


def _ddti_masks(base: Path) -> list[tuple[str, np.ndarray]]:
    from usseg_monai.data.ddti import parse_ddti_xml, rasterize_polygons

    items = []
    for xml in sorted(base.glob("*.xml")):
        case = parse_ddti_xml(xml)
        for img_no, polys in case["marks"].items():
            jpg = base / f"{xml.stem}_{img_no}.jpg"
            if jpg.is_file():
                items.append((jpg, polys))
    out = []
    for jpg, polys in random.Random(0).sample(items, min(SUBSET, len(items))):
        out.append((jpg.stem, rasterize_polygons(polys, Image.open(jpg).size)))
    return out


def _ceiling_figures(name: str, masks: list[tuple[str, np.ndarray]]) -> dict[str, float]:
    rows = [r for r in (caliper_ceiling(m) for _, m in masks) if r is not None]
    assert rows, f"{name}: no lesion masks found"
    fig = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if k not in ("lesions", "fallback")}
    fig["images"] = len(rows)
    fig["min_precision_conservative"] = min(r["precision_conservative"] for r in rows)
    print(f"\n{name} caliper ceiling ({len(rows)} lesion images of a seeded subset):")
    for k, v in fig.items():
        print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
    return fig


def test_busi_ceiling():
    base = require_shared("BUSI", "Dataset_BUSI_with_GT")
    fig = _ceiling_figures("BUSI", _busi_masks(base))
    assert fig["precision_conservative"] > 0.95  # the conservative label lies inside the lesion
    assert fig["dice_radical"] > 0.8
    assert fig["recall_radical"] > 0.9
    assert fig["dice_radical"] > fig["dice_conservative"]


def test_ddti_ceiling():
    base = require_shared("DDTI")
    fig = _ceiling_figures("DDTI", _ddti_masks(base))
    assert fig["precision_conservative"] > 0.95
    assert fig["dice_radical"] > 0.8
    assert fig["recall_radical"] > 0.9


# (image, label, lesion-like): the prostate phantom's labels (1, 7, 8, 9, binarised) are organ shells, not
# compact lesions, so only the invariants are checked there, not the conservative label's precision
VOLUMES = [("breast1_image.nrrd", "breast1_label.nrrd", True), ("brain1_image.nrrd", "brain1_label.nrrd", True),
           ("prostate_phantom_subvolume.nrrd", "prostate_phantom_subvolume-label.nrrd", False)]


@pytest.mark.parametrize("image, label, lesion_like", VOLUMES)
def test_3d_chain_on_real_volumes(image, label, lesion_like):
    base = require_shared("volumes")
    keys = ["image", "label"]
    chain = Compose([
        LoadImaged(keys, reader="ITKReader", ensure_channel_first=True),
        CalipersFromMaskd("label", allow_empty=False),
        CaliperPseudoLabelsd("calipers", ref_key="image"),
        MeasureLesiond("label"),
    ])
    d = chain({"image": str(base / image), "label": str(base / label)})
    spacing = np.asarray(d["image"].pixdim, dtype=float)
    assert len(spacing) == 3 and not np.allclose(spacing, spacing[0])  # anisotropic
    ann = d["calipers"]
    np.testing.assert_allclose(ann.spacing, spacing)
    assert ann.image_shape == tuple(d["image"].shape[1:])
    ann.validate(angle_tolerance=1e-6)
    cons, rad, axes = d["conservative_label"], d["radical_label"], d["caliper_axes"]
    assert cons.shape == rad.shape == d["image"].shape
    assert torch.all(cons <= rad) and torch.all(axes <= cons)
    lab = d["label"] > 0
    recall = float((rad.bool() & lab).sum() / lab.sum())
    precision = float((cons.bool() & lab).sum() / cons.sum())
    meas = d["label_measurements"]
    assert len(meas) == len(ann.lesions)
    for les, m in zip(ann.lesions, meas):
        np.testing.assert_allclose(les.lengths_mm(spacing), [m["long_axis_mm"], m["short_axis_mm"], m["third_axis_mm"]])
        assert m["long_axis_mm"] + 1e-9 >= m["short_axis_mm"] >= m["third_axis_mm"] - 1e-9 > 0
        lo, hi = np.min(les.endpoints, 0), np.max(les.endpoints, 0)
        assert m["long_axis_mm"] <= np.linalg.norm((hi - lo + 1) * spacing) + 1e-6
    # the extents in mm follow the spacing: doubling it doubles every length
    doubled = ApplySpacingd("label")({"label": d["label"], "spacing": (2 * spacing).tolist()})
    m2 = MeasureLesiond("label")(doubled)["label_measurements"]
    for a, b in zip(meas, m2):
        for key in ("long_axis_mm", "short_axis_mm", "third_axis_mm", "width_mm", "depth_mm", "elevation_mm"):
            assert b[key] == pytest.approx(2 * a[key], rel=1e-6), key
    big = meas[0]
    print(f"\n{label}: spacing {np.round(spacing, 3).tolist()} mm, {len(meas)} lesion(s); largest: long "
          f"{big['long_axis_mm']:.1f} short {big['short_axis_mm']:.1f} third {big['third_axis_mm']:.1f} mm, "
          f"radical recall {recall:.3f}, conservative precision {precision:.3f}")
    if lesion_like:
        assert precision > 0.8
    assert measure_mask(lab[0].numpy(), spacing)[0]["voxels"] == big["voxels"]

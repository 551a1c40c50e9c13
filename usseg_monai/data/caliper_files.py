"""Caliper files for an existing dataset: ``usseg calipers DATASET_DIR --output OUT_DIR``.

For a prepared dataset (or any datalist whose items have masks), write a NEW folder::

    OUT_DIR/datalist.json        the source's items, image/label paths pointing at the source files,
                                 plus "calipers": "calipers/<id>.json" for every item with a mask
    OUT_DIR/calipers/<id>.json   the calipers a clinician would draw on the mask (usseg-calipers JSON)
    OUT_DIR/summary.json         counts (files, lesions, empty annotations, ignored speckle components)

The source folder is never written to. Masks are binarised with ``> 0``; the spacing (mm) is the item's
``spacing`` if it has one, else (3D) the mask header's, else none (pixel units, as the bundles then see it).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.calipers import save_calipers
from usseg_monai.data.io import (
    DATALIST_SECTIONS,
    ROOTS_KEY,
    DatasetError,
    atomic_write_json,
    derived_roots,
    ensure_not_inside,
    load_datalist,
    load_png,
    load_volume,
    prepare_output_dir,
    write_datalist,
)
from usseg_monai.data.caliper_derivation import DEFAULT_CALIPER_MIN_VOXELS, CaliperDerivation
from usseg_monai.data.prepared import safe_item_id
from usseg_monai.data.summary import build_summary

__all__ = ["derive_dataset_calipers", "load_mask"]

logger = logging.getLogger(__name__)

_PATH_KEYS = ("image", "label", "calipers")


def load_mask(path: str | os.PathLike) -> tuple[np.ndarray, list[float] | None]:
    """A mask file as a boolean ``(x, y[, z])`` array and its header spacing (mm; ``None`` for PNG)."""
    p = Path(path)
    if p.suffix.lower() == ".png":
        return load_png(p) > 0, None
    arr, geom = load_volume(p)
    return arr > 0, [float(s) for s in geom["spacing"][: arr.ndim]]


def _item_id(item: dict[str, Any], used: set[str]) -> str:
    """File-name-safe id from the image name (``images/benign_1.png`` -> ``benign_1``), unique in ``used``."""
    name = Path(str(item["image"])).name
    for ext in (".nii.gz", ".nii", ".png", ".nrrd", ".mha", ".jpg", ".jpeg"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    base = safe_item_id(name)
    out, k = base, 1
    while out in used:
        k += 1
        out = f"{base}_{k}"
    used.add(out)
    return out


def _repath(path: str, src_dir: Path, dst_dir: Path, absolute: bool) -> str:
    """A source datalist path re-expressed for a datalist in ``dst_dir`` (absolute, or relative to it)."""
    full = (src_dir / path).resolve()
    if absolute:
        return full.as_posix()
    return Path(os.path.relpath(full, dst_dir.resolve())).as_posix()


def derive_dataset_calipers(
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    datalist: str | os.PathLike | None = None,
    jitter_mm: float = 0.0,
    seed: int = 0,
    min_voxels: int = DEFAULT_CALIPER_MIN_VOXELS,
    sections: tuple[str, ...] | list[str] | None = None,
    absolute_paths: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Derive caliper files from the masks of a dataset into a new dataset folder (see the module docstring).

    Args:
        dataset_dir: the dataset folder (read only).
        output_dir: the new folder (created; must be empty unless ``overwrite``; not inside ``dataset_dir``).
        datalist: the datalist to read (default ``dataset_dir/datalist.json``); its paths are relative to it.
        jitter_mm, seed, min_voxels: see :class:`usseg_monai.data.caliper_derivation.CaliperDerivation`.
        sections: datalist sections whose items get calipers (default all); the other sections are copied
            with their paths rewritten.
        absolute_paths: write absolute image/label paths instead of paths relative to ``output_dir``.
        overwrite: write into a non-empty ``output_dir`` (files are replaced atomically).

    Returns:
        The summary written to ``output_dir/summary.json`` (counts per split and a ``calipers`` entry).

    Raises:
        DatasetError: unreadable datalist or mask (naming the file), a missing file, an output inside the
            source, or a non-empty output without ``overwrite``.
        ValueError: an unknown section or bad ``jitter_mm`` / ``min_voxels``.
    """
    start = time.monotonic()
    src_dir = Path(dataset_dir)
    if not src_dir.is_dir():
        raise DatasetError(f"dataset folder not found: {src_dir}")
    dl_path = Path(datalist) if datalist is not None else src_dir / "datalist.json"
    chosen = tuple(DATALIST_SECTIONS if sections is None else sections)
    unknown = [s for s in chosen if s not in DATALIST_SECTIONS]
    if unknown:
        raise ValueError(f"unknown datalist section(s) {unknown}; choose from {list(DATALIST_SECTIONS)}")
    derivation = CaliperDerivation(True, float(jitter_mm), int(seed), int(min_voxels))
    data = load_datalist(dl_path, check_files=True)
    out_dir = prepare_output_dir(output_dir, src_dir, overwrite=overwrite)
    if dl_path.parent.resolve() != src_dir.resolve():
        ensure_not_inside(out_dir, dl_path.parent)
    base = dl_path.parent
    counts: Counter = Counter()
    used: set[str] = set()
    new: dict[str, Any] = {k: v for k, v in data.items() if k not in DATALIST_SECTIONS and k != ROOTS_KEY}
    roots = derived_roots(data, dl_path, out_dir, absolute=absolute_paths)
    if roots:
        new[ROOTS_KEY] = roots
    for section in DATALIST_SECTIONS:
        if section not in data:
            continue
        items = []
        for i, item in enumerate(data[section]):
            it = dict(item)
            for key in _PATH_KEYS:
                if key in it:
                    it[key] = _repath(it[key], base, out_dir, absolute_paths)
            if section in chosen and "label" in item:
                mask_path = base / item["label"]
                where = f"{dl_path}: {section}[{i}] label {mask_path}"
                mask, header_spacing = load_mask(mask_path)
                spacing = item.get("spacing", header_spacing)
                item_id = _item_id(item, used)
                ann, n_small = derivation.derive(mask, spacing, item_id, where)
                rel = f"calipers/{item_id}.json"
                save_calipers(out_dir / rel, ann)
                counts.update(files=1, lesions=len(ann), empty=int(len(ann) == 0), small=n_small,
                              replaced=int("calipers" in item))
                it["calipers"] = rel
            items.append(it)
        new[section] = items
    new["derived_from"] = dl_path.resolve().as_posix() if absolute_paths else Path(
        os.path.relpath(dl_path.resolve(), out_dir.resolve())
    ).as_posix()
    write_datalist(out_dir, new)
    summary = build_summary(new, source=dl_path, output_dir=out_dir)
    summary["calipers"] = {
        "files": counts["files"],
        "lesions": counts["lesions"],
        "empty_annotations": counts["empty"],
        "small_components_ignored": counts["small"],
        "replaced": counts["replaced"],
        "sections": list(chosen),
        **{k: v for k, v in asdict(derivation).items() if k != "enabled"},
    }
    summary["seconds"] = round(time.monotonic() - start, 3)
    atomic_write_json(out_dir / "summary.json", summary)
    logger.info(
        "%s: %d caliper files (%d lesions, %d without lesion) written to %s in %.1f s",
        dl_path, counts["files"], counts["lesions"], counts["empty"], out_dir, summary["seconds"],
    )
    return summary

"""Writer of prepared datasets: images, masks, ``datalist.json`` and ``summary.json``.

Every converter (BUSI, DDTI, DICOM, volumes) and the phantom generator builds its output through
:class:`PreparedDatasetWriter`, so all prepared datasets share one layout (``docs/conventions.md``):

```
<out>/datalist.json  summary.json  images/<id>.png|.nii.gz  labels/<id>.png|.nii.gz  [calipers/<id>.json]
```

2D images are 8-bit grayscale PNG and masks PNG 0/255; 3D images and masks are NIfTI (``.nii.gz``)
keeping spacing (mm), origin and direction, masks uint8 0/1. Arrays are given in MONAI index order
``(x, y[, z])``. With caliper derivation on (``calipers=True`` or inside :func:`caliper_defaults`), every
item with a mask also gets ``calipers/<id>.json`` (:func:`usseg_monai.calipers.save_calipers`), the calipers a
clinician would draw on that mask (an empty mask gives an annotation without lesions), and the datalist key
``"calipers"``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.calipers import save_calipers
from usseg_monai.data.caliper_derivation import current_caliper_derivation
from usseg_monai.data.io import DatasetError, StagedOutput, atomic_write_json, save_png, save_volume, write_datalist
from usseg_monai.data.splits import SplitOptions, apply_split
from usseg_monai.data.summary import build_summary

__all__ = ["PreparedDatasetWriter", "safe_item_id"]

logger = logging.getLogger(__name__)


_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def safe_item_id(text: str) -> str:
    """A file-name-safe item id: runs of characters other than ``A-Za-z0-9._+-`` become ``_``."""
    out = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("_.")
    if not out:
        raise DatasetError(f"cannot build an item id from {text!r}")
    return out


def _float_list(values: Any) -> list[float]:
    return [round(float(v), 10) for v in np.asarray(values, dtype=np.float64).ravel()]


class PreparedDatasetWriter:
    """Write a prepared dataset item by item, then split it and write its datalist and summary.

    Example::

        with PreparedDatasetWriter("out/busi", source="Dataset_BUSI_with_GT", name="BUSI") as writer:
            writer.add("benign_1", image_xy, mask_xy, class_name="benign", case_id="benign_1")
            summary = writer.finalize(classes=["benign", "malignant", "normal"], split=SplitOptions(seed=0))

    Files are written into a hidden staging folder beside ``output_dir`` (:attr:`staging_dir`,
    :class:`usseg_monai.data.io.StagedOutput`) and moved into place by :meth:`finalize`: a conversion that fails
    leaves nothing at ``output_dir`` (the context manager, or garbage collection, removes the staging folder).

    Args:
        output_dir: output folder; must be empty (or absent) unless ``overwrite``; never inside ``source``.
        source: the source folder or file(s) (recorded in the summary; the output may not lie inside it).
        overwrite: allow a non-empty output folder (files are replaced atomically, nothing is deleted).
        spatial_dims: 2 (PNG) or 3 (NIfTI).
        name: dataset name written into the datalist.
        description: one-line description written into the datalist.
        classes: class names in class-index order, if known in advance (else given to :meth:`finalize`
            or taken as the sorted class names seen).
        modality: datalist ``modality`` field.
        calipers: derive ``calipers/<id>.json`` from every mask (see :class:`CaliperDerivation`); ``None``: the
            enclosing :func:`caliper_defaults` (off outside one).
        caliper_jitter_mm, caliper_seed, caliper_min_voxels: see :class:`CaliperDerivation`; ``None``: the
            enclosing :func:`caliper_defaults` (0 mm, seed 0, :data:`DEFAULT_CALIPER_MIN_VOXELS`).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        *,
        source: str | os.PathLike | None = None,
        overwrite: bool = False,
        spatial_dims: int = 2,
        name: str = "",
        description: str = "",
        classes: list[str] | None = None,
        modality: str = "US",
        calipers: bool | None = None,
        caliper_jitter_mm: float | None = None,
        caliper_seed: int | None = None,
        caliper_min_voxels: int | None = None,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        src = Path(source) if source is not None else None
        guard = src if src is None or src.is_dir() else src.parent
        self._staged = StagedOutput(output_dir, guard, overwrite=overwrite)
        self.output_dir = Path(output_dir)
        #: where the files are written until :meth:`finalize` moves them to ``output_dir``
        self.staging_dir = self._staged.path
        self.source = src
        self.spatial_dims = spatial_dims
        self.name = name
        self.description = description
        self.classes = list(classes) if classes is not None else None
        self.modality = modality
        self.items: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []
        self.empty_masks: list[str] = []
        self._ids: set[str] = set()
        self._start = time.monotonic()
        self._ext = ".png" if spatial_dims == 2 else ".nii.gz"
        given = {
            "enabled": calipers,
            "jitter_mm": caliper_jitter_mm,
            "seed": caliper_seed,
            "min_voxels": caliper_min_voxels,
        }
        self.caliper_derivation = replace(current_caliper_derivation(), **{k: v for k, v in given.items() if v is not None})
        self.caliper_counts = Counter()

    def __len__(self) -> int:
        return len(self.items)

    def __enter__(self) -> PreparedDatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.abort()

    def abort(self) -> None:
        """Discard everything written so far (nothing reaches ``output_dir``); a no-op after :meth:`finalize`."""
        self._staged.abort()

    def add(
        self,
        item_id: str,
        image: np.ndarray,
        label: np.ndarray | None = None,
        *,
        class_name: str | None = None,
        case_id: str | None = None,
        spacing: Any = None,
        geometry: dict[str, Any] | None = None,
        source_files: list[str | os.PathLike] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Write one image (and mask) and record its datalist item.

        Args:
            item_id: file-name-safe id, unique in the dataset (``images/<item_id>.png``).
            image: ``(x, y[, z])`` array; 2D values must lie in ``[0, 255]`` (stored as uint8 PNG).
            label: mask of the same shape, binarised with ``> 0`` (PNG 0/255 in 2D, NIfTI 0/1 in 3D);
                ``None`` for an image without a mask.
            class_name: class of the image (e.g. ``"benign"``, a TI-RADS grade).
            case_id: patient/case id; items of one case never straddle splits. Default: ``item_id``.
            spacing: mm per pixel in ``(x, y[, z])`` order, if known. 3D needs it (or ``geometry``).
            geometry: ``{"spacing", "origin", "direction"}`` as returned by ``io.load_volume``.
            source_files: the files this item came from, named in error messages.
            **extra: further JSON-serialisable fields stored in the item (e.g. ``tirads``, ``group``,
                ``frame``). ``group`` overrides ``case_id`` for splitting (e.g. identical images).

        Returns:
            The datalist item (paths relative to the output folder); ``class_index`` is filled in when
            the class list is known (here or in :meth:`finalize`).

        Raises:
            DatasetError: bad id, duplicate id, wrong dimensionality, or image/mask shape mismatch
                (naming the item and its source files).
        """
        where = f"item {item_id!r}" + (f" ({', '.join(str(f) for f in source_files)})" if source_files else "")
        if not isinstance(item_id, str) or not _ID_RE.match(item_id):
            raise DatasetError(f"{where}: item id must match {_ID_RE.pattern} (use safe_item_id)")
        if item_id in self._ids:
            raise DatasetError(f"{where}: duplicate item id")
        img = np.asarray(image)
        if img.ndim != self.spatial_dims:
            axes = "(x, y, z)" if self.spatial_dims == 3 else "(x, y)"
            raise DatasetError(f"{where}: expected a {self.spatial_dims}D {axes} image, got shape {img.shape}")
        lab = None
        if label is not None:
            lab = np.asarray(label)
            if lab.shape != img.shape:
                raise DatasetError(f"{where}: mask shape {lab.shape} differs from image shape {img.shape} (x, y order)")
            lab = (lab > 0).astype(np.uint8)
        if geometry is not None and spacing is None:
            spacing = geometry.get("spacing")
        if spacing is not None:
            spacing = _float_list(spacing)
            if len(spacing) != self.spatial_dims or not all(np.isfinite(spacing)) or min(spacing) <= 0:
                raise DatasetError(f"{where}: spacing {spacing} is not {self.spatial_dims} positive numbers (mm)")

        image_rel = f"images/{item_id}{self._ext}"
        label_rel = f"labels/{item_id}{self._ext}"
        if self.spatial_dims == 2:
            if img.dtype != np.uint8 and img.size and (np.nanmin(img) < 0 or np.nanmax(img) > 255):
                lo, hi = np.nanmin(img), np.nanmax(img)
                raise DatasetError(f"{where}: 2D image values must lie in [0, 255], got [{lo}, {hi}]")
            save_png(self.staging_dir / image_rel, img)
            if lab is not None:
                save_png(self.staging_dir / label_rel, lab * np.uint8(255))
        else:
            if spacing is None:
                raise DatasetError(f"{where}: a 3D item needs its spacing (mm)")
            origin = geometry.get("origin") if geometry else None
            direction = geometry.get("direction") if geometry else None
            save_volume(self.staging_dir / image_rel, img, spacing, origin, direction)
            if lab is not None:
                save_volume(self.staging_dir / label_rel, lab, spacing, origin, direction)

        item: dict[str, Any] = {"image": image_rel}
        if lab is not None:
            item["label"] = label_rel
            if not lab.any():
                self.empty_masks.append(item_id)
            if self.caliper_derivation.enabled:
                item["calipers"] = self._write_calipers(item_id, lab, spacing, f"{where} mask")
        if class_name is not None:
            item["class"] = str(class_name)
            if self.classes is not None:
                if item["class"] not in self.classes:
                    raise DatasetError(f"{where}: class {item['class']!r} is not one of {self.classes}")
                item["class_index"] = self.classes.index(item["class"])
        item["case_id"] = str(case_id) if case_id is not None else item_id
        if spacing is not None:
            item["spacing"] = spacing
        for key, value in extra.items():
            if key in item:
                raise DatasetError(f"{where}: extra field {key!r} clashes with a datalist key")
            item[key] = value
        self.items.append(item)
        self._ids.add(item_id)
        if len(self.items) % 100 == 0:
            logger.info("%s: %d items written", self.name or self.output_dir.name, len(self.items))
        return item

    def _write_calipers(self, item_id: str, mask: np.ndarray, spacing: list[float] | None, where: str) -> str:
        """Derive and write ``calipers/<item_id>.json`` for ``mask``; return its datalist path."""
        ann, n_small = self.caliper_derivation.derive(mask, spacing, item_id, where)
        rel = f"calipers/{item_id}.json"
        save_calipers(self.staging_dir / rel, ann)
        self.caliper_counts.update(files=1, lesions=len(ann), empty=int(len(ann) == 0), small_components=n_small)
        return rel

    def caliper_summary(self) -> dict[str, Any] | None:
        """The ``calipers`` entry of ``summary.json`` (``None`` when calipers are not derived)."""
        if not self.caliper_derivation.enabled:
            return None
        c = self.caliper_counts
        return {
            "files": c["files"],
            "lesions": c["lesions"],
            "empty_annotations": c["empty"],
            "small_components_ignored": c["small_components"],
            **{k: v for k, v in asdict(self.caliper_derivation).items() if k != "enabled"},
        }

    def skip(self, what: str, reason: str) -> None:
        """Record something left out (``what``: file or item; ``reason``: why) and log a warning."""
        self.skipped.append({"what": str(what), "reason": str(reason)})
        logger.warning("skipped %s: %s", what, reason)

    def finalize(
        self,
        *,
        classes: list[str] | None = None,
        split: SplitOptions | None = None,
        summary_extra: dict[str, Any] | None = None,
        **split_kwargs: Any,
    ) -> dict[str, Any]:
        """Split the items, optionally partition the training set, write ``datalist.json`` and ``summary.json``.

        Args:
            classes: class names in class-index order (default: those given at construction, else the
                sorted names seen).
            split, **split_kwargs: split and partition settings, see
                :class:`usseg_monai.data.splits.SplitOptions` (keywords override ``split``); stratified by
                class, grouped by ``group`` or else ``case_id``.
            summary_extra: further fields for ``summary.json`` (e.g. duplicates found, polygons dropped).

        Returns:
            The summary (also written to ``summary.json``).

        Raises:
            DatasetError: no item was written, or an item's class is not in ``classes``.
            ValueError: bad split or partition parameters.
            TypeError: a keyword that is not a :class:`~usseg_monai.data.splits.SplitOptions` field.
        """
        opts = SplitOptions.resolve(split, **split_kwargs)
        if not self.items:
            detail = f"; {len(self.skipped)} skipped, first: {self.skipped[0]}" if self.skipped else ""
            raise DatasetError(f"no images were converted from {self.source or 'the source'}{detail}")
        seen = sorted({it["class"] for it in self.items if "class" in it})
        classes = list(classes) if classes is not None else (self.classes or seen)
        for it in self.items:
            if "class" in it:
                if it["class"] not in classes:
                    raise DatasetError(f"item {it['image']}: class {it['class']!r} is not one of {classes}")
                it["class_index"] = classes.index(it["class"])
        parts = apply_split(self.items, opts)
        datalist: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "modality": self.modality,
            "spatial_dims": self.spatial_dims,
            "labels": {"0": "background", "1": "lesion"},
            "classes": classes,
            "split": opts.record(),
        }
        datalist.update(parts)
        write_datalist(self.staging_dir, datalist)
        summary = build_summary(datalist, name=self.name, source=self.source, output_dir=self.output_dir)
        summary.update(
            empty_masks=len(self.empty_masks),
            empty_mask_items=sorted(self.empty_masks),
            skipped=len(self.skipped),
            skipped_items=list(self.skipped),
            seconds=round(time.monotonic() - self._start, 3),
        )
        if self.caliper_derivation.enabled:
            summary["calipers"] = self.caliper_summary()
        if summary_extra:
            summary.update(summary_extra)
        atomic_write_json(self.staging_dir / "summary.json", summary)
        self._staged.commit()
        logger.info(
            "%s: %d items (%s), %d empty masks, %d skipped, written to %s in %.1f s",
            self.name or "dataset",
            summary["n_items"],
            ", ".join(f"{k} {v}" for k, v in summary["per_split"].items()),
            len(self.empty_masks),
            len(self.skipped),
            self.output_dir,
            summary["seconds"],
        )
        return summary

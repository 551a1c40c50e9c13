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

import contextlib
import contextvars
import logging
import os
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai import __version__
from usseg_monai.calipers import calipers_from_mask, label_lesions, save_calipers
from usseg_monai.data.io import (
    DATALIST_SECTIONS,
    ROOTS_KEY,
    DatasetError,
    StagedOutput,
    atomic_write_json,
    derived_roots,
    load_datalist,
    save_png,
    save_volume,
    write_datalist,
)
from usseg_monai.data.splits import SplitOptions

__all__ = [
    "DEFAULT_CALIPER_MIN_VOXELS",
    "CaliperDerivation",
    "caliper_defaults",
    "PreparedDatasetWriter",
    "safe_item_id",
    "apply_split",
    "split_datalist",
    "build_summary",
]

logger = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def safe_item_id(text: str) -> str:
    """A file-name-safe item id: runs of characters other than ``A-Za-z0-9._+-`` become ``_``."""
    out = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("_.")
    if not out:
        raise DatasetError(f"cannot build an item id from {text!r}")
    return out


#: Connected mask components smaller than this many voxels get no calipers (speckle, not a lesion). Real masks
#: hold a few such blobs: BUSI's mask files have 5 components of 1-5 pixels, the smallest real lesion has 175
#: pixels; the reference bundles ignore predicted lesions under 20 voxels (``min_lesion_voxels``), so 20 is
#: the default here too.
DEFAULT_CALIPER_MIN_VOXELS = 20


@dataclass(frozen=True)
class CaliperDerivation:
    """How calipers are derived from masks when a dataset is written.

    Attributes:
        enabled: derive calipers for every item with a mask.
        jitter_mm: standard deviation (mm, per axis) of simulated reader variability,
            :func:`usseg_monai.calipers.jitter_calipers`; 0 places the calipers exactly.
        seed: seed of the jitter; item ``i`` uses the stream ``(seed, crc32(item id))``, so an item's calipers
            do not depend on the order or number of items.
        min_voxels: components smaller than this are speckle and get no calipers.
    """

    enabled: bool = False
    jitter_mm: float = 0.0
    seed: int = 0
    min_voxels: int = DEFAULT_CALIPER_MIN_VOXELS

    def __post_init__(self) -> None:
        if not (float(self.jitter_mm) >= 0.0):
            raise ValueError(f"caliper jitter_mm must be >= 0 (mm), got {self.jitter_mm}")
        if int(self.min_voxels) < 1:
            raise ValueError(f"caliper min_voxels must be >= 1, got {self.min_voxels}")

    def item_seed(self, item_id: str) -> np.random.Generator:
        """The jitter generator of one item (independent of the other items)."""
        return np.random.default_rng(np.random.SeedSequence([int(self.seed), zlib.crc32(item_id.encode())]))

    def derive(self, mask: np.ndarray, spacing: Any, item_id: str, where: str) -> tuple[Any, int]:
        """``(annotation, n_small)``: the calipers of ``mask`` and how many components were too small."""
        _, _, sizes = label_lesions(mask)
        ann = calipers_from_mask(
            mask,
            spacing,
            allow_empty=True,
            min_voxels=int(self.min_voxels),
            jitter_mm=float(self.jitter_mm),
            seed=self.item_seed(item_id),
            where=where,
        )
        ann.meta = {"derived_from": "mask", "min_voxels": int(self.min_voxels), "jitter_mm": float(self.jitter_mm)}
        if self.jitter_mm > 0:
            ann.meta["seed"] = int(self.seed)
        return ann, int((sizes < int(self.min_voxels)).sum())


_CALIPER_DEFAULTS: contextvars.ContextVar[CaliperDerivation] = contextvars.ContextVar(
    "usseg_caliper_defaults", default=CaliperDerivation()
)


@contextlib.contextmanager
def caliper_defaults(
    enabled: bool = True,
    jitter_mm: float = 0.0,
    seed: int = 0,
    min_voxels: int = DEFAULT_CALIPER_MIN_VOXELS,
) -> Iterator[CaliperDerivation]:
    """Make every :class:`PreparedDatasetWriter` created inside the block derive calipers (unless told otherwise).

    This is how ``usseg prepare <dataset> --calipers`` reaches the writer a converter builds internally::

        with caliper_defaults(jitter_mm=0.5):
            prepare_busi(src, out)   # out/calipers/<id>.json for every image with a mask
    """
    token = _CALIPER_DEFAULTS.set(CaliperDerivation(enabled, jitter_mm, seed, min_voxels))
    try:
        yield _CALIPER_DEFAULTS.get()
    finally:
        _CALIPER_DEFAULTS.reset(token)


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
        self.caliper_derivation = replace(_CALIPER_DEFAULTS.get(), **{k: v for k, v in given.items() if v is not None})
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


def build_summary(
    datalist: dict[str, Any], *, name: str = "", source: Any = None, output_dir: Any = None
) -> dict[str, Any]:
    """Counts of a datalist: per split, per class, per class and split, cases, supervision levels."""
    per_split = {s: len(datalist.get(s, [])) for s in DATALIST_SECTIONS}
    all_items = [it for s in DATALIST_SECTIONS for it in datalist.get(s, [])]
    per_class = dict(sorted(Counter(it.get("class", "") for it in all_items if "class" in it).items()))
    per_class_split = {
        s: dict(sorted(Counter(it["class"] for it in datalist.get(s, []) if "class" in it).items()))
        for s in DATALIST_SECTIONS
    }
    summary: dict[str, Any] = {
        "name": name or datalist.get("name", ""),
        "source": str(source) if source is not None else None,
        "output": str(output_dir) if output_dir is not None else None,
        "usseg_monai_version": __version__,
        "spatial_dims": datalist.get("spatial_dims"),
        "n_items": len(all_items),
        "n_cases": len({it.get("case_id", it["image"]) for it in all_items}),
        "n_with_mask": sum("label" in it for it in all_items),
        "n_with_calipers": sum("calipers" in it for it in all_items),
        "n_with_spacing": sum("spacing" in it for it in all_items),
        "per_split": per_split,
        "per_class": per_class,
        "per_class_split": per_class_split,
        "split": datalist.get("split", {}),
    }
    sup = Counter(it["supervision"] for it in datalist.get("training", []) if "supervision" in it)
    if sup:
        summary["training_supervision"] = {k: sup.get(k, 0) for k in ("mask", "class", "none")}
    return summary


def apply_split(
    items: list[dict[str, Any]], split: SplitOptions | None = None, **split_kwargs: Any
) -> dict[str, list[dict[str, Any]]]:
    """Split prepared items and optionally partition the training part (:meth:`SplitOptions.apply`).

    ``split``/``split_kwargs``: see :class:`usseg_monai.data.splits.SplitOptions`. Items are stratified
    by ``class`` (when any item has one) and grouped by ``group`` if present, else ``case_id``. Returns
    new item dicts per section (``training``/``validation``/``test``).
    """
    opts = SplitOptions.resolve(split, **split_kwargs)
    split_key = "_split_group"
    keyed = [dict(it, **{split_key: it.get("group", it.get("case_id", it["image"]))}) for it in items]
    parts = opts.apply(keyed, stratify_key=_stratify_key(items), group_key=split_key)
    for section in parts.values():
        for it in section:
            it.pop(split_key, None)
    return parts


def _stratify_key(items: list[dict[str, Any]]) -> str | None:
    return "class" if any("class" in it for it in items) else None


def _rebase(item: dict[str, Any], src_dir: Path, dst_dir: Path) -> dict[str, Any]:
    out = dict(item)
    for key in ("image", "label", "calipers"):
        if key in out and not os.path.isabs(out[key]):
            out[key] = Path(os.path.relpath((src_dir / out[key]).resolve(), dst_dir.resolve())).as_posix()
    return out


def split_datalist(
    datalist_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    split: SplitOptions | None = None,
    resplit: bool = False,
    overwrite: bool = False,
    **split_kwargs: Any,
) -> dict[str, Any]:
    """Write a new datalist from a prepared one: re-split it and/or partition its training set.

    Args:
        datalist_path: a prepared ``datalist.json`` (its files must exist).
        output_path: the new datalist file; paths are rewritten relative to its folder.
        split, **split_kwargs: the settings, see :class:`usseg_monai.data.splits.SplitOptions` (keywords
            override ``split``): the split ones are used with ``resplit``; ``labeled``/``class_only``
            partition the training set (e.g. ``labeled=0.04`` for 4% masks), with ``seed``.
        resplit: pool all sections and split again; otherwise the sections are kept as they are.
        overwrite: replace an existing ``output_path``.

    Returns:
        The counts of the new datalist (:func:`build_summary`).

    Raises:
        DatasetError: unreadable datalist, an existing output without ``overwrite``, or a datalist whose
            training set was already partitioned (its removed masks cannot be restored: start from the
            converter's ``datalist.json``).
        ValueError: nothing to do, or bad split/partition parameters.
        TypeError: a keyword that is not a :class:`~usseg_monai.data.splits.SplitOptions` field.
    """
    opts = SplitOptions.resolve(split, **split_kwargs)
    src = Path(datalist_path)
    dst = Path(output_path)
    if not resplit and not opts.partitions:
        raise ValueError("nothing to do: give --resplit and/or --labeled/--class-only")
    data = load_datalist(src, check_files=True)
    if dst.resolve() == src.resolve():
        raise DatasetError(f"output datalist {dst} is the input datalist; write the new datalist to another file")
    if dst.exists() and not overwrite:
        raise DatasetError(f"output datalist {dst} exists; pass overwrite=True (--overwrite) to replace it")
    partial = [it["image"] for it in data.get("training", []) if it.get("supervision", "mask") != "mask"]
    if partial:
        raise DatasetError(
            f"{src} is already partitioned ({len(partial)} training items without masks, e.g. {partial[0]}); "
            "split the converter's original datalist.json instead"
        )
    sections = {s: [dict(it) for it in data.get(s, [])] for s in DATALIST_SECTIONS}
    for its in sections.values():
        for it in its:
            it.pop("supervision", None)
    if resplit:
        pooled = [it for s in DATALIST_SECTIONS for it in sections[s]]
        sections = apply_split(pooled, opts)
        params = opts.record()
    else:
        sections["training"] = opts.partition(sections["training"], stratify_key=_stratify_key(sections["training"]))
        params = dict(data.get("split", {}))
        params.update(partition_seed=opts.seed, labeled=opts.labeled, class_only=opts.class_only)
    out = {k: v for k, v in data.items() if k not in DATALIST_SECTIONS and k != ROOTS_KEY}
    roots = derived_roots(data, src, dst.parent)
    if roots:
        out[ROOTS_KEY] = roots
    out["split"] = params
    out["derived_from"] = os.path.relpath(src.resolve(), dst.parent.resolve())
    for s in DATALIST_SECTIONS:
        out[s] = [_rebase(it, src.parent, dst.parent) for it in sections[s]]
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_datalist(dst.parent, out, name=dst.name)
    summary = build_summary(out, name=out.get("name", ""), source=src, output_dir=dst)
    logger.info(
        "%s: %s%s",
        dst,
        ", ".join(f"{k} {v}" for k, v in summary["per_split"].items()),
        f"; training supervision {summary['training_supervision']}" if "training_supervision" in summary else "",
    )
    return summary

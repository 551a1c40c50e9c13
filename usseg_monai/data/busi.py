"""BUSI (Breast Ultrasound Images) to a prepared dataset.

Source: Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. "Dataset of breast ultrasound images."
Data in Brief 28 (2020) 104863. https://doi.org/10.1016/j.dib.2019.104863

Layout of the public (Kaggle) download::

    Dataset_BUSI_with_GT/<class>/<class> (N).png          image (stored as RGB, gray content)
    Dataset_BUSI_with_GT/<class>/<class> (N)_mask.png     lesion mask
    Dataset_BUSI_with_GT/<class>/<class> (N)_mask_1.png   further lesions of the same image (take the union)

with ``<class>`` in ``benign``, ``malignant``, ``normal`` (normal images have empty masks). The output
has one item per image: id and ``case_id`` ``<class>_<N>``, class and class index in
``["benign", "malignant", "normal"]``, grayscale image, union mask. No pixel spacing is known.

Known quirk: some pictures appear twice under different names (``benign (433)`` and
``malignant (145)`` in the public release). Identical images are found by hashing their pixels; both
are kept, the later ones get ``duplicate_of`` and all get the same ``group``, so that they always fall
into the same split.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.data.io import DatasetError, load_png
from usseg_monai.data.prepared import PreparedDatasetWriter
from usseg_monai.data.splits import SplitOptions

__all__ = ["BUSI_CLASSES", "find_busi_root", "scan_busi", "prepare_busi"]

logger = logging.getLogger(__name__)

BUSI_CLASSES = ("benign", "malignant", "normal")
_NAME_RE = re.compile(r"^(?P<cls>[a-z]+) \((?P<n>\d+)\)(?P<mask>_mask(?:_(?P<k>\d+))?)?\.png$", re.IGNORECASE)


def find_busi_root(source: str | os.PathLike) -> Path:
    """The folder holding the class sub-folders: ``source`` itself or its ``Dataset_BUSI_with_GT`` child.

    Raises:
        DatasetError: the folder is missing or holds none of the class folders.
    """
    src = Path(source)
    if not src.is_dir():
        raise DatasetError(f"BUSI source folder not found: {src}")
    for cand in (src, src / "Dataset_BUSI_with_GT"):
        if any((cand / c).is_dir() for c in BUSI_CLASSES):
            return cand
    raise DatasetError(
        f"{src} does not look like BUSI: expected class folders {list(BUSI_CLASSES)} in it or in "
        f"{src / 'Dataset_BUSI_with_GT'}"
    )


def scan_busi(root: str | os.PathLike) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """List BUSI cases under ``root`` (the folder with the class folders).

    Returns:
        ``(cases, ignored)``: cases sorted by class and number, each
        ``{"class", "n", "image": Path, "masks": [Path, ...]}`` (masks sorted: ``_mask``, ``_mask_1``, ...),
        and ``(file, reason)`` for files that are not BUSI images or masks or masks without an image.

    Raises:
        DatasetError: an image without any mask file (named), or no image at all.
    """
    root = Path(root)
    cases: dict[tuple[str, int], dict[str, Any]] = {}
    masks: dict[tuple[str, int], list[tuple[int, Path]]] = defaultdict(list)
    ignored: list[tuple[str, str]] = []
    for cls in BUSI_CLASSES:
        folder = root / cls
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            m = _NAME_RE.match(f.name)
            if not f.is_file() or m is None or m["cls"].lower() != cls:
                ignored.append((str(f), f"not a BUSI '{cls} (N).png' image or mask file"))
                continue
            key = (cls, int(m["n"]))
            if m["mask"]:
                masks[key].append((int(m["k"]) if m["k"] else 0, f))
            else:
                cases[key] = {"class": cls, "n": key[1], "image": f}
    if not cases:
        raise DatasetError(f"no BUSI images ('<class> (N).png') found under {root}")
    for key in sorted(set(masks) - set(cases)):
        for _, f in masks[key]:
            ignored.append((str(f), "mask without its image"))
    out = []
    for key in sorted(cases):
        case = cases[key]
        if not masks.get(key):
            img = case["image"]
            raise DatasetError(f"BUSI image {img} has no mask file ({img.stem}_mask.png is missing)")
        case["masks"] = [f for _, f in sorted(masks[key])]
        out.append(case)
    return out, ignored


def prepare_busi(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    split: SplitOptions | None = None,
    **split_kwargs: Any,
) -> dict[str, Any]:
    """Convert BUSI to ``output_dir`` (grayscale PNG images, union masks 0/255, datalist, summary).

    Args:
        source: ``Dataset_BUSI_with_GT`` or the folder that contains it. Never written to.
        output_dir: output folder (empty unless ``overwrite``).
        overwrite: allow a non-empty output folder.
        split, **split_kwargs: split (stratified by class, grouped by identical images) and optional
            partition of the training set, see :class:`usseg_monai.data.splits.SplitOptions`.

    Returns:
        The summary written to ``summary.json``; ``duplicates`` lists the groups of identical images and
        ``multi_mask_cases`` how many images had several mask files.

    Raises:
        DatasetError: not a BUSI folder, an image without a mask, an unreadable file, or a mask whose size
            differs from its image (each naming the file).
    """
    opts = SplitOptions.resolve(split, **split_kwargs)
    root = find_busi_root(source)
    cases, ignored = scan_busi(root)
    logger.info("BUSI: %d images found under %s", len(cases), root)
    with PreparedDatasetWriter(
        output_dir,
        source=root,
        overwrite=overwrite,
        spatial_dims=2,
        name="BUSI",
        description="Breast Ultrasound Images (Al-Dhabyani et al., Data in Brief 2020): grayscale, union lesion masks",
        classes=list(BUSI_CLASSES),
    ) as writer:
        for what, why in ignored:
            writer.skip(what, why)
        first_by_hash: dict[str, str] = {}
        groups: dict[str, list[str]] = defaultdict(list)
        multi = 0
        for case in cases:
            item_id = f"{case['class']}_{case['n']}"
            img_path: Path = case["image"]
            image = load_png(img_path, grayscale=True)
            mask = np.zeros(image.shape, dtype=bool)
            for mpath in case["masks"]:
                m = load_png(mpath, grayscale=True)
                if m.shape != image.shape:
                    raise DatasetError(
                        f"BUSI mask {mpath} is {m.shape[0]}x{m.shape[1]} but its image {img_path} is "
                        f"{image.shape[0]}x{image.shape[1]} (width x height)"
                    )
                mask |= m > 0
            multi += len(case["masks"]) > 1
            digest = hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()
            first = first_by_hash.setdefault(digest, item_id)
            groups[first].append(item_id)
            extra: dict[str, Any] = {
                "source_image": img_path.relative_to(root).as_posix(),
                "n_masks": len(case["masks"]),
                "group": first,
            }
            if first != item_id:
                extra["duplicate_of"] = first
                logger.warning("BUSI: %s is the same picture as %s (kept, same split group)", item_id, first)
            writer.add(
                item_id,
                image,
                mask,
                class_name=case["class"],
                case_id=item_id,
                source_files=[img_path, *case["masks"]],
                **extra,
            )
        duplicates = [ids for ids in groups.values() if len(ids) > 1]
        return writer.finalize(
            split=opts,
            summary_extra={"duplicates": duplicates, "multi_mask_cases": multi},
        )

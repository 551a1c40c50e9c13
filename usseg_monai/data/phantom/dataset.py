"""Phantom datasets: :func:`prepare_phantom` writes a prepared dataset folder (classes, split, calipers), and
:func:`ensure_phantom_dataset` / :func:`default_phantom_dir` keep the bundles' default dataset in the user cache."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai import __version__
from usseg_monai.data.io import DatasetError, atomic_write_json, cache_dir, load_datalist
from usseg_monai.data.prepared import PreparedDatasetWriter
from usseg_monai.data.splits import SplitOptions
from usseg_monai.data.phantom.generator import check_shape_spacing, default_phantom_spacing, generate_phantom
from usseg_monai.data.phantom.options import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_N_IMAGES,
    PHANTOM_CLASSES,
    PHANTOM_LAYOUT_REVISION,
    PHANTOM_MODEL_REVISION,
)

__all__ = ["prepare_phantom", "phantom_dataset_key", "default_phantom_dir", "ensure_phantom_dataset"]

logger = logging.getLogger(__name__)


def _resolve_size(spatial_dims: int, image_size: int | Sequence[int] | None) -> tuple[int, ...]:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if image_size is None:
        return DEFAULT_IMAGE_SIZE[spatial_dims]
    if isinstance(image_size, (int, np.integer)):
        size = (int(image_size),) * spatial_dims
    else:
        size = tuple(int(s) for s in image_size)
        if len(size) == 1:
            size = size * spatial_dims
    if len(size) != spatial_dims:
        raise ValueError(f"image_size {tuple(image_size)} does not have {spatial_dims} values (x, y[, z])")
    check_shape_spacing(size, None)
    return size


def _class_counts(n_images: int, class_fractions: Sequence[float]) -> list[int]:
    """Images per class (benign, malignant, normal) by the largest-remainder rule; sums to ``n_images``."""
    frac = np.asarray([float(f) for f in class_fractions], dtype=np.float64)
    if frac.shape != (len(PHANTOM_CLASSES),) or not np.all(np.isfinite(frac)) or frac.min() < 0 or frac.sum() <= 0:
        raise ValueError(
            f"class_fractions must be {len(PHANTOM_CLASSES)} non-negative numbers for {list(PHANTOM_CLASSES)} "
            f"with a positive sum, got {tuple(class_fractions)}"
        )
    exact = frac / frac.sum() * n_images
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n_images - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def _item_seed(seed: int, class_index: int, k: int) -> int:
    """Seed of the ``k``-th image of a class: independent streams, stable when ``n_images`` grows."""
    return int(np.random.SeedSequence([int(seed), class_index, k]).generate_state(1)[0])


def prepare_phantom(
    output_dir: str | os.PathLike,
    *,
    n_images: int | None = None,
    spatial_dims: int = 2,
    image_size: int | Sequence[int] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    class_fractions: Sequence[float] = (0.45, 0.35, 0.2),
    caliper_jitter_mm: float | None = None,
    caliper_seed: int | None = None,
    split: SplitOptions | None = None,
    **split_kwargs: Any,
) -> dict[str, Any]:
    """Write a prepared phantom dataset (``docs/conventions.md`` layout) and return its summary.

    Images are written by :class:`usseg_monai.data.prepared.PreparedDatasetWriter`: 2D PNG (mask 0/255),
    3D NIfTI with spacing; every datalist item carries ``spacing`` (mm), ``class`` and ``phantom_seed`` (the
    seed that regenerates it with :func:`generate_phantom`), and ``calipers``: ``calipers/<id>.json``, the
    calipers derived from its mask (always; a "normal" image gets an annotation without lesions), so that
    caliper-supervised bundles train on the phantom out of the box. The generator parameters of every item
    are also written to ``phantom_params.json``.

    Args:
        output_dir: output folder (created; must be empty unless ``overwrite``).
        n_images: number of images; default :data:`DEFAULT_N_IMAGES` (64 in 2D, 16 in 3D).
        spatial_dims: 2 or 3.
        image_size: ``(x, y[, z])``, or one int (or a 1-sequence) for every axis; default :data:`DEFAULT_IMAGE_SIZE`
            (128x128 in 2D, 64x64x32 in 3D).
        seed: seeds the images and (unless ``split`` gives another) the split.
        overwrite: allow a non-empty output folder.
        class_fractions: fractions of benign, malignant, normal images (normalised).
        caliper_jitter_mm, caliper_seed: simulated reader variability of the calipers (mm) and its seed, see
            :class:`usseg_monai.data.caliper_derivation.CaliperDerivation`; ``None``: the enclosing
            :func:`~usseg_monai.data.caliper_derivation.caliper_defaults`, else exact calipers.
        split, **split_kwargs: split (stratified by class) and optional partition, see
            :class:`usseg_monai.data.splits.SplitOptions`; default ``SplitOptions(seed=seed,
            val_fraction=0.25)``, keywords override it (e.g. ``val_fraction=0.2``).

    Returns:
        The summary written to ``summary.json``.

    Raises:
        ValueError: bad ``spatial_dims``, ``n_images``, ``image_size`` or ``class_fractions``.
        DatasetError: non-empty output folder without ``overwrite``.
    """
    opts = SplitOptions.resolve(
        split if split is not None else SplitOptions(seed=seed, val_fraction=0.25), **split_kwargs
    )
    size = _resolve_size(spatial_dims, image_size)
    n = DEFAULT_N_IMAGES[spatial_dims] if n_images is None else n_images
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    counts = _class_counts(int(n), class_fractions)
    with PreparedDatasetWriter(
        output_dir,
        overwrite=overwrite,
        spatial_dims=spatial_dims,
        name=f"phantom_{spatial_dims}d",
        description=(
            f"Synthetic {spatial_dims}D breast-ultrasound phantom (usseg_monai {__version__}, model revision "
            f"{PHANTOM_MODEL_REVISION}): {'x'.join(map(str, size))} px, seed {seed}"
        ),
        classes=list(PHANTOM_CLASSES),
        calipers=True,
        caliper_jitter_mm=caliper_jitter_mm,
        caliper_seed=caliper_seed,
    ) as writer:
        all_params: dict[str, Any] = {}
        for ci, (class_name, count) in enumerate(zip(PHANTOM_CLASSES, counts)):
            for k in range(count):
                item_seed = _item_seed(seed, ci, k)
                sample = generate_phantom(size, class_name=class_name, seed=item_seed)
                item_id = f"{class_name}_{k + 1:03d}"
                writer.add(
                    item_id, sample.image, sample.mask, class_name=class_name, case_id=item_id,
                    spacing=sample.spacing, phantom_seed=item_seed,
                )
                all_params[item_id] = sample.params
        atomic_write_json(writer.staging_dir / "phantom_params.json", all_params)
        return writer.finalize(
            classes=list(PHANTOM_CLASSES),
            split=opts,
            summary_extra={
                "generator": "usseg_monai.data.phantom",
                "model_revision": PHANTOM_MODEL_REVISION,
                "image_size": list(size),
                "spacing": list(default_phantom_spacing(size)),
                "class_fractions": [float(f) for f in class_fractions],
                "seed": int(seed),
            },
        )


def phantom_dataset_key(spatial_dims: int, n_images: int, image_size: Sequence[int], seed: int) -> str:
    """Cache key of a phantom dataset: its parameters, the usseg_monai version, the model and layout revisions."""
    version = re.sub(r"[^A-Za-z0-9.]+", "_", __version__)
    return (
        f"n{n_images}_{'x'.join(str(int(s)) for s in image_size)}_seed{seed}_v{version}_r{PHANTOM_MODEL_REVISION}"
        f"_l{PHANTOM_LAYOUT_REVISION}"
    )


def _complete(folder: Path) -> bool:
    """Whether ``folder`` holds a readable datalist whose files all exist."""
    if not (folder / "datalist.json").is_file():
        return False
    load_datalist(folder / "datalist.json", check_files=True)
    return True


def default_phantom_dir(
    spatial_dims: int = 2,
    *,
    n_images: int | None = None,
    image_size: int | Sequence[int] | None = None,
    seed: int = 0,
) -> str:
    """Where :func:`ensure_phantom_dataset` keeps the phantom dataset with these parameters.

    ``cache_dir()/phantom_<2d|3d>_<key>`` (:func:`phantom_dataset_key`). Nothing is read or written: the bundles'
    default ``dataset_dir`` is this path, and the phantom is generated only by the explicit step
    (``create_phantom`` in a bundle's ``initialize``, or ``usseg prepare phantom``).

    Args: as :func:`ensure_phantom_dataset`.
    """
    size = _resolve_size(spatial_dims, image_size)
    n = DEFAULT_N_IMAGES[spatial_dims] if n_images is None else int(n_images)
    return str(cache_dir() / f"phantom_{spatial_dims}d_{phantom_dataset_key(spatial_dims, n, size, seed)}")


def ensure_phantom_dataset(
    spatial_dims: int = 2,
    *,
    n_images: int | None = None,
    image_size: int | Sequence[int] | None = None,
    seed: int = 0,
    output: str | os.PathLike | None = None,
) -> str:
    """Path of a phantom dataset, generated when it does not exist yet.

    The folder is ``output``, by default :func:`default_phantom_dir` (in :func:`usseg_monai.data.io.cache_dir`).
    It is generated into a temporary sibling folder and moved into place with one :func:`os.rename`, so
    concurrent callers (torchrun ranks, MONAI Label) never see a half-written dataset: whoever loses the race
    discards its own copy and returns the winner's folder. An existing folder is never modified. Nothing is ever
    written into the package or a bundle.

    Args:
        spatial_dims: 2 or 3.
        n_images: default :data:`DEFAULT_N_IMAGES`.
        image_size: default :data:`DEFAULT_IMAGE_SIZE`.
        seed: seed of the images and of the split.
        output: the dataset folder; default :func:`default_phantom_dir` of the other arguments.

    Returns:
        The dataset folder (holding ``datalist.json``), as a string.

    Raises:
        DatasetError: the target folder exists but is not a complete dataset (delete it to regenerate).
    """
    size = _resolve_size(spatial_dims, image_size)
    n = DEFAULT_N_IMAGES[spatial_dims] if n_images is None else int(n_images)
    default = output is None
    final = Path(default_phantom_dir(spatial_dims, n_images=n, image_size=size, seed=seed) if default else output)
    what = "cached phantom dataset" if default else "dataset folder"
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    empty = final.is_dir() and not any(final.iterdir())  # an empty folder is filled (os.rename replaces it)
    if final.exists() and not empty:
        try:
            if _complete(final):
                return str(final)
        except DatasetError as e:
            raise DatasetError(f"{what} {final} is damaged ({e}); delete the folder to regenerate") from e
        raise DatasetError(
            f"{what} {final} exists but has no datalist.json; "
            + ("delete the folder to regenerate" if default else "choose an empty or missing folder for the phantom")
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        logger.info("generating the %dD phantom dataset (%d images) into %s", spatial_dims, n, final)
        summary = prepare_phantom(
            tmp, n_images=n, spatial_dims=spatial_dims, image_size=size, seed=seed, overwrite=True
        )
        summary["output"] = str(final)
        atomic_write_json(tmp / "summary.json", summary)
        try:
            os.rename(tmp, final)
        except OSError as e:
            # another process (or thread) renamed its copy first: use it
            if not _complete(final):
                raise DatasetError(f"could not move the generated phantom dataset to {final}: {e}") from e
            logger.info("phantom dataset %s was created concurrently; discarding this copy", final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(final)

"""Helpers for the bundle tests: tiny synthetic datasets in the prepared-dataset layout, bundle discovery."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from usseg_monai.calipers import calipers_from_mask, save_calipers
from usseg_monai.data.io import save_png, save_volume, write_datalist
from usseg_monai.data.caliper_derivation import DEFAULT_CALIPER_MIN_VOXELS

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLES_DIR = REPO_ROOT / "bundles"


def bundle_dirs() -> list[Path]:
    """Every bundle folder under ``bundles/`` (one with ``configs/metadata.json``), sorted."""
    return sorted(p for p in BUNDLES_DIR.iterdir() if (p / "configs" / "metadata.json").is_file())


def bundle_spatial_dims(bundle: Path) -> int:
    """2 or 3, from the metadata's input ``spatial_shape`` length."""
    import json

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    return len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"])


def _disk_case(rng: np.random.Generator, shape: tuple[int, ...], empty: bool) -> tuple[np.ndarray, np.ndarray]:
    """A speckled background with a darker ellipsoidal lesion (uint8 image) and its 0/255 mask, (x, y[, z])."""
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    mask = np.zeros(shape, dtype=bool)
    if not empty:
        centre = [rng.uniform(0.35, 0.65) * s for s in shape]
        radii = [rng.uniform(0.12, 0.22) * s for s in shape]
        mask = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0
    image = 140.0 + 25.0 * rng.standard_normal(shape)
    image[mask] = 50.0 + 15.0 * rng.standard_normal(int(mask.sum()))
    return np.clip(image, 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


#: class names of the tiny datasets (as BUSI): items alternate benign / malignant, an empty mask is "normal"
TINY_CLASSES = ("benign", "malignant", "normal")


def make_tiny_dataset(
    root: str | os.PathLike,
    spatial_dims: int = 2,
    counts: tuple[int, int, int] = (4, 2, 2),
    shape: tuple[int, ...] | None = None,
    spacing: tuple[float, ...] | None = None,
    empty_in_test: bool = True,
    seed: int = 0,
    calipers: bool = True,
) -> Path:
    """Write a tiny prepared dataset (``docs/conventions.md`` layout) and return its folder.

    2D: PNG images and 0/255 masks; 3D: NIfTI volumes and 0/1 masks with ``spacing`` in the header and the
    datalist. ``counts`` = (training, validation, test). With ``empty_in_test`` the last test case has an
    empty mask (like a BUSI "normal" image). Every item has a ``class`` and ``class_index`` (:data:`TINY_CLASSES`),
    as prepared BUSI items do. Shapes differ from case to case (odd sizes) on purpose.
    With ``calipers`` every item also gets ``calipers/case_<k>.json`` derived from its mask as the prepare-time
    option does (``allow_empty``: an empty mask gives an annotation without lesions) and the datalist key
    ``calipers``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    if shape is None:
        shape = (60, 52) if spatial_dims == 2 else (30, 26, 14)
    if spacing is None:
        spacing = (0.2, 0.2) if spatial_dims == 2 else (0.5, 0.5, 1.0)
    ext = ".png" if spatial_dims == 2 else ".nii.gz"
    datalist: dict = {
        "name": "tiny",
        "modality": "US",
        "spatial_dims": spatial_dims,
        "labels": {"0": "background", "1": "lesion"},
        "classes": list(TINY_CLASSES),
    }
    k = 0
    for section, n in zip(("training", "validation", "test"), counts):
        items = []
        for i in range(n):
            case_shape = tuple(s + (k % 3) for s in shape)
            empty = empty_in_test and section == "test" and i == n - 1
            image, mask = _disk_case(rng, case_shape, empty)
            name = f"case_{k:03d}{ext}"
            if spatial_dims == 2:
                save_png(root / "images" / name, image)
                save_png(root / "labels" / name, mask)
            else:
                save_volume(root / "images" / name, image, spacing)
                save_volume(root / "labels" / name, (mask > 0).astype(np.uint8), spacing)
            class_name = "normal" if empty else TINY_CLASSES[k % 2]
            item = {
                "image": f"images/{name}",
                "label": f"labels/{name}",
                "class": class_name,
                "class_index": TINY_CLASSES.index(class_name),
                "case_id": f"case_{k:03d}",
                "spacing": list(spacing),
            }
            if calipers:
                ann = calipers_from_mask(mask > 0, spacing, allow_empty=True, min_voxels=DEFAULT_CALIPER_MIN_VOXELS)
                save_calipers(root / "calipers" / f"case_{k:03d}.json", ann)
                item["calipers"] = f"calipers/case_{k:03d}.json"
            items.append(item)
            k += 1
        datalist[section] = items
    write_datalist(root, datalist)
    return root


def clean_env() -> dict[str, str]:
    """The current environment without PYTHONPATH (bundles must run from the installed package alone)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


PYTHON = sys.executable


def train_losses(bundle: str, dataset: Path, work: Path, overrides: dict, image_size: list[int] | None = None,
                 epochs: int = 2) -> tuple[list[float], dict]:
    """Train ``bundle``'s ``train.json`` on ``dataset`` (batch 2, seed 3, no validation, one torch thread) and
    return the loss of every iteration and the trained network's state dict (for runs that must train alike)."""
    import torch
    from monai.bundle import ConfigWorkflow
    from monai.engines.utils import IterationEvents

    root = BUNDLES_DIR / bundle
    torch.set_num_threads(1)
    size = image_size or ([32, 32] if bundle_spatial_dims(root) == 2 else [32, 32, 16])
    wf = ConfigWorkflow(config_file=str(root / "configs" / "train.json"), meta_file=str(root / "configs" /
                        "metadata.json"), logging_file=False, workflow_type="train", bundle_root=str(work),
                        dataset_dir=str(dataset), image_size=size, batch_size=2, max_epochs=epochs,
                        val_interval=epochs + 1, progress_bar=False, checkpoint_interval=0, seed=3, **overrides)
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    losses: list[float] = []
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED,
                              lambda e: losses.append(float(e.state.output["loss"].detach())))
    trainer.run()
    state = {k: v.detach().clone() for k, v in wf.parser.get_parsed_content("network_def").state_dict().items()}
    return losses, state

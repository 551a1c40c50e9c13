"""Training recipes: schedules and augmentations by name, the recipes' overrides, the deciding budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from usseg_monai.engines import make_lr_scheduler, make_optimizer
from usseg_monai.recipes import RECIPE_KEYS, RECIPES, recipe_line
from usseg_monai.transforms import train_augmentation


def _lrs(name: str, total: int, **kw) -> list[float]:
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], "sgd", lr=0.01)
    sched = make_lr_scheduler(opt, name, total, **kw)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_lr_schedules_follow_their_formulas_per_iteration():
    poly = _lrs("poly", 10)
    assert poly == pytest.approx([0.01 * (1 - t / 10) ** 0.9 for t in range(10)])
    cos = _lrs("cosine", 10, eta_min=1e-4)
    assert cos == pytest.approx([1e-4 + (0.01 - 1e-4) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(10)])
    assert _lrs("constant", 5) == pytest.approx([0.01] * 5)
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], "adamw", lr=0.001)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        make_lr_scheduler(opt, "step", 10)
    with pytest.raises(ValueError, match="total_iterations must be >= 1"):
        make_lr_scheduler(opt, "poly", 0)
    with pytest.raises(ValueError, match="poly power must be > 0"):
        make_lr_scheduler(opt, "poly", 10, power=0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", ["reference", "flip_affine"])
def test_augmentation_moves_image_and_labels_together(name, spatial_dims):
    """A binary image and its copies as labels, all nearest-interpolated, stay aligned under every draw (the
    intensity scaling goes to the third key only, so the first two stay identical)."""
    shape = (1, 24, 20) if spatial_dims == 2 else (1, 16, 14, 8)
    rng = np.random.default_rng(0)
    img = np.zeros(shape, np.float32)
    sl = (slice(None), slice(4, 15), slice(3, 9)) + ((slice(2, 6),) if spatial_dims == 3 else ())
    img[sl] = 1.0
    keys = ["image", "label", "axes"]
    ts = train_augmentation(name, keys, ["nearest"] * 3, rotate_range=0.5, spatial_dims=spatial_dims, image_key="axes")
    changed = 0
    for seed in range(12):
        d = {"image": torch.as_tensor(img), "label": torch.as_tensor(img.copy()), "axes": torch.as_tensor(img.copy())}
        for t in ts:
            t.set_random_state(seed=int(rng.integers(1 << 30)))
            d = t(d)
        a, b, c = (np.asarray(d[k]) for k in keys)
        assert a.shape[1:] == b.shape[1:] == c.shape[1:]
        assert np.array_equal(a, b) and np.array_equal(a > 0, c > 0)
        changed += int(a.shape != img.shape or not np.array_equal(a, img))
    assert changed >= 4  # it does augment


def test_augmentation_choices_and_errors():
    ref = train_augmentation("reference", ["image", "label"], ["bilinear", "nearest"])
    assert len(ref) == 1 and type(ref[0]).__name__ == "OneOf"
    assert [float(w) for w in ref[0].weights] == pytest.approx([0.5, 0.25, 0.25])
    fa = train_augmentation("flip_affine", ["image", "label"], ["bilinear", "nearest"], rotate_range=0.26, spatial_dims=3)
    assert [type(t).__name__ for t in fa] == ["RandFlipd", "RandAffined", "RandScaleIntensityd"]
    assert fa[1].rand_affine.rand_affine_grid.rotate_range == (0.0, 0.0, 0.26)  # in-plane in 3D
    assert train_augmentation("none", ["image"], ["bilinear"]) == []
    with pytest.raises(ValueError, match="augmentation must be one of"):
        train_augmentation("heavy", ["image"], ["bilinear"])
    with pytest.raises(ValueError, match="1 modes for 2 keys"):
        train_augmentation("reference", ["image", "label"], ["bilinear"])
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        train_augmentation("reference", ["image"], ["bilinear"], spatial_dims=4)


def test_recipes_set_every_recipe_key():
    for r in RECIPES.values():
        assert sorted(r.overrides()) == sorted(RECIPE_KEYS)
    off = RECIPES["crbnet_official"]
    assert (off.optimizer, off.learning_rate, off.lr_schedule, off.augmentation) == ("sgd", 0.01, "poly", "reference")
    assert off.rotate_range == pytest.approx(math.radians(20))
    proj = RECIPES["project"]
    assert (proj.optimizer, proj.learning_rate, proj.lr_schedule, proj.augmentation) == ("adamw", 1e-3, "cosine", "flip_affine")
    line = recipe_line(off, {"optimizer": "SGD", "learning_rate": 0.01, "weight_decay": 1e-4, "lr_schedule": "PolynomialLR",
                             "lr_step": "iteration", "loss_family": "CE + Dice", "image_size": [128, 128], "batch_size": 16})  # fmt: skip
    assert line.startswith("recipe `crbnet_official`") and "SGD lr 0.01" in line and "128x128 px, batch 16" in line
    assert recipe_line(None) == "recipe: the bundle's own (every row is one bundle)"


def test_deciding_budget_settings():
    from usseg_monai.evaluation.budgets import BUDGETS, get_budget

    b = BUDGETS["cpu-decide"]
    assert (b.image_size(2), b.image_size(3), b.batch_size, b.max_iterations) == ([128, 128], [64, 64, 32], 16, 1040)
    # 1040 iterations: 40 epochs of the 414 BUSI lesion images (26 per epoch), 52 of DDTI's 306 (20 per epoch)
    assert b.epochs_for(414) == 40 and b.epochs_for(306) == 52
    point = get_budget("cpu-decide", max_iterations=260)
    assert point.max_iterations == 260 and point.epochs_for(414) == 10 and point.image_size(2) == [128, 128]

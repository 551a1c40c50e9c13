"""Training recipes: what every row of one results protocol trains with, so that only the method's own terms differ.

A :class:`Recipe` is the optimiser, its learning rate, weight decay and momentum, the learning-rate schedule, the
augmentation and its rotation range. It reaches a bundle as overrides of the bundle keys ``optimizer_name``,
``learning_rate``, ``weight_decay``, ``momentum``, ``lr_schedule`` (:func:`usseg_monai.engines.make_lr_scheduler`),
``augmentation`` (:func:`usseg_monai.transforms.train_augmentation`) and ``rotate_range``; image size, batch size and
iterations come from the budget (:class:`usseg_monai.evaluation.budgets.Budget`), the same for every row too.

The results suite gives each protocol table one recipe (:data:`PROTOCOL_RECIPES`) and checks twice that no row
silently differs:

- before training, :func:`check_bundle_accepts` refuses a bundle that lacks one of the recipe's keys (the override
  would be ignored);
- after training, every run records :func:`describe_training` (what its config actually built: the optimiser's class
  and hyper-parameters, the schedule's class and step, the augmentation's transforms, the segmentation loss family,
  image size, batch size and iterations) and :func:`check_same_recipe` refuses a table whose rows differ in it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from monai.transforms import Compose, OneOf

__all__ = [
    "Recipe",
    "RECIPES",
    "PROTOCOL_RECIPES",
    "RECIPE_KEYS",
    "LOSS_FAMILIES",
    "check_bundle_accepts",
    "describe_training",
    "check_same_recipe",
    "recipe_line",
]

#: the bundle keys a recipe sets (every bundle a recipe is applied to must declare all of them)
RECIPE_KEYS = ("optimizer_name", "learning_rate", "weight_decay", "momentum", "lr_schedule", "augmentation", "rotate_range")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training recipe.

    Attributes:
        name: the recipe's name (``"project"``, ``"crbnet_official"``).
        optimizer: :func:`usseg_monai.engines.make_optimizer` name.
        learning_rate: initial learning rate.
        weight_decay: weight decay (decoupled for AdamW, L2 for SGD).
        momentum: SGD momentum (recorded, unused by AdamW).
        lr_schedule: :func:`usseg_monai.engines.make_lr_scheduler` name (stepped every iteration).
        augmentation: :func:`usseg_monai.transforms.train_augmentation` name.
        rotate_range: the augmentation's largest in-plane rotation, radians.
        description: where the recipe comes from, printed above the tables.
    """

    name: str
    optimizer: str
    learning_rate: float
    weight_decay: float
    momentum: float
    lr_schedule: str
    augmentation: str
    rotate_range: float
    description: str = ""

    def overrides(self) -> dict[str, Any]:
        """The bundle overrides of this recipe (keys :data:`RECIPE_KEYS`)."""
        return {
            "optimizer_name": self.optimizer,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "lr_schedule": self.lr_schedule,
            "augmentation": self.augmentation,
            "rotate_range": self.rotate_range,
        }


#: named recipes
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "project", "adamw", 1e-3, 1e-4, 0.9, "cosine", "flip_affine", 0.26,
            "the project's default (the reference UNet bundle's): AdamW lr 1e-3, weight decay 1e-4, cosine decay to "
            "1e-5 per iteration, flip + affine (rotation up to 0.26 rad, scale 10%) + intensity scaling",
        ),
        Recipe(
            "crbnet_official", "sgd", 0.01, 1e-4, 0.9, "poly", "reference", math.radians(20.0),
            "CRBNet's reference code for CRBNet and its baselines (train_IDAMP.py, train_baseline.py): SGD lr 0.01, "
            "momentum 0.9, weight decay 1e-4, poly decay (power 0.9) per iteration, rot90 + flip / rotation up to 20 "
            "degrees / none (1/2, 1/4, 1/4)",
        ),
    )
}

#: per protocol, the recipes its tables are run with (one table per recipe; ``None``: the bundle's own recipe, for a
#: protocol whose rows are all one bundle). The calipers protocol runs under both the official CRBNet recipe (as
#: the reference code trains its baseline) and the project's; the few-masks rows (the CRII-Net bundle's methods and
#: the reference UNet) under the project's.
PROTOCOL_RECIPES: dict[str, tuple[str | None, ...]] = {
    "calipers": ("project", "crbnet_official"),
    "class_labels": (None,),
    "few_masks": ("project",),
}

#: the segmentation loss family of each loss class a bundle trains with (the supervised part; a method's own terms,
#: e.g. CRBNet's CAP and IDMPS or CRII-Net's ranked losses, come on top)
LOSS_FAMILIES: dict[str, str] = {
    "DiceCELoss": "CE + Dice",
    "CRBNetLoss": "CE + Dice",  # CRBS: class-weighted CE + soft Dice per branch
    "CRIINetLoss": "CE + Dice",  # MONAI DiceCELoss on the labeled images
    "SemiSegCAWLoss": "CE + Dice + focal Tversky",
}


def check_bundle_accepts(config: Mapping[str, Any], recipe: Recipe, bundle: str) -> None:
    """Refuse a bundle config (its parsed ``train.json``) that does not declare every key ``recipe`` sets.

    Raises:
        ValueError: naming the bundle and the missing keys.
    """
    missing = [k for k in RECIPE_KEYS if k not in config]
    if missing:
        raise ValueError(
            f"bundle {bundle}: recipe {recipe.name!r} sets {missing}, which its configs/train.json does not declare "
            "(the override would be ignored and the row would train with another recipe)"
        )


def _transform_summary(t: Any) -> Any:
    """A key-independent description of a (possibly nested) random transform: class, probability, ranges."""
    name = type(t).__name__
    if isinstance(t, OneOf):
        return {name: [_transform_summary(c) for c in t.transforms], "weights": [round(float(w), 6) for w in t.weights]}
    if isinstance(t, Compose):
        return {name: [_transform_summary(c) for c in t.transforms]}
    def ranges(values: Any) -> Any:
        if isinstance(values, (int, float)):
            return round(float(values), 6)
        return [ranges(v) for v in values] if values is not None else None

    out: dict[str, Any] = {"transform": name}
    if hasattr(t, "prob"):
        out["prob"] = float(t.prob)
    inner = getattr(t, "rand_rotate", None)
    if inner is not None:
        out["range"] = ranges([inner.range_x, inner.range_y, inner.range_z])
    affine = getattr(getattr(t, "rand_affine", None), "rand_affine_grid", None)
    if affine is not None:
        out["rotate_range"] = ranges(affine.rotate_range)
        out["scale_range"] = ranges(affine.scale_range)
    return out


def describe_training(parser: Any) -> dict[str, Any]:
    """What a bundle's training config built: the facts a protocol's rows must share.

    Args:
        parser: the initialised training workflow's ``ConfigParser`` (its ``optimizer``, ``lr_scheduler``,
            ``loss``, ``train#random_transforms`` and ``train#handlers`` are parsed here).

    Returns:
        ``{"optimizer", "learning_rate", "weight_decay", "momentum", "lr_schedule", "lr_step", "augmentation",
        "loss_family", "image_size", "batch_size", "max_epochs"}`` (``momentum`` ``None`` for optimisers without it).
    """
    opt = parser.get_parsed_content("optimizer")
    sched = parser.get_parsed_content("lr_scheduler")
    loss = parser.get_parsed_content("loss")
    aug = parser.get_parsed_content("train#random_transforms")
    step = None
    for h in parser.get_parsed_content("train#handlers"):
        if type(h).__name__ == "LrScheduleHandler":
            step = "epoch" if bool(getattr(h, "epoch_level", True)) else "iteration"
            break
    defaults = dict(opt.defaults)
    loss_name = type(loss).__name__
    return {
        "optimizer": type(opt).__name__,
        "learning_rate": float(defaults.get("lr")),
        "weight_decay": float(defaults.get("weight_decay", 0.0)),
        "momentum": float(defaults["momentum"]) if "momentum" in defaults else None,
        "lr_schedule": type(sched).__name__,
        "lr_step": step,
        "augmentation": [_transform_summary(t) for t in aug],
        "loss_family": LOSS_FAMILIES.get(loss_name, loss_name),
        "image_size": [int(v) for v in parser.get_parsed_content("image_size")],
        "batch_size": int(parser.get_parsed_content("batch_size")),
        "max_epochs": int(parser.get_parsed_content("max_epochs")),
    }


#: the :func:`describe_training` fields a protocol's rows must share (``max_epochs`` differs where epochs are
#: counted over different sets, e.g. the semi-supervised methods' passes over the unlabeled images; the iterations
#: of the rows are compared by the suite from what ran)
SHARED_FIELDS = ("optimizer", "learning_rate", "weight_decay", "momentum", "lr_schedule", "lr_step", "augmentation", "loss_family", "image_size", "batch_size")


def check_same_recipe(rows: Sequence[tuple[str, Mapping[str, Any]]], table: str) -> None:
    """Refuse a table whose rows trained with different recipes.

    Args:
        rows: ``(method name, describe_training() of its run)`` per row.
        table: the table's title, for the message.

    Raises:
        ValueError: naming the table, the field, and the rows that differ with their values.
    """
    if len(rows) < 2:
        return
    ref_name, ref = rows[0]
    for name, got in rows[1:]:
        for key in SHARED_FIELDS:
            a, b = ref.get(key), got.get(key)
            if key == "momentum" and "SGD" not in (ref.get("optimizer"), got.get("optimizer")):
                continue  # momentum is recorded but unused by Adam(W)
            if a != b:
                raise ValueError(f"table {table!r}: {name!r} trains with {key}={b!r}, {ref_name!r} with {key}={a!r}; one recipe per table")


def recipe_line(recipe: Recipe | None, trained: Mapping[str, Any] | None = None) -> str:
    """The line printed above a table: the recipe's description and what every row trained with."""
    head = f"recipe `{recipe.name}`: {recipe.description}" if recipe is not None else "recipe: the bundle's own (every row is one bundle)"
    if not trained:
        return head
    size = "x".join(str(v) for v in trained.get("image_size") or [])
    return (
        f"{head}. Every row: {trained.get('optimizer')} lr {trained.get('learning_rate'):g}, weight decay "
        f"{trained.get('weight_decay'):g}, {trained.get('lr_schedule')} per {trained.get('lr_step')}, loss "
        f"{trained.get('loss_family')} (+ the method's own terms), {size} px, batch {trained.get('batch_size')}."
    )

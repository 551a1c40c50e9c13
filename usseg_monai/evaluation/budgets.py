"""Training budgets: how large, how long and at what batch a benchmark run trains.

A :class:`Budget` is named (:data:`BUDGETS`: ``smoke``, ``cpu-quick``, ``cpu-standard``, ``cpu-yardstick``,
``cpu-decide``, ``paper``); :func:`get_budget` applies field overrides (``--epochs``, ``--iterations``, ...) and
:meth:`Budget.for_protocol` a protocol's own settings (the ``paper`` budget trains each protocol as its paper does).
Lengths are epochs, or iterations (``max_iterations``) turned into epochs of :func:`section_epoch_length`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Budget", "BUDGETS", "PAPER_PROTOCOLS", "get_budget", "section_epoch_length"]


@dataclass(frozen=True)
class Budget:
    """A training budget.

    Attributes:
        name: the budget's name.
        image_size_2d, image_size_3d: network input size ``(x, y[, z])`` for 2D / 3D bundles (pixels).
        max_epochs: training epochs.
        batch_size: training batch size.
        val_interval: validate every N epochs during training (``0``: once, after the last epoch).
        description: what the budget is for.
        max_iterations: when ``> 0``, train for this many iterations instead of ``max_epochs``: the runner sets
            ``max_epochs = ceil(max_iterations / ceil(training items / batch_size))`` (CRBNet's reference trains
            30000 iterations), and records the iterations actually run.
        protocols: the results suite's per-protocol settings (``{"calipers": {"batch_size": 24, ...}}``), applied by
            :meth:`for_protocol`; the ``paper`` budget uses them to give every protocol its own paper's settings.
    """

    name: str
    image_size_2d: tuple[int, int]
    image_size_3d: tuple[int, int, int]
    max_epochs: int
    batch_size: int
    val_interval: int = 0
    description: str = ""
    max_iterations: int = 0
    protocols: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def image_size(self, spatial_dims: int) -> list[int]:
        """Input size for a bundle of ``spatial_dims`` dimensions."""
        return list(self.image_size_2d if spatial_dims == 2 else self.image_size_3d)

    def for_protocol(self, protocol: str) -> Budget:
        """The budget a run of the suite's ``protocol`` (``calipers``, ``class_labels``, ``few_masks``) trains with:
        this budget with the protocol's settings applied and no per-protocol table left (so it is what ran)."""
        settings = dict(self.protocols.get(protocol) or {})
        return replace(self, protocols={}, **settings)

    def epochs_for(self, n_items: int) -> int:
        """Training epochs over ``n_items`` items: ``max_epochs``, or enough epochs for ``max_iterations``."""
        if self.max_iterations <= 0:
            return int(self.max_epochs)
        return max(1, math.ceil(int(self.max_iterations) / section_epoch_length(n_items, self.batch_size)))


def section_epoch_length(n_items: int, batch_size: int) -> int:
    """Iterations of one epoch over a training section of ``n_items`` items at ``batch_size``:
    ``ceil(n_items / batch_size)`` (at least 1)."""
    return max(1, math.ceil(int(n_items) / int(batch_size)))


#: per-protocol settings of the ``paper`` budget (``../shared/docs/methods.md``): CRBNet's reference code trains
#: 30000 iterations at batch 24 (the caliper protocol's UNet rows get the same); SemiSeg-CAW trains with
#: MALUNet's settings (256x256, batch 8, 300 epochs, MALUNet's ``configs/config_setting.py``); CRII-Net's paper
#: gives none here, so the few-masks protocol keeps the budget's own 200 epochs at batch 8 (a design choice).
PAPER_PROTOCOLS: dict[str, dict[str, Any]] = {
    "calipers": {"batch_size": 24, "max_iterations": 30000, "val_interval": 100},
    "class_labels": {"batch_size": 8, "max_epochs": 300, "val_interval": 30},
    "few_masks": {"batch_size": 8, "max_epochs": 200, "val_interval": 10},
}


#: named budgets (override any field with ``run_benchmark(..., budget_overrides={...})`` / CLI flags)
BUDGETS: dict[str, Budget] = {
    b.name: b
    for b in (
        Budget("smoke", (64, 64), (32, 32, 16), 1, 2, 0, "plumbing check: 1 epoch at 64 px"),
        Budget(
            "cpu-quick",
            (64, 64),
            (32, 32, 16),
            12,
            8,
            0,
            "the whole results suite (every protocol on BUSI and DDTI, 40 runs) in about an hour on 2 CPU cores: 64x64, 12 epochs",
        ),
        Budget(
            "cpu-standard",
            (96, 96),
            (48, 48, 24),
            10,
            8,
            0,
            "a closer CPU look: 96x96, 10 epochs (a UNet step costs about 1.9x the 64x64 one)",
        ),
        Budget(
            "cpu-yardstick",
            (128, 128),
            (64, 64, 32),
            40,
            16,
            0,
            "the project's CPU yardstick: 128x128, 40 epochs, batch 16 (benchmarks/plain_monai_unet_yardstick.py)",
        ),
        Budget(
            "cpu-decide",
            (128, 128),
            (64, 64, 32),
            40,
            16,
            0,
            "the deciding CPU budget (#16): the yardstick's 128x128 at batch 16 for 1040 iterations (40 epochs of the "
            "414 BUSI lesion images, where the reference UNet reaches Dice ~0.75), counted in iterations so that every "
            "dataset and training set trains as long; --iterations N for the points of a budget curve",
            max_iterations=1040,
        ),
        Budget(
            "paper",
            (256, 256),
            (128, 128, 64),
            200,
            8,
            10,
            "the papers' settings, for a GPU: 256x256; in the suite calipers 30000 iterations at batch 24 (CRBNet), "
            "class labels 300 epochs at batch 8 (MALUNet/SemiSeg-CAW), few masks 200 epochs at batch 8",
            protocols=PAPER_PROTOCOLS,
        ),
    )
}


def get_budget(name: str, **overrides: Any) -> Budget:
    """The named budget with ``overrides`` applied (``None`` values ignored).

    An overridden field also wins over the budget's per-protocol settings (``--epochs 5`` with ``paper`` trains
    every protocol 5 epochs: an explicit ``max_epochs`` also drops the per-protocol ``max_iterations``).

    Raises:
        ValueError: unknown name or field.
    """
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; choose one of {sorted(BUDGETS)}")
    fields = set(Budget.__dataclass_fields__)
    bad = sorted(k for k in overrides if k not in fields)
    if bad:
        raise ValueError(f"unknown budget field(s) {bad}; fields are {sorted(fields)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    base = BUDGETS[name]
    dropped = set(given) | ({"max_iterations"} if "max_epochs" in given else set())
    protocols = {p: {k: v for k, v in s.items() if k not in dropped} for p, s in base.protocols.items()}
    if "max_epochs" in given and "max_iterations" not in given:
        given["max_iterations"] = 0
    return replace(base, **{"protocols": protocols, **given})

"""Options and helpers shared by the ``usseg`` subcommands: logging flags, ``KEY=VALUE`` overrides, split,
partition and caliper options, and the one-line summary a converter prints."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from usseg_monai.data.caliper_derivation import DEFAULT_CALIPER_MIN_VOXELS, caliper_defaults
from usseg_monai.data.splits import SplitOptions

__all__ = [
    "common_options", "count_or_fraction", "parse_value", "parse_set_options", "fraction", "add_split_options",
    "split_options", "print_summary", "add_caliper_options", "caliper_context",
]


def common_options() -> argparse.ArgumentParser:
    """Parent parser with ``-v/--verbose`` and ``-q/--quiet``, so they also work after a subcommand.

    Use as ``subparsers.add_parser(name, parents=[common_options()], ...)``.
    """
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="warnings and errors only")
    return p


def count_or_fraction(text: str) -> int | float | str:
    """Parse ``--labeled``/``--class-only``: ``"20"`` is 20 items, ``"0.04"`` a fraction, ``"rest"`` all others."""
    if text == "rest":
        return text
    try:
        if any(c in text for c in ".eE"):
            value: int | float = float(text)
            if not 0.0 <= value <= 1.0:
                raise argparse.ArgumentTypeError(f"a fraction must be in [0, 1], got {text}")
            return value
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (e.g. 20), a fraction (e.g. 0.04) or 'rest', got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"a count must not be negative, got {text}")
    return value


def parse_value(text: str) -> Any:
    """A command-line value as JSON where it parses (``[256,256]``, ``0.5``, ``true``), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set_options(items: Sequence[str] | None, option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` options (values by :func:`parse_value`) as a dict of config overrides.

    Raises:
        ValueError: an item without ``=`` or with an empty key, named with the option.
    """
    out: dict[str, Any] = {}
    for text in items or ():
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} {text!r}: expected KEY=VALUE (a JSON value, e.g. image_size=[256,256])")
        out[key] = parse_value(value)
    return out


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def add_split_options(p: argparse.ArgumentParser, partition: bool = True) -> None:
    """Options shared by every converter and ``usseg split``: split fractions, folds, seed, partition."""
    g = p.add_argument_group("split (stratified by class, grouped by case)")
    g.add_argument(
        "--val-fraction", type=fraction, default=0.2, help="fraction of all images for validation (default 0.2)"
    )
    g.add_argument(
        "--test-fraction", type=fraction, default=0.0, help="fraction of all images held out as 'test' (default 0)"
    )
    g.add_argument(
        "--n-folds", type=int, default=None, help="k-fold mode: after the test set, deal the rest into K folds"
    )
    g.add_argument("--fold", type=int, default=0, help="k-fold mode: the fold used as validation (0..K-1, default 0)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the split and partition (default 0)")
    if partition:
        g = p.add_argument_group("training supervision (semi-supervised bundles)")
        g.add_argument(
            "--labeled",
            type=count_or_fraction,
            default=None,
            help="training images that keep their mask: a count (468) or a fraction (0.04); default all",
        )
        g.add_argument(
            "--class-only",
            type=count_or_fraction,
            default=None,
            help="training images that keep only their class label: count, fraction or 'rest'; the others "
            "become unlabeled (supervision 'none'); their masks are dropped from the datalist",
        )


def split_options(args: argparse.Namespace) -> SplitOptions:
    """The :class:`~usseg_monai.data.splits.SplitOptions` of the split (and partition) options in ``args``."""
    return SplitOptions(
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        n_folds=args.n_folds,
        fold=args.fold,
        labeled=getattr(args, "labeled", None),
        class_only=getattr(args, "class_only", None),
    )


def print_summary(summary: dict[str, Any], what: str) -> int:
    per = summary.get("per_split", {})
    extra = f", {summary['skipped']} skipped" if summary.get("skipped") else ""
    cal = summary.get("calipers")
    cal_text = (
        f", {cal['files']} caliper files ({cal['lesions']} lesions, {cal['empty_annotations']} without lesion)"
        if cal
        else ""
    )
    print(
        f"{what}: {summary.get('n_items', 0)} images ("
        + ", ".join(f"{k} {v}" for k, v in per.items())
        + f"{extra}){cal_text} -> {summary.get('output')}"
    )
    return 0


# ---------------------------------------------------------------- prepare
def add_caliper_options(p: argparse.ArgumentParser, always: bool = False) -> None:
    """``--calipers`` / ``--caliper-jitter-mm`` / ``--caliper-min-voxels`` of ``usseg prepare <dataset>``."""
    g = p.add_argument_group("calipers (caliper-supervised bundles)")
    g.add_argument(
        "--calipers",
        action="store_true",
        help="(always on for the phantom) also write calipers/<id>.json, the calipers a clinician would draw "
        "on each mask (an empty mask: no lesion), and the datalist key 'calipers'"
        if always
        else "also write calipers/<id>.json, the calipers a clinician would draw on each mask (an empty mask: "
        "no lesion), and the datalist key 'calipers'",
    )
    g.add_argument(
        "--caliper-jitter-mm",
        type=float,
        default=0.0,
        help="simulated reader variability: std (mm) of the caliper endpoint moves, seeded by --seed "
        "(default 0, exact)",
    )
    g.add_argument(
        "--caliper-min-voxels",
        type=int,
        default=DEFAULT_CALIPER_MIN_VOXELS,
        help="mask components smaller than this are speckle and get no calipers "
        f"(default {DEFAULT_CALIPER_MIN_VOXELS})",
    )


def caliper_context(args: argparse.Namespace, always: bool = False) -> Any:
    """The :func:`~usseg_monai.data.caliper_derivation.caliper_defaults` block of the caliper options in ``args``."""
    return caliper_defaults(
        always or args.calipers,
        jitter_mm=args.caliper_jitter_mm,
        seed=args.seed,
        min_voxels=args.caliper_min_voxels,
    )

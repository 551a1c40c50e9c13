"""``usseg benchmark`` (one bundle run, or ``--suite``) and ``usseg report``: the evaluation layer's command line."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from usseg_monai.cli.options import common_options, parse_set_options
from usseg_monai.data.io import load_datalist
from usseg_monai.evaluation.budgets import BUDGETS, get_budget
from usseg_monai.evaluation.claims import PROTOCOLS
from usseg_monai.evaluation.report import combine_results, load_suite_results, update_bundle_readmes, write_report
from usseg_monai.evaluation.runner import run_benchmark
from usseg_monai.evaluation.suite import run_suite
from usseg_monai.recipes import RECIPES

__all__ = ["add_benchmark_parser", "add_benchmark_arguments", "benchmark_main", "suite_main", "add_report_parser"]


def add_benchmark_arguments(parser: Any) -> Any:
    """Add the ``usseg benchmark`` arguments to an ``argparse`` parser and return it."""
    parser.add_argument(
        "bundle", nargs="?", default=None,
        help="bundle folder, or a name under bundles/ (e.g. unet_us_2d_segmentation); omitted with --suite",
    )
    parser.add_argument("--train-datalist", required=True, help="datalist JSON trained on")
    parser.add_argument("--train-key", default="training", help="section trained on (default: training)")
    parser.add_argument("--val-key", default="validation", help="section of the training datalist validated on during training")
    parser.add_argument("--test-datalist", required=True, help="datalist JSON scored (used as is, e.g. a held-back test set)")
    parser.add_argument("--test-key", default="test", help="section scored (default: test)")
    parser.add_argument("--budget", default="smoke", choices=sorted(BUDGETS), help="named budget")
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's max_epochs")
    parser.add_argument(
        "--iterations", type=int, default=None, help="override the budget's max_iterations (train this many iterations)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="override the budget's batch size")
    parser.add_argument("--image-size", type=int, nargs="+", default=None, help="override the input size (x y [z])")
    parser.add_argument("--val-interval", type=int, default=None, help="validate every N epochs (0: after the last)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda:0 ... (default: the bundle's)")
    parser.add_argument("--amp", default=None, choices=["true", "false"], help="mixed precision (default: the bundle's)")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one per core)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="extra bundle override, e.g. --set learning_rate=0.003")
    parser.add_argument("--output", required=True, help="run folder (checkpoints, predictions, results.json); with --suite the suite's folder")
    parser.add_argument(
        "--section-epochs", action="store_true",
        help="every epoch is ceil(training items / batch) iterations, whatever part of them the bundle's loader "
        "iterates (as the suite's class-label and few-mask tables train every row)",
    )
    add_suite_arguments(parser)
    return parser


def benchmark_main(args: Any) -> int:
    """Run ``usseg benchmark`` from parsed arguments (one bundle, or ``--suite``); print the results path."""
    if getattr(args, "suite", None):
        if args.bundle is not None:
            raise ValueError(f"give either a bundle ({args.bundle!r}) or --suite, not both")
        if args.set:
            raise ValueError("--set applies to one bundle; the suite sets each run's overrides itself")
        if args.section_epochs:
            raise ValueError("--section-epochs applies to one bundle; the suite sets it for the tables that need it")
        return suite_main(args)
    if args.bundle is None:
        raise ValueError("give a bundle (e.g. unet_us_2d_segmentation) or --suite PROTOCOLS")
    overrides = parse_set_options(args.set)
    budget_overrides: dict[str, Any] = {
        "max_epochs": args.epochs, "max_iterations": args.iterations, "batch_size": args.batch_size,
        "val_interval": args.val_interval,
    }
    if args.image_size:
        n = len(args.image_size)
        if n not in (2, 3):
            raise ValueError(f"--image-size takes 2 or 3 numbers, got {args.image_size}")
        budget_overrides["image_size_2d" if n == 2 else "image_size_3d"] = tuple(args.image_size)
    run_benchmark(
        args.bundle,
        args.train_datalist,
        args.test_datalist,
        args.output,
        train_key=args.train_key,
        val_key=args.val_key,
        test_key=args.test_key,
        budget=get_budget(args.budget, **budget_overrides),
        seed=args.seed,
        device=args.device,
        amp=None if args.amp is None else args.amp == "true",
        n_resamples=args.n_resamples,
        bundle_overrides=overrides,
        threads=args.threads,
        section_epochs=args.section_epochs,
    )
    print(Path(args.output) / "results.json")
    return 0


def add_benchmark_parser(subparsers: Any) -> None:
    """Register ``usseg benchmark`` (see :mod:`usseg_monai.cli`)."""
    p = subparsers.add_parser(
        "benchmark",
        parents=[common_options()],
        help="train a bundle at a named budget, score it on a test datalist, write results.json",
        description="Train a bundle at a named budget, score it on a test datalist, write a results JSON. Budgets: "
        + "; ".join(f"{b.name}: {b.description}" for b in BUDGETS.values()),
    )
    add_benchmark_arguments(p)
    p.set_defaults(func=benchmark_main)


def add_suite_arguments(parser: Any) -> None:
    """The ``--suite`` options of ``usseg benchmark``."""
    g = parser.add_argument_group("suite (usseg benchmark --suite ...)")
    g.add_argument(
        "--suite", default=None, metavar="PROTOCOLS",
        help=f"run the results protocols instead of one bundle: 'all' or a comma list of {','.join(PROTOCOLS)}",
    )
    g.add_argument("--dataset-name", default=None, help="the dataset's name in the report (default: the datalist's 'name')")
    g.add_argument("--class-only", type=int, nargs="+", default=[100], help="class-only amounts (class_labels protocol)")
    g.add_argument("--fractions", type=float, nargs="+", default=[0.04, 0.10], help="labeled fractions (few_masks protocol)")
    g.add_argument("--num-cls-classes", type=int, default=None, help="SemiSeg-CAW classes (default: the datalist's 'classes')")
    g.add_argument(
        "--recipe", nargs="+", default=None, choices=sorted(RECIPES),
        help="run only the tables of these recipes (default: every recipe of each protocol, PROTOCOL_RECIPES)",
    )
    g.add_argument("--report", default=None, help="write the Markdown report here (figures in figures/ beside it)")
    g.add_argument(
        "--reuse-runs", default=None, metavar="RESULTS",
        help="a suite results.json(.gz) from an earlier run (e.g. docs/results.json.gz): its runs with the same budget, "
        "overrides and seed are not trained again",
    )
    g.add_argument(
        "--keep", default=None, metavar="RESULTS",
        help="also merge the runs into this suite results file (.json.gz: compressed) after every run the suite "
        "trains, keeping its other runs; commit it and pass it as --reuse-runs to carry a long benchmark to another "
        "machine or session (benchmarks/deciding_budget.sh)",
    )


def _argv_of(args: Any) -> list[str]:
    """The suite's options as a command line (recorded in the report)."""
    out = ["--suite", shlex.quote(args.suite)]
    for flag, value in (
        ("--dataset-name", args.dataset_name), ("--budget", args.budget), ("--epochs", args.epochs),
        ("--iterations", args.iterations), ("--recipe", args.recipe),
        ("--batch-size", args.batch_size), ("--image-size", args.image_size), ("--train-datalist", args.train_datalist),
        ("--train-key", args.train_key), ("--test-datalist", args.test_datalist), ("--test-key", args.test_key),
        ("--class-only", args.class_only), ("--fractions", args.fractions), ("--seed", args.seed),
        ("--threads", args.threads), ("--output", args.output), ("--reuse-runs", args.reuse_runs),
    ):
        if value is None:
            continue
        out.append(flag)
        out += [shlex.quote(str(v)) for v in value] if isinstance(value, (list, tuple)) else [shlex.quote(str(value))]
    return out


def suite_main(args: Any) -> int:
    """``usseg benchmark --suite ...``."""
    protocols = list(PROTOCOLS) if args.suite.strip() == "all" else [p.strip() for p in args.suite.split(",") if p.strip()]
    name = args.dataset_name
    if name is None:
        data = load_datalist(Path(args.train_datalist), check_files=False)
        name = str(data.get("name") or Path(args.train_datalist).parent.name)
    overrides: dict[str, Any] = {
        "max_epochs": args.epochs, "max_iterations": args.iterations, "batch_size": args.batch_size,
        "val_interval": args.val_interval,
    }
    if args.image_size:
        overrides["image_size_2d" if len(args.image_size) == 2 else "image_size_3d"] = tuple(args.image_size)
    run_suite(
        protocols, name, args.train_datalist, args.test_datalist, args.output,
        train_key=args.train_key, val_key=args.val_key, test_key=args.test_key, budget=args.budget,
        budget_overrides=overrides, class_only=args.class_only, fractions=args.fractions,
        num_cls_classes=args.num_cls_classes, seed=args.seed, device=args.device, threads=args.threads,
        n_resamples=args.n_resamples, report=args.report, recipes=args.recipe, reuse_runs=args.reuse_runs,
        keep=args.keep, command="usseg benchmark " + " ".join(_argv_of(args)),
    )
    print(Path(args.output) / "results.json")
    return 0


def _run_report(args: Any) -> int:
    loaded = [load_suite_results(path) for path in args.results]
    results = loaded[0] if len(loaded) == 1 else combine_results(loaded)
    preamble = Path(args.preamble).read_text(encoding="utf-8") if args.preamble else None
    out = write_report(results, args.output, n_gallery_cases=args.gallery_cases, preamble=preamble)
    print(out["markdown"])
    if args.bundle_readmes:
        for path in update_bundle_readmes(results, args.bundle_readmes):
            print(path)
    return 0


def add_report_parser(subparsers: Any) -> None:
    """``usseg report RESULTS --output docs/results.md [--bundle-readmes bundles]``."""
    p = subparsers.add_parser(
        "report",
        parents=[common_options()],
        help="write the results report (Markdown + PNG figures) from a suite's results.json",
        description="The results report: tables (Markdown) and figures (PNG) from a suite's results.json.",
    )
    p.add_argument(
        "results", nargs="+",
        help="a suite results.json (usseg benchmark --suite ... --output WORK: WORK/results.json); several (e.g. the "
        "cpu-quick and cpu-decide suites) make one report, a later file's tables titled with its budget",
    )
    p.add_argument("--output", required=True, help="the Markdown file; figures go to figures/ beside it")
    p.add_argument("--gallery-cases", type=int, default=4, help="test cases per gallery (default 4)")
    p.add_argument("--preamble", default=None, help="a Markdown file placed after the title (data preparation, test sets)")
    p.add_argument(
        "--bundle-readmes", default=None, metavar="BUNDLES_DIR",
        help="also rewrite the generated results section of every bundles/*/docs/README.md that has the markers",
    )
    p.set_defaults(func=_run_report)

"""Evaluation: train, score and time bundle runs, plan and run the results suite, write the report.

The layer above the library (it imports data, metrics, engines, handlers and the recipes; nothing below imports
it). One idea per module, imports pointing one way:

- :mod:`~usseg_monai.evaluation.budgets`: named training budgets;
- :mod:`~usseg_monai.evaluation.claims`: the papers' protocols, claims and targets;
- :mod:`~usseg_monai.evaluation.measure`: iteration timer, training curve, device and versions of a run;
- :mod:`~usseg_monai.evaluation.train_state`: resuming an interrupted training (its settings and progress file);
- :mod:`~usseg_monai.evaluation.runner`: one bundle run (train, test, record) -> budgets, measure, train_state;
- :mod:`~usseg_monai.evaluation.figures` and :mod:`~usseg_monai.evaluation.report`: the Markdown report and its
  figures from a suite's results -> claims;
- :mod:`~usseg_monai.evaluation.plan`: the suite's rows -> claims;
- :mod:`~usseg_monai.evaluation.suite`: run a plan, reuse finished runs, merge, report -> plan, runner, report.

The command line (``usseg benchmark``, ``usseg report``) is in :mod:`usseg_monai.cli.evaluation`.
"""

from usseg_monai.evaluation.budgets import BUDGETS, PAPER_PROTOCOLS, Budget, get_budget, section_epoch_length
from usseg_monai.evaluation.claims import CLAIMS, PROTOCOLS, TARGETS, paired_dice_difference, protocol_key, target_verdict
from usseg_monai.evaluation.plan import RunSpec, plan_suite, variant_datalist
from usseg_monai.evaluation.report import load_suite_results, markdown_report, update_bundle_readmes, write_report
from usseg_monai.evaluation.runner import run_benchmark
from usseg_monai.evaluation.suite import reuse_mismatch, run_suite, runs_of_results

__all__ = [
    "BUDGETS", "PAPER_PROTOCOLS", "Budget", "get_budget", "section_epoch_length", "CLAIMS", "PROTOCOLS", "TARGETS",
    "paired_dice_difference", "protocol_key", "target_verdict", "RunSpec", "plan_suite", "variant_datalist",
    "load_suite_results", "markdown_report", "update_bundle_readmes", "write_report", "run_benchmark",
    "reuse_mismatch", "run_suite", "runs_of_results",
]

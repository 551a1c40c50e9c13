"""usseg_monai.engines: trainers that SupervisedTrainer cannot express alone, built on monai.engines."""

from .two_branch import TwoBranchTrainer, loss_terms, total_iterations

__all__ = ["TwoBranchTrainer", "loss_terms", "total_iterations"]

"""usseg_monai.engines: trainers that SupervisedTrainer cannot express alone, built on monai.engines."""

from .optim import OPTIMIZERS, make_optimizer
from .two_branch import TwoBranchTrainer, loss_terms, total_iterations

__all__ = ["TwoBranchTrainer", "loss_terms", "total_iterations", "OPTIMIZERS", "make_optimizer"]

"""usseg_monai.engines: trainers that SupervisedTrainer cannot express alone, built on monai.engines."""

from .distributed import DDP_GROUP_HOLDERS, release_process_group, shutdown_process_group
from .optim import LR_SCHEDULES, OPTIMIZERS, make_lr_scheduler, make_optimizer
from .semi_supervised import CyclicLoader, SemiSupervisedTrainer, require_checkpoint, sigmoid_rampup
from .two_branch import TwoBranchTrainer, loss_terms, total_iterations

__all__ = [
    "SemiSupervisedTrainer",
    "CyclicLoader",
    "sigmoid_rampup",
    "require_checkpoint",
    "TwoBranchTrainer",
    "loss_terms",
    "total_iterations",
    "OPTIMIZERS",
    "make_optimizer",
    "LR_SCHEDULES",
    "make_lr_scheduler",
    "DDP_GROUP_HOLDERS",
    "release_process_group",
    "shutdown_process_group",
]

"""usseg_monai.networks: segmentation networks (2D and 3D where the method applies)."""

from .class_elevate import ClassElevateSeg
from .crii_net import CRII_INFERENCE_MODES, FEW_MASK_METHODS, CoarseRefinedNet, make_few_mask_network, split_coarse_refined
from .malunet import MALUNet
from .mean_teacher import EMAUpdateHandler, MeanTeacherNet
from .semiseg_caw import SemiSegCAWNet, unpack_semiseg_output
from .two_branch import TwoBranchNet
from .unet import PyMICConvBlock, PyMICUNet
from .unext import UNeXt

__all__ = [
    "PyMICUNet",
    "PyMICConvBlock",
    "TwoBranchNet",
    "CoarseRefinedNet",
    "split_coarse_refined",
    "CRII_INFERENCE_MODES",
    "MALUNet",
    "UNeXt",
    "ClassElevateSeg",
    "SemiSegCAWNet",
    "MeanTeacherNet",
    "EMAUpdateHandler",
    "make_few_mask_network",
    "FEW_MASK_METHODS",
    "unpack_semiseg_output",
]

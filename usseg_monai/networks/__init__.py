"""usseg_monai.networks: segmentation networks (2D and 3D where the method applies)."""

from .class_elevate import ClassElevateSeg
from .crii_net import CRII_INFERENCE_MODES, CoarseRefinedNet, split_coarse_refined
from .malunet import MALUNet
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
    "unpack_semiseg_output",
]

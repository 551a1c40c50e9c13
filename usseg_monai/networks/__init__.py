"""usseg_monai.networks: segmentation networks (2D and 3D)."""

from .two_branch import TwoBranchNet
from .unet import PyMICConvBlock, PyMICUNet

__all__ = ["PyMICUNet", "PyMICConvBlock", "TwoBranchNet"]

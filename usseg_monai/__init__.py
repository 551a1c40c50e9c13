"""usseg-monai: annotation-efficient ultrasound lesion segmentation as MONAI bundles."""

__version__ = "0.1.0"

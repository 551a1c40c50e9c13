"""usseg_monai.transforms."""

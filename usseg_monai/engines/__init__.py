"""usseg_monai.engines."""

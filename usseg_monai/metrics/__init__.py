"""usseg_monai.metrics."""

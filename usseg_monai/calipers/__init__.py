"""usseg_monai.calipers."""

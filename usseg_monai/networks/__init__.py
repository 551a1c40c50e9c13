"""usseg_monai.networks."""

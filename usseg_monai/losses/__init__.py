"""usseg_monai.losses."""

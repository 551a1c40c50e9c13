"""The bottom layer of usseg-monai: small tensor helpers that every other sub-package may import (it imports none)."""

from usseg_monai.utils.tensor import channel_argmax

__all__ = ["channel_argmax"]

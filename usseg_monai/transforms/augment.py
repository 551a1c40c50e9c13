"""Training augmentations chosen by name, so that every row of a protocol can train with the same one.

A bundle's ``train#random_transforms`` is ``train_augmentation(@augmentation, keys, modes, ...)``; the results
suite (:mod:`usseg_monai.recipes`) sets ``augmentation`` for every row of a protocol. 2D and 3D share one code path.

- ``"reference"``: CRBNet's reference augmentation (NeuronXJTU/CRBNet ``code/dataloaders/dataset.py``, SSL4MIS's
  ``RandomGenerator``): with probability 1/2 a random multiple of 90 degrees in the first two spatial axes and a flip
  of one random axis, else with probability 1/4 a rotation by a uniform angle in ``[-rotate_range, rotate_range]``
  (in-plane: the first two spatial axes), else nothing.
- ``"flip_affine"``: the project's default (the reference UNet's since #2): a flip of the first spatial axis with
  probability 1/2, an in-plane rotation in ``[-rotate_range, rotate_range]`` and isotropic-per-axis scaling by up to
  10% with probability 1/2, and an intensity scaling ``x (1 + f)``, ``f`` uniform in ``[-0.1, 0.1]``, of the image
  with probability 1/2.
- ``"none"``: no augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import (
    Compose,
    Identityd,
    MapTransform,
    OneOf,
    RandAffined,
    RandAxisFlipd,
    RandFlipd,
    RandRotate90d,
    RandRotated,
    RandScaleIntensityd,
)

__all__ = ["AUGMENTATIONS", "train_augmentation"]

#: names accepted by :func:`train_augmentation`
AUGMENTATIONS = ("reference", "flip_affine", "none")


def train_augmentation(
    name: str,
    keys: Sequence[str],
    modes: Sequence[str],
    rotate_range: float = 0.3490658503988659,
    spatial_dims: int = 2,
    image_key: str = "image",
) -> list[MapTransform | OneOf]:
    """The random training transforms of augmentation ``name`` (see the module docstring).

    Args:
        name: one of :data:`AUGMENTATIONS`.
        keys: the dictionary keys moved together (the image first, then its label maps).
        modes: the interpolation mode of each key for rotations (``"bilinear"`` for the image, ``"nearest"`` for
            labels); same length as ``keys``.
        rotate_range: the largest rotation, radians (default 20 degrees, the reference's).
        spatial_dims: 2 or 3; in 3D the rotations are in the plane of the first two spatial axes (about the last).
        image_key: the key intensity transforms apply to.

    Raises:
        ValueError: unknown name, ``modes`` not matching ``keys``, or ``spatial_dims`` not 2 or 3.
    """
    key = str(name).lower()
    if key not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {name!r}")
    keys, modes = list(keys), list(modes)
    if len(modes) != len(keys):
        raise ValueError(f"augmentation: {len(modes)} modes for {len(keys)} keys {keys}")
    if int(spatial_dims) not in (2, 3):
        raise ValueError(f"augmentation: spatial_dims must be 2 or 3, got {spatial_dims}")
    r = float(rotate_range)
    # an in-plane rotation: about the only axis in 2D, about the last spatial axis (z) in 3D
    in_plane = {"range_x": r} if int(spatial_dims) == 2 else {"range_z": r}
    affine_rotation: float | tuple[float, float, float] = r if int(spatial_dims) == 2 else (0.0, 0.0, r)
    if key == "none":
        return []
    if key == "reference":
        rot_flip = Compose([RandRotate90d(keys, prob=1.0, max_k=4), RandAxisFlipd(keys, prob=1.0)])
        rotate = RandRotated(keys, prob=1.0, mode=modes, padding_mode="zeros", keep_size=True, **in_plane)
        return [OneOf([rot_flip, rotate, Identityd(keys)], weights=[0.5, 0.25, 0.25])]
    return [
        RandFlipd(keys, spatial_axis=0, prob=0.5),
        RandAffined(keys, prob=0.5, rotate_range=affine_rotation, scale_range=0.1, mode=modes, padding_mode="zeros"),
        RandScaleIntensityd(image_key, factors=0.1, prob=0.5),
    ]

"""MONAI transforms that read, derive and move caliper annotations: array forms ``Foo`` and dictionary forms ``Food``.

:class:`LoadCalipers` (a caliper JSON file), :class:`CalipersFromMask` (the calipers a clinician would draw on a
mask), :class:`CalipersFromPoints` (endpoint coordinates, e.g. from MONAI Label clicks), :class:`RandCaliperJitter`
(reader variability) and :class:`ResampleCalipers` (endpoints onto a resized grid). Channel-first tensors
``[C, x, y(, z)]`` (MetaTensors), 2D and 3D alike; spacing (mm) from the image metadata (``MetaTensor.pixdim``).
What the annotations become (pseudo-labels, constraints, measurements) is in
:mod:`usseg_monai.transforms.caliper_masks`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, RandomizableTransform, Transform
from monai.utils import ensure_tuple_rep

from usseg_monai.calipers.annotation import (
    DEFAULT_ANGLE_TOLERANCE,
    CaliperAnnotation,
    CaliperLesion,
    calipers_from_points,
    load_calipers,
)
from usseg_monai.calipers.derive import calipers_from_mask, jitter_calipers
from usseg_monai.data.io import DatasetError

__all__ = ["image_spacing", "spatial_mask", "LoadCalipers", "LoadCalipersd", "CalipersFromMask", "CalipersFromMaskd", "RandCaliperJitter", "RandCaliperJitterd", "CalipersFromPoints", "CalipersFromPointsd", "resample_calipers", "ResampleCalipers", "ResampleCalipersd", "LoadCalipersD", "LoadCalipersDict", "CalipersFromMaskD", "CalipersFromMaskDict", "RandCaliperJitterD", "RandCaliperJitterDict", "CalipersFromPointsD", "CalipersFromPointsDict", "ResampleCalipersD", "ResampleCalipersDict"]


def image_spacing(img: Any, nd: int | None = None) -> tuple[float, ...]:
    """Spacing (mm per voxel, ``(x, y[, z])``) of a channel-first image: ``MetaTensor.pixdim``, else 1.0."""
    nd = (img.ndim - 1) if nd is None else nd
    if isinstance(img, MetaTensor):
        pix = np.asarray(img.pixdim, dtype=np.float64).ravel()
        if len(pix) >= nd:
            return tuple(float(p) for p in pix[:nd])
    return (1.0,) * nd


def spatial_mask(img: Any, threshold: float, channel: int | None, where: str) -> np.ndarray:
    """Boolean ``(x, y[, z])`` mask from a channel-first tensor or array."""
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if arr.ndim not in (3, 4):
        raise ValueError(f"{where}: expected a channel-first [C, x, y(, z)] array, got shape {tuple(arr.shape)}")
    c = channel if channel is not None else (0 if arr.shape[0] == 1 else 1)
    if not 0 <= c < arr.shape[0]:
        raise ValueError(f"{where}: lesion channel {c} does not exist in an array with {arr.shape[0]} channels")
    return arr[c] > threshold


class LoadCalipers(Transform):
    """Read a caliper JSON file (or accept a parsed dict / an annotation) into a :class:`CaliperAnnotation`.

    Args:
        validate: check the annotation (see :meth:`CaliperAnnotation.validate`).
        angle_tolerance: allowed deviation from perpendicular, degrees.
    """

    def __init__(self, validate: bool = True, angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE) -> None:
        self.validate = validate
        self.angle_tolerance = angle_tolerance

    def __call__(self, src: str | os.PathLike | Mapping | CaliperAnnotation) -> CaliperAnnotation:
        if isinstance(src, CaliperAnnotation):
            return src.validate(self.angle_tolerance) if self.validate else src
        if isinstance(src, Mapping):
            return CaliperAnnotation.from_dict(dict(src), validate=self.validate, angle_tolerance=self.angle_tolerance)
        return load_calipers(src, validate=self.validate, angle_tolerance=self.angle_tolerance)


class LoadCalipersd(MapTransform):
    """Dictionary form of :class:`LoadCalipers`: replace each key's path by the annotation.

    Args:
        keys: annotation keys (file paths, dicts or annotations).
        validate, angle_tolerance: see :class:`LoadCalipers`.
        mask_key: when an item has no annotation under a key but has this key (a mask file), derive the
            calipers from the mask as a clinician would measure it (:func:`calipers_from_mask`, empty mask: no
            lesion). ``None`` (default): a missing annotation is an error. Meant for callers that only hold
            masks, e.g. MONAI Label's training, whose datastore gives ``image`` + ``label``; a bundle's own
            datalist carries caliper files and never reaches this path.
        ref_key: the loaded image whose spacing (``pixdim``, mm) the derived calipers use.
        min_voxels: mask components smaller than this are speckle and get no calipers.
        allow_missing_keys: skip items without the key (and without ``mask_key``) instead of failing.
    """

    def __init__(self, keys: KeysCollection = "calipers", validate: bool = True,
                 angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE, mask_key: str | None = None,
                 ref_key: str = "image", min_voxels: int = 20, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadCalipers(validate, angle_tolerance)
        self.mask_key = mask_key
        self.ref_key = ref_key
        self.min_voxels = int(min_voxels)

    def _from_mask(self, d: Mapping[Hashable, Any]) -> CaliperAnnotation:
        path = d[self.mask_key]
        mask = LoadImage(image_only=True, ensure_channel_first=True)(path) if isinstance(path, (str, os.PathLike)) else path
        arr = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        if arr.ndim < 3:
            raise DatasetError(f"{path}: a mask needs a channel and 2 or 3 spatial dimensions, got shape {arr.shape}")
        m = (arr > 0).any(axis=0)
        ref = d.get(self.ref_key)
        if ref is not None and tuple(ref.shape[1:]) != m.shape:
            raise DatasetError(f"{path}: mask shape {list(m.shape)} differs from the image's {list(ref.shape[1:])}")
        spacing = image_spacing(ref, m.ndim) if ref is not None else image_spacing(mask, m.ndim)
        return calipers_from_mask(m, spacing, allow_empty=True, min_voxels=self.min_voxels, where=str(path))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            if key in d:
                d[key] = self.loader(d[key])
            elif self.mask_key is not None and self.mask_key in d:
                d[key] = self._from_mask(d)
            elif not self.allow_missing_keys:
                what = f"no {key!r}" + (f" and no {self.mask_key!r}" if self.mask_key else "")
                ref = d.get(self.ref_key)
                name = ref.meta.get("filename_or_obj", "") if isinstance(ref, MetaTensor) else ref
                raise KeyError(f"LoadCalipersd: item {name or '(no image name)'} has {what}")
        return d


class CalipersFromMask(Transform):
    """Derive calipers from a channel-first mask, as a clinician measures (:func:`calipers_from_mask`).

    Args:
        allow_empty: an empty mask gives an annotation without lesions instead of an error.
        connectivity: neighbourhood rank for connected lesions (default full).
        min_voxels: ignore lesions smaller than this.
        chord_step: chord sampling step as a fraction of the smallest spacing (default 0.5 in 2D, 1.0 in 3D).
        threshold: the mask is ``channel > threshold``.
        channel: lesion channel (default 0 for one channel, 1 for a one-hot / two-class mask).
    """

    def __init__(self, allow_empty: bool = False, connectivity: int | None = None, min_voxels: int = 1,
                 chord_step: float | None = None, threshold: float = 0.5, channel: int | None = None) -> None:
        self.allow_empty = allow_empty
        self.connectivity = connectivity
        self.min_voxels = min_voxels
        self.chord_step = chord_step
        self.threshold = threshold
        self.channel = channel

    def __call__(self, mask: Any, spacing: Sequence[float] | None = None, where: str = "mask") -> CaliperAnnotation:
        m = spatial_mask(mask, self.threshold, self.channel, where)
        sp = image_spacing(mask, m.ndim) if spacing is None else tuple(spacing)
        return calipers_from_mask(m, sp, allow_empty=self.allow_empty, connectivity=self.connectivity,
                                  min_voxels=self.min_voxels, chord_step=self.chord_step, where=where)


class CalipersFromMaskd(MapTransform):
    """Dictionary form of :class:`CalipersFromMask`.

    Args:
        keys: mask keys (e.g. ``"label"``).
        output_keys: where to store the annotations (one per key), default ``"calipers"``.
        other args: see :class:`CalipersFromMask`.
    """

    def __init__(self, keys: KeysCollection = "label", output_keys: KeysCollection = "calipers",
                 allow_empty: bool = False, connectivity: int | None = None, min_voxels: int = 1,
                 chord_step: float | None = None, threshold: float = 0.5, channel: int | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_keys = ensure_tuple_rep(output_keys, len(self.keys))
        self.op = CalipersFromMask(allow_empty, connectivity, min_voxels, chord_step, threshold, channel)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, out in self.key_iterator(d, self.output_keys):
            d[out] = self.op(d[key], where=f"key {key!r}")
        return d


class RandCaliperJitter(RandomizableTransform):
    """Simulate reader variability on an annotation (:func:`jitter_calipers`), with probability ``prob``.

    Args:
        jitter_mm: standard deviation of the endpoint displacement per axis, mm.
        prob: probability of jittering.
    """

    def __init__(self, jitter_mm: float = 1.0, prob: float = 1.0) -> None:
        RandomizableTransform.__init__(self, prob)
        if jitter_mm < 0:
            raise ValueError(f"jitter_mm must be >= 0, got {jitter_mm}")
        self.jitter_mm = jitter_mm

    def __call__(self, annotation: CaliperAnnotation, randomize: bool = True) -> CaliperAnnotation:
        if randomize:
            self.randomize(None)
        if not self._do_transform or self.jitter_mm == 0:
            return annotation
        seed = int(self.R.randint(0, 2**31 - 1))
        return jitter_calipers(annotation, self.jitter_mm, seed)


class RandCaliperJitterd(RandomizableTransform, MapTransform):
    """Dictionary form of :class:`RandCaliperJitter`; place it before :class:`CaliperPseudoLabelsd`."""

    def __init__(self, keys: KeysCollection = "calipers", jitter_mm: float = 1.0, prob: float = 1.0,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.op = RandCaliperJitter(jitter_mm, prob=1.0)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandCaliperJitterd:
        super().set_random_state(seed, state)
        self.op.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class CalipersFromPoints(Transform):
    """The caliper annotation a reader drew on ``img``: endpoints in order, or a caliper annotation of its own.

    ``points`` is either the endpoints of one lesion's axes in order (2D: long axis start, end, short axis
    start, end; 3D: then the third axis; voxel coordinates ``(x, y[, z])`` of the image as loaded, see
    :func:`~usseg_monai.calipers.calipers_from_points`), or the JSON form of a whole annotation (a dict, or that
    dict as a JSON string), whose ``image_shape`` must be the image's. The grid of the result is the image's:
    its spatial shape and its spacing (``pixdim``, mm; 1.0 for plain PNGs, i.e. pixel units). This is how the
    caliper-guided MONAI Label task turns a request into the annotation :class:`ConstrainToCalipers` uses.

    Raises:
        DatasetError: naming ``where`` and what is wrong (number of points, non-numbers, non-finite, zero-length or
            non-perpendicular axes, endpoints outside the image, an annotation made for another image size).
    """

    def __init__(self, angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE) -> None:
        self.angle_tolerance = angle_tolerance

    def __call__(self, img: Any, points: Any, where: str = "points") -> CaliperAnnotation:
        shape = tuple(int(s) for s in img.shape[1:])
        spacing = image_spacing(img)
        if isinstance(points, str):
            try:
                points = json.loads(points)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{where}: not valid JSON ({e})") from e
        if isinstance(points, dict):
            annotation = CaliperAnnotation.from_dict(points, where=where, validate=False)
            if annotation.image_shape != shape:
                raise DatasetError(
                    f"{where}: the calipers were drawn on an image of shape {list(annotation.image_shape)}, "
                    f"this image has shape {list(shape)}"
                )
            return annotation.validate(self.angle_tolerance, where=where)
        return calipers_from_points(points, shape, spacing, where=where, angle_tolerance=self.angle_tolerance)


class CalipersFromPointsd(MapTransform):
    """Dictionary form of :class:`CalipersFromPoints`: ``points_key`` of the item, on the grid of ``keys`` (the
    loaded, channel-first image, before any resizing), written to ``output_key``.

    An item without points (key absent, ``None``, or an empty list) passes unchanged: no calipers, no constraint.
    ``source`` names the points in error messages (default ``field '<points_key>'``; the MONAI Label task names
    the request field the client sent).
    """

    def __init__(self, keys: KeysCollection = "image", points_key: str = "points", output_key: str = "calipers",
                 angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE, source: str | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.points_key = points_key
        self.output_key = output_key
        self.source = source if source is not None else f"field {points_key!r}"
        self.op = CalipersFromPoints(angle_tolerance)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        points = d.get(self.points_key)
        if points is None or (isinstance(points, (list, tuple, str)) and len(points) == 0):
            return d
        for key in self.key_iterator(d):
            d[self.output_key] = self.op(d[key], points, where=self.source)
        return d


def resample_calipers(annotation: CaliperAnnotation, spatial_shape: Sequence[int]) -> CaliperAnnotation:
    """Map ``annotation`` from its ``image_shape`` grid onto a grid of ``spatial_shape`` with the same field of view.

    Voxel coordinates map as MONAI's :class:`~monai.transforms.Resize` maps voxel centres (``align_corners=False``):
    ``x_new = (x_old + 0.5) * n_new / n_old - 0.5`` per axis, and the spacing becomes
    ``spacing * n_old / n_new`` (mm), which is the ``pixdim`` that ``Resize`` writes into the MetaTensor's affine.
    The physical geometry is unchanged: ``x_new * spacing_new = x_old * spacing_old + const`` per axis, so every
    segment vector, length (mm) and angle is the same, and endpoints inside ``[-0.5, n_old - 0.5]`` stay inside
    ``[-0.5, n_new - 0.5]``. An annotation without lesions keeps none.

    Raises:
        DatasetError: ``spatial_shape`` of another dimension than the annotation, or not positive.
    """
    if not isinstance(annotation, CaliperAnnotation):
        raise TypeError(f"expected a CaliperAnnotation (use LoadCalipersd first), got {type(annotation).__name__}")
    new = np.asarray([int(s) for s in spatial_shape], dtype=np.float64)
    old = np.asarray(annotation.image_shape, dtype=np.float64)
    if new.shape != old.shape:
        raise DatasetError(
            f"calipers: cannot resample a {len(old)}D annotation (image_shape {annotation.image_shape}) onto a "
            f"{len(new)}D grid {[int(s) for s in new]}"
        )
    if np.any(new < 1):
        raise DatasetError(f"calipers: target grid {[int(s) for s in new]} must be positive")
    scale = new / old
    lesions = [CaliperLesion((les.segments + 0.5) * scale - 0.5, les.name) for les in annotation.lesions]
    spacing = tuple(float(s) for s in np.asarray(annotation.spacing) / scale)
    meta = dict(annotation.meta)
    meta.setdefault("original_image_shape", list(annotation.image_shape))
    return CaliperAnnotation(spacing, tuple(int(s) for s in new), lesions, meta)


class ResampleCalipers(Transform):
    """Resample an annotation onto a resized image's grid (:func:`resample_calipers`).

    Put it after :class:`~monai.transforms.Resize` of the image, so that :class:`CaliperPseudoLabels` rasterises
    the conservative, radical and axis labels at the training resolution: resizing labels rasterised at full
    resolution with ``nearest`` would lose most of the one-voxel-wide axis mask and jag the ellipses.

    Args:
        spatial_size: the target grid ``(x, y[, z])``; ``None``: the spatial shape of the ``ref`` image given
            at call time (a channel-first tensor).
    """

    def __init__(self, spatial_size: Sequence[int] | None = None) -> None:
        self.spatial_size = None if spatial_size is None else tuple(int(s) for s in spatial_size)

    def __call__(self, annotation: CaliperAnnotation, ref: Any = None) -> CaliperAnnotation:
        if ref is not None:
            shape = tuple(int(s) for s in ref.shape[1:])
        elif self.spatial_size is not None:
            shape = self.spatial_size
        else:
            raise ValueError("ResampleCalipers needs spatial_size or a reference image")
        if tuple(annotation.image_shape) == shape:
            return annotation
        return resample_calipers(annotation, shape)


class ResampleCalipersd(MapTransform):
    """Dictionary form of :class:`ResampleCalipers`: map the annotation onto ``ref_key``'s (resized) grid.

    Typical chain::

        LoadImaged("image"), EnsureChannelFirstd("image"), ApplySpacingd("image"), LoadCalipersd("calipers"),
        Resized("image", spatial_size=(256, 256)), ResampleCalipersd("calipers", ref_key="image"),
        CaliperPseudoLabelsd("calipers", ref_key="image")

    Args:
        keys: annotation keys.
        ref_key: channel-first image whose spatial shape is the target grid (``None``: use ``spatial_size``).
        spatial_size: fixed target grid when ``ref_key`` is ``None``.
    """

    def __init__(self, keys: KeysCollection = "calipers", ref_key: str | None = "image",
                 spatial_size: Sequence[int] | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if ref_key is None and spatial_size is None:
            raise ValueError("ResampleCalipersd needs ref_key or spatial_size")
        self.ref_key = ref_key
        self.op = ResampleCalipers(spatial_size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            ref = None
            if self.ref_key is not None:
                if self.ref_key not in d:
                    raise KeyError(f"ResampleCalipersd: reference image key {self.ref_key!r} is missing from the item")
                ref = d[self.ref_key]
            d[key] = self.op(d[key], ref)
        return d


LoadCalipersD = LoadCalipersDict = LoadCalipersd


CalipersFromMaskD = CalipersFromMaskDict = CalipersFromMaskd


RandCaliperJitterD = RandCaliperJitterDict = RandCaliperJitterd


CalipersFromPointsD = CalipersFromPointsDict = CalipersFromPointsd


ResampleCalipersD = ResampleCalipersDict = ResampleCalipersd

"""MONAI transforms between calipers and masks: pseudo-labels from calipers, masks constrained to calipers, and
lesion measurements from masks (array forms ``Foo``, dictionary forms ``Food``).

:class:`CaliperPseudoLabels` rasterises an annotation into CRBNet's conservative and radical labels (and the axes
map); :class:`ConstrainToCalipers` keeps a predicted mask's lesion inside given calipers (MONAI Label, ``usseg
infer --calipers``); :class:`MeasureLesion` measures a predicted mask (:func:`usseg_monai.calipers.measure_mask`).
The annotations come from :mod:`usseg_monai.transforms.caliper_annotations`.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from usseg_monai.calipers.annotation import DEFAULT_ANGLE_TOLERANCE, CaliperAnnotation, load_calipers
from usseg_monai.calipers.measure import measure_mask
from usseg_monai.calipers.rasterize import LABEL_NAMES, rasterize_calipers
from usseg_monai.data.io import DatasetError
from usseg_monai.transforms.caliper_annotations import image_spacing, spatial_mask

__all__ = ["CaliperPseudoLabels", "CaliperPseudoLabelsd", "MeasureLesion", "MeasureLesiond", "ConstrainToCalipers", "ConstrainToCalipersd", "CaliperPseudoLabelsD", "CaliperPseudoLabelsDict", "MeasureLesionD", "MeasureLesionDict", "ConstrainToCalipersD", "ConstrainToCalipersDict"]


class CaliperPseudoLabels(Transform):
    """Rasterise an annotation into ``[3, x, y(, z)]``: conservative label, radical label, axis mask.

    The grid (shape, spacing, affine and metadata) comes from a reference image ``ref`` (channel-first
    MetaTensor): the annotation's ``image_shape`` must equal the image's spatial shape, and its geometry is
    checked with the image's spacing (``pixdim``), which is the one used; an annotation spacing that disagrees
    with the image's gives a warning. Conservative is inside radical and the axes inside conservative, always
    (see :mod:`usseg_monai.calipers.rasterize`). An annotation without lesions gives zeros.

    Args:
        validate: check the annotation against the image before rasterising.
        angle_tolerance: allowed deviation from perpendicular, degrees.
        dtype: output dtype (float32 keeps MONAI's interpolating augmentations happy).
        warn_fallback: warn when a lesion needs the fallback ellipse.
    """

    def __init__(self, validate: bool = True, angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE,
                 dtype: torch.dtype = torch.float32, warn_fallback: bool = True) -> None:
        self.validate = validate
        self.angle_tolerance = angle_tolerance
        self.dtype = dtype
        self.warn_fallback = warn_fallback

    def grid(self, annotation: CaliperAnnotation, ref: Any = None, spatial_shape: Sequence[int] | None = None,
             spacing: Sequence[float] | None = None,
             where: str = "calipers") -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Checked grid shape and spacing for ``annotation``."""
        if not isinstance(annotation, CaliperAnnotation):
            raise TypeError(
                f"{where}: expected a CaliperAnnotation (use LoadCalipersd first), got {type(annotation).__name__}"
            )
        if spatial_shape is None:
            spatial_shape = tuple(ref.shape[1:]) if ref is not None else annotation.image_shape
        shape = tuple(int(s) for s in spatial_shape)
        nd = len(shape)
        if spacing is None:
            spacing = image_spacing(ref, nd) if ref is not None else annotation.spacing
        spacing = tuple(float(s) for s in spacing)
        if annotation.ndim != nd:
            raise DatasetError(
                f"{where}: the calipers are {annotation.ndim}D (image_shape {list(annotation.image_shape)}) "
                f"but the image is {nd}D {list(shape)}"
            )
        for i, les in enumerate(annotation.lesions):
            if les.segments.ndim != 3 or les.segments.shape[0] != nd or les.segments.shape[-1] != nd:
                raise DatasetError(
                    f"{where}: lesion {i} has {les.segments.shape[0]} segments of {les.segments.shape[-1]}D endpoints; "
                    f"a {nd}D image needs {nd} segments of {nd}D endpoints"
                )
        if tuple(annotation.image_shape) != shape:
            raise DatasetError(
                f"{where}: calipers were made for an image of shape {list(annotation.image_shape)}, "
                f"the image has shape {list(shape)}"
            )
        if not np.allclose(annotation.spacing, spacing, rtol=1e-3, atol=1e-6):
            warnings.warn(
                f"{where}: caliper spacing {list(annotation.spacing)} differs from the image spacing "
                f"{list(spacing)} mm; using the image's (apply the datalist spacing with ApplySpacingd)",
                stacklevel=2,
            )
        if self.validate:
            checked = CaliperAnnotation(spacing, shape, annotation.lesions)
            checked.validate(self.angle_tolerance, where=where)
        return shape, spacing

    def label_arrays(self, annotation: CaliperAnnotation, ref: Any = None, spatial_shape: Sequence[int] | None = None,
                     spacing: Sequence[float] | None = None, where: str = "calipers") -> dict[str, np.ndarray]:
        """The three labels as boolean ``(x, y[, z])`` arrays keyed by ``LABEL_NAMES``."""
        shape, spacing = self.grid(annotation, ref, spatial_shape, spacing, where)
        return rasterize_calipers(annotation, shape, spacing, warn=self.warn_fallback)

    def wrap(self, arr: np.ndarray, ref: Any = None) -> torch.Tensor:
        """A channel-first label tensor of ``self.dtype``; a MetaTensor with ``ref``'s affine and metadata."""
        t = torch.from_numpy(np.ascontiguousarray(arr)).to(self.dtype)
        if not isinstance(ref, MetaTensor):
            return t
        meta = {k: v for k, v in ref.meta.items() if k != "affine"}  # shallow copy: labels share read-only meta
        out = MetaTensor(t, affine=ref.affine.clone(), meta=meta)
        out.spatial_ndim = arr.ndim - 1
        return out

    def __call__(self, annotation: CaliperAnnotation, ref: Any = None, spatial_shape: Sequence[int] | None = None,
                 spacing: Sequence[float] | None = None, where: str = "calipers") -> torch.Tensor:
        labels = self.label_arrays(annotation, ref, spatial_shape, spacing, where)
        return self.wrap(np.stack([labels[name] for name in LABEL_NAMES]), ref)


class CaliperPseudoLabelsd(MapTransform):
    """Dictionary form of :class:`CaliperPseudoLabels`: add three label keys ``[1, x, y(, z)]`` each.

    Args:
        keys: the annotation key (one).
        ref_key: image key giving shape, spacing and affine.
        output_keys: names of the conservative, radical and axis labels.
        other args: see :class:`CaliperPseudoLabels`.
    """

    def __init__(self, keys: KeysCollection = "calipers", ref_key: str = "image",
                 output_keys: Sequence[str] = LABEL_NAMES, validate: bool = True,
                 angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE, dtype: torch.dtype = torch.float32,
                 warn_fallback: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"CaliperPseudoLabelsd takes one annotation key, got {self.keys}")
        if len(output_keys) != 3:
            raise ValueError(f"output_keys must name 3 labels (conservative, radical, axes), got {output_keys}")
        self.ref_key = ref_key
        self.output_keys = tuple(output_keys)
        self.op = CaliperPseudoLabels(validate, angle_tolerance, dtype, warn_fallback)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.ref_key not in d:
                raise KeyError(f"CaliperPseudoLabelsd: reference image key {self.ref_key!r} is missing from the item")
            labels = self.op.label_arrays(d[key], d[self.ref_key], where=f"key {key!r}")
            for name, out in zip(LABEL_NAMES, self.output_keys):
                d[out] = self.op.wrap(labels[name][None], d[self.ref_key])
        return d


class MeasureLesion(Transform):
    """Measure every lesion of a channel-first mask or prediction (:func:`measure_mask`), spacing from pixdim.

    Args:
        threshold: lesion where the lesion channel is ``> threshold`` (0.5 suits labels and probabilities).
        channel: lesion channel (default 0 for one channel, 1 for one-hot / softmax outputs).
        connectivity: neighbourhood rank for connected lesions (default full).
        min_voxels: ignore lesions smaller than this (speckle).

    Returns:
        A list of per-lesion dicts (mm, degrees-free; see :mod:`usseg_monai.calipers.measure`).
    """

    def __init__(self, threshold: float = 0.5, channel: int | None = None, connectivity: int | None = None,
                 min_voxels: int = 1) -> None:
        self.threshold = threshold
        self.channel = channel
        self.connectivity = connectivity
        self.min_voxels = min_voxels

    def __call__(
        self, img: Any, spacing: Sequence[float] | None = None, where: str = "prediction"
    ) -> list[dict[str, Any]]:
        m = spatial_mask(img, self.threshold, self.channel, where)
        sp = image_spacing(img, m.ndim) if spacing is None else tuple(spacing)
        return measure_mask(m, sp, connectivity=self.connectivity, min_voxels=self.min_voxels)


class MeasureLesiond(MapTransform):
    """Dictionary form of :class:`MeasureLesion`: writes ``<key>_<postfix>`` (default ``pred_measurements``)."""

    def __init__(self, keys: KeysCollection = "pred", output_postfix: str = "measurements", threshold: float = 0.5,
                 channel: int | None = None, connectivity: int | None = None, min_voxels: int = 1,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_postfix = output_postfix
        self.op = MeasureLesion(threshold, channel, connectivity, min_voxels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.output_postfix}"] = self.op(d[key], where=f"key {key!r}")
        return d


class ConstrainToCalipers(Transform):
    """Constrain a predicted mask to lie between an annotation's conservative and radical labels.

    The rule of the caliper-guided task (``usseg infer --calipers``, the MONAI Label caliper-guided annotation):
    ``out = (mask | conservative) & radical``, with the labels of :mod:`usseg_monai.calipers.rasterize` on the
    mask's own grid. Every voxel the calipers make certain (conservative, CRBNet's ``Y_c``) is lesion, nothing
    outside the radical label (``Y_r``) is; in between, the network decides. An annotation without lesions leaves
    the mask unchanged (no calipers, no constraint). This is the project's choice (CRBNet's papers train from
    the two labels but do not constrain inference).

    Args:
        validate: check the annotation against the mask's grid (shape, segment count, perpendicularity).
        angle_tolerance: allowed deviation from perpendicular, degrees.
        threshold: the mask is lesion where the lesion channel is ``> threshold``.

    Returns:
        The mask (same type, dtype, shape and metadata) with lesion voxels set to 1, others 0.
    """

    def __init__(self, validate: bool = True, angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE,
                 threshold: float = 0.5) -> None:
        self.labels = CaliperPseudoLabels(validate, angle_tolerance, warn_fallback=False)
        self.threshold = threshold

    def __call__(self, mask: Any, annotation: CaliperAnnotation, where: str = "calipers") -> Any:
        if len(annotation) == 0:
            return mask
        t = torch.as_tensor(mask)
        if t.ndim < 2 or t.shape[0] != 1:
            raise ValueError(f"{where}: ConstrainToCalipers takes a one-channel mask [1, x, y(, z)], got shape {list(t.shape)}")
        # the annotation's own spacing: the calipers were placed (and their ellipses are drawn) in it
        labels = self.labels.label_arrays(annotation, spatial_shape=t.shape[1:], spacing=annotation.spacing, where=where)
        lesion = (t[0] > self.threshold).cpu().numpy()
        out = (lesion | labels["conservative_label"]) & labels["radical_label"]
        result = t.clone()
        result[0] = torch.from_numpy(out).to(device=t.device, dtype=t.dtype)
        return result if isinstance(mask, torch.Tensor) else result.numpy()


class ConstrainToCalipersd(MapTransform):
    """Dictionary form of :class:`ConstrainToCalipers`: the item's ``calipers_key`` (a caliper JSON path or a
    :class:`~usseg_monai.calipers.CaliperAnnotation`) constrains each key's mask.

    An item without calipers (key absent, ``None`` or ``""``) passes unchanged, and ``enabled=False`` turns the
    transform off (the bundles' ``inference.json`` key ``constrain_to_calipers``, default off).

    Args:
        keys: mask keys (the binary prediction, after ``Invertd`` and ``AsDiscreted``).
        calipers_key: the item field with the calipers.
        enabled: apply the constraint.
        other args: see :class:`ConstrainToCalipers`.
    """

    def __init__(self, keys: KeysCollection = "pred", calipers_key: str = "calipers", enabled: bool = True,
                 validate: bool = True, angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE, threshold: float = 0.5,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.calipers_key = calipers_key
        self.enabled = bool(enabled)
        self.op = ConstrainToCalipers(validate, angle_tolerance, threshold)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = d.get(self.calipers_key)
        if not self.enabled or source is None or (isinstance(source, str) and not source):
            return d
        if isinstance(source, CaliperAnnotation):
            annotation, where = source, f"key {self.calipers_key!r}"
        else:
            annotation, where = load_calipers(source), str(source)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key], annotation, where=where)
        return d


CaliperPseudoLabelsD = CaliperPseudoLabelsDict = CaliperPseudoLabelsd


MeasureLesionD = MeasureLesionDict = MeasureLesiond


ConstrainToCalipersD = ConstrainToCalipersDict = ConstrainToCalipersd

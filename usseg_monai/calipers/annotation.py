"""Caliper annotations: the type, its validation and its versioned JSON form.

A caliper annotation is what a sonographer leaves on an image: per lesion, ``nd`` mutually perpendicular
segments (two in 2D: long and short axis; three in 3D: long, short and elevational), each given by two
endpoints in **voxel coordinates** in MONAI index order ``(x, y[, z])`` (see ``docs/conventions.md``),
together with the image spacing (mm per voxel, same order). Lengths and angles are reported in mm and
degrees, i.e. in physical space, never in voxels.

JSON form (``format`` / ``version`` are checked on reading)::

    {"format": "usseg-calipers", "version": 1,
     "spacing": [0.1, 0.1], "image_shape": [320, 240],
     "lesions": [{"segments": [[[x, y], [x, y]], [[x, y], [x, y]]], "name": "nodule 1"}]}

Segment 0 is the long axis, segment 1 the short axis, segment 2 (3D) the third axis; ``name`` is optional.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.utils.errors import DatasetError
from usseg_monai.utils.fileio import atomic_write_json, read_json

__all__ = [
    "CALIPER_FORMAT",
    "CALIPER_VERSION",
    "DEFAULT_ANGLE_TOLERANCE",
    "CaliperLesion",
    "CaliperAnnotation",
    "calipers_from_points",
    "load_calipers",
    "save_calipers",
]

CALIPER_FORMAT = "usseg-calipers"
CALIPER_VERSION = 1
#: default tolerance (degrees) on the deviation from 90 degrees between two segments of one lesion
DEFAULT_ANGLE_TOLERANCE = 10.0
_AXIS_NAMES = ("long", "short", "third")


@dataclass
class CaliperLesion:
    """One lesion's calipers.

    Attributes:
        segments: float array ``(n_segments, 2, nd)``: segment ``k`` runs from ``segments[k, 0]`` to
            ``segments[k, 1]``, in voxel coordinates ``(x, y[, z])``. Segment 0 is the long axis.
        name: optional free text (a clinic export's lesion id).
    """

    segments: np.ndarray
    name: str | None = None

    def __post_init__(self) -> None:
        self.segments = np.asarray(self.segments, dtype=np.float64)

    @property
    def ndim(self) -> int:
        """Spatial dimension of the endpoints."""
        return int(self.segments.shape[-1])

    @property
    def endpoints(self) -> np.ndarray:
        """All endpoints, ``(2 * n_segments, nd)`` voxel coordinates."""
        return self.segments.reshape(-1, self.segments.shape[-1])

    def vectors_mm(self, spacing: Sequence[float]) -> np.ndarray:
        """Segment vectors ``end - start`` in mm, ``(n_segments, nd)``."""
        return (self.segments[:, 1] - self.segments[:, 0]) * np.asarray(spacing, dtype=np.float64)

    def lengths_mm(self, spacing: Sequence[float]) -> np.ndarray:
        """Segment lengths in mm, ``(n_segments,)``."""
        return np.linalg.norm(self.vectors_mm(spacing), axis=-1)

    def angles_deg(self, spacing: Sequence[float]) -> np.ndarray:
        """Angle in degrees (in [0, 90]) between every pair of segments, ``(n_segments, n_segments)``.

        Computed in physical space: ``acos(|a . b| / (|a| |b|))``; 90 means perpendicular.
        """
        vec = self.vectors_mm(spacing)
        norm = np.linalg.norm(vec, axis=-1, keepdims=True)
        unit = vec / np.where(norm > 0, norm, 1.0)
        cos = np.clip(np.abs(unit @ unit.T), 0.0, 1.0)
        return np.degrees(np.arccos(cos))

    def copy(self) -> CaliperLesion:
        return CaliperLesion(self.segments.copy(), self.name)


@dataclass
class CaliperAnnotation:
    """All lesions of one image with its geometry.

    Attributes:
        spacing: mm per voxel, ``(sx, sy[, sz])``.
        image_shape: spatial shape ``(nx, ny[, nz])`` of the image the endpoints refer to.
        lesions: the lesions (possibly none: an image without lesion).
        meta: free extra fields kept through a JSON round trip (e.g. source, reader id).
    """

    spacing: tuple[float, ...]
    image_shape: tuple[int, ...]
    lesions: list[CaliperLesion] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in np.asarray(self.spacing, dtype=np.float64).ravel())
        self.image_shape = tuple(int(s) for s in self.image_shape)
        self.lesions = [
            les if isinstance(les, CaliperLesion) else CaliperLesion(np.asarray(les)) for les in self.lesions
        ]

    @property
    def ndim(self) -> int:
        """Spatial dimension (2 or 3)."""
        return len(self.image_shape)

    def __len__(self) -> int:
        return len(self.lesions)

    def copy(self) -> CaliperAnnotation:
        return CaliperAnnotation(self.spacing, self.image_shape, [les.copy() for les in self.lesions], dict(self.meta))

    def validate(self, angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE, where: str = "calipers") -> CaliperAnnotation:
        """Check the annotation; return it unchanged or raise :class:`DatasetError` naming the field.

        Checks: spacing positive and of the image's dimension; per lesion ``nd`` segments of 2 endpoints
        of ``nd`` coordinates; finite endpoints; non-zero lengths; every pair of segments perpendicular
        within ``angle_tolerance`` degrees (in mm space); endpoints inside the image, i.e. within
        ``[-0.5, n - 0.5]`` along each axis (the extent of the voxels, whose centres are at integers).

        Args:
            angle_tolerance: largest allowed deviation from 90 degrees.
            where: prefix of the error messages (e.g. the file name).
        """
        nd = self.ndim
        if nd not in (2, 3):
            raise DatasetError(f"{where}: image_shape {list(self.image_shape)} must be 2D or 3D")
        if any(s < 1 for s in self.image_shape):
            raise DatasetError(f"{where}: image_shape {list(self.image_shape)} must be positive")
        sp = np.asarray(self.spacing)
        if sp.shape != (nd,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
            raise DatasetError(
                f"{where}: spacing {list(self.spacing)} must be {nd} positive numbers (mm) for a {nd}D image"
            )
        hi = np.asarray(self.image_shape, dtype=np.float64) - 0.5
        for i, les in enumerate(self.lesions):
            seg = les.segments
            tag = f"{where}: lesion {i}"
            if seg.ndim != 3 or seg.shape[1:] != (2, seg.shape[-1]):
                raise DatasetError(f"{tag}: segments must have shape (n_segments, 2, {nd}), got {seg.shape}")
            if seg.shape[-1] != nd or seg.shape[0] != nd:
                raise DatasetError(
                    f"{tag}: a {nd}D image needs {nd} segments of {nd}D endpoints, "
                    f"got {seg.shape[0]} segments of {seg.shape[-1]}D endpoints"
                )
            for k in range(nd):
                name = f"segment {k} ({_AXIS_NAMES[k]} axis)"
                if not np.all(np.isfinite(seg[k])):
                    raise DatasetError(f"{tag} {name}: endpoints {seg[k].tolist()} are not finite")
                for e in range(2):
                    p = seg[k, e]
                    if np.any(p < -0.5) or np.any(p > hi):
                        raise DatasetError(
                            f"{tag} {name}: endpoint {p.tolist()} lies outside the image of shape "
                            f"{list(self.image_shape)} (valid range [-0.5, n-0.5] per axis)"
                        )
            lengths = les.lengths_mm(sp)
            for k in range(nd):
                if lengths[k] <= 1e-9:
                    raise DatasetError(f"{tag} segment {k} ({_AXIS_NAMES[k]} axis): zero length ({seg[k].tolist()})")
            ang = les.angles_deg(sp)
            for a in range(nd):
                for b in range(a + 1, nd):
                    dev = 90.0 - ang[a, b]
                    if dev > angle_tolerance:
                        raise DatasetError(
                            f"{tag}: segments {a} and {b} are at {ang[a, b]:.2f} degrees (in mm space), "
                            f"more than {angle_tolerance} degrees from perpendicular"
                        )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see module docstring)."""
        out: dict[str, Any] = {
            "format": CALIPER_FORMAT,
            "version": CALIPER_VERSION,
            "spacing": list(self.spacing),
            "image_shape": list(self.image_shape),
            "lesions": [],
        }
        for les in self.lesions:
            item: dict[str, Any] = {"segments": les.segments.tolist()}
            if les.name is not None:
                item["name"] = les.name
            out["lesions"].append(item)
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "calipers", validate: bool = True,
                  angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE) -> CaliperAnnotation:
        """Parse the JSON form; raise :class:`DatasetError` naming the field on bad input."""
        if not isinstance(data, dict):
            raise DatasetError(f"{where}: a caliper annotation must be a JSON object, got {type(data).__name__}")
        if data.get("format") != CALIPER_FORMAT:
            raise DatasetError(f"{where}: 'format' must be {CALIPER_FORMAT!r}, got {data.get('format')!r}")
        if data.get("version") != CALIPER_VERSION:
            raise DatasetError(
                f"{where}: unsupported 'version' {data.get('version')!r} (this reader knows {CALIPER_VERSION})"
            )
        for key in ("spacing", "image_shape", "lesions"):
            if key not in data:
                raise DatasetError(f"{where}: missing field {key!r}")
        if not isinstance(data["lesions"], list):
            raise DatasetError(f"{where}: 'lesions' must be a list")
        _require_numbers(data["spacing"], f"{where}: 'spacing'", depth=1)
        _require_numbers(data["image_shape"], f"{where}: 'image_shape'", depth=1, integer=True)
        spacing = [float(s) for s in data["spacing"]]
        shape = [int(s) for s in data["image_shape"]]
        lesions = []
        for i, item in enumerate(data["lesions"]):
            if not isinstance(item, dict) or "segments" not in item:
                raise DatasetError(f"{where}: lesion {i} has no 'segments'")
            _require_numbers(item["segments"], f"{where}: lesion {i} 'segments'", depth=3)
            try:
                seg = np.asarray(item["segments"], dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise DatasetError(f"{where}: lesion {i} 'segments' is not a nested list of numbers: {e}") from e
            lesions.append(CaliperLesion(seg, item.get("name")))
        ann = cls(tuple(spacing), tuple(shape), lesions, dict(data.get("meta", {})))
        if validate:
            ann.validate(angle_tolerance, where=where)
        return ann

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CaliperAnnotation):
            return NotImplemented
        return (
            self.spacing == other.spacing
            and self.image_shape == other.image_shape
            and self.meta == other.meta
            and len(self.lesions) == len(other.lesions)
            and all(
                a.name == b.name and a.segments.shape == b.segments.shape and np.array_equal(a.segments, b.segments)
                for a, b in zip(self.lesions, other.lesions)
            )
        )


def _require_numbers(value: Any, field: str, depth: int, integer: bool = False) -> None:
    """Raise :class:`DatasetError` unless ``value`` is a list nested ``depth`` deep of JSON numbers (integers when
    ``integer``); strings ("60") and booleans are refused, never converted. ``field`` names the field."""

    def walk(v: Any, level: int, index: str) -> None:
        if level < depth:
            if not isinstance(v, list):
                raise DatasetError(f"{field}{index} must be a list, got {json.dumps(v)}")
            for k, x in enumerate(v):
                walk(x, level + 1, f"{index}[{k}]")
            return
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok:
            kind = "an integer" if integer else "a number"
            raise DatasetError(f"{field}{index} must be {kind}, got {json.dumps(v)} ({type(v).__name__})")

    walk(value, 0, "")


def save_calipers(path: str | os.PathLike, annotation: CaliperAnnotation, validate: bool = True) -> Path:
    """Write ``annotation`` as JSON atomically (via :func:`usseg_monai.data.io.atomic_write_json`)."""
    if validate:
        annotation.validate(where=str(path))
    return atomic_write_json(path, annotation.to_dict())


def load_calipers(path: str | os.PathLike, validate: bool = True,
                  angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE) -> CaliperAnnotation:
    """Read a caliper JSON file; errors name the file and the field."""
    p = Path(path)
    data = read_json(p, "caliper file")
    return CaliperAnnotation.from_dict(data, where=str(p), validate=validate, angle_tolerance=angle_tolerance)


def _is_number(v: Any) -> bool:
    """A real number given as a number (not a bool, not a string)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def calipers_from_points(
    points: Any,
    image_shape: Sequence[int],
    spacing: Sequence[float],
    where: str = "points",
    angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE,
) -> CaliperAnnotation:
    """One lesion's calipers from the endpoints a reader drew, in order, on an image of ``image_shape``.

    2D: four points, long axis start and end, then short axis start and end; 3D: six, then the third axis.
    Points are voxel coordinates in MONAI index order ``(x, y[, z])`` of the image as MONAI loads it (x the
    column of a PNG). The result is validated (:meth:`CaliperAnnotation.validate`): finite endpoints inside the
    image, no zero-length axis, axes perpendicular within ``angle_tolerance`` degrees in mm space.

    Args:
        points: a sequence of ``2 * nd`` points of ``nd`` numbers (booleans and strings are refused).
        image_shape: spatial shape ``(nx, ny[, nz])`` of the image.
        spacing: mm per voxel in the same order (1.0 for an image without spacing: pixel units).
        where: prefix of the error messages (the request field).

    Raises:
        DatasetError: naming ``where`` and what is wrong (number of points, coordinates, geometry).
    """
    nd = len(image_shape)
    order = "long axis start, end, short axis start, end" + (", third axis start, end" if nd == 3 else "")
    if not isinstance(points, (list, tuple)):
        raise DatasetError(f"{where}: expected a list of {2 * nd} points ({order}), got {type(points).__name__}")
    if len(points) != 2 * nd:
        raise DatasetError(f"{where}: a {nd}D image needs {2 * nd} points ({order}), got {len(points)}")
    for i, pt in enumerate(points):
        if not isinstance(pt, (list, tuple)) or len(pt) != nd or not all(_is_number(v) for v in pt):
            raise DatasetError(f"{where}: point {i} must be {nd} numbers (voxel coordinates x, y{', z' if nd == 3 else ''}), got {pt!r}")
    segments = np.asarray(points, dtype=np.float64).reshape(nd, 2, nd)
    annotation = CaliperAnnotation(tuple(spacing), tuple(image_shape), [CaliperLesion(segments)])
    return annotation.validate(angle_tolerance, where=where)

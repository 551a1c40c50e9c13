"""Rasterise caliper annotations into the three pseudo-labels of methods.md section 0.

For each lesion, with the caliper frame ``u`` (long axis), ``v`` (short axis, made exactly perpendicular to
``u``) and, in 3D, ``w = u x v``, in physical space (mm):

- **conservative label** ``Yc``: the convex hull of the ``2 nd`` endpoints (a quadrilateral, rhombus-like, in
  2D; an octahedron in 3D);
- **radical label** ``Yr``: the ellipse / ellipsoid with principal axes along the frame through all endpoints.
  Writing endpoint ``e`` of segment ``j`` in frame coordinates ``t_k = (e - c) . f_k`` with the centre
  ``c_k`` = mid-point of segment ``k`` along ``f_k``, segment ``j`` has half-length ``p_j`` along ``f_j`` and
  offsets ``d_jk`` (mean of its endpoints' ``t_k``) along the other axes; the ellipsoid
  ``sum_k A_k t_k^2 = 1`` passes through all endpoints iff ``p_j^2 A_j + sum_{k != j} d_jk^2 A_k = 1`` for
  every ``j`` (2D: ``p^2 A + dy^2 B = 1``, ``dx^2 A + q^2 B = 1``), semi-axes ``a_k = A_k^(-1/2)``.
  Where this system has no positive solution (calipers crossing near an end, or not crossing), the fallback
  is the ellipsoid with semi-axes ``p_k`` centred at the calipers' intersection (frame coordinate ``k``: mean
  over the other segments of their offsets along ``f_k``), with a :class:`CaliperFallbackWarning`;
- **axis mask** ``A``: the segments, one voxel wide (one sample per voxel step along the dominant axis,
  rounded to the nearest voxel, i.e. 8-/26-connected lines).

A voxel is inside a shape when its centre is. By construction ``A`` is inside ``Yc`` and ``Yc`` inside
``Yr`` always: after rasterising each lesion, ``Yc |= A`` and ``Yr |= Yc`` (the exact ellipsoid contains the
hull mathematically; the union removes rounding effects and covers the fallback ellipsoid, which need not pass
through the endpoints). Several lesions: union of the per-lesion labels.

Everything is evaluated on each lesion's bounding box only and vectorised, in 2D and 3D alike: both convex
shapes are filled column by column from closed-form intervals along the last axis (see
:func:`rasterize_lesion`), so the per-voxel work is two comparisons per shape.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from usseg_monai.calipers.annotation import CaliperAnnotation, CaliperLesion

__all__ = [
    "CaliperFallbackWarning",
    "caliper_frame",
    "radical_ellipsoid",
    "rasterize_lesion",
    "rasterize_calipers",
    "LABEL_NAMES",
]

LABEL_NAMES = ("conservative_label", "radical_label", "caliper_axes")
#: largest semi-axis of the exact radical ellipse, relative to the longest half caliper, before the fallback
MAX_SEMI_AXIS_RATIO = 10.0


class CaliperFallbackWarning(UserWarning):
    """The radical ellipse through all endpoints does not exist; the centred fallback was used."""


def caliper_frame(segments_mm: np.ndarray) -> np.ndarray:
    """Orthonormal caliper frame ``(nd, nd)`` (rows ``u, v[, w]``) from segments in mm ``(nd, 2, nd)``.

    Gram-Schmidt in segment order, so ``u`` is exactly the long axis and the others are the nearest
    perpendicular directions to their segments (they are already perpendicular within the tolerance).
    """
    vec = segments_mm[:, 1] - segments_mm[:, 0]
    frame = []
    for k in range(len(vec)):
        d = vec[k] - sum((vec[k] @ f) * f for f in frame) if frame else vec[k].astype(np.float64)
        n = np.linalg.norm(d)
        if n < 1e-12:
            raise ValueError(f"segment {k} is zero or parallel to a previous one; cannot build a caliper frame")
        frame.append(d / n)
    return np.asarray(frame)


def radical_ellipsoid(
    segments_mm: np.ndarray, frame: np.ndarray | None = None, warn: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The radical ellipse/ellipsoid of one lesion (methods.md section 0, closed form).

    Args:
        segments_mm: ``(nd, 2, nd)`` endpoints in mm.
        frame: caliper frame (rows), computed by :func:`caliper_frame` when omitted.
        warn: emit :class:`CaliperFallbackWarning` when the fallback is used.

    Returns:
        ``(centre_mm, frame, semi_axes_mm, exact)``; ``exact`` is False when the fallback was used.
    """
    seg = np.asarray(segments_mm, dtype=np.float64)
    nd = seg.shape[-1]
    f = caliper_frame(seg) if frame is None else frame
    t = seg @ f.T  # (nd segments, 2 endpoints, nd frame coords)
    c = np.array([t[k, :, k].mean() for k in range(nd)])  # mid-point of segment k along f_k
    p = np.array([0.5 * abs(t[k, 1, k] - t[k, 0, k]) for k in range(nd)])
    d = t.mean(axis=1) - c  # d[j, k]: offset of segment j along f_k (diagonal ~ 0)
    m = d**2
    m[np.diag_indices(nd)] = p**2
    exact = True
    try:
        a_inv2 = np.linalg.solve(m, np.ones(nd))
        if not (np.all(np.isfinite(a_inv2)) and np.all(a_inv2 > 0)):
            raise np.linalg.LinAlgError
        semi = 1.0 / np.sqrt(a_inv2)
        # an ill-conditioned system (calipers crossing close to an end) gives a huge ellipse; beyond
        # MAX_SEMI_AXIS_RATIO x the longest half caliper the fallback is used instead
        if np.any(semi > MAX_SEMI_AXIS_RATIO * p.max()):
            raise np.linalg.LinAlgError
        centre_f = c
    except np.linalg.LinAlgError:
        exact = False
        semi = p.copy()
        off = d.copy()
        off[np.diag_indices(nd)] = np.nan
        centre_f = c + np.nanmean(off, axis=0)  # intersection of the calipers (mean of the others' offsets)
        if warn:
            warnings.warn(
                "calipers cross near an end (or do not cross): no ellipse through all endpoints; using the "
                f"ellipse of semi-axes {np.round(semi, 3).tolist()} mm centred at their intersection",
                CaliperFallbackWarning,
                stacklevel=2,
            )
    return centre_f @ f, f, semi, exact


def _segment_voxels(seg_vox: np.ndarray) -> np.ndarray:
    """Integer voxels ``(n, nd)`` of a one-voxel-wide line between two voxel-coordinate endpoints."""
    a, b = seg_vox
    n = int(np.ceil(np.abs(b - a).max())) + 1
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.rint(a + t * (b - a)).astype(np.int64)


def _grid_sum(terms: list[np.ndarray]) -> np.ndarray:
    """Broadcast sum of 1D per-axis terms into an array of their outer shape."""
    nd = len(terms)
    out = np.zeros(tuple(len(t) for t in terms))
    for i, t in enumerate(terms):
        view = [1] * nd
        view[i] = -1
        out = out + t.reshape(view)
    return out


def _ellipsoid_span(axes: list[np.ndarray], centre: np.ndarray, frame: np.ndarray,
                    semi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval ``[lo, hi]`` (mm) along the last axis inside the ellipsoid, for every point of the grid of
    the other axes.

    The ellipsoid is ``d^T M d <= 1`` with ``d = x - centre`` and ``M = F^T diag(semi^-2) F``; along the last
    axis it is ``a t^2 + 2 b t + q - 1 <= 0`` with ``a = M[-1, -1]``, ``b = M[-1, :-1] . d'``,
    ``q = d'^T M[:-1, :-1] d'``, solved in closed form (empty where the discriminant is negative).
    """
    m = frame.T @ np.diag(semi**-2.0) @ frame
    nd = len(axes)
    d = [axes[i] - centre[i] for i in range(nd - 1)]
    a = m[-1, -1]
    b = _grid_sum([m[-1, i] * d[i] for i in range(nd - 1)])
    q = _grid_sum([m[i, i] * d[i] ** 2 for i in range(nd - 1)])
    for i in range(nd - 1):
        for j in range(i + 1, nd - 1):
            view_i = [1] * (nd - 1)
            view_i[i] = -1
            view_j = [1] * (nd - 1)
            view_j[j] = -1
            q = q + 2.0 * m[i, j] * d[i].reshape(view_i) * d[j].reshape(view_j)
    disc = b * b - a * (q - 1.0)
    root = np.sqrt(np.maximum(disc, 0.0))
    lo = np.where(disc >= 0, (-b - root) / a, np.inf) + centre[-1]
    hi = np.where(disc >= 0, (-b + root) / a, -np.inf) + centre[-1]
    return lo, hi


def _hull_span(axes: list[np.ndarray], equations: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval ``[lo, hi]`` (mm) along the last axis inside the convex polytope ``n . x + c <= tol``
    (rows of ``equations`` = ``[n, c]``), for every point of the grid of the other axes."""
    nd = len(axes)
    shape = tuple(len(a) for a in axes[:-1])
    lo = np.full(shape, -np.inf)
    hi = np.full(shape, np.inf)
    for eq in equations:
        rest = _grid_sum([eq[i] * axes[i] for i in range(nd - 1)]) + (eq[-1] - tol)
        ny = eq[nd - 1]
        if ny > 1e-12:
            hi = np.minimum(hi, -rest / ny)
        elif ny < -1e-12:
            lo = np.maximum(lo, -rest / ny)
        else:  # parallel to the last axis: the whole column is in or out
            lo = np.where(rest <= 0, lo, np.inf)
    return lo, hi


def rasterize_lesion(
    lesion: CaliperLesion | np.ndarray,
    shape: Sequence[int],
    spacing: Sequence[float],
    out: dict[str, np.ndarray] | None = None,
    warn: bool = True,
) -> dict[str, np.ndarray]:
    """Rasterise one lesion's three labels, OR-ing them into ``out`` (boolean arrays of ``shape``).

    Both convex shapes are filled column by column: for every voxel column along the last axis the
    interval inside the ellipsoid (closed-form quadratic) and inside the hull (half-space bounds) is computed
    on the grid of the other axes, then compared with the column coordinates; only the lesion's bounding box
    is touched.
    """
    seg_vox = np.asarray(lesion.segments if isinstance(lesion, CaliperLesion) else lesion, dtype=np.float64)
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    sp = np.asarray(spacing, dtype=np.float64)
    if out is None:
        out = {name: np.zeros(shape, dtype=bool) for name in LABEL_NAMES}
    seg_mm = seg_vox * sp
    centre, frame, semi, _ = radical_ellipsoid(seg_mm, warn=warn)
    pts_mm = seg_mm.reshape(-1, nd)
    # bounding box (voxels) of the ellipsoid and of the endpoints, clipped to the image
    half = np.sqrt(((semi[:, None] * frame) ** 2).sum(axis=0))
    lo_mm = np.minimum(centre - half, pts_mm.min(axis=0))
    hi_mm = np.maximum(centre + half, pts_mm.max(axis=0))
    lo = np.clip(np.floor(lo_mm / sp).astype(np.int64), 0, np.asarray(shape) - 1)
    hi = np.clip(np.ceil(hi_mm / sp).astype(np.int64) + 1, 1, np.asarray(shape))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    axes = [(np.arange(a, b) * s) for a, b, s in zip(lo, hi, sp)]
    bshape = tuple(len(a) for a in axes)
    col = axes[-1]  # coordinates along the last axis, broadcast against (..., 1) intervals
    r_lo, r_hi = _ellipsoid_span(axes, centre, frame, semi)
    radical = (col >= r_lo[..., None]) & (col <= r_hi[..., None])
    try:
        eqs = ConvexHull(pts_mm).equations
        tol = 1e-9 * max(1.0, float(np.abs(pts_mm).max()))
        c_lo, c_hi = _hull_span(axes, eqs, tol)
        cons = (col >= c_lo[..., None]) & (col <= c_hi[..., None])
    except (QhullError, ValueError):  # flat hull (cannot happen for valid calipers): keep the axis mask only
        cons = np.zeros(bshape, dtype=bool)
    axis_local = np.zeros(bshape, dtype=bool)
    for k in range(len(seg_vox)):
        vox = _segment_voxels(seg_vox[k])
        vox = np.clip(vox, 0, np.asarray(shape) - 1) - lo
        keep = np.all((vox >= 0) & (vox < np.asarray(bshape)), axis=1)
        axis_local[tuple(vox[keep].T)] = True
    cons |= axis_local
    radical |= cons
    out["caliper_axes"][box] |= axis_local
    out["conservative_label"][box] |= cons
    out["radical_label"][box] |= radical
    return out


def rasterize_calipers(
    annotation: CaliperAnnotation,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    warn: bool = True,
) -> dict[str, np.ndarray]:
    """The three pseudo-labels of all lesions (union), boolean arrays keyed by :data:`LABEL_NAMES`.

    Args:
        annotation: the calipers (endpoints in voxel coordinates).
        shape: grid shape ``(x, y[, z])``; default ``annotation.image_shape``.
        spacing: mm per voxel; default ``annotation.spacing``.
        warn: warn when a lesion needs the fallback ellipse.

    An annotation without lesions gives all-zero labels.
    """
    shape = tuple(annotation.image_shape if shape is None else shape)
    spacing = annotation.spacing if spacing is None else spacing
    if len(spacing) != len(shape):
        raise ValueError(f"spacing {list(spacing)} does not match the {len(shape)}D grid shape {list(shape)}")
    out = {name: np.zeros(shape, dtype=bool) for name in LABEL_NAMES}
    for i, les in enumerate(annotation.lesions):
        if les.segments.shape != (len(shape), 2, len(shape)):
            raise ValueError(
                f"lesion {i}: segments of shape {les.segments.shape} do not fit a {len(shape)}D grid "
                f"(expected {(len(shape), 2, len(shape))})"
            )
        rasterize_lesion(les, shape, spacing, out, warn=warn)
    return out

"""Derive caliper annotations from a mask, as a clinician measures (methods.md section 0).

Per connected lesion, in physical units (mm, from the spacing):

- long axis: the maximum Feret diameter, i.e. the two farthest-apart voxel centres of the lesion. They lie on
  the convex hull of the lesion's boundary voxels, so only the hull vertices are compared (fast);
- short axis: the longest chord of the lesion (a run of consecutive lesion samples along one line)
  perpendicular to the long axis. In 3D its direction inside the plane perpendicular to the long axis is the
  maximum Feret direction of the lesion projected onto that plane;
- third axis (3D): the longest chord perpendicular to both.

Endpoints are voxel centres (long axis) or line samples inside lesion voxels (chords), so a caliper measures
centre to centre: a lesion ``n`` voxels across measures ``(n - 1)`` voxels. A segment shorter than one voxel
(a one-voxel lesion or a one-voxel-thin line) is extended symmetrically to ``min(spacing)`` so that every
derived caliper is valid. Lesions are ordered by size (voxel count), largest first.

All functions are N-dimensional (2D and 3D share the code) and pure numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from usseg_monai.calipers.annotation import CaliperAnnotation, CaliperLesion
from usseg_monai.utils.errors import DatasetError

__all__ = [
    "label_lesions",
    "lesion_calipers",
    "calipers_from_mask",
    "jitter_calipers",
    "max_feret",
    "longest_chord",
]


def _as_mask(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3):
        raise DatasetError(f"mask must be a 2D or 3D spatial array (x, y[, z]), got shape {arr.shape}")
    return arr > 0


def _spacing(spacing: Sequence[float] | None, nd: int) -> np.ndarray:
    sp = np.ones(nd) if spacing is None else np.asarray(spacing, dtype=np.float64).ravel()
    if sp.shape != (nd,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise DatasetError(f"spacing {sp.tolist()} must be {nd} positive numbers (mm) for a {nd}D mask")
    return sp


def label_lesions(
    mask: np.ndarray, connectivity: int | None = None
) -> tuple[np.ndarray, list[tuple[slice, ...]], np.ndarray]:
    """Connected lesions of a binary mask, largest first.

    Args:
        mask: ``(x, y[, z])`` array, lesion where ``> 0``.
        connectivity: neighbourhood rank (1 = faces only ... ``nd`` = full, the default).

    Returns:
        ``(labels, boxes, sizes)``: the label image (1..n, ordered by decreasing size), the bounding box
        slices and the voxel counts of lesions 1..n.
    """
    m = _as_mask(mask)
    nd = m.ndim
    structure = ndimage.generate_binary_structure(nd, nd if connectivity is None else connectivity)
    labels, n = ndimage.label(m, structure=structure)
    if n == 0:
        return labels, [], np.zeros(0, dtype=np.int64)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-sizes, kind="stable")
    if not np.array_equal(order, np.arange(n)):
        remap = np.zeros(n + 1, dtype=labels.dtype)
        remap[order + 1] = np.arange(1, n + 1)
        labels = remap[labels]
        sizes = sizes[order]
    boxes = ndimage.find_objects(labels)
    return labels, list(boxes), sizes


def max_feret(points_mm: np.ndarray, tolerance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The two farthest-apart points (maximum Feret diameter) of a point set ``(n, d)``.

    Only the convex hull's vertices can realise the maximum, so they alone are compared
    (all points where the hull is degenerate, e.g. collinear points). With ``tolerance > 0`` (same units as
    the points), the endpoints are the means of the endpoints of all pairs at most ``tolerance`` shorter than
    the maximum and within 5 degrees of its direction (robust to the flat tips of pixelised shapes).
    """
    pts = np.asarray(points_mm, dtype=np.float64)
    if len(pts) == 1:
        return pts[0], pts[0]
    cand = pts
    if len(pts) > pts.shape[1] + 1:
        try:
            cand = pts[ConvexHull(pts).vertices]
        except (QhullError, ValueError):
            cand = pts
    if len(cand) > 4000:  # degenerate hull of a huge set: thin it to its extreme points along many directions
        dirs = np.random.default_rng(0).normal(size=(256, pts.shape[1]))
        proj = cand @ dirs.T
        cand = cand[np.unique(np.concatenate([proj.argmin(0), proj.argmax(0)]))]
    diff = cand[:, None, :] - cand[None, :, :]
    d2 = np.einsum("ijk,ijk->ij", diff, diff)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    if tolerance <= 0 or d2[i, j] == 0:
        return cand[i], cand[j]
    # pixelised shapes have flat tips: many pairs are within a sampling error of the maximum. Average the
    # pairs within ``tolerance`` of it and within 5 degrees of its direction (oriented alike), which puts
    # the endpoints in the middle of the tips instead of at an arbitrary corner of them.
    dmax = np.sqrt(d2[i, j])
    best = (cand[j] - cand[i]) / dmax
    ii, jj = np.nonzero(d2 >= (dmax - tolerance) ** 2)
    vec = cand[jj] - cand[ii]
    cos = (vec @ best) / np.linalg.norm(vec, axis=1)
    keep = cos >= np.cos(np.radians(5.0))
    return cand[ii[keep]].mean(axis=0), cand[jj[keep]].mean(axis=0)


def longest_chord(
    lesion: np.ndarray,
    spacing: np.ndarray,
    direction: np.ndarray,
    offsets_basis: np.ndarray,
    step: float,
    sigma: float = 1.0,
    offset_step: float | None = None,
    plateau: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Longest run of lesion samples along lines parallel to ``direction`` (physical space).

    Lines are ``o + s * direction`` with offsets ``o`` on a grid of spacing ``offset_step`` (mm, default
    ``step``) over the span of ``offsets_basis`` (rows: unit vectors perpendicular to ``direction``), and
    samples ``s`` every ``step`` mm.
    A sample is inside when its nearest voxel is a lesion voxel. The search is one vectorised pass.

    Args:
        lesion: boolean ``(x, y[, z])`` array of one lesion (a bounding-box crop).
        spacing: mm per voxel.
        direction: unit vector (mm space).
        offsets_basis: ``(nd - 1, nd)`` unit vectors completing an orthonormal frame with ``direction``.
        step: sampling step along the lines, mm.
        offset_step: spacing of the lines, mm (default ``step``).
        sigma: smoothing of the run lengths over neighbouring lines, in lines (see the code comment).
        plateau: lines whose smoothed run is within this many samples of the longest form the plateau whose
            centre is chosen.

    Returns:
        The chord's two endpoints in mm (relative to the crop's voxel 0), first and last inside sample.
    """
    pts = np.argwhere(lesion) * spacing
    s_proj = pts @ direction
    o_proj = pts @ offsets_basis.T
    s = np.arange(s_proj.min() - step, s_proj.max() + 1.5 * step, step)
    ostep = step if offset_step is None else offset_step
    grids = [np.arange(o_proj[:, k].min(), o_proj[:, k].max() + 0.5 * ostep, ostep) for k in range(o_proj.shape[1])]
    mesh = np.meshgrid(*grids, indexing="ij")
    origins = sum(m.reshape(-1, 1) * b for m, b in zip(mesh, offsets_basis))  # (L, nd)
    xyz = origins[:, None, :] + s[None, :, None] * direction  # (L, S, nd) mm
    idx = np.rint(xyz / spacing).astype(np.int64)
    shape = np.asarray(lesion.shape)
    ok = np.all((idx >= 0) & (idx < shape), axis=-1)
    idx = np.where(ok[..., None], idx, 0)
    inside = ok & lesion[tuple(idx[..., k] for k in range(idx.shape[-1]))]
    padded = np.zeros((inside.shape[0], inside.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = inside
    d = np.diff(padded, axis=1)
    starts = np.argwhere(d == 1)  # row-major: starts and ends of runs pair up in order
    ends = np.argwhere(d == -1)
    if len(starts) == 0:  # cannot happen for a non-empty lesion; keep a clear failure
        raise DatasetError("longest_chord: no lesion sample found on any line")
    run = ends[:, 1] - starts[:, 1]
    # Run lengths of neighbouring lines differ by voxel-rounding noise (a sample or two) along a flat
    # maximum. Smooth each line's longest run over neighbouring lines (Gaussian, ``sigma`` lines) and take
    # the middle of the smoothed maximum (its plateau), i.e. the middle of the widest part, where a clinician places the
    # caliper; its longest run is the chord (at most a voxel or so shorter than the raw maximum).
    per_line = np.zeros(inside.shape[0])
    np.maximum.at(per_line, starts[:, 0], run)
    smooth = per_line
    if sigma > 0:
        smooth = ndimage.gaussian_filter(per_line.reshape(mesh[0].shape), sigma, mode="constant").ravel()
    # a plateau of (near-)equal widths: take the line nearest its centroid, weighting the lines by how
    # close to the maximum they come (within ``plateau`` samples)
    w = np.maximum(smooth - (smooth.max() - plateau), 0.0)
    centroid = (w[:, None] * origins).sum(axis=0) / w.sum()
    # only lines that cross the lesion: smoothing spreads width onto neighbouring lines that may miss it (a
    # thin or fragmented lesion, common in predicted 3D masks), and such a line has no run to take
    flat = np.flatnonzero((w > 0) & (per_line > 0))
    if flat.size == 0:
        flat = np.flatnonzero(per_line == per_line.max())
    line_best = int(flat[np.argmin(np.linalg.norm(origins[flat] - centroid, axis=1))])
    on_line = np.flatnonzero(starts[:, 0] == line_best)
    r = int(on_line[np.argmax(run[on_line])])
    line, first, last = starts[r, 0], starts[r, 1], ends[r, 1] - 1
    return xyz[line, first], xyz[line, last]


def _min_length(p1: np.ndarray, p2: np.ndarray, direction: np.ndarray, min_len: float) -> tuple[np.ndarray, np.ndarray]:
    """Extend segment ``p1 p2`` (mm) symmetrically along ``direction`` to at least ``min_len`` mm."""
    if np.linalg.norm(p2 - p1) >= min_len:
        return p1, p2
    mid = 0.5 * (p1 + p2)
    return mid - 0.5 * min_len * direction, mid + 0.5 * min_len * direction


def _orthonormal_complement(vectors: np.ndarray, nd: int) -> np.ndarray:
    """Unit vectors completing the rows of ``vectors`` (orthonormal) to an orthonormal basis of R^nd."""
    q, _ = np.linalg.qr(np.concatenate([vectors.T, np.eye(nd)], axis=1))
    return q[:, len(vectors):nd].T


def lesion_calipers(lesion: np.ndarray, spacing: Sequence[float], chord_step: float | None = None) -> np.ndarray:
    """Calipers of one lesion crop, ``(nd, 2, nd)`` endpoints in the crop's voxel coordinates.

    Args:
        lesion: boolean array of a single connected lesion.
        spacing: mm per voxel.
        chord_step: chord sampling step along a line as a fraction of the smallest spacing (default 0.5 in 2D,
            1.0 in 3D); the lines themselves are one smallest spacing apart.
    """
    les = np.asarray(lesion, dtype=bool)
    nd = les.ndim
    if chord_step is None:
        chord_step = 0.5 if nd == 2 else 1.0
    sp = _spacing(spacing, nd)
    min_len = float(sp.min())
    step = chord_step * min_len
    boundary = les & ~ndimage.binary_erosion(les, border_value=0)
    bpts = np.argwhere(boundary) * sp
    a1, a2 = max_feret(bpts, tolerance=0.5 * min_len)
    if np.linalg.norm(a2 - a1) > 0:
        u = (a2 - a1) / np.linalg.norm(a2 - a1)
    else:
        u = np.eye(nd)[0]
    a1, a2 = _min_length(a1, a2, u, min_len)
    segments = [(a1, a2)]
    frame = [u]
    if nd == 3:
        # short-axis direction: maximum Feret direction of the lesion projected on the plane normal to u
        plane = _orthonormal_complement(np.asarray(frame), nd)
        proj = bpts @ plane.T
        q1, q2 = max_feret(proj, tolerance=0.5 * min_len)
        if np.linalg.norm(q2 - q1) > 0:
            v2 = (q2 - q1) / np.linalg.norm(q2 - q1)
            frame.append(v2 @ plane)
        else:
            frame.append(plane[0])
    else:
        frame.append(np.array([-u[1], u[0]]))
    if nd == 3:
        frame.append(np.cross(frame[0], frame[1]))
    chords = []
    for k in range(1, nd):
        d = frame[k] / np.linalg.norm(frame[k])
        others = np.asarray([frame[j] for j in range(nd) if j != k])
        p1, p2 = longest_chord(les, sp, d, others, step, sigma=1.0, offset_step=min_len, plateau=2.0 / chord_step)
        chords.append(_min_length(p1, p2, d, min_len))
    # 3D: the longer of the two perpendicular chords is the short axis, the other the third axis
    chords.sort(key=lambda c: -float(np.linalg.norm(c[1] - c[0])))
    # chord samples lie anywhere in their voxels, so on a round lesion a chord can beat the Feret diameter
    # (voxel centres) by a fraction of a voxel: cap it (about its midpoint) so that long >= short always
    long_len = float(np.linalg.norm(a2 - a1))
    for k, (p1, p2) in enumerate(chords):
        n = float(np.linalg.norm(p2 - p1))
        if n > long_len:
            mid, half = 0.5 * (p1 + p2), 0.5 * long_len * (p2 - p1) / n
            chords[k] = (mid - half, mid + half)
    segments.extend(chords)
    seg = np.asarray(segments, dtype=np.float64) / sp
    return seg


def calipers_from_mask(
    mask: np.ndarray,
    spacing: Sequence[float] | None = None,
    allow_empty: bool = False,
    connectivity: int | None = None,
    min_voxels: int = 1,
    chord_step: float | None = None,
    jitter_mm: float = 0.0,
    seed: int | np.random.Generator | None = None,
    where: str = "mask",
) -> CaliperAnnotation:
    """Calipers of every connected lesion of ``mask``, as a clinician would place them.

    Args:
        mask: ``(x, y[, z])`` array, lesion where ``> 0``.
        spacing: mm per voxel (``None``: 1.0, i.e. pixel units).
        allow_empty: return an annotation without lesions for an empty mask instead of raising.
        connectivity: see :func:`label_lesions`.
        min_voxels: lesions with fewer voxels are ignored (speckle); default keeps all.
        chord_step: chord sampling step as a fraction of the smallest spacing (default 0.5 in 2D, 1.0 in 3D).
        jitter_mm: standard deviation (mm) of simulated reader variability, see :func:`jitter_calipers`.
        seed: seed or generator for the jitter.
        where: name used in error messages (file or key).

    Raises:
        DatasetError: empty mask without ``allow_empty``, or bad spacing.
    """
    m = _as_mask(mask)
    sp = _spacing(spacing, m.ndim)
    labels, boxes, sizes = label_lesions(m, connectivity)
    lesions = []
    for i, (box, size) in enumerate(zip(boxes, sizes)):
        if size < min_voxels:
            continue
        crop = labels[box] == (i + 1)
        offset = np.asarray([b.start for b in box], dtype=np.float64)
        lesions.append(CaliperLesion(lesion_calipers(crop, sp, chord_step) + offset))
    if not lesions and not allow_empty:
        raise DatasetError(
            f"{where}: empty mask (no lesion of at least {min_voxels} voxels), cannot derive calipers; "
            "pass allow_empty=True where empty masks are legitimate"
        )
    ann = CaliperAnnotation(tuple(sp), m.shape, lesions)
    if jitter_mm > 0:
        ann = jitter_calipers(ann, jitter_mm, seed)
    return ann


def jitter_calipers(
    annotation: CaliperAnnotation, jitter_mm: float, seed: int | np.random.Generator | None = None
) -> CaliperAnnotation:
    """Simulate reader variability: move every endpoint, keep the calipers valid.

    Each endpoint moves by independent Gaussian noise of standard deviation ``jitter_mm`` per axis (mm).
    The segment directions are then re-orthogonalised (Gram-Schmidt in mm space, long axis first), keeping
    each segment's jittered midpoint and length, and segments are shortened about their midpoint (clamped to
    the voxel centres' range) where needed to stay inside the image.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    sp = np.asarray(annotation.spacing)
    lo = np.full(annotation.ndim, -0.5)
    hi = np.asarray(annotation.image_shape, dtype=np.float64) - 0.5
    out = []
    for les in annotation.lesions:
        mm = les.segments * sp + rng.normal(0.0, jitter_mm, size=les.segments.shape)
        mids = mm.mean(axis=1)
        vec = mm[:, 1] - mm[:, 0]
        lengths = np.linalg.norm(vec, axis=-1)
        dirs = []
        for k in range(len(vec)):
            d = vec[k] - sum((vec[k] @ b) * b for b in dirs) if dirs else vec[k].copy()
            if np.linalg.norm(d) < 1e-9:  # degenerate after noise: take the original direction's complement
                d = _orthonormal_complement(np.asarray(dirs), annotation.ndim)[0]
            dirs.append(d / np.linalg.norm(d))
        seg = np.empty_like(les.segments)
        for k, d in enumerate(dirs):
            mid = np.clip(mids[k] / sp, 0.0, hi - 0.5)
            dv = d / sp  # voxel displacement per mm along the segment
            half = 0.5 * max(lengths[k], 1e-6)
            with np.errstate(divide="ignore", invalid="ignore"):
                lim = np.where(np.abs(dv) > 0, np.minimum((hi - mid) / np.abs(dv), (mid - lo) / np.abs(dv)), np.inf)
            half = min(half, float(lim.min()))
            seg[k, 0] = mid - half * dv
            seg[k, 1] = mid + half * dv
        out.append(CaliperLesion(seg, les.name))
    return CaliperAnnotation(annotation.spacing, annotation.image_shape, out, dict(annotation.meta))

"""Ultrasound DICOM files to 8-bit grayscale images with physical pixel spacing.

Colour handling (DICOM PS3.3 C.7.6.3.1.2, Photometric Interpretation):

- ``RGB``: luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, as PIL's ``"L"`` conversion).
- ``YBR_FULL`` / ``YBR_FULL_422``: converted to RGB with ``pydicom.pixels.convert_color_space``, then
  luminance as above.
- ``YBR_RCT`` / ``YBR_ICT`` (JPEG 2000): the JPEG 2000 decoder already returns RGB; luminance as above.
- ``PALETTE COLOR``: ``pydicom.pixels.apply_color_lut``; the LUT's bit depth (8 or 16) is scaled to 8 bits.
- ``MONOCHROME2``: the VOI LUT/window when the file has one, else the stored bit range, to ``[0, 255]``;
  ``MONOCHROME1`` is inverted after that.

Pixel spacing (mm per pixel, ``(x, y)`` = (column, row) order), first that applies:

1. Sequence of Ultrasound Regions (0018,6011): regions whose Physical Units X/Y Direction are 3 (cm); the
   spacing is ``10 * delta`` (cm to mm). Tissue regions (Region
   Spatial Format 1, 2D) are preferred; among several, the largest; differing deltas are logged.
2. Pixel Spacing (0028,0030) (row spacing, column spacing in mm), then Imager Pixel Spacing (0018,1164).
3. Unknown (``None``): the item gets no ``spacing`` in the datalist.

A spacing that is present but zero, negative or non-finite (a centimetre region's Physical Delta X/Y, Pixel
Spacing, Imager Pixel Spacing) is an error naming the file, never a silent fall-back to the next source.

Multi-frame files give one image per frame.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.data.io import DatasetError, ensure_not_inside
from usseg_monai.data.prepared import PreparedDatasetWriter, safe_item_id
from usseg_monai.data.splits import SplitOptions

__all__ = ["is_dicom", "read_ultrasound_dicom", "ultrasound_spacing", "to_grayscale_uint8", "prepare_dicom", "CM"]

logger = logging.getLogger(__name__)

CM = 3  # DICOM Physical Units X/Y Direction code for centimetres (PS3.3 C.8.5.5.1.15)
_LUMA = np.array([0.299, 0.587, 0.114])


def _positive_mm(value: Any) -> float | None:
    """``value`` as a float when it is a finite positive number, else ``None``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def ultrasound_spacing(ds: Any, where: str | os.PathLike | None = None) -> tuple[tuple[float, float] | None, str]:
    """Pixel spacing in mm ``(sx, sy)`` of a DICOM dataset and where it came from.

    Args:
        ds: a pydicom dataset.
        where: the file named in errors (default: ``ds.filename``).

    Returns:
        ``((sx, sy), source)`` with source ``"ultrasound_regions"``, ``"PixelSpacing"`` or
        ``"ImagerPixelSpacing"``, or ``(None, "unknown")``.

    Raises:
        DatasetError: a spacing that is present but not a finite positive number: a centimetre ultrasound region
            whose Physical Delta X/Y is zero, negative or non-finite, or a Pixel Spacing / Imager Pixel Spacing
            that is not two finite positive numbers (a silent fall-back would change the lesion's size in mm).
    """
    name = where if where is not None else (getattr(ds, "filename", None) or "DICOM dataset")
    regions = []
    for i, r in enumerate(ds.get("SequenceOfUltrasoundRegions", []) or []):
        ux, uy = r.get("PhysicalUnitsXDirection"), r.get("PhysicalUnitsYDirection")
        if ux != CM or uy != CM:
            continue  # time, velocity or unit-less regions (Doppler, M-mode) carry no pixel spacing
        raw_dx, raw_dy = r.get("PhysicalDeltaX"), r.get("PhysicalDeltaY")
        dx, dy = _positive_mm(raw_dx), _positive_mm(raw_dy)
        if dx is None or dy is None:
            raise DatasetError(
                f"{name}: ultrasound region {i} (cm units) has Physical Delta X/Y {raw_dx!r}/{raw_dy!r}; "
                "they must be finite positive numbers (cm per pixel)"
            )
        x0, x1 = r.get("RegionLocationMinX0", 0), r.get("RegionLocationMaxX1", 0)
        y0, y1 = r.get("RegionLocationMinY0", 0), r.get("RegionLocationMaxY1", 0)
        area = max(0, int(x1) - int(x0) + 1) * max(0, int(y1) - int(y0) + 1)
        tissue = r.get("RegionSpatialFormat") == 1
        regions.append((tissue, area, 10.0 * dx, 10.0 * dy))
    if regions:
        regions.sort(key=lambda t: (t[0], t[1]), reverse=True)
        best = regions[0]
        others = {(round(sx, 6), round(sy, 6)) for t, _, sx, sy in regions if t == best[0]}
        if len(others) > 1:
            logger.warning("ultrasound regions give different spacings %s; using the largest region's", sorted(others))
        return (best[2], best[3]), "ultrasound_regions"
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        ps = ds.get(tag)
        if ps is None:
            continue
        raw = list(ps) if hasattr(ps, "__len__") and not isinstance(ps, str) else [ps]
        values = [_positive_mm(v) for v in raw]
        if len(values) != 2 or None in values:
            raise DatasetError(
                f"{name}: {tag} is {raw}; it must be two finite positive numbers (mm: row spacing, column spacing)"
            )
        return (values[1], values[0]), tag  # DICOM order is (row spacing, column spacing)
    return None, "unknown"


def _scale_to_uint8(arr: np.ndarray, max_value: float) -> np.ndarray:
    return np.clip(np.round(arr.astype(np.float64) * (255.0 / max_value)), 0, 255).astype(np.uint8)


def to_grayscale_uint8(frame: np.ndarray, ds: Any, photometric_interpretation: str | None = None) -> np.ndarray:
    """One decoded frame (``(rows, cols)`` or ``(rows, cols, 3)``) to 8-bit grayscale ``(rows, cols)``.

    ``frame`` is a raw decoded frame (no colour conversion applied); the colour space conversion
    happens here (see the module docstring). ``photometric_interpretation`` is the colour space of
    ``frame`` when the decoder changed it (JPEG 2000 YBR_RCT/ICT and many JPEG decoders return RGB);
    default: the dataset's.

    Raises:
        DatasetError: an unsupported Photometric Interpretation.
    """
    from pydicom.pixels import apply_color_lut, apply_voi_lut, convert_color_space

    pi = str(photometric_interpretation or ds.get("PhotometricInterpretation", "")).strip().upper()
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        lut_max = 255.0 if rgb.dtype == np.uint8 else 65535.0  # 8- or 16-bit LUT entries
        gray = rgb[..., :3].astype(np.float64) @ _LUMA
        return _scale_to_uint8(gray, lut_max)
    if pi in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"):
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise DatasetError(f"{pi} frame has shape {frame.shape}, expected (rows, cols, 3)")
        rgb = frame
        if pi in ("YBR_FULL", "YBR_FULL_422"):
            rgb = convert_color_space(frame, pi, "RGB")
        gray = rgb.astype(np.float64) @ _LUMA
        return _scale_to_uint8(gray, float(2**bits - 1))
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        if frame.ndim != 2:
            raise DatasetError(f"{pi} frame has shape {frame.shape}, expected (rows, cols)")
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            out = apply_voi_lut(frame, ds).astype(np.float64)
            lo, hi = float(out.min()), float(out.max())
            if "WindowCenter" in ds:
                wc = float(np.ravel(ds.WindowCenter)[0])
                ww = float(np.ravel(ds.WindowWidth)[0])
                lo, hi = wc - ww / 2.0, wc + ww / 2.0
            gray = np.clip((out - lo) / max(hi - lo, 1e-12), 0.0, 1.0) * 255.0
        else:
            signed = int(ds.get("PixelRepresentation", 0)) == 1
            base = frame.astype(np.float64) + (2 ** (bits - 1) if signed else 0)
            gray = base * (255.0 / (2**bits - 1))
        gray = np.clip(np.round(gray), 0, 255).astype(np.uint8)
        return 255 - gray if pi == "MONOCHROME1" else gray
    raise DatasetError(f"unsupported Photometric Interpretation {pi!r}")


def read_ultrasound_dicom(path: str | os.PathLike) -> list[tuple[np.ndarray, tuple[float, float] | None]]:
    """Read an ultrasound DICOM file into 8-bit grayscale frames with their spacing.

    Returns:
        One ``(array_xy, spacing_xy)`` per frame: ``array_xy`` uint8 of shape ``(columns, rows)``
        (MONAI ``(x, y)`` order), ``spacing_xy`` mm per pixel ``(sx, sy)`` or ``None`` if unknown.

    Raises:
        DatasetError: missing file, not DICOM, no pixel data, or pixel data that cannot be decoded
            (the message names the file).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import get_decoder

    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"DICOM file not found: {p}")
    try:
        ds = pydicom.dcmread(p)
    except (InvalidDicomError, OSError, ValueError, EOFError) as e:
        raise DatasetError(f"cannot read DICOM file {p}: {e}") from e
    if "PixelData" not in ds:
        raise DatasetError(f"DICOM file {p} has no pixel data")
    try:
        decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
        arr, meta = decoder.as_array(ds, raw=True)  # meta: the returned array's colour space etc.
    except Exception as e:  # decoders raise many types (RuntimeError, ValueError, NotImplementedError)
        syntax = ds.file_meta.get("TransferSyntaxUID", "?")
        raise DatasetError(f"cannot decode the pixel data of {p} ({syntax}): {e}") from e
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    frames = arr if n_frames > 1 else arr[None]
    expected = 3 if samples == 1 else 4
    if frames.ndim != expected:
        raise DatasetError(
            f"DICOM file {p}: decoded pixel array has shape {arr.shape}, unexpected for {n_frames} frame(s)"
        )
    spacing, where = ultrasound_spacing(ds, p)
    logger.debug("%s: %d frame(s), spacing %s from %s", p, n_frames, spacing, where)
    out = []
    for frame in frames:
        try:
            gray = to_grayscale_uint8(frame, ds, meta.get("photometric_interpretation"))
        except DatasetError as e:
            raise DatasetError(f"DICOM file {p}: {e}") from e
        out.append((np.ascontiguousarray(gray.T), spacing))
    return out


def _dicom_group(ds: Any, group_by: str, fallback: str) -> str:
    tag = {"patient": "PatientID", "study": "StudyInstanceUID", "series": "SeriesInstanceUID"}.get(group_by)
    if tag is None:
        return fallback
    value = str(ds.get(tag, "") or "").strip()
    return value or fallback


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether ``path`` has the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def prepare_dicom(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    group_by: str = "patient",
    split: SplitOptions | None = None,
    **split_kwargs: Any,
) -> dict[str, Any]:
    """Convert ultrasound DICOM files (or folders of them, searched recursively) to 8-bit PNG images.

    Args:
        source: a DICOM file, a folder, or a list of them. Never written to. In folders, files with a
            DICOM preamble (``DICM`` at byte 128) or a ``.dcm`` suffix are read; others are skipped.
        output_dir: output folder (empty unless ``overwrite``).
        overwrite: allow a non-empty output folder.
        group_by: what keeps images together in splits and gives ``case_id``: ``"patient"``
            (PatientID), ``"study"``, ``"series"`` or ``"file"``; a missing tag falls back to the file.
        split, **split_kwargs: split (grouped) and partition settings, see
            :class:`usseg_monai.data.splits.SplitOptions`; DICOM images have no masks, so ``labeled``
            must be ``None`` or 0.

    Returns:
        The summary written to ``summary.json`` (with ``spacing_sources``: how many images got their
        spacing from ultrasound regions, Pixel Spacing, or none).

    Raises:
        DatasetError: a missing source, no DICOM file found, or a ``.dcm`` file that cannot be read or
            decoded (named).
    """
    import pydicom

    opts = SplitOptions.resolve(split, **split_kwargs)
    if group_by not in ("patient", "study", "series", "file"):
        raise ValueError(f"group_by must be 'patient', 'study', 'series' or 'file', got {group_by!r}")
    sources = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(s) for s in source]
    if not sources:
        raise DatasetError("no DICOM source given")
    files: list[tuple[Path, Path]] = []  # (file, base for its item id)
    skipped: list[tuple[Path, str]] = []
    for src in sources:
        if src.is_file():
            files.append((src, src.parent))
            ensure_not_inside(output_dir, src.parent)
        elif src.is_dir():
            ensure_not_inside(output_dir, src)
            for f in sorted(q for q in src.rglob("*") if q.is_file()):
                if f.suffix.lower() == ".dcm" or is_dicom(f):
                    files.append((f, src))
                else:
                    skipped.append((f, "not a DICOM file (no DICM preamble, no .dcm suffix)"))
        else:
            raise DatasetError(f"DICOM source not found: {src}")
    if not files:
        raise DatasetError(f"no DICOM files found in {', '.join(str(s) for s in sources)}")
    common = Path(os.path.commonpath([str(s.resolve()) for s in sources]))
    with PreparedDatasetWriter(
        output_dir,
        source=None,
        overwrite=overwrite,
        spatial_dims=2,
        name="DICOM",
        description="Ultrasound DICOM images converted to 8-bit grayscale; spacing from ultrasound regions",
    ) as writer:
        for f, why in skipped:
            writer.skip(f, why)
        spacing_sources: dict[str, int] = {}
        for k, (f, base) in enumerate(files):
            frames = read_ultrasound_dicom(f)
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            rel = f.relative_to(base)
            stem = safe_item_id(rel.with_suffix("").as_posix() if f.suffix.lower() == ".dcm" else rel.as_posix())
            _, where = ultrasound_spacing(ds, f)
            case = _dicom_group(ds, group_by, fallback=stem)
            for j, (img, spacing) in enumerate(frames):
                item_id = stem if len(frames) == 1 else f"{stem}_f{j:04d}"
                shown = str(f.resolve().relative_to(common)) if f.resolve() != common else f.name
                extra: dict[str, Any] = {"source_image": shown}
                if len(frames) > 1:
                    extra["frame"] = j
                extra["spacing_source"] = where
                writer.add(item_id, img, None, case_id=safe_item_id(case), spacing=spacing, source_files=[f], **extra)
                spacing_sources[where] = spacing_sources.get(where, 0) + 1
            if (k + 1) % 50 == 0:
                logger.info("DICOM: %d of %d files read", k + 1, len(files))
        return writer.finalize(
            split=opts,
            summary_extra={
                "source": [str(s) for s in sources],
                "n_files": len(files),
                "spacing_sources": spacing_sources,
                "group_by": group_by,
            },
        )

"""Image, volume and datalist files: reading, writing and the datalist path rule.

Everything here follows ``docs/conventions.md``: arrays are in MONAI index order ``(x, y[, z])``, files are written
atomically and no function writes into a source folder. The atomic writing, output-folder checks and JSON reading
live in the bottom layer (:mod:`usseg_monai.utils.fileio`, errors in :mod:`usseg_monai.utils.errors`) and are
importable from here too (the bundles' configs name ``usseg_monai.data.io.atomic_write_json``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.utils.errors import DatasetError
from usseg_monai.utils.fileio import (
    CACHE_ENV,
    StagedOutput,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    cache_dir,
    check_output_dir,
    ensure_not_inside,
    prepare_output_dir,
    read_json,
)

__all__ = [
    "CACHE_ENV",
    "DatasetError",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "prepare_output_dir",
    "check_output_dir",
    "StagedOutput",
    "ensure_not_inside",
    "save_png",
    "load_png",
    "save_volume",
    "load_volume",
    "volume_header_spacing",
    "check_header_spacing",
    "write_datalist",
    "load_datalist",
    "datalist_roots",
    "resolve_datalist_path",
    "require_datalist_file",
    "resolve_item_paths",
    "ROOTS_KEY",
    "derived_roots",
    "DATALIST_PATH_KEYS",
    "read_json",
    "cache_dir",
    "DATALIST_SECTIONS",
]

DATALIST_SECTIONS = ("training", "validation", "test")
#: item keys that hold file paths, relative to the datalist's folder (or absolute)
DATALIST_PATH_KEYS = ("image", "label", "calipers")
#: top-level datalist key listing the folders besides the datalist's own where its files may be (the path rule)
ROOTS_KEY = "allowed_roots"


def save_png(path: str | os.PathLike, array_xy: np.ndarray) -> Path:
    """Save a 2D array given in MONAI ``(x, y)`` order as an 8-bit grayscale PNG, atomically.

    The array is transposed to the file's ``(row, col)`` layout, so ``LoadImage`` reads back the same
    ``(x, y)`` array. Values must already be in ``[0, 255]``.
    """
    from PIL import Image

    arr = np.asarray(array_xy)
    if arr.ndim != 2:
        raise DatasetError(f"{path}: a PNG needs a 2D (x, y) array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 255):
            raise DatasetError(f"{path}: values outside [0, 255] cannot be stored in an 8-bit PNG")
        arr = np.round(arr).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr.T), mode="L").save(tmp, format="PNG")
    return Path(path)


def load_png(path: str | os.PathLike, grayscale: bool = True) -> np.ndarray:
    """Read an image file (PNG/JPEG/...) into MONAI ``(x, y)`` order; colour is converted to luminance.

    Raises:
        DatasetError: the file is missing or cannot be decoded (the message names it).
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"image file not found: {p}")
    try:
        with Image.open(p) as im:
            im.load()
            if grayscale and im.mode not in ("L", "1", "I;16", "I"):
                im = im.convert("L")
            elif im.mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DatasetError(f"cannot read image {p}: {e}") from e
    if arr.ndim != 2:
        raise DatasetError(f"{p}: expected a single-channel image after conversion, got shape {arr.shape}")
    return np.ascontiguousarray(arr.T)


def save_volume(
    path: str | os.PathLike,
    array_xyz: np.ndarray,
    spacing: Sequence[float],
    origin: Sequence[float] | None = None,
    direction: np.ndarray | None = None,
) -> Path:
    """Save an ``(x, y, z)`` array as NIfTI/NRRD via ITK, keeping spacing (mm), origin and direction.

    ``LoadImage(reader="ITKReader")`` reads back the same array with ``pixdim == spacing``.
    """
    import itk

    arr = np.asarray(array_xyz)
    nd = arr.ndim
    if len(spacing) != nd:
        raise DatasetError(f"{path}: spacing {list(spacing)} does not match a {nd}D array")
    img = itk.image_from_array(np.ascontiguousarray(arr.T))  # ITK's numpy view is (z, y, x)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in (origin if origin is not None else [0.0] * nd)])
    if direction is not None:
        img.SetDirection(itk.matrix_from_array(np.asarray(direction, dtype=np.float64).reshape(nd, nd)))
    with atomic_path(path) as tmp:
        itk.imwrite(img, str(tmp), compression=True)
    return Path(path)


def _nifti_header_spacing(p: Path) -> list[float]:
    import nibabel as nib
    from nibabel.openers import Opener

    with Opener(str(p)) as f:
        raw = f.read(348)
    if len(raw) < 348:
        raise DatasetError(f"cannot read volume {p}: the NIfTI header is truncated ({len(raw)} of 348 bytes)")
    hdr = nib.Nifti1Header(raw, check=False) if raw[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c") else None
    if hdr is None:
        return []  # NIfTI-2 or not NIfTI at all: ITK decides
    ndim = int(np.clip(hdr["dim"][0], 0, 7))
    return [float(v) for v in hdr["pixdim"][1 : 1 + min(ndim, 3)]]


def _text_header_spacing(p: Path, nrrd: bool) -> list[float]:
    """Spacings of a NRRD (``spacings:``, ``space directions:`` vector lengths) or MetaImage (``ElementSpacing``)
    text header; NaN for an entry that is not a number."""
    with open(p, "rb") as f:
        head = f.read(65536)
    lines = head.split(b"\n\n", 1)[0].decode("latin-1").splitlines() if nrrd else head.decode("latin-1").splitlines()
    out: list[float] = []
    for line in lines:
        key, sep, value = line.partition(":" if nrrd else "=")
        if not sep:
            continue
        key = key.strip().lower()
        if nrrd and key == "spacings":
            out += [_number(v) for v in value.split()]
        elif nrrd and key == "space directions":
            for vec in value.split():
                if vec.strip().lower() == "none":
                    continue
                parts = [_number(c) for c in vec.strip("()").split(",")]
                out.append(float(np.sqrt(sum(c * c for c in parts))))
        elif not nrrd and key == "elementspacing":
            out += [_number(v) for v in value.split()]
    return out


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def volume_header_spacing(path: str | os.PathLike) -> list[float]:
    """The voxel spacings a volume file's header declares (NIfTI-1 ``pixdim``, NRRD ``spacings`` / ``space
    directions``, MetaImage ``ElementSpacing``), read before ITK, which replaces a NaN spacing by 1 mm silently;
    empty for other formats. Entries are floats (NaN where the header holds no number)."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _nifti_header_spacing(p)
    if name.endswith((".nrrd", ".nhdr")):
        return _text_header_spacing(p, nrrd=True)
    if name.endswith((".mha", ".mhd")):
        return _text_header_spacing(p, nrrd=False)
    return []


def check_header_spacing(path: str | os.PathLike) -> list[float]:
    """:func:`volume_header_spacing`, refusing a spacing that is zero, negative or non-finite; returns it.

    Raises:
        DatasetError: naming the file and the declared spacing, or the file cannot be read.
    """
    p = Path(path)
    try:
        declared = volume_header_spacing(p)
    except OSError as e:
        raise DatasetError(f"cannot read volume {p}: {e.strerror or e}") from e
    if any(not (np.isfinite(v) and v > 0) for v in declared):
        raise DatasetError(
            f"volume {p}: its header declares voxel spacing {declared}; every spacing must be a finite positive "
            "number (mm)"
        )
    return declared


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read a NIfTI/NRRD/MetaImage volume via ITK into ``(x, y, z)`` order with its geometry.

    Returns:
        ``(array, {"spacing": (nd,), "origin": (nd,), "direction": (nd, nd)})``.

    Raises:
        DatasetError: missing or unreadable file, or a header spacing that is zero, negative or non-finite
            (:func:`volume_header_spacing`; ITK would read a NaN spacing as 1 mm).
    """
    import itk

    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"volume file not found: {p}")
    check_header_spacing(p)
    try:
        img = itk.imread(str(p))
    except (RuntimeError, OSError) as e:
        raise DatasetError(f"cannot read volume {p}: {e}") from e
    arr = np.ascontiguousarray(itk.array_from_image(img).T)
    geom = {
        "spacing": np.asarray(img.GetSpacing(), dtype=np.float64),
        "origin": np.asarray(img.GetOrigin(), dtype=np.float64),
        "direction": np.asarray(itk.array_from_matrix(img.GetDirection()), dtype=np.float64),
    }
    return arr, geom


def write_datalist(output_dir: str | os.PathLike, datalist: dict[str, Any], name: str = "datalist.json") -> Path:
    """Validate and write a decathlon-style datalist (paths relative to ``output_dir``) atomically.

    Every path must obey the path rule (:func:`resolve_datalist_path`) and name an existing file.
    """
    _validate_datalist(datalist, Path(output_dir) / name, check_files=True)
    return atomic_write_json(Path(output_dir) / name, datalist)


def datalist_roots(data: dict[str, Any], where: str | os.PathLike) -> tuple[Path, ...]:
    """The folders a datalist's files may be in: its own folder, then those listed under ``allowed_roots``.

    ``allowed_roots`` is the explicit opt-in for files stored elsewhere (e.g. ``usseg split`` writing a new
    datalist beside the prepared dataset it splits): a list of folders, relative to the datalist's folder or
    absolute. ``["/"]`` allows any path.

    Raises:
        DatasetError: ``allowed_roots`` is not a list of non-empty strings (naming the datalist).
    """
    folder = Path(os.path.abspath(Path(where).parent))
    extra = data.get(ROOTS_KEY, [])
    if not isinstance(extra, list) or not all(isinstance(r, str) and r for r in extra):
        raise DatasetError(f"{where}: '{ROOTS_KEY}' must be a list of folder paths (strings), got {extra!r}")
    return (folder, *(Path(os.path.normpath(folder / r)) for r in extra))


def derived_roots(
    data: dict[str, Any], source: str | os.PathLike, output_dir: str | os.PathLike, absolute: bool = False
) -> list[str]:
    """``allowed_roots`` for a datalist written in ``output_dir`` that names the files of datalist ``source``.

    The source's folder and its own ``allowed_roots``, relative to ``output_dir`` (absolute with ``absolute``,
    for a datalist written with absolute paths, or when on another drive); empty when the output is beside the
    source and the source lists none. Writers that derive a
    datalist (``usseg split``, ``usseg calipers``, pseudo-labels) record them, so that the new datalist may
    name the source's files and nothing else.
    """
    out = Path(os.path.abspath(output_dir))
    roots = datalist_roots(data, source)
    rel: list[str] = []
    for r in roots:
        if r == out:
            continue
        try:
            value = r.as_posix() if absolute else Path(os.path.relpath(r, out)).as_posix()
        except ValueError:  # another drive (Windows)
            value = r.as_posix()
        if value not in rel:
            rel.append(value)
    return rel


def resolve_datalist_path(value: Any, roots: Sequence[Path], where: str) -> Path:
    """The absolute path of a datalist entry, which must lie inside one of ``roots`` (the path rule).

    ``value`` is relative to ``roots[0]`` (the datalist's folder) or absolute. The check is lexical (``..`` is
    collapsed, symbolic links are not followed): a dataset may link to its files, but an entry cannot climb
    out of the dataset or name an arbitrary absolute path unless the datalist lists its folder under
    ``allowed_roots`` (:func:`datalist_roots`).

    Raises:
        DatasetError: ``value`` is not a non-empty string, or resolves outside every root; ``where`` names the
            datalist, the section, the item and the key.
    """
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where} must be a non-empty file path (string), got {value!r}")
    p = Path(os.path.normpath(roots[0] / value))
    for root in roots:
        if p == root or root in p.parents:
            return p
    allowed = ", ".join(str(r) for r in roots)
    raise DatasetError(
        f"{where} = {value!r} resolves to {p}, outside the dataset (allowed: {allowed}); datalist paths must stay "
        f"inside the datalist's folder: to use files stored elsewhere, list their folder under the datalist's "
        f"'{ROOTS_KEY}' key (docs/conventions.md, 'Path rule')"
    )


def load_datalist(path: str | os.PathLike, check_files: bool = True) -> dict[str, Any]:
    """Read and validate a datalist JSON: sections, items, the path rule; with ``check_files`` every file exists.

    Raises:
        DatasetError: unreadable JSON, missing sections/keys, a path outside the dataset
            (:func:`resolve_datalist_path`) or missing files (named in the message).
    """
    p = Path(path)
    data = read_json(p, "datalist")
    _validate_datalist(data, p, check_files=check_files)
    return data


def _validate_datalist(data: Any, where: Path, check_files: bool) -> None:
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: a datalist must be a JSON object")
    if not any(k in data for k in DATALIST_SECTIONS):
        raise DatasetError(f"{where}: none of the sections {DATALIST_SECTIONS} is present")
    roots = datalist_roots(data, where)
    for section in DATALIST_SECTIONS:
        items = data.get(section, [])
        if not isinstance(items, list):
            raise DatasetError(f"{where}: '{section}' must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "image" not in item:
                raise DatasetError(f"{where}: {section}[{i}] has no 'image' key")
            resolve_item_paths(item, DATALIST_PATH_KEYS, roots, f"{where}: {section}[{i}]", check_files)


def resolve_item_paths(
    item: dict[str, Any], keys: Sequence[str], roots: Sequence[Path], where: str, check_files: bool = True
) -> dict[str, Path]:
    """The absolute paths of ``item``'s ``keys`` that it has (:func:`resolve_datalist_path`, the path rule), each
    checked to be an existing file when ``check_files``; ``where`` (e.g. ``"dl.json: training[3]"``) starts the
    messages."""
    out = {}
    for key in keys:
        if key in item:
            label = f"{where} '{key}'"
            out[key] = resolve_datalist_path(item[key], roots, label)
            if check_files:
                require_datalist_file(out[key], label)
    return out


def require_datalist_file(path: Path, where: str) -> None:
    """Raise :class:`DatasetError` (``where`` names the datalist entry) unless ``path`` is an existing file."""
    if not path.is_file():
        raise DatasetError(f"{where} names {'a folder, not a file' if path.is_dir() else 'a missing file'}: {path}")

"""Safe file I/O shared by every converter and generator.

Everything here follows ``docs/conventions.md``: arrays are in MONAI index order ``(x, y[, z])``,
files are written atomically (temporary name in the same folder, then :func:`os.replace`), and no
function writes into a source folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CACHE_ENV",
    "DatasetError",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "prepare_output_dir",
    "ensure_not_inside",
    "save_png",
    "load_png",
    "save_volume",
    "load_volume",
    "write_datalist",
    "load_datalist",
    "read_json",
    "cache_dir",
    "DATALIST_SECTIONS",
]

DATALIST_SECTIONS = ("training", "validation", "test")


class DatasetError(ValueError):
    """Bad input data: the message names the file or field and what is wrong."""


def _double_suffix(path: Path) -> str:
    """Suffix that readers dispatch on, keeping ``.nii.gz`` whole."""
    name = path.name
    for s in (".nii.gz", ".nrrd", ".nii", ".png", ".json", ".csv", ".jpg", ".txt"):
        if name.lower().endswith(s):
            return name[-len(s) :]
    return path.suffix


def _create_temp(parent: Path, prefix: str, suffix: str) -> Path:
    """Create an empty file with a fresh random name in ``parent``, opened like a plain ``open()``.

    Its mode is ``0o666`` less the umask, applied by the OS. ``tempfile.mkstemp`` would give the private ``0o600``,
    and reading the umask to ``chmod`` afterwards would briefly change it for every thread.
    """
    for _ in range(100):
        candidate = parent / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"{parent}: could not create a unique temporary file {prefix}*{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place atomically.

    The temporary file keeps the target's suffix (``.nii.gz``, ``.png``, ...) so that writers which
    choose a format by extension (PIL, ITK, nibabel) work unchanged. On an exception the temporary file
    is removed and ``path`` is left as it was. The file gets the permissions a plain ``open()`` would give
    (``0o666`` less the umask), not the private ``0o600`` of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(path.parent, f".{path.name}.", ".tmp" + _double_suffix(path))
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; numpy scalars and arrays are converted."""

    def _default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_default) + "\n")


def ensure_not_inside(output_dir: str | os.PathLike, source: str | os.PathLike) -> None:
    """Raise :class:`DatasetError` if ``output_dir`` is ``source`` or lies inside it (source stays untouched)."""
    out = Path(output_dir).resolve()
    src = Path(source).resolve()
    if out == src or src in out.parents:
        raise DatasetError(f"output folder {out} is inside the source folder {src}; sources are never written to")


def prepare_output_dir(
    output_dir: str | os.PathLike, source: str | os.PathLike | None = None, overwrite: bool = False
) -> Path:
    """Create ``output_dir`` for a conversion.

    Args:
        output_dir: folder to create (parents too).
        source: the source folder of the conversion; the output may not be it or lie inside it.
        overwrite: allow a non-empty output folder. Existing files are then replaced one by one
            (atomically); nothing is deleted.

    Raises:
        DatasetError: output inside the source, or a non-empty output without ``overwrite``.
    """
    out = Path(output_dir)
    if source is not None:
        ensure_not_inside(out, source)
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"output {out} exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise DatasetError(f"output folder {out} is not empty; pass overwrite=True (--overwrite) to replace files in it")
    out.mkdir(parents=True, exist_ok=True)
    return out


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


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read a NIfTI/NRRD volume via ITK into ``(x, y, z)`` order with its geometry.

    Returns:
        ``(array, {"spacing": (nd,), "origin": (nd,), "direction": (nd, nd)})``.

    Raises:
        DatasetError: missing or unreadable file.
    """
    import itk

    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"volume file not found: {p}")
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
    """Validate and write a decathlon-style datalist (paths relative to ``output_dir``) atomically."""
    _validate_datalist(datalist, Path(output_dir) / name, base_dir=Path(output_dir))
    return atomic_write_json(Path(output_dir) / name, datalist)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file; a missing file or invalid JSON raises :class:`DatasetError` naming ``what`` and the path."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{what} not found: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{what} {p} is not valid JSON: {e}") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{what} {p} is not a JSON text file (not UTF-8 text: {e.reason} at byte {e.start})") from e


def load_datalist(path: str | os.PathLike, check_files: bool = True) -> dict[str, Any]:
    """Read and validate a datalist JSON; with ``check_files`` every named file must exist.

    Raises:
        DatasetError: unreadable JSON, missing sections/keys, or missing files (named in the message).
    """
    p = Path(path)
    data = read_json(p, "datalist")
    _validate_datalist(data, p, base_dir=p.parent if check_files else None)
    return data


def _validate_datalist(data: Any, where: Path, base_dir: Path | None) -> None:
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: a datalist must be a JSON object")
    if not any(k in data for k in DATALIST_SECTIONS):
        raise DatasetError(f"{where}: none of the sections {DATALIST_SECTIONS} is present")
    for section in DATALIST_SECTIONS:
        items = data.get(section, [])
        if not isinstance(items, list):
            raise DatasetError(f"{where}: '{section}' must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "image" not in item:
                raise DatasetError(f"{where}: {section}[{i}] has no 'image' key")
            if base_dir is None:
                continue
            for key in ("image", "label", "calipers"):
                if key in item and not (base_dir / item[key]).is_file():
                    raise DatasetError(f"{where}: {section}[{i}] '{key}' names a missing file: {base_dir / item[key]}")


#: environment variable naming the user cache folder (:func:`cache_dir`)
CACHE_ENV = "USSEG_MONAI_CACHE"


def cache_dir() -> Path:
    """The user cache folder for generated data: ``$USSEG_MONAI_CACHE`` or ``~/.cache/usseg_monai``."""
    env = os.environ.get(CACHE_ENV)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "usseg_monai"
    return base

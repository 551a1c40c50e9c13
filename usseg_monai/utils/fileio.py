"""Files written atomically, output folders checked and staged, JSON read with errors that name the file.

The bottom layer (with :mod:`usseg_monai.utils.errors`): every sub-package may import it, it imports nothing of
the project's above it. Writes go to a temporary name in the target's folder and are moved into place with
:func:`os.replace`, so a reader never sees half a file; no function writes into a source folder.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import secrets
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.utils.errors import DatasetError

__all__ = [
    "CACHE_ENV",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "prepare_output_dir",
    "check_output_dir",
    "StagedOutput",
    "ensure_not_inside",
    "read_json",
    "cache_dir",
]


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
    """Write ``obj`` as JSON to ``path`` atomically; numpy scalars and arrays are converted. A path ending in
    ``.gz`` is written gzip-compressed (no time stamp in the header: the same object gives the same bytes)."""

    def _default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    text = json.dumps(obj, indent=indent, default=_default) + "\n"
    if not str(path).endswith(".gz"):
        return atomic_write_text(path, text)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    return Path(path)


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
    out = check_output_dir(output_dir, source, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_output_dir(
    output_dir: str | os.PathLike, source: str | os.PathLike | None = None, overwrite: bool = False
) -> Path:
    """The rules of :func:`prepare_output_dir` without creating anything: returns ``output_dir`` as a path."""
    out = Path(output_dir)
    if source is not None:
        ensure_not_inside(out, source)
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"output {out} exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise DatasetError(
                f"output folder {out} is not empty; pass overwrite=True (--overwrite) to replace files in it"
            )
    return out


class StagedOutput:
    """An output folder built in a hidden staging folder beside it and moved into place by :meth:`commit`.

    A conversion that fails (or is interrupted) leaves nothing at ``output_dir``: :meth:`abort` (called by the
    context manager on an exception or without a commit, and when the object is garbage-collected uncommitted)
    removes the staging folder. :meth:`commit` renames the staging folder to ``output_dir`` when that does not
    exist or is empty; into a non-empty ``output_dir`` (``overwrite``) it moves the files one by one with
    :func:`os.replace` (``datalist.json`` and ``summary.json`` last), deleting nothing else.

    Args:
        output_dir, source, overwrite: as :func:`prepare_output_dir` (checked here, before anything is written).
    """

    #: moved last into an existing folder, so that a datalist never names files not yet in place
    LAST = ("datalist.json", "summary.json")

    def __init__(
        self, output_dir: str | os.PathLike, source: str | os.PathLike | None = None, overwrite: bool = False
    ) -> None:
        self.output_dir = Path(os.path.abspath(check_output_dir(output_dir, source, overwrite)))
        self.output_dir.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir.parent / f".{self.output_dir.name}.partial-{secrets.token_hex(4)}"
        self.path.mkdir()
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.path), True)
        self.committed = False

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None or not self.committed:
            self.abort()

    def abort(self) -> None:
        """Remove the staging folder (``output_dir`` is untouched)."""
        if not self.committed:
            self._cleanup()

    def commit(self) -> Path:
        """Move the staged files to ``output_dir``; returns it."""
        if self.committed:
            return self.output_dir
        out = self.output_dir
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if not out.exists():
            os.replace(self.path, out)
        else:
            files = sorted(p for p in self.path.rglob("*") if p.is_file())
            files.sort(key=lambda p: p.relative_to(self.path).as_posix() in self.LAST)
            for f in files:
                target = out / f.relative_to(self.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, target)
            shutil.rmtree(self.path, ignore_errors=True)
        self._cleanup.detach()
        self.committed = True
        return out


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file (gzip-compressed where the name ends in ``.gz``); a missing file or invalid JSON raises
    :class:`DatasetError` naming ``what`` and the path."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{what} not found: {p}")
    try:
        raw = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        return json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{what} {p} is not valid JSON: {e}") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{what} {p} is not a JSON text file (not UTF-8 text: {e.reason} at byte {e.start})") from e
    except EOFError as e:
        raise DatasetError(f"{what} {p} is a truncated gzip file: {e}") from e
    except OSError as e:
        raise DatasetError(f"cannot read {what} {p}: {e.strerror or e}") from e


#: environment variable naming the user cache folder (:func:`cache_dir`)
CACHE_ENV = "USSEG_MONAI_CACHE"


def cache_dir() -> Path:
    """The user cache folder for generated data: ``$USSEG_MONAI_CACHE`` or ``~/.cache/usseg_monai``."""
    env = os.environ.get(CACHE_ENV)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "usseg_monai"
    return base

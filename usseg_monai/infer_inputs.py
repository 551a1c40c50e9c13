"""The inputs of ``usseg infer``: which files it reads (images, ultrasound DICOM, volumes), the names of their
outputs, the staging folder the bundle's ``inference.json`` reads them from, and the calipers that go with them.

:func:`collect_inputs` finds the files (folders searched recursively) and :func:`stage_inputs` links or converts
them (DICOM frames to PNG with their spacing) into a staging folder as :class:`InferItem` s; a file that cannot be
read becomes an :class:`InferFailure` and the others still run (:mod:`usseg_monai.infer`).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usseg_monai.data.dicom import is_dicom, read_ultrasound_dicom
from usseg_monai.data.io import DatasetError, save_png
from usseg_monai.transforms.output_meta import image_stem

__all__ = [
    "glob_escape",
    "IMAGE_SUFFIXES",
    "VOLUME_SUFFIXES",
    "InferItem",
    "InferFailure",
    "input_kind",
    "collect_inputs",
    "unique_names",
    "stage_inputs",
    "match_calipers",
]

logger = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass
class InferItem:
    """One image to run: a file, or one frame of a multi-frame DICOM file.

    Attributes:
        source: the user's file (never written to).
        kind: ``"image"``, ``"dicom"`` or ``"volume"``.
        name: output stem, unique within the run.
        frame: frame index of a multi-frame DICOM file.
        staged: the file the bundle reads (a link to ``source``, or the DICOM frame as PNG).
        spacing: mm per pixel ``(x, y[, z])`` given to the bundle (``None``: the file's own, or pixel units).
        spacing_source: where the spacing came from.
        calipers: the caliper JSON constraining this image's mask.
    """

    source: Path
    kind: str
    name: str
    frame: int | None = None
    staged: Path | None = None
    spacing: list[float] | None = None
    spacing_source: str = "file"
    calipers: Path | None = None

    @property
    def label(self) -> str:
        """How the item is named in messages: the file, with the frame where there is one."""
        return f"{self.source} (frame {self.frame})" if self.frame is not None else str(self.source)

    def datalist_item(self, calipers_key: bool = False) -> dict[str, Any]:
        """The datalist item; with ``calipers_key`` every item has ``calipers`` (``""``: none), so that items with
        and without calipers batch together."""
        item: dict[str, Any] = {"image": str(self.staged)}
        if self.spacing is not None:
            item["spacing"] = [float(s) for s in self.spacing]
        if self.calipers is not None or calipers_key:
            item["calipers"] = str(self.calipers) if self.calipers is not None else ""
        return item


@dataclass
class InferFailure:
    """An input that did not run, and why (one line)."""

    source: str
    reason: str


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def input_kind(path: str | os.PathLike) -> str | None:
    """``"image"``, ``"volume"``, ``"dicom"`` (``.dcm`` suffix or ``DICM`` preamble) or ``None`` (not an input)."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if name.endswith(VOLUME_SUFFIXES):
        return "volume"
    if name.endswith(".dcm") or is_dicom(p):
        return "dicom"
    return None


def collect_inputs(
    inputs: Sequence[str | os.PathLike], exclude: Sequence[str] = ()
) -> tuple[list[tuple[Path, str]], list[InferFailure], list[str]]:
    """Expand files and folders (recursively, sorted) into ``(file, kind)`` pairs.

    Args:
        inputs: files and folders.
        exclude: file-name patterns (``fnmatch``, e.g. ``"*_mask*.png"``) left out of folders and file lists.

    Returns:
        ``(files, failures, skipped)``: a named file that is missing or of no known kind is a failure; a file
        in a folder that is of no known kind is skipped (its path listed). A file named twice runs once.
    """
    files: list[tuple[Path, str]] = []
    failures: list[InferFailure] = []
    skipped: list[str] = []
    seen: set[Path] = set()

    def add(f: Path, kind: str) -> None:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            files.append((f, kind))

    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                if any(fnmatch.fnmatch(f.name, pat) for pat in exclude):
                    continue
                kind = input_kind(f)
                if kind is None:
                    skipped.append(str(f))
                else:
                    add(f, kind)
        elif p.is_file():
            if any(fnmatch.fnmatch(p.name, pat) for pat in exclude):
                continue
            kind = input_kind(p)
            if kind is None:
                failures.append(
                    InferFailure(str(p), "not an image, volume or DICOM file (suffixes: "
                                 f"{', '.join(IMAGE_SUFFIXES + VOLUME_SUFFIXES)}, .dcm)")
                )
            else:
                add(p, kind)
        else:
            failures.append(InferFailure(str(p), "no such file or folder"))
    return files, failures, skipped


def unique_names(files: Sequence[Path]) -> list[str]:
    """Output stems: the file stem, with parent folder names prefixed (``a__b__stem``) where stems collide."""
    parts = [list(f.resolve().parts[:-1]) for f in files]
    stems = [image_stem(f) for f in files]
    names = list(stems)
    depth = 0
    while True:
        counts: dict[str, int] = {}
        for n in names:
            counts[n] = counts.get(n, 0) + 1
        clash = [i for i, n in enumerate(names) if counts[n] > 1]
        if not clash:
            return names
        depth += 1
        for i in clash:
            prefix = parts[i][-depth:] if depth <= len(parts[i]) else parts[i]
            names[i] = "__".join([q.strip("/\\") or "root" for q in prefix] + [stems[i]])
        if depth > max(len(p) for p in parts):  # the same stem and folders: number them
            for k, i in enumerate(clash):
                names[i] = f"{names[i]}_{k}"


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # no symlinks here (some file systems, Windows without the privilege)
        shutil.copyfile(src, dst)


def stage_inputs(
    files: Sequence[tuple[Path, str]], spatial_dims: int, staging: Path, spacing: Sequence[float] | None,
    bundle_name: str,
) -> tuple[list[InferItem], list[InferFailure]]:
    """Make the files the bundle reads: links to images / volumes, DICOM frames as PNG with their spacing."""
    items: list[InferItem] = []
    failures: list[InferFailure] = []
    names = unique_names([f for f, _ in files])
    for (f, kind), name in zip(files, names):
        if spatial_dims == 2 and kind == "volume":
            failures.append(InferFailure(str(f), f"a volume; bundle {bundle_name} is 2D (use a 3D bundle for volumes)"))
            continue
        if spatial_dims == 3 and kind != "volume":
            failures.append(
                InferFailure(str(f), f"a 2D {'DICOM file' if kind == 'dicom' else 'image'}; bundle {bundle_name} is 3D "
                             f"and takes NIfTI / NRRD / MetaImage volumes")
            )
            continue
        if kind == "dicom":
            try:
                frames = read_ultrasound_dicom(f)
            except DatasetError as e:
                failures.append(InferFailure(str(f), " ".join(str(e).split())))
                continue
            for j, (array_xy, sp) in enumerate(frames):
                frame = j if len(frames) > 1 else None
                stem = name if frame is None else f"{name}_f{j:04d}"
                staged = save_png(staging / f"{stem}.png", array_xy)
                given = list(sp) if sp is not None else (list(spacing) if spacing is not None else None)
                source = "dicom" if sp is not None else ("--spacing" if spacing is not None else "none")
                items.append(InferItem(f, kind, stem, frame, staged, given, source))
            continue
        suffix = next(s for s in IMAGE_SUFFIXES + VOLUME_SUFFIXES if f.name.lower().endswith(s))
        staged = staging / f"{name}{suffix}"
        _link_or_copy(f, staged)
        if kind == "image":
            given = list(spacing) if spacing is not None else None
            items.append(InferItem(f, kind, name, None, staged, given, "--spacing" if given else "none"))
        else:
            items.append(InferItem(f, kind, name, None, staged, None, "header"))
    return items, failures


def match_calipers(items: Sequence[InferItem], calipers: str | os.PathLike) -> None:
    """Give each item its caliper JSON: ``calipers`` itself (one image only) or ``<folder>/<name>.json``."""
    c = Path(calipers)
    if c.is_file():
        if len(items) != 1:
            raise DatasetError(
                f"--calipers {c} is one file but {len(items)} images were given; pass a folder of <name>.json files"
            )
        items[0].calipers = c
        return
    if not c.is_dir():
        raise DatasetError(f"--calipers {c}: no such file or folder")
    for it in items:
        stem = image_stem(it.source)
        candidates = [c / f"{it.name}.json"]
        if it.frame is None:
            candidates += [c / f"{stem}.json", c / f"{stem}_calipers.json"]
        it.calipers = next((q for q in candidates if q.is_file()), None)
    found = sum(it.calipers is not None for it in items)
    logger.info("calipers: found for %d of %d images in %s", found, len(items), c)

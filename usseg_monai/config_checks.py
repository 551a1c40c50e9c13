"""Checks a bundle run makes in ``initialize``, before the first iteration: settings, then the data files.

A bad override or a bad file found in epoch 3, or reported as a chain of MONAI ``RuntimeError: Failed to evaluate
ConfigExpression`` tracebacks, costs the user the run and the time to decode it. Every bundle config therefore
evaluates, at the top of ``initialize``:

- :func:`install_error_hook`: an input error of this project (:class:`~usseg_monai.utils.errors.InputError`: a bad
  setting, a :class:`~usseg_monai.data.io.DatasetError`, a missing or damaged checkpoint, ...) anywhere in an
  uncaught exception's chain is printed as one ``ERROR: ...`` line (``USSEG_TRACEBACK=1`` prints the traceback as
  usual); any other exception keeps its traceback.
- :func:`check_settings` on the bundle's ``checked_settings`` (a dict of ``@`` references, so it sees the values
  after overrides): ``--max_epochs '"x"'`` is an error naming ``max_epochs``, the value and what it must be.
- :func:`check_data_items` on the sections the run reads (already loaded by
  :func:`usseg_monai.data.datalist.load_datalist_section`, which names missing files, folders, empty sections and
  missing keys, and applies the path rule): every image and mask is opened far enough to know its size and channel
  count (PNG header, NIfTI/NRRD header), so that a file that is not an image, a 2-channel mask, a mask of another
  size than its image, or a 2D file in a 3D bundle is an error naming the file before training starts.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
import torch

from usseg_monai.calipers import load_calipers
from usseg_monai.data.io import DatasetError, check_header_spacing
from usseg_monai.engines.optim import LR_SCHEDULES, OPTIMIZERS
from usseg_monai.handlers.training_state import check_writable_dir
from usseg_monai.transforms.augment import AUGMENTATIONS
from usseg_monai.utils.errors import CheckpointError, CheckpointNotFoundError, ConfigError, InputError, find_in_chain

__all__ = [
    "check_checkpoint",
    "SETTING_RULES",
    "check_settings",
    "check_data_items",
    "check_writable_dir",
    "image_header",
    "install_error_hook",
    "TRACEBACK_ENV",
]

#: environment variable: ``1`` keeps the full traceback for input errors too (:func:`install_error_hook`)
TRACEBACK_ENV = "USSEG_TRACEBACK"


_BOOL_STRINGS = ("true", "false", "yes", "no", "y", "n", "t", "f", "1", "0")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def _non_negative_int(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _positive_number(v: Any) -> bool:
    return _is_number(v) and v > 0


def _non_negative_number(v: Any) -> bool:
    return _is_number(v) and v >= 0


def _fraction(v: Any) -> bool:
    return _is_number(v) and 0 <= v <= 1


def _bool_like(v: Any) -> bool:
    return isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in _BOOL_STRINGS)


def _size(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) in (2, 3) and all(_positive_int(s) for s in v)


def _count_or_fraction(v: Any) -> bool:
    return v is None or (_non_negative_int(v)) or (_is_number(v) and 0 < v <= 1) or v == "rest"


def _one_of(names: Sequence[str]) -> Callable[[Any], bool]:
    """A test accepting the strings in ``names``, case-insensitively (as the factories that read them do)."""
    return lambda v: isinstance(v, str) and v.strip().lower() in names


#: setting -> (what it must be, test); settings a bundle does not have are not checked
SETTING_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "max_epochs": ("a positive integer (epochs)", _positive_int),
    "batch_size": ("a positive integer (images per batch)", _positive_int),
    "val_interval": ("a positive integer (epochs between validations)", _positive_int),
    "num_workers": ("an integer >= 0 (data-loading processes)", _non_negative_int),
    "checkpoint_interval": ("an integer >= 0 (epochs between checkpoints; 0: at the end only)", _non_negative_int),
    "seed": ("an integer >= 0", _non_negative_int),
    "spatial_dims": ("2 or 3", lambda v: _is_int(v) and v in (2, 3)),
    "num_classes": ("an integer >= 2 (output channels, background included)", lambda v: _is_int(v) and v >= 2),
    "learning_rate": ("a finite positive number", _positive_number),
    "weight_decay": ("a finite number >= 0", _non_negative_number),
    "momentum": ("a number in [0, 1]", _fraction),
    "cache_rate": ("a number in [0, 1] (fraction of the dataset cached)", _fraction),
    "image_size": ("a list of 2 or 3 positive integers (pixels/voxels per axis)", _size),
    "labeled_fraction": ("a count >= 0, a fraction in (0, 1] or null", _count_or_fraction),
    "class_only": ("a count >= 0, a fraction in (0, 1], 'rest' or null", _count_or_fraction),
    "progress_bar": ("true or false", _bool_like),
    "amp": ("true or false", _bool_like),
    "resume": ("true or false", _bool_like),
    "labeled_only": ("true or false", _bool_like),
    "optimizer_name": (f"one of {', '.join(OPTIMIZERS)}", _one_of(OPTIMIZERS)),
    "lr_schedule": (f"one of {', '.join(LR_SCHEDULES)}", _one_of(LR_SCHEDULES)),
    "augmentation": (f"one of {', '.join(AUGMENTATIONS)}", _one_of(AUGMENTATIONS)),
    "augment_device": ("'cpu', 'cuda' or 'cuda:N' (where the cached training items and their random transforms "
                       "live)", lambda v: isinstance(v, str) and re.fullmatch(r"cpu|cuda(:\d+)?", v) is not None),
}


def check_settings(settings: Mapping[str, Any], where: str = "bundle config") -> dict[str, Any]:
    """Check bundle settings against :data:`SETTING_RULES`; returns ``settings`` as a dict.

    Args:
        settings: setting name -> value, as the run sees it (after ``--key value`` overrides).
        where: named in the message (e.g. the bundle).

    Raises:
        ConfigError: the first setting of the wrong type or out of range: its name, the value (with its type)
            and what it must be; ``image_size`` must also have ``spatial_dims`` entries.
    """
    for key, value in settings.items():
        rule = SETTING_RULES.get(key)
        if rule is None:
            continue
        what, ok = rule
        if not ok(value):
            raise ConfigError(
                f"{where}: setting '{key}' must be {what}, got {value!r} ({type(value).__name__}); "
                f"e.g. --{key} {_example(key)}"
            )
    device, workers = settings.get("augment_device"), settings.get("num_workers")
    if isinstance(device, str) and device.startswith("cuda") and _is_int(workers) and workers > 0:
        raise ConfigError(f"{where}: augment_device '{device}' needs num_workers 0 (CUDA tensors cannot go through "
                          f"data-loading processes), got num_workers {workers}; e.g. --num_workers 0")
    dims, size = settings.get("spatial_dims"), settings.get("image_size")
    if _is_int(dims) and _size(size) and len(size) != dims:
        raise ConfigError(f"{where}: setting 'image_size' {list(size)} has {len(size)} entries for spatial_dims {dims}")
    return dict(settings)


def _example(key: str) -> str:
    examples = {"learning_rate": "0.001", "weight_decay": "0.0001", "momentum": "0.9", "cache_rate": "1.0",
                "image_size": "'[128, 128]'", "labeled_fraction": "0.1", "class_only": "rest", "spatial_dims": "2",
                "num_classes": "2", "optimizer_name": "adamw", "lr_schedule": "cosine", "augmentation": "flip_affine",
                "augment_device": "cpu"}
    if SETTING_RULES[key][1] is _bool_like:
        return "false"
    return examples.get(key, "10")


#: PIL modes -> channel count
_PIL_CHANNELS = {"1": 1, "L": 1, "P": 1, "I": 1, "I;16": 1, "I;16B": 1, "I;16L": 1, "F": 1, "LA": 2, "La": 2,
                 "PA": 2, "RGB": 3, "YCbCr": 3, "RGBA": 4, "RGBa": 4, "CMYK": 4}
#: channel counts a 2D image or mask may have (``EnsureGrayscaled``: RGB and RGBA become luminance)
ALLOWED_CHANNELS = (1, 3, 4)


def image_header(path: str | os.PathLike, spatial_dims: int) -> tuple[tuple[int, ...], int]:
    """The spatial size (MONAI ``(x, y[, z])`` order) and channel count of an image file, from its header.

    2D: anything PIL opens (PNG, JPEG, BMP, TIFF); 3D: NIfTI (nibabel), other ITK formats (NRRD, MetaImage) via
    ITK's image IO, whose header spacing must be finite and positive
    (:func:`~usseg_monai.data.io.check_header_spacing`).

    Raises:
        DatasetError: the file cannot be read as an image of ``spatial_dims`` dimensions (naming it).
    """
    p = Path(path)
    if spatial_dims == 2:
        try:
            with Image.open(p) as im:
                return (int(im.size[0]), int(im.size[1])), _PIL_CHANNELS.get(im.mode, len(im.getbands()))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DatasetError(f"{p}: not an image this 2D bundle can read (PNG, JPEG, BMP, TIFF): {e}") from e
    name = p.name.lower()
    try:
        check_header_spacing(p)
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            shape = tuple(int(s) for s in nib.load(str(p)).shape)
            spatial, channels = shape[:3], (int(math.prod(shape[3:])) if len(shape) > 3 else 1)
        else:
            import itk

            io = itk.ImageIOFactory.CreateImageIO(str(p), itk.CommonEnums.IOFileMode_ReadMode)
            if io is None:
                raise DatasetError(f"{p}: not a volume ITK can read (NIfTI, NRRD, MetaImage, ...)")
            io.SetFileName(str(p))
            io.ReadImageInformation()
            spatial = tuple(int(io.GetDimensions(i)) for i in range(io.GetNumberOfDimensions()))
            channels = int(io.GetNumberOfComponents())
    except DatasetError:
        raise
    except Exception as e:  # nibabel's ImageFileError, ITK's RuntimeError, a truncated gzip stream ...
        raise DatasetError(f"{p}: not a volume this 3D bundle can read: {e}") from e
    if len(spatial) != 3:
        raise DatasetError(f"{p}: a {len(spatial)}D image {spatial}, this bundle needs 3D volumes (x, y, z)")
    return spatial, channels


def check_data_items(
    sections: Sequence[Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]]],
    spatial_dims: int,
    image_key: str = "image",
    label_key: str = "label",
    calipers_key: str = "calipers",
) -> int:
    """Open the header of every image and mask the run will read; returns the number of files checked.

    Args:
        sections: lists of datalist items with absolute paths (from ``load_datalist_section``); an entry that is
            a mapping (``load_semi_supervised_sections``' ``{"labeled": [...], "unlabeled": [...]}``) is read by its
            values.
        spatial_dims: 2 or 3.
        image_key, label_key: the item keys of the image and its mask (items without a mask are fine).
        calipers_key: caliper JSON files, when present and not ``""``, are loaded and validated
            (:func:`usseg_monai.calipers.load_calipers`).

    Raises:
        DatasetError: naming the file: unreadable or not an image of ``spatial_dims`` dimensions, a channel count
            other than 1, 3 or 4 (2D) or 1 (3D), a mask whose size differs from its image's, or an invalid caliper
            file.
    """
    groups: list[Sequence[Mapping[str, Any]]] = []
    for entry in sections:
        groups.extend(entry.values() if isinstance(entry, Mapping) else [entry])
    allowed = ALLOWED_CHANNELS if spatial_dims == 2 else (1,)
    seen: dict[str, tuple[tuple[int, ...], int]] = {}
    n = 0
    for items in groups:
        for item in items:
            sizes = {}
            for key in (image_key, label_key):
                if key not in item:
                    continue
                path = str(item[key])
                if path not in seen:
                    seen[path] = image_header(path, spatial_dims)
                    n += 1
                size, channels = seen[path]
                if channels not in allowed:
                    what = "image" if key == image_key else "mask"
                    raise DatasetError(
                        f"{path}: the {what} has {channels} channels; this {spatial_dims}D bundle reads "
                        f"{' or '.join(map(str, allowed))} (grayscale{', RGB, RGBA' if spatial_dims == 2 else ''})"
                    )
                sizes[key] = size
            if image_key in sizes and label_key in sizes and sizes[image_key] != sizes[label_key]:
                raise DatasetError(
                    f"{item[label_key]}: the mask is {'x'.join(map(str, sizes[label_key]))} but its image "
                    f"{item[image_key]} is {'x'.join(map(str, sizes[image_key]))} (x, y[, z]); they must match"
                )
            if item.get(calipers_key):  # ``usseg infer`` gives "" to the images without calipers
                load_calipers(item[calipers_key])
                n += 1
    return n


def _input_error(exc: BaseException | None) -> InputError | None:
    """The first :class:`~usseg_monai.utils.errors.InputError` in ``exc``'s cause/context chain."""
    return find_in_chain(exc, InputError)


def install_error_hook() -> None:
    """Print an uncaught input error as one ``ERROR: ...`` line instead of a traceback (exit status stays 1).

    Only :class:`~usseg_monai.utils.errors.InputError` s (a :class:`~usseg_monai.data.io.DatasetError`, a bad setting,
    a missing or damaged checkpoint, an unwritable folder, a non-finite loss), found anywhere in the exception's
    chain (e.g. under MONAI's ``Failed to evaluate ConfigExpression``), are shortened; with ``USSEG_TRACEBACK=1`` or
    for any other exception the previous hook runs. Idempotent.
    """
    previous = sys.excepthook
    if getattr(previous, "_usseg_input_errors", False):
        return

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        found = _input_error(exc)
        if found is None or os.environ.get(TRACEBACK_ENV, "") == "1":
            previous(exc_type, exc, tb)
            return
        message = " ".join(str(found).split())
        print(f"ERROR: {message}\n(the traceback of this input error is hidden; {TRACEBACK_ENV}=1 shows it)",
              file=sys.stderr)

    hook._usseg_input_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def check_checkpoint(path: str | os.PathLike, what: str = "model") -> Path:
    """Check that the checkpoint a run loads exists and can be read (``torch.load(weights_only=True)``).

    Raises:
        CheckpointNotFoundError: no file at ``path`` (the message says how to get one).
        CheckpointError: the file is damaged (e.g. truncated) or not a checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointNotFoundError(
            f"no {what} checkpoint at {p}: train the bundle first (configs/train.json writes models/model.pt) or "
            "pass --ckpt_path <a trained model.pt>"
        )
    try:
        torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = " ".join(str(e).split())
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise CheckpointError(
            f"{what} checkpoint {p} is damaged or not a checkpoint ({type(e).__name__}: {reason}); train again or "
            "pass --ckpt_path <a trained model.pt>"
        ) from e
    return p

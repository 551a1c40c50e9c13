"""Error types that describe a problem with the user's input (data, settings, checkpoints, output folders).

They are the bottom layer: every module may raise them, none of them imports anything of this project. Their
messages name the file, setting or folder and what is wrong, so a front end can print the message alone: the
``usseg`` CLI prints ``usseg <cmd>: error: <message>``; a bundle run (``python -m monai.bundle run``) prints
``ERROR: <message>`` through :func:`usseg_monai.config_checks.install_error_hook`, which finds an
:class:`InputError` anywhere in the chain of MONAI's ``Failed to evaluate ConfigExpression`` wrappers. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = [
    "find_in_chain",
    "InputError",
    "ConfigError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "OutputNotWritableError",
    "NonFiniteLossError",
    "DatasetError",
]


E = TypeVar("E", bound=BaseException)


def find_in_chain(exc: BaseException | None, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` in ``exc`` and its ``__cause__`` / ``__context__`` chain (MONAI's
    ``Failed to evaluate ConfigExpression`` and ``Compose`` wrap a transform's or expression's error), or ``None``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class InputError(Exception):
    """Base of the errors caused by the user's input rather than by a bug."""


class ConfigError(InputError, ValueError):
    """A bundle setting (config value or ``--key value`` override) of the wrong type or out of range."""


class CheckpointError(InputError, ValueError):
    """A checkpoint that is damaged, not of this bundle, or cannot continue the run (names the file)."""


class CheckpointNotFoundError(InputError, FileNotFoundError):
    """A checkpoint the run needs is missing (names the file and how to proceed)."""


class OutputNotWritableError(InputError, PermissionError):
    """An output or checkpoint folder that cannot be created or written (names the folder)."""


class NonFiniteLossError(InputError, FloatingPointError):
    """Training produced a non-finite loss (names the iteration and the batch's images)."""


class DatasetError(InputError, ValueError):
    """Bad input data: the message names the file or field and what is wrong."""

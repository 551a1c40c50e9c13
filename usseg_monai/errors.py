"""Error types that describe a problem with the user's input (data, settings, checkpoints, output folders).

They are the bottom layer: every module may raise them, none of them imports anything of this project. Their
messages name the file, setting or folder and what is wrong, so a front end can print the message alone: the
``usseg`` CLI prints ``usseg <cmd>: error: <message>``; a bundle run (``python -m monai.bundle run``) prints
``ERROR: <message>`` through :func:`usseg_monai.config_checks.install_error_hook`, which finds an
:class:`InputError` anywhere in the chain of MONAI's ``Failed to evaluate ConfigExpression`` wrappers. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "InputError",
    "ConfigError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "OutputNotWritableError",
    "NonFiniteLossError",
]


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

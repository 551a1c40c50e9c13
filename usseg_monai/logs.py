"""Known-harmless notices from MONAI, silenced one by one (never all warnings, never other libraries' loggers).

A CPU run of any bundle prints, without these filters, thousands of lines that carry no information for our users:

- ``monai.data.nvimgcodec_pydicom_plugin``: "nvImageCodec is not available; skipping pydicom decoder plugin
  registration." (a logger warning, plus the matching ``NvImgCodecPydicomReader`` ``UserWarning``), once per
  ``LoadImage`` that builds its reader list: on a machine without nvImageCodec/CUDA pydicom's own decoders are used,
  which is what this project expects (``docs/conventions.md``).
- MONAI's surface-distance helpers: "the ground truth / prediction of class N is all 0, this may result in nan/inf
  distance." Our evaluate configs record empty cases themselves (``summary.json``: ``cases_with_empty_label`` and
  the empty-label policy), so the per-case warning repeats what the summary states.
- numpy's "Mean of empty slice" / "Degrees of freedom <= 0 for slice" from ``MetricsSaver``'s summary of a metric
  column that is NaN for every case, or has one value (the same empty-label policy; the NaN is kept in the CSV and
  the summary).
- MONAI's deprecation of ``get_mask_edges(always_return_as_numpy=...)``, which MONAI's own surface-distance
  metrics still pass (MONAI 1.5; nothing a user can change).
- The bundle-config notice "parsing config_file ...: any "_target_" value ... GHSA-873f-pvrv-4x83", only where our
  own code parses the bundles this project ships (:func:`filter_known_warnings` with ``own_configs=True``, e.g. the
  ``usseg`` CLI; ``scripts/main.sh`` sets ``PYTHONWARNINGS`` for that one message). A user's own
  ``python -m monai.bundle run`` keeps it: it is a security notice about *their* configs.

:func:`filter_known_warnings` is called by the ``usseg`` CLI and from every bundle config's ``initialize``; the
bundles' ``logging.conf`` also raises the nvImageCodec logger to ERROR, so a plain ``monai.bundle run`` is quiet
from its first line.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["KNOWN_HARMLESS_WARNINGS", "KNOWN_HARMLESS_LOG_MESSAGES", "KnownMessageFilter", "filter_known_warnings"]

#: (message regex matched at the start of the warning text, category) pairs, each silenced by :func:`filter_known_warnings`.
KNOWN_HARMLESS_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register", UserWarning),
    (r"the (ground truth|prediction) of class .* is all 0, this may result in nan/inf distance", UserWarning),
    (r"Mean of empty slice", RuntimeWarning),
    (r"Degrees of freedom <= 0 for slice", RuntimeWarning),
    (r"monai\.metrics\.utils get_mask_edges:always_return_as_numpy: Argument", FutureWarning),
)
#: The config-parsing notice, silenced only for configs this project ships (``own_configs=True``).
OWN_CONFIG_NOTICE: tuple[str, type[Warning]] = (r"parsing config_file .*GHSA-873f-pvrv-4x83", UserWarning)

#: logger name -> message prefixes dropped from that logger (other messages of the logger pass).
KNOWN_HARMLESS_LOG_MESSAGES: dict[str, tuple[str, ...]] = {
    "monai.data.nvimgcodec_pydicom_plugin": ("nvImageCodec is not available",),
}


class KnownMessageFilter(logging.Filter):
    """A :class:`logging.Filter` that drops records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def filter_known_warnings(own_configs: bool = False) -> None:
    """Install the filters for :data:`KNOWN_HARMLESS_WARNINGS` and :data:`KNOWN_HARMLESS_LOG_MESSAGES`.

    Idempotent (a logger gets one :class:`KnownMessageFilter`; ``warnings.filterwarnings`` de-duplicates).

    Args:
        own_configs: also silence MONAI's config-parsing security notice; only for callers that parse this
            project's own bundle configs.
    """
    entries = KNOWN_HARMLESS_WARNINGS + ((OWN_CONFIG_NOTICE,) if own_configs else ())
    for message, category in entries:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, prefixes in KNOWN_HARMLESS_LOG_MESSAGES.items():
        log = logging.getLogger(name)
        if not any(isinstance(f, KnownMessageFilter) for f in log.filters):
            log.addFilter(KnownMessageFilter(prefixes))

"""Where a bundle's configs and trained model are: a bundle folder, or a name under the repository's ``bundles/``.

A file-system helper below the benchmark, the suite and ``usseg infer`` (it imports nothing of the project but
the error type).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from usseg_monai.data.io import DatasetError

__all__ = ["BUNDLES_DIR", "resolve_bundle", "bundle_names", "trains_from_calipers", "config_digest"]

#: the repository's ``bundles/`` folder (next to the ``usseg_monai`` package in a checkout or editable install)
BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"


def bundle_names() -> list[str]:
    """Names of the bundles under :data:`BUNDLES_DIR` (sorted; empty when the package is installed without them)."""
    if not BUNDLES_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "inference.json").is_file())


def resolve_bundle(bundle: str | os.PathLike) -> Path:
    """The bundle folder (holding ``configs/train.json`` and ``configs/inference.json``) of a path or a name.

    Raises:
        DatasetError: neither ``bundle`` nor ``bundles/<bundle>`` is a bundle folder; the message lists the
            bundles there are.
    """
    p = Path(bundle)
    candidates = [p, BUNDLES_DIR / str(bundle)]
    for c in candidates:
        if (c / "configs" / "train.json").is_file() and (c / "configs" / "inference.json").is_file():
            return c.resolve()
    raise DatasetError(
        f"bundle {str(bundle)!r} not found: no configs/train.json and configs/inference.json under "
        f"{[str(c) for c in candidates]} (bundles: {', '.join(bundle_names()) or 'none'})"
    )


def trains_from_calipers(bundle: str | os.PathLike) -> bool:
    """Whether a bundle folder trains from calipers: its ``configs/train.json`` rasterises caliper pseudo-labels
    (``CaliperPseudoLabelsd``; the CRBNet bundles). Such bundles get the caliper-guided MONAI Label task."""
    train = Path(bundle) / "configs" / "train.json"
    return train.is_file() and "CaliperPseudoLabelsd" in train.read_text(encoding="utf-8")


def config_digest(bundle_dir: str | os.PathLike) -> str:
    """SHA-256 (hex) of a bundle folder's ``configs/*.json``, names and bytes in name order: two runs of a bundle
    with the same digest (and the same overrides) were configured alike."""
    h = hashlib.sha256()
    for f in sorted(Path(bundle_dir, "configs").glob("*.json")):
        h.update(f.name.encode("utf-8") + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()

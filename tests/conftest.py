"""Shared pytest fixtures: the real data in ../shared/data and temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("USSEG_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def require_shared(*parts: str) -> Path:
    """Path under the shared real-data folder; skip with the reason if absent, fail when ``CI=true``."""
    path = _shared_data_dir().joinpath(*parts)
    if not path.exists():
        msg = f"real data not found at {path} (set USSEG_SHARED_DATA or place ../shared/data beside the project)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + "; CI=true requires it")
        pytest.skip(msg)
    return path


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder (see ``require_shared``)."""
    return require_shared()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep generated caches (phantom dataset) out of the user's home during tests."""
    monkeypatch.setenv("USSEG_MONAI_CACHE", str(tmp_path_factory.getbasetemp() / "usseg_cache"))


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one intra-op thread. With two OpenMP threads on a busy 2-core machine, MALUNet's many small
    ops ran about 100x slower (4 s instead of 0.03 s per step); the previous setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

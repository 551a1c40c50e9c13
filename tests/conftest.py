"""Shared pytest fixtures: the real data in ../shared/data and temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from xdist.scheduler import LoadScopeScheduling

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


#: the suite's longest parts, started first (longest first) so that the two xdist workers of scripts/test.sh end
#: together; measured in a CI run on 2 cores (2026-12-03, test time): test_bundles 273 s (one unit), the three
#: runnable docs blocks 197 s, the MONAI Label bundle servers ~96 s each (671 s), test_export 136 s, test_suite 60 s
LONGEST_FIRST = (
    "tests/test_bundles.py::",
    "tests/test_docs_runnable.py::test_runnable_block_runs",
    "tests/test_monailabel.py::",
    "tests/test_export.py::",
    "tests/test_suite.py::",
)


def pytest_collection_modifyitems(config, items):
    """Order the items longest part first (stable: a module's items stay together, in pytest's own order)."""

    def rank(item) -> int:
        nodeid = item.nodeid.replace(os.sep, "/")
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)


def xdist_scope(nodeid: str) -> str:
    """The unit of work a test belongs to on the xdist workers of scripts/test.sh: its module (so module-scoped
    fixtures, e.g. a bundle trained once, are built once), except that each MONAI Label bundle server
    (``tests/test_monailabel.py::...[<bundle>]``) and each runnable docs block is a unit of its own."""
    module = nodeid.split("::")[0]
    if nodeid.startswith("tests/test_docs_runnable.py::test_runnable_block_runs"):
        return nodeid
    if module.endswith("test_monailabel.py") and nodeid.endswith("]"):
        return f"{module}::[{nodeid.rsplit('[', 1)[1]}"
    return module


class _ScopeScheduling(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return xdist_scope(nodeid)


@pytest.hookimpl(optionalhook=True)  # without the xdist plugin (-p no:xdist) the hook does not exist
def pytest_xdist_make_scheduler(config, log):
    """Schedule by :func:`xdist_scope` (in the order of the collection, see ``pytest_collection_modifyitems``)."""
    return _ScopeScheduling(config, log)

"""shutdown_process_group: the process group is really freed (its gloo threads joined) before the interpreter exits."""

from __future__ import annotations

import logging
import os
import sys
import weakref

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from usseg_monai.engines import DDP_GROUP_HOLDERS, release_process_group, shutdown_process_group

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.fixture
def world(tmp_path):
    """A one-process gloo world in this process; torn down whatever the test leaves behind."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _trained_ddp() -> DistributedDataParallel:
    torch.manual_seed(0)
    ddp = DistributedDataParallel(torch.nn.Conv2d(1, 2, 3))
    ddp(torch.rand(2, 1, 8, 8)).mean().backward()
    dist.all_gather([torch.zeros(3)], torch.rand(3))  # a collective whose input Python has already dropped
    return ddp


def test_no_group_is_a_no_op():
    assert not dist.is_initialized()
    assert shutdown_process_group(torch.nn.Linear(2, 2)) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc/self/task")
def test_frees_group_and_joins_threads(world):
    ddp = _trained_ddp()
    weights = {k: v.clone() for k, v in ddp.module.state_dict().items()}
    group = weakref.ref(dist.distributed_c10d._get_default_group())
    busy = _threads()
    assert shutdown_process_group(ddp) is True
    assert not dist.is_initialized()
    assert group() is None
    assert _threads() < busy  # the gloo worker and transport threads were joined
    assert not any(hasattr(ddp, name) for name in DDP_GROUP_HOLDERS)
    # the wrapped network is untouched: weights and inference still work
    for k, v in ddp.module.state_dict().items():
        assert torch.equal(v, weights[k])
    assert ddp.module(torch.rand(1, 1, 8, 8)).shape == (1, 2, 6, 6)


def test_group_kept_alive_by_ddp_is_reported(world, caplog):
    """Without the DDP module, destroy_process_group leaves the group alive: exactly the case that aborted."""
    ddp = _trained_ddp()
    group = weakref.ref(dist.distributed_c10d._get_default_group())
    with caplog.at_level(logging.WARNING, logger="usseg_monai.engines.distributed"):
        assert shutdown_process_group() is False
    assert not dist.is_initialized()
    assert group() is not None
    assert "still referenced" in caplog.text
    del ddp
    assert group() is None


def test_release_only_touches_ddp(world):
    ddp = _trained_ddp()
    plain = torch.nn.Linear(2, 2)
    assert release_process_group(plain, ddp, ddp.module) == 1
    assert not hasattr(ddp, "reducer") and not hasattr(ddp, "process_group")
    assert plain(torch.rand(1, 2)).shape == (1, 2)

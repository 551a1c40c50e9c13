"""Clean end of a ``torchrun`` training: every rank waits, the process group is really freed, then Python exits.

Why this exists: ``dist.destroy_process_group()`` only drops the references that ``torch.distributed`` itself keeps.
A :class:`~torch.nn.parallel.DistributedDataParallel` module keeps three more (``process_group``, and through C++
``reducer`` and ``logger``), and the bundle's config parser keeps that module alive until interpreter
shutdown. The gloo backend's worker threads then outlive ``destroy_process_group``. When one of them is still
releasing a finished collective, it may need the GIL to free a tensor that Python has already dropped, for example
the input of the last metric ``all_gather``. If the interpreter is finalising by then, the thread is killed inside a
``noexcept`` destructor, and the rank aborts with ``terminate called without an active exception`` (SIGABRT) after
training has finished.

On the development machine this happened in 7 of 68 two-process CPU runs even with a barrier in front of
``destroy_process_group`` (see ``docs/bundles.md``, "Ending a torchrun run"). Releasing DDP's references first makes
``destroy_process_group`` free the group: its destructor joins the worker threads with the GIL released, so they
finish while Python is still fully alive.
"""

from __future__ import annotations

import logging
import weakref

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DDP_GROUP_HOLDERS", "release_process_group", "shutdown_process_group"]

logger = logging.getLogger(__name__)

#: attributes of a DistributedDataParallel module that keep the process group alive (torch 2.x)
DDP_GROUP_HOLDERS = ("reducer", "logger", "process_group")


def release_process_group(*modules: torch.nn.Module) -> int:
    """Drop the references that each ``DistributedDataParallel`` in ``modules`` holds to its process group.

    Any other kind of module is left alone. Afterwards the DDP wrapper cannot run another forward or backward pass.
    Its ``.module`` (the network and its weights) is untouched, so checkpoints and evaluation still work.

    Returns:
        the number of DDP modules released.
    """
    released = 0
    for m in modules:
        if isinstance(m, DistributedDataParallel):
            for name in DDP_GROUP_HOLDERS:
                m.__dict__.pop(name, None)
            released += 1
    return released


def shutdown_process_group(*modules: torch.nn.Module, barrier: bool = True) -> bool:
    """End distributed training: barrier, :func:`release_process_group` on ``modules``, ``destroy_process_group``.

    Use it as the last ``finalize`` step of a ``multi_gpu_train.json``:
    ``"$usseg_monai.engines.shutdown_process_group(@network)"``. It does nothing when no process group is
    initialised, so single-process runs can call it too.

    Args:
        modules: the DDP-wrapped networks of the run (other modules are ignored).
        barrier: wait for every rank before tearing down, so no rank leaves while another still communicates.

    Returns:
        True when the default process group was destroyed and freed. False when there was none. False with a
        warning when something outside ``modules`` still holds the group: its worker threads then live until
        interpreter shutdown.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    if barrier:
        dist.barrier()
    release_process_group(*modules)
    group = weakref.ref(dist.distributed_c10d._get_default_group())
    dist.destroy_process_group()
    if group() is not None:
        logger.warning(
            "shutdown_process_group: the process group is still referenced after destroy_process_group; "
            "pass every DistributedDataParallel module of the run so its backend threads stop before exit"
        )
        return False
    return True

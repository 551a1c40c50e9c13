"""What a benchmark run records besides its scores: iteration times, the training curve, memory, device, versions.

The ignite handlers (:class:`IterationTimer`, :class:`LossCurve`) attach to a MONAI trainer or evaluator; the
functions describe the machine a run used.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import monai
import torch
from ignite.engine import Events

import usseg_monai
from usseg_monai.engines import loss_terms

__all__ = ["IterationTimer", "LossCurve", "device_name", "versions", "peak_memory_mb"]


def device_name(device: torch.device) -> str:
    """Human-readable device: the GPU's name, or the CPU model with the number of torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "monai": monai.__version__, "usseg_monai": usseg_monai.__version__, "python": platform.python_version()}


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}  # Linux: KiB
    if device.type == "cuda":
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


class IterationTimer:
    """Record the wall time of every iteration of an ignite engine (seconds)."""

    def __init__(self, sync_cuda: bool) -> None:
        self.times: list[float] = []
        self.sync_cuda = sync_cuda
        self._t0 = 0.0

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._stop)

    def _start(self, engine: Any) -> None:
        if self.sync_cuda:
            torch.cuda.synchronize()
        self._t0 = time.perf_counter()

    def _stop(self, engine: Any) -> None:
        if self.sync_cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t0)


class LossCurve:
    """Per-epoch means of the trainer's ``loss`` and ``loss/<term>`` outputs (the training curve of the report)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._n = 0

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)

    def _iteration(self, engine: Any) -> None:
        for k, v in loss_terms(engine.state.output).items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._n += 1

    def _epoch(self, engine: Any) -> None:
        if self._n:
            self.epochs.append({"epoch": int(engine.state.epoch), **{k: v / self._n for k, v in self._sums.items()}})
        self._sums, self._n = {}, 0

    def summary(self) -> list[dict[str, float]]:
        return list(self.epochs)

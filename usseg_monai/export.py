"""Export a bundle's network with ``torch.export`` to a ``.pt2`` file, and run it back.

TorchScript (``python -m monai.bundle ckpt_export``, see ``docs/bundles.md``) is deprecated in recent PyTorch;
``torch.export`` is its successor. This module exports a bundle network to an
:class:`torch.export.ExportedProgram` with a **dynamic batch size and dynamic spatial sizes**, saves it
atomically to a ``.pt2`` file with the bundle's ``metadata.json`` and inference config embedded (like MONAI's
TorchScript export embeds them), loads it back, and wraps it as an ``nn.Module`` that a bundle's evaluator can
run (``configs/inference_export.json``).

Spatial sizes: a UNet with ``L`` levels pools ``L - 1`` times, so every spatial size must be a multiple of
``2 ** (L - 1)`` (16 for the 5-level :class:`usseg_monai.networks.PyMICUNet`, its ``divisor``). Each spatial
axis is therefore exported as ``multiple * Dim(min=2, max=max_spatial // multiple)``: sizes 32, 48, 64, ...
up to ``max_spatial`` voxels. The lower bound 2 (not 1) is torch.export's 0/1 specialisation: a symbolic
size of 1 is never kept dynamic, so the smallest accepted size is ``2 * multiple`` (32 px for PyMICUNet).

Command line::

    usseg export --bundle_root bundles/unet_us_2d_segmentation \\
        --config_file bundles/unet_us_2d_segmentation/configs/inference.json \\
        --ckpt_file bundles/unet_us_2d_segmentation/models/model.pt --output model.pt2
    usseg export ...   # the same options
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from torch.export import Dim, ExportedProgram

from usseg_monai.data.io import atomic_path

__all__ = [
    "export_program",
    "save_program",
    "load_program",
    "ExportedNetwork",
    "load_exported_network",
    "export_bundle_checkpoint",
    "METADATA_FILE",
]

logger = logging.getLogger(__name__)

#: name of the embedded bundle metadata inside a ``.pt2`` file (the name MONAI uses inside a TorchScript file)
METADATA_FILE = "metadata.json"


def _spatial_multiple(network: nn.Module, spatial_multiple: int | None) -> int:
    if spatial_multiple is not None:
        return int(spatial_multiple)
    return int(getattr(network, "divisor", 16))


def export_program(
    network: nn.Module,
    example_input: torch.Tensor,
    dynamic_batch: bool = True,
    dynamic_spatial: bool = True,
    spatial_multiple: int | None = None,
    max_batch: int = 256,
    max_spatial: int = 1024,
) -> ExportedProgram:
    """Export ``network`` in evaluation mode with ``torch.export.export``.

    Args:
        network: the network (its train/eval mode is restored afterwards; the program is the eval-mode graph:
            dropout off, batch-norm running statistics).
        example_input: ``[B, C, *spatial]``; only its shape and dtype matter. With ``dynamic_batch`` a batch of 1
            is repeated to 2 for tracing (a size-1 dimension would be specialised to 1).
        dynamic_batch: keep the batch dimension dynamic (1 to ``max_batch``).
        dynamic_spatial: keep every spatial dimension dynamic, as ``spatial_multiple * Dim(min=2, ...)``.
        spatial_multiple: spatial sizes are multiples of this; default the network's ``divisor`` attribute
            (:class:`~usseg_monai.networks.PyMICUNet`) or 16.
        max_batch: largest batch size accepted by the program.
        max_spatial: largest spatial size (voxels per axis) accepted by the program.

    Raises:
        ValueError: the example input has fewer than 3 dimensions, or with ``dynamic_spatial`` a spatial size
            that is not a multiple of ``spatial_multiple`` or is smaller than twice it.
    """
    if example_input.ndim < 3:
        raise ValueError(f"example_input must be [B, C, *spatial], got shape {list(example_input.shape)}")
    multiple = _spatial_multiple(network, spatial_multiple)
    given_shape = list(example_input.shape)
    spatial = given_shape[2:]
    dims: dict[int, Any] = {}
    if dynamic_batch:
        if example_input.shape[0] == 1:
            example_input = example_input.repeat(2, *([1] * (example_input.ndim - 1)))
        dims[0] = Dim("batch", min=1, max=max_batch)
    if dynamic_spatial:
        axes = "xyz" if len(spatial) <= 3 else [str(i) for i in range(len(spatial))]
        for i, s in enumerate(spatial):
            if s % multiple != 0 or s < 2 * multiple:
                raise ValueError(
                    f"export_program: with dynamic spatial sizes every spatial size must be a multiple of {multiple} "
                    f"and at least {2 * multiple}, got example input shape {given_shape}"
                )
            dims[2 + i] = multiple * Dim(f"{axes[i]}{multiple}", min=2, max=max(2, max_spatial // multiple))
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            program = torch.export.export(network, (example_input,), dynamic_shapes=(dims or None,))
    finally:
        network.train(was_training)
    return program


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def save_program(
    program: ExportedProgram, path: str | os.PathLike, extra_files: Mapping[str, Any] | None = None
) -> Path:
    """Write ``program`` to ``path`` (a ``.pt2`` file) atomically, with ``extra_files`` embedded.

    ``extra_files`` maps a name (e.g. ``"metadata.json"``, ``"inference.json"``) to a string or to a
    JSON-serialisable value (written as JSON text); :func:`load_program` returns them.
    """
    path = Path(path)
    files = {k: _encode(v) for k, v in (extra_files or {}).items()}
    with atomic_path(path) as tmp:
        torch.export.save(program, str(tmp), extra_files=files)
    return path


def load_program(
    path: str | os.PathLike, extra_files: Sequence[str] = (METADATA_FILE,)
) -> tuple[ExportedProgram, dict[str, str]]:
    """Load a ``.pt2`` file: ``(program, {name: text})`` for each of ``extra_files`` ("" where absent).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported program {path} not found (create it with usseg export)")
    files: dict[str, Any] = {name: "" for name in extra_files}
    program = torch.export.load(str(path), extra_files=files)
    return program, {k: v.decode() if isinstance(v, bytes) else v for k, v in files.items()}


class ExportedNetwork(nn.Module):
    """An exported program run as an ``nn.Module``: ``forward(x) = program.module()(x)``.

    The module of an :class:`~torch.export.ExportedProgram` refuses ``train()``/``eval()``, which MONAI engines
    call on their network every iteration; here these only set the flag, since the exported graph is always the
    evaluation-mode network. ``.to(device)`` moves its parameters and buffers.
    """

    def __init__(self, program: ExportedProgram, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.program_module = program.module()
        self.metadata = dict(metadata or {})

    def train(self, mode: bool = True) -> ExportedNetwork:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the exported network for ``x`` (``[B, C, *spatial]``, sizes within the exported ranges)."""
        return self.program_module(x)


def load_exported_network(path: str | os.PathLike, device: str | torch.device | None = None) -> ExportedNetwork:
    """Load a ``.pt2`` file as an :class:`ExportedNetwork` (on ``device`` if given), with its embedded metadata."""
    program, files = load_program(path)
    meta = json.loads(files[METADATA_FILE]) if files.get(METADATA_FILE) else {}
    net = ExportedNetwork(program, meta)
    return net.to(device) if device is not None else net


def export_bundle_checkpoint(
    config_file: str | Sequence[str],
    ckpt_file: str | os.PathLike,
    output: str | os.PathLike,
    meta_file: str | os.PathLike | None = None,
    bundle_root: str | os.PathLike | None = None,
    net_id: str = "network_def",
    key_in_ckpt: str = "",
    input_shape: Sequence[int] | None = None,
    dynamic_batch: bool = True,
    dynamic_spatial: bool = True,
    atol: float = 1e-5,
    **override: Any,
) -> Path:
    """Export a bundle checkpoint to a ``.pt2`` file with the metadata and config(s) embedded.

    The network ``net_id`` of ``config_file`` (with ``override`` applied, like ``monai.bundle`` command-line
    overrides) is built, ``ckpt_file`` loaded into it (a bare ``state_dict``, or ``ckpt[key_in_ckpt]``), and it
    is exported with an example input of ``input_shape`` (default ``[1, in_channels, *image_size]`` from the
    metadata's input ``num_channels`` and the config's ``image_size``). The reloaded program must reproduce the
    eager network on that input within ``atol``. Embedded files, named as MONAI's TorchScript export names them:
    ``metadata.json`` (the metadata file's content) and ``<config stem>.json`` per config file.

    Raises:
        FileNotFoundError: a config, metadata or checkpoint file is missing (named).
        ValueError: the checkpoint does not fit the network, or the export does not reproduce it.
    """
    configs = [config_file] if isinstance(config_file, (str, os.PathLike)) else list(config_file)
    for f in configs:
        if not Path(f).is_file():
            raise FileNotFoundError(f"config file {f} not found")
    if meta_file is None:
        root = Path(bundle_root) if bundle_root is not None else Path(configs[0]).resolve().parent.parent
        meta_file = root / "configs" / METADATA_FILE
    if not Path(meta_file).is_file():
        raise FileNotFoundError(f"metadata file {meta_file} not found (pass meta_file)")
    if not Path(ckpt_file).is_file():
        raise FileNotFoundError(f"checkpoint file {ckpt_file} not found")
    parser = ConfigParser()
    parser.read_config([str(f) for f in configs])
    parser.read_meta(str(meta_file))
    if bundle_root is not None:
        parser["bundle_root"] = str(bundle_root)
    for k, v in override.items():
        parser[k] = v
    net = parser.get_parsed_content(net_id)
    state = torch.load(str(ckpt_file), map_location="cpu", weights_only=True)
    if key_in_ckpt:
        if key_in_ckpt not in state:
            raise ValueError(f"checkpoint {ckpt_file} has no key {key_in_ckpt!r} (keys: {sorted(state)})")
        state = state[key_in_ckpt]
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"checkpoint {ckpt_file} does not fit network {net_id!r}: {e}") from e
    net = net.to("cpu").eval()
    metadata = json.loads(Path(meta_file).read_text())
    if input_shape is None:
        channels = metadata["network_data_format"]["inputs"]["image"]["num_channels"]
        input_shape = [1, int(channels), *[int(s) for s in parser.get_parsed_content("image_size")]]
    example = torch.rand(*[int(s) for s in input_shape])
    program = export_program(net, example, dynamic_batch=dynamic_batch, dynamic_spatial=dynamic_spatial)
    extra: dict[str, Any] = {METADATA_FILE: metadata}
    for f in configs:
        extra[Path(f).stem + ".json"] = ConfigParser.load_config_file(str(f))
    out = save_program(program, output, extra)
    reloaded, _ = load_program(out)
    with torch.no_grad():
        diff = (reloaded.module()(example) - net(example)).abs().max().item()
    if not diff <= atol:
        raise ValueError(f"exported program {out} differs from the eager network by {diff:.3g} (> {atol})")
    logger.info("exported %s (checkpoint %s) to %s, max |diff| %.2g", net_id, ckpt_file, out, diff)
    return out

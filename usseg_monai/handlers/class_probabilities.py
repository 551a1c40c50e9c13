"""Write the class probabilities of a segmentation + classification network during inference (SemiSeg-CAW).

The bundles' inference returns the segmentation logits as ``pred`` (what MONAI Label and the exports use). A
network that also classifies (:class:`usseg_monai.networks.SemiSegCAWNet`, method ``forward_with_class``) gets its
class probabilities written by :class:`ClassProbabilityWriter`, attached to the inference evaluator: after every
iteration it runs ``forward_with_class`` on the batch's images (the network input, without gradient) and keeps
one row per image (file name, the softmax probability of each class, the predicted class index and name);
``output_dir/<filename>`` (default ``class_probabilities.csv``) is rewritten atomically after each iteration, so
an interrupted run leaves a complete file of the images done. A network without that method (an exported
TorchScript / ``.pt2`` network carries only ``forward``) gets its masks and one warning, no CSV.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from monai.data import MetaTensor
from monai.networks import eval_mode

from usseg_monai.data.io import atomic_write_text

__all__ = ["ClassProbabilityWriter", "read_class_probabilities"]

logger = logging.getLogger(__name__)


def read_class_probabilities(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Rows of a ``class_probabilities.csv`` keyed by image file name: ``{"probabilities": [...], "predicted": int}``."""
    out: dict[str, dict[str, Any]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        prob_cols = [c for c in (reader.fieldnames or []) if c.startswith("p_")]
        for row in reader:
            out[row["image"]] = {
                "probabilities": [float(row[c]) for c in prob_cols],
                "predicted": int(row["predicted_index"]),
                "predicted_class": row["predicted_class"],
            }
    return out


class ClassProbabilityWriter:
    """Ignite handler: class probabilities of every inferred image into one CSV (see the module docstring).

    Args:
        output_dir: folder of the CSV (created).
        class_names: one name per class (the datalist's ``classes``); ``None``: ``class_0``, ``class_1``, ...
        filename: CSV file name.
        image_key: the network input's key in the batch.
        method: the network method returning ``(segmentation logits, class logits)``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str] | None = None,
        filename: str = "class_probabilities.csv",
        image_key: str = "image",
        method: str = "forward_with_class",
    ) -> None:
        self.path = Path(output_dir) / filename
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.image_key = image_key
        self.method = method
        self.rows: dict[str, list[Any]] = {}
        self._warned = False

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _names(self, n: int) -> list[str]:
        if self.class_names is None:
            return [f"class_{i}" for i in range(n)]
        if len(self.class_names) != n:
            raise ValueError(
                f"ClassProbabilityWriter: {len(self.class_names)} class names {self.class_names} for a network with "
                f"{n} class outputs (set the bundle's class_names / num_cls_classes to match)"
            )
        return self.class_names

    def __call__(self, engine: Any) -> None:
        batch = engine.state.batch
        if isinstance(batch, dict):  # collated batch
            images = batch[self.image_key]
            files = list(images.meta.get("filename_or_obj", [])) if isinstance(images, MetaTensor) else []
        else:  # decollated by the engine (MONAI's default): one dict per image
            items = [b[self.image_key] for b in batch]
            files = [t.meta.get("filename_or_obj", "") if isinstance(t, MetaTensor) else "" for t in items]
            images = torch.stack([torch.as_tensor(t) for t in items])
        network = engine.network.module if hasattr(engine.network, "module") else engine.network
        fn = getattr(network, self.method, None)
        if fn is None:
            # an exported network (TorchScript, torch.export) carries only forward(): masks, but no classes
            if not self._warned:
                logger.warning(
                    "ClassProbabilityWriter: the network (%s) has no %s() (an exported TorchScript / .pt2 network "
                    "carries only forward()): %s is not written; run the checkpoint (model.pt) for class probabilities",
                    type(network).__name__, self.method, self.path.name,
                )
                self._warned = True
            return
        x = images.to(engine.state.device) if isinstance(images, torch.Tensor) else images
        with eval_mode(network):  # the evaluator restores the mode it found after its own pass
            _, logits = fn(x)
        probs = torch.softmax(logits.float(), dim=1).cpu()
        names = self._names(probs.shape[1])
        for i in range(probs.shape[0]):
            fname = Path(str(files[i])).name if i < len(files) and files[i] else f"item_{len(self.rows)}"
            k = int(probs[i].argmax())
            self.rows[fname] = [fname, *[f"{float(p):.6f}" for p in probs[i]], k, names[k]]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["image", *[f"p_{n}" for n in names], "predicted_index", "predicted_class"])
        writer.writerows(self.rows.values())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, buf.getvalue())

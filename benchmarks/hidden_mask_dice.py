"""Dice of a trained few-masks run on the training images whose masks it never saw: a diagnostic without the test set.

A few-masks split (``usseg split --labeled F``) keeps the masks of a fraction F of the training images and marks the
others ``"supervision": "none"``; their masks are still in the datalist the split was derived from
(``derived_from``). This script loads a finished run of the few-masks protocol (``usseg benchmark`` run folder with
``results.json`` and ``models/checkpoint.pt``), rebuilds its network from the bundle and the run's overrides, and
scores, on those hidden-mask training images (at the bundle's training size, e.g. 128x128, not at the original
resolution as the benchmark's test pass does):

- the inference network (what the bundle exports), and each member of a two-network method: the student and the
  EMA teacher of the mean teacher, both networks of cross pseudo supervision;
- with ``--bn-from-labeled``: the inference network again with its batch-norm statistics re-estimated on the
  labeled training images alone (one pass, cumulative average), to tell whether statistics gathered on the
  unlabeled views during training explain a gap to the labeled-only network.

It reads no test image, so what it shows may guide a design choice (section "Comparisons users can trust").

Usage::

    python benchmarks/hidden_mask_dice.py WORK/it1040/BUSI-lesions/crii_mean_teacher_0.04-project --bn-from-labeled
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from monai.bundle import ConfigParser

from usseg_monai.bundle_paths import resolve_bundle
from usseg_monai.data.io import DatasetError, datalist_roots, load_datalist, read_json, resolve_datalist_path
from usseg_monai.metrics import case_metrics, summarize_cases
from usseg_monai.networks import MeanTeacherNet
from usseg_monai.networks.crii_net import CrossPseudoNet, checkpoint_modules, inference_network


def hidden_mask_items(split_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(hidden, labeled)``: the split's training items without a mask, each given the ``label`` path of the same
    case in the datalist it was derived from, and the labeled training items; paths absolute."""
    split = load_datalist(split_path)
    if "derived_from" not in split:
        raise DatasetError(f"{split_path}: no 'derived_from': not a split made by 'usseg split'")
    source_path = (split_path.parent / split["derived_from"]).resolve()
    source = load_datalist(source_path)
    masks = {it.get("case_id"): it for it in source.get("training", []) if "label" in it}
    roots, source_roots = datalist_roots(split, split_path), datalist_roots(source, source_path)
    hidden, labeled = [], []
    for i, it in enumerate(split.get("training", [])):
        where = f"{split_path}: training[{i}]"
        image = str(resolve_datalist_path(it["image"], roots, where + ".image"))
        if it.get("supervision") != "none":
            if "label" in it:
                labeled.append({"image": image, "label": str(resolve_datalist_path(it["label"], roots, where))})
            continue
        src = masks.get(it.get("case_id"))
        if src is None:
            raise DatasetError(f"{where}: case {it.get('case_id')!r} has no mask in {source_path}")
        label = resolve_datalist_path(src["label"], source_roots, f"{source_path}: case {it.get('case_id')}")
        hidden.append({"image": image, "label": str(label)})
    return hidden, labeled


def members(network: nn.Module) -> dict[str, nn.Module]:
    """The networks to score: the inference network first, then the other member of a two-network method."""
    if isinstance(network, MeanTeacherNet):
        return {"teacher (inference)": network.teacher, "student": network.student}
    if isinstance(network, CrossPseudoNet):
        return {"first network (inference)": network.inference_module(), "second network": network.peer_module()}
    return {"inference network": inference_network(network)}


def reestimate_batch_norm(network: nn.Module, images: torch.Tensor) -> nn.Module:
    """A copy of ``network`` whose batch-norm running statistics are the statistics of ``images`` (one pass)."""
    net = copy.deepcopy(network)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("the network has no batch-norm layer to re-estimate")
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    net.train()
    with torch.no_grad():
        net(images)
    return net.eval()


def score(network: nn.Module, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-image metrics of ``network``'s argmax on preprocessed ``items`` (``image`` and ``label`` tensors)."""
    network.eval()
    cases = []
    with torch.no_grad():
        for it in items:
            logits = network(torch.as_tensor(it["image"])[None])
            cases.append(case_metrics(logits.argmax(1)[0].numpy() > 0, torch.as_tensor(it["label"])[0].numpy() > 0.5))
    return summarize_cases(cases, keys=["dice"])["dice"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="a finished few-masks run folder (results.json, models/checkpoint.pt)")
    ap.add_argument("--max-images", type=int, default=0, help="score the first N hidden-mask images (0: all)")
    ap.add_argument("--bn-from-labeled", action="store_true", help="also re-estimate batch-norm on the labeled images")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    record = read_json(args.run_dir / "results.json", "run record")
    split_path = Path(record["datalists"]["train"]["path"])
    bundle = resolve_bundle(record["bundle"])
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    for key, value in {**record["bundle_overrides"], "image_size": record["budget"]["image_size"]}.items():
        parser[key] = value
    network = parser.get_parsed_content("network_def")
    checkpoint = torch.load(args.run_dir / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    for name, module in checkpoint_modules(network).items():
        module.load_state_dict(checkpoint[name])
    preprocess = parser.get_parsed_content("validate#preprocessing")
    hidden, labeled = hidden_mask_items(split_path)
    hidden = hidden[: args.max_images] if args.max_images > 0 else hidden
    hidden_data = [preprocess(dict(it)) for it in hidden]
    nets = members(network)
    rows = {name: score(net, hidden_data) for name, net in nets.items()}
    if args.bn_from_labeled:
        images = torch.stack([torch.as_tensor(preprocess(dict(it))["image"]) for it in labeled])
        rows[f"inference network, batch norm from the {len(labeled)} labeled images"] = score(
            reestimate_batch_norm(next(iter(nets.values())), images), hidden_data
        )
    print(f"{args.run_dir.name}: Dice on {len(hidden_data)} training images whose masks were hidden "
          f"({record['bundle_overrides'].get('method')}, {split_path.name}, size {record['budget']['image_size']})")
    for name, s in rows.items():
        print(f"  {name}: {s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]")
    print(json.dumps({name: round(s["mean"], 4) for name, s in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

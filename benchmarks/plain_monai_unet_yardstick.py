#!/usr/bin/env python
"""The project's yardstick: a plain MONAI UNet trained and scored on a prepared dataset at a fixed budget.

A reference bundle must do at least as well as this at an equal budget (docs/benchmark.md). The network is
``monai.networks.nets.UNet`` (channels 16-32-64-128-256, strides 2, ``num_res_units=2``, instance norm as
MONAI's default); training is MONAI's ``SupervisedTrainer`` with Adam and ``DiceCELoss`` on images resized to
``--image-size``, with random flips along x. Scoring is at the **original resolution**: the softmax is
resized back to the image's own grid (bilinear) before the argmax, and every metric of
:func:`usseg_monai.metrics.case_metrics` is computed per case, with percentile bootstrap 95% CIs. The last
epoch's model is scored (no model selection on the test set).

Example (BUSI lesion images, 128x128, 40 epochs)::

    python benchmarks/plain_monai_unet_yardstick.py \
        --train-datalist /tmp/busi_prepared/datalist_lesions.json --train-key training \
        --test-datalist /tmp/busi_prepared/datalist_lesions.json --test-key validation \
        --image-size 128 128 --epochs 40 --output /tmp/yardstick.json
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger("yardstick")


def _items(path: str, key: str) -> list[dict]:
    from usseg_monai.data.io import DatasetError, load_datalist

    p = Path(path)
    data = load_datalist(p)
    items = data.get(key)
    if not items:
        raise DatasetError(f"{p}: section '{key}' is missing or empty")
    out = []
    for i, it in enumerate(items):
        if "label" not in it:
            raise DatasetError(f"{p}: {key}[{i}] has no 'label' (a mask is needed for training and scoring)")
        out.append({"image": str(p.parent / it["image"]), "label": str(p.parent / it["label"]), "spacing": it.get("spacing")})
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-datalist", required=True)
    ap.add_argument("--train-key", default="training")
    ap.add_argument("--test-datalist", required=True)
    ap.add_argument("--test-key", default="test")
    ap.add_argument("--image-size", type=int, nargs=2, default=[128, 128])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-resamples", type=int, default=1000)
    ap.add_argument("--output", required=True, help="results JSON (written atomically)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import monai
    from monai.data import CacheDataset, DataLoader
    from monai.engines import SupervisedTrainer
    from monai.handlers import StatsHandler
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet
    from monai.transforms import (
        AsDiscreted,
        Compose,
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImage,
        LoadImaged,
        RandFlipd,
        Resized,
        ScaleIntensityd,
    )
    from monai.utils import set_determinism

    import usseg_monai
    from usseg_monai.data.io import atomic_write_json
    from usseg_monai.metrics import case_metrics, summarize_cases

    torch.set_num_threads(args.threads)
    set_determinism(args.seed)
    train_items = _items(args.train_datalist, args.train_key)
    test_items = _items(args.test_datalist, args.test_key)
    size = tuple(args.image_size)
    base = [
        LoadImaged(["image", "label"], reader="PILReader", image_only=True),
        EnsureChannelFirstd(["image", "label"]),
        ScaleIntensityd("image"),
        Resized("image", size, mode="bilinear"),
        Resized("label", size, mode="nearest"),
        EnsureTyped("label", dtype=torch.float32),
    ]
    # labels 0/255 are binarised to 0/1; random flips along x (across the beam) only
    train_tf = Compose(base + [AsDiscreted("label", threshold=0.5), RandFlipd(["image", "label"], prob=0.5, spatial_axis=0)])
    ds = CacheDataset([{"image": i["image"], "label": i["label"]} for i in train_items], train_tf, cache_rate=1.0, num_workers=0, progress=False)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=0)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=args.epochs,
        train_data_loader=loader,
        network=net,
        optimizer=opt,
        loss_function=loss,
        train_handlers=[StatsHandler(tag_name="train_loss", output_transform=lambda x: x[0]["loss"], iteration_log=False)],
    )
    iter_times: list[float] = []

    from ignite.engine import Events

    @trainer.on(Events.ITERATION_STARTED)
    def _start(engine):
        engine.state._t0 = time.perf_counter()

    @trainer.on(Events.ITERATION_COMPLETED)
    def _stop(engine):
        iter_times.append(time.perf_counter() - engine.state._t0)

    @trainer.on(Events.EPOCH_COMPLETED)
    def _log(engine):
        logger.info("epoch %d/%d loss %.4f", engine.state.epoch, args.epochs, float(engine.state.output[0]["loss"]))

    t0 = time.perf_counter()
    trainer.run()
    train_wall = time.perf_counter() - t0

    net.eval()
    load = LoadImage(reader="PILReader", image_only=True, ensure_channel_first=True)
    cases, infer_ms = [], []
    with torch.no_grad():
        for it in test_items:
            img = load(it["image"]).float()
            lab = load(it["label"])[0].numpy() > 0
            t1 = time.perf_counter()
            x = img - img.min()
            x = x / x.max() if float(x.max()) > 0 else x
            x = torch.nn.functional.interpolate(torch.as_tensor(x)[None], size=size, mode="bilinear", align_corners=False)
            prob = torch.softmax(net(x), dim=1)
            prob = torch.nn.functional.interpolate(prob, size=tuple(lab.shape), mode="bilinear", align_corners=False)
            pred = prob.argmax(1)[0].numpy()
            infer_ms.append((time.perf_counter() - t1) * 1000)
            c = case_metrics(pred, lab, it["spacing"])
            c["image"] = Path(it["image"]).name
            cases.append(c)
    summary = summarize_cases(cases, n_resamples=args.n_resamples, seed=args.seed)
    result = {
        "method": "plain MONAI UNet yardstick (16-256, strides 2, num_res_units=2, DiceCE, Adam)",
        "budget": {"image_size": list(size), "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr},
        "seed": args.seed,
        "datalists": {"train": [str(Path(args.train_datalist).resolve()), args.train_key], "test": [str(Path(args.test_datalist).resolve()), args.test_key]},
        "n_train": len(train_items),
        "n_test": len(test_items),
        "metrics": summary,
        "timing": {
            "train_wall_s": train_wall,
            "iterations": len(iter_times),
            "seconds_per_iteration": float(np.mean(iter_times)) if iter_times else None,
            "inference_ms_per_image": float(np.mean(infer_ms)),
            "threads": args.threads,
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "device": platform.processor() or platform.machine(),
        "versions": {"torch": torch.__version__, "monai": monai.__version__, "usseg_monai": usseg_monai.__version__, "python": sys.version.split()[0]},
        "cases": cases,
    }
    atomic_write_json(args.output, result)
    logger.info("Dice %.4f [%.4f, %.4f]  HD95 %.2f  train %.0f s  %.3f s/it", summary["dice"]["mean"], summary["dice"]["ci_low"], summary["dice"]["ci_high"], summary["hd95_mm"]["mean"] or float("nan"), train_wall, result["timing"]["seconds_per_iteration"])
    return result


if __name__ == "__main__":
    main()

"""Non-finite input stops a run with a message naming the file or the iteration (#19 item 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from usseg_monai.handlers import StopOnNonFiniteLoss, batch_sources
from usseg_monai.transforms import CheckFinite, CheckFinited


def _img(values, name="/data/images/case_007.nii.gz"):
    return MetaTensor(torch.as_tensor(values), meta={"filename_or_obj": name})


def test_check_finite_passes_finite_and_integer_images():
    img = _img(np.zeros((1, 4, 4), dtype=np.float32))
    assert CheckFinite()(img) is img
    ints = _img(np.full((1, 3, 3), 255, dtype=np.uint8))
    assert CheckFinite()(ints) is ints


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_names_the_file_count_and_index(bad):
    a = np.zeros((1, 5, 6, 3), dtype=np.float32)
    a[0, 2, 3, 1] = bad
    a[0, 4, 5, 2] = bad
    with pytest.raises(ValueError, match=r"case_007.nii.gz: 2 non-finite value\(s\) .* first at index \(0, 2, 3, 1\)"):
        CheckFinite()(_img(a))


def test_check_finited_keys():
    a = np.zeros((1, 4, 4), dtype=np.float32)
    b = a.copy()
    b[0, 0, 0] = math.nan
    d = {"image": _img(a), "label": _img(b, "/data/labels/case_007.png")}
    with pytest.raises(ValueError, match="labels/case_007.png: 1 non-finite"):
        CheckFinited(keys=["image", "label"])(d)
    assert CheckFinited(keys=["image"])(d)["image"] is d["image"]


def test_stop_on_non_finite_loss_names_iteration_and_files():
    names = ["/d/images/a.png", "/d/images/b.png"]
    batch = {"image": MetaTensor(torch.zeros(2, 1, 4, 4), meta={"filename_or_obj": names})}
    losses = iter([0.5, 0.4, float("nan")])

    def step(engine, _):
        engine.state.batch = batch
        return {"loss": torch.tensor(next(losses))}

    trainer = Engine(step)
    StopOnNonFiniteLoss(output_transform=lambda o: o["loss"]).attach(trainer)
    with pytest.raises(FloatingPointError, match=r"the loss is nan at iteration 3 \(epoch 1\); the batch's images: "
                       r"/d/images/a.png, /d/images/b.png"):
        trainer.run([0, 1, 2, 3], max_epochs=1)
    assert trainer.state.iteration == 3


def test_batch_sources_decollated_and_unknown():
    items = [{"image": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": f"/x/{k}.png"})} for k in "ab"]
    assert batch_sources(items) == ["/x/a.png", "/x/b.png"]
    assert batch_sources({"image": torch.zeros(1)}) == [] and batch_sources(None) == []


def _errors(exc: BaseException) -> str:
    msgs, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        msgs.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(msgs)


def _workflow(bundle, dataset, work, **override):
    from monai.bundle import ConfigWorkflow

    return ConfigWorkflow(
        config_file=str(bundle / "configs" / "train.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        bundle_root=str(work),
        dataset_dir=str(dataset),
        max_epochs=2,
        batch_size=2,
        progress_bar=False,
        **override,
    )


@pytest.mark.slow
def test_bundle_refuses_a_nan_training_image(tmp_path, one_torch_thread):
    """A float TIFF with a 2x2 NaN patch (PIL keeps NaN; ITK 5.4 reads NaN voxels of a NIfTI volume as 0, so a 3D
    NIfTI never shows them to the bundle)."""
    import hashlib
    import json

    from bundle_utils import BUNDLES_DIR, make_tiny_dataset
    from PIL import Image

    dataset = make_tiny_dataset(tmp_path / "data", spatial_dims=2, counts=(4, 1, 0))
    dl = json.loads((dataset / "datalist.json").read_text())
    with Image.open(dataset / dl["training"][1]["label"]) as mask:  # the same size as its mask (checked first)
        a = np.full((mask.height, mask.width), 120.0, dtype=np.float32)
    a[5:7, 8:10] = np.nan
    path = dataset / "images" / "case_001_float.tif"
    Image.fromarray(a, mode="F").save(path)
    dl["training"][1]["image"] = "images/case_001_float.tif"
    (dataset / "datalist.json").write_text(json.dumps(dl))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    wf = _workflow(BUNDLES_DIR / "unet_us_2d_segmentation", dataset, tmp_path / "work", image_size=[32, 32])
    with pytest.raises(Exception) as info:
        wf.initialize()
        wf.run()
    msg = _errors(info.value)
    assert f"{path}: 4 non-finite value(s) (NaN or inf) in the image" in msg
    assert not (tmp_path / "work" / "models" / "model.pt").exists()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # the source file is not modified


@pytest.mark.slow
def test_bundle_stops_on_a_nan_loss_and_saves_nothing_non_finite(tmp_path, one_torch_thread):
    from bundle_utils import BUNDLES_DIR, make_tiny_dataset

    dataset = make_tiny_dataset(tmp_path / "data", spatial_dims=2, counts=(4, 1, 0))
    work = tmp_path / "work"
    # DiceCE with a NaN cross-entropy weight: the loss is NaN from the first iteration
    wf = _workflow(BUNDLES_DIR / "unet_us_2d_segmentation", dataset, work, image_size=[32, 32],
                   **{"loss#lambda_ce": "$float('nan')"})
    with pytest.raises(Exception) as info:
        wf.initialize()
        wf.run()
    msg = _errors(info.value)
    assert "NonFiniteLossError: training stopped: the loss is nan at iteration 1 (epoch 1)" in msg
    assert str(dataset / "images") in msg  # the batch's files are named
    assert not (work / "models" / "model.pt").exists()
    assert not (work / "models" / "checkpoint.pt").exists()  # the saver refused the NaN state

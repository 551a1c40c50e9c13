"""SemiSeg-CAW: the combined network, the stage losses, the two-stage bundle and its class-probability output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from bundle_utils import make_tiny_dataset

from usseg_monai.losses.semiseg import SegmentationLoss
from usseg_monai.losses.semiseg_caw import SemiSegCAWLoss, masked_cross_entropy
from usseg_monai.networks import SemiSegCAWNet, unpack_semiseg_output

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "semiseg_caw_us_2d_segmentation"


@pytest.mark.parametrize("backbone", ["malunet", "unext"])
def test_network_modes_shapes_and_gradients(backbone, one_torch_thread):
    torch.manual_seed(0)
    net = SemiSegCAWNet(backbone, num_cls_classes=3)
    x = torch.rand(2, 1, 64, 64)
    packed = net(x)
    assert packed.shape == (2, 2 + 3 + 1 + 3, 64, 64)
    out = unpack_semiseg_output(packed, 2, 3)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "seg": (2, 2, 64, 64), "cls": (2, 3), "aux_seg": (2, 1, 64, 64), "aux_cls": (2, 3),
    }
    # the core's loss reaches ClassElevateSeg through the auxiliary input channel (joint fine-tuning)
    out["seg"].sum().backward()
    assert net.class_elevate.encoder.conv1.weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        seg = net(x)
        seg2, cls = net.forward_with_class(x)
    assert seg.shape == (2, 2, 64, 64) and torch.equal(seg, seg2) and cls.shape == (2, 3)
    assert net.auxiliary_map(x).shape == (2, 1, 64, 64)
    core = SemiSegCAWNet(backbone, num_cls_classes=3, auxiliary=False)
    assert core.class_elevate is None and core.pretrain_module() is core.core
    assert core(x).shape == (2, 2 + 3, 64, 64)  # training mode: seg + class, no auxiliary channels
    with pytest.raises(RuntimeError, match="auxiliary=False"):
        core.auxiliary_map(x)


def test_core_parameter_counts_match_the_papers():
    """The cores (one input channel, no head) are the papers' sizes; the head and the map channel add little."""
    from usseg_monai.networks import MALUNet, UNeXt

    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(n(MALUNet(in_channels=3, out_channels=1)) - 175_000) / 175_000 < 0.10
    assert abs(n(UNeXt(in_channels=3, out_channels=1)) - 1_470_000) / 1_470_000 < 0.10
    full = SemiSegCAWNet("malunet", num_cls_classes=3)
    assert n(full.core) - n(MALUNet(in_channels=3, out_channels=1)) < 2_000


def test_unpack_errors():
    with pytest.raises(ValueError, match="is the network in training mode"):
        unpack_semiseg_output(torch.zeros(1, 2, 8, 8), 2, 3)
    with pytest.raises(ValueError, match="unknown backbone"):
        SemiSegCAWNet("resnet")


def _packed(seg, cls, aux_seg=None, aux_cls=None):
    h, w = seg.shape[2:]
    parts = [seg, cls[:, :, None, None].expand(-1, -1, h, w)]
    if aux_seg is not None:
        parts += [aux_seg, aux_cls[:, :, None, None].expand(-1, -1, h, w)]
    return torch.cat(parts, dim=1)


def _batch(seed=0, b_l=2, b_u=3, k=3):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    lab = {
        "image": torch.rand(b_l, 1, 8, 8, generator=g),
        "label": (torch.rand(b_l, 1, 8, 8, generator=g) > 0.5).float(),
        "class_index": torch.tensor([0, -1])[:b_l],
    }
    unl = {"image": torch.rand(b_u, 1, 8, 8, generator=g), "class_index": torch.arange(b_u) % k}
    out_l = dict(seg=r(b_l, 2, 8, 8), cls=r(b_l, k), aux_seg=r(b_l, 1, 8, 8), aux_cls=r(b_l, k))
    out_u = dict(seg=r(b_u, 2, 8, 8), cls=r(b_u, k), aux_seg=r(b_u, 1, 8, 8) * 3, aux_cls=r(b_u, k))
    return lab, unl, out_l, out_u


def test_joint_loss_hand_computed():
    lab, unl, ol, ou = _batch()
    loss = SemiSegCAWLoss("joint", num_cls_classes=3)  # WGM starts at s = 0: weights 1, + s = 0
    res = loss(_packed(**ol), {"image": _packed(**ou)}, lab, unl)
    seg = SegmentationLoss()
    p = torch.sigmoid(ou["aux_seg"])
    pseudo, conf = (p > 0.5).float(), (2 * p - 1).abs()
    seg_core = seg(torch.cat([ol["seg"], ou["seg"]]), torch.cat([lab["label"], pseudo]),
                   weight=torch.cat([torch.ones_like(lab["label"]), conf]))  # fmt: skip
    y = torch.cat([lab["class_index"], unl["class_index"]])
    keep = y >= 0
    cls_core = F.cross_entropy(torch.cat([ol["cls"], ou["cls"]])[keep], y[keep])
    seg_aux = seg(ol["aux_seg"], lab["label"])
    cls_aux = F.cross_entropy(torch.cat([ol["aux_cls"], ou["aux_cls"]])[keep], y[keep])
    expected = seg_core + seg_aux + cls_core + cls_aux
    torch.testing.assert_close(res["loss"], expected)
    torch.testing.assert_close(res["seg"], seg_core)
    torch.testing.assert_close(res["cls_aux"], cls_aux)
    assert float(res["pseudo_fraction"]) == pytest.approx(float(pseudo.mean()))
    assert res["pred"].shape == (2, 2, 8, 8) and float(res["w_seg"]) == 1.0
    # static weights give the plain sum too; WGM weights move with training
    static = SemiSegCAWLoss("joint", num_cls_classes=3, weighting="static")
    torch.testing.assert_close(static(_packed(**ol), {"image": _packed(**ou)}, lab, unl)["loss"], expected)


def test_class_only_masks_are_never_read_and_pretrain_trains_the_auxiliary_branch_only():
    lab, unl, ol, ou = _batch(1)
    loss = SemiSegCAWLoss("joint", num_cls_classes=3)
    a = loss(_packed(**ol), {"image": _packed(**ou)}, lab, unl)["loss"]
    unl_with_mask = {**unl, "label": torch.ones(3, 1, 8, 8)}  # a mask the loss must ignore
    b = loss(_packed(**ol), {"image": _packed(**ou)}, lab, unl_with_mask)["loss"]
    assert torch.equal(a, b)
    # supervised baseline: class-only images and the class heads get no gradient at all
    sup = SemiSegCAWLoss("supervised", num_cls_classes=3)
    core_l = _packed(ol["seg"], ol["cls"]).requires_grad_(True)
    core_u = _packed(ou["seg"], ou["cls"]).requires_grad_(True)
    res = sup(core_l, {"image": core_u}, lab, unl)
    torch.testing.assert_close(res["loss"], SegmentationLoss()(ol["seg"], lab["label"]))
    res["loss"].backward()
    assert core_u.grad is None and core_l.grad[:, 2:].abs().sum() == 0 and core_l.grad[:, :2].abs().sum() > 0
    # stage 1: only ClassElevateSeg's outputs carry gradient
    pre = SemiSegCAWLoss("pretrain", num_cls_classes=3)
    pl = _packed(**ol).requires_grad_(True)
    pu = _packed(**ou).requires_grad_(True)
    res = pre(pl, {"image": pu}, lab, unl)
    res["loss"].backward()
    assert pl.grad[:, :5].abs().sum() == 0 and pl.grad[:, 5:].abs().sum() > 0  # seg + cls of the core: none
    assert pu.grad[:, :6].abs().sum() == 0 and pu.grad[:, 6:].abs().sum() > 0  # class-only: its class logits only
    with pytest.raises(ValueError, match="needs the auxiliary branch"):
        pre(_packed(ol["seg"], ol["cls"]), {}, lab, {})


def test_masked_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert float(masked_cross_entropy(logits, torch.tensor([-1, -1]))) == 0.0
    expected = -math.log(math.exp(1.0) / (1 + math.exp(1.0)))
    assert float(masked_cross_entropy(logits, torch.tensor([-1, 1]))) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 2\)"):
        masked_cross_entropy(logits, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="stage must be one of"):
        SemiSegCAWLoss("finetune")


# ---------------------------------------------------------------------------------------- the bundle


def _wf(files, wtype, **override):
    from monai.bundle import ConfigWorkflow

    cfg = [str(BUNDLE / "configs" / f) for f in files]
    return ConfigWorkflow(
        config_file=cfg if len(cfg) > 1 else cfg[0], meta_file=str(BUNDLE / "configs" / "metadata.json"),
        logging_file=False, workflow_type=wtype, **override,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("semiseg") / "data", counts=(6, 2, 2))


def _train(work: Path, dataset: Path, **extra):
    torch.set_num_threads(1)
    ov = dict(bundle_root=str(work), dataset_dir=str(dataset), image_size=[32, 32], max_epochs=1, batch_size=2,
              pretrain_epochs=1, progress_bar=False, **extra)  # fmt: skip
    wf = _wf(["train.json"], "train", **ov)
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


@pytest.mark.slow
def test_two_stages_hand_over_class_elevate(tiny, tmp_path):
    work = tmp_path / "w"
    _train(work, tiny, stage="pretrain")
    models = work / "models"
    assert sorted(p.name for p in models.iterdir()) == ["class_elevate.pt"]  # stage 1 writes only its module
    stage1 = torch.load(models / "class_elevate.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("encoder.") for k in stage1)
    wf = _train(work, tiny, stage="joint")
    net = wf.parser.get_parsed_content("network_def")
    # the joint run started from stage 1's weights: the batch-norm counter continues from stage 1's (one
    # forward pass per joint iteration: both streams are concatenated), which a fresh network would not do
    seen = int(net.class_elevate.encoder.bn1.num_batches_tracked)
    assert seen == int(stage1["encoder.bn1.num_batches_tracked"]) + wf.trainer.state.iteration
    assert (models / "model.pt").is_file() and (models / "checkpoint.pt").is_file()
    # stage joint without stage 1's file is a clear error naming it
    with pytest.raises(Exception) as info:
        _train(tmp_path / "w2", tiny, stage="joint")
    chain, e = [], info.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("class_elevate.pt" in c and "--stage pretrain" in c for c in chain)


@pytest.mark.slow
def test_supervised_baseline_and_classification_in_the_benchmark(tiny, tmp_path):
    from usseg_monai.evaluation.runner import run_benchmark

    # partition: 2 of 6 training images class-only; the supervised baseline trains on the other 4 masks only
    data = json.loads((tiny / "datalist.json").read_text())
    data["training"] = [{k: v for k, v in it.items() if k != "label"} if i < 2 else it for i, it in enumerate(data["training"])]
    (tiny / "parted.json").write_text(json.dumps(data))
    r = run_benchmark(
        BUNDLE, tiny / "parted.json", tiny / "datalist.json", tmp_path / "sup", test_key="test", budget="smoke",
        device="cpu", threads=1, n_resamples=20, bundle_overrides={"method": "supervised", "backbone": "unext"},
    )
    assert r["timing"]["train_iterations"] == 2  # 4 masks, batch 2: the class-only stream is not used
    from usseg_monai.networks import UNeXt

    assert r["params"] == sum(p.numel() for p in UNeXt(in_channels=1, out_channels=2, num_classes_cls=3).parameters())
    r = run_benchmark(
        BUNDLE, tiny / "parted.json", tiny / "datalist.json", tmp_path / "caw", test_key="test", budget="smoke",
        device="cpu", threads=1, n_resamples=20, bundle_overrides={"pretrain_epochs": 1},
    )
    cls = r["classification"]
    assert cls["n"] == 2 and cls["accuracy"] in (0.0, 0.5, 1.0)
    rows = (tmp_path / "caw" / "predictions" / "class_probabilities.csv").read_text().splitlines()
    assert rows[0] == "image,p_benign,p_malignant,p_normal,predicted_index,predicted_class" and len(rows) == 3
    probs = [float(v) for v in rows[1].split(",")[1:4]]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)


def test_class_probability_writer_without_the_method_warns_once_and_writes_nothing(tmp_path, caplog):
    """An exported network (TorchScript / .pt2) has only forward(): inference keeps its masks, one warning, no CSV."""
    from types import SimpleNamespace

    from monai.data import MetaTensor

    from usseg_monai.handlers.class_probabilities import ClassProbabilityWriter

    writer = ClassProbabilityWriter(tmp_path, class_names=["benign", "malignant"])
    image = MetaTensor(torch.zeros(1, 8, 8), meta={"filename_or_obj": "a.png"})
    engine = SimpleNamespace(network=torch.jit.script(torch.nn.Conv2d(1, 2, 1)),
                             state=SimpleNamespace(batch=[{"image": image}], device="cpu"))
    with caplog.at_level("WARNING", logger="usseg_monai.handlers.class_probabilities"):
        writer(engine)
        writer(engine)
    warnings = [r for r in caplog.records if "has no forward_with_class()" in r.getMessage()]
    assert len(warnings) == 1 and "class_probabilities.csv is not written" in warnings[0].getMessage()
    assert not (tmp_path / "class_probabilities.csv").exists()


def test_set_default_fills_only_missing_keys():
    from usseg_monai.transforms.keys import SetDefaultd

    t = SetDefaultd(["class_index", "extra"], default=-1)
    assert t({"image": 1}) == {"image": 1, "class_index": -1, "extra": -1}
    assert t({"class_index": 2, "extra": None}) == {"class_index": 2, "extra": -1}
    lst = SetDefaultd("k", default=[])
    a, b = lst({}), lst({})
    assert a["k"] == [] and a["k"] is not b["k"]  # a copy per item


def test_train_preprocessing_takes_an_item_without_class_as_mask_only(tmp_path):
    """MONAI Label's trainer gives the bundle {image, label} items with no class_index (#18): the labeled stream's
    preprocessing reads them as mask-only items (class_index -1, segmentation loss only) instead of failing."""
    from monai.bundle import ConfigParser

    bundle = Path(__file__).resolve().parents[1] / "bundles" / "semiseg_caw_us_2d_segmentation"
    data = make_tiny_dataset(tmp_path / "d", spatial_dims=2, counts=(2, 1, 0))
    item = json.loads((data / "datalist.json").read_text())["training"][0]
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser.update({"dataset_dir": str(data), "image_size": [32, 32]})
    out = parser.get_parsed_content("train#preprocessing")(
        {"image": str(data / item["image"]), "label": str(data / item["label"])}
    )
    assert out["class_index"] == -1 and tuple(out["image"].shape) == (1, 32, 32)

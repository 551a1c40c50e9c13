"""CRII-Net's objective, the mean-teacher, CPS and labeled-only baselines, and the CRII-Net bundles' data handling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from bundle_utils import make_tiny_dataset
from monai.losses import DiceCELoss

from usseg_monai.losses.consistency import CoarseRefinedConsistencyLoss
from usseg_monai.losses.crii_net import CRIINetLoss, cross_pseudo_supervision
from usseg_monai.networks import CoarseRefinedNet, EMAUpdateHandler, MeanTeacherNet, PyMICUNet, make_few_mask_network

BUNDLE2D = Path(__file__).resolve().parents[1] / "bundles" / "crii_net_us_2d_segmentation"
BUNDLE3D = Path(__file__).resolve().parents[1] / "bundles" / "crii_net_us_3d_segmentation"


def _label(b=2, size=32):
    """(Read with 16-px patches:) patch (0, 0) all lesion, (1, 0) mixed (a quarter lesion), (0, 1) and (1, 1) background."""
    y = torch.zeros(b, 1, size, size)
    y[:, :, 0:20, 0:16] = 1.0
    return y


def _perfect_logits(y, scale=20.0):
    """Two-channel logits whose softmax is ~1 on the lesion channel exactly where y = 1."""
    return torch.cat([(1 - 2 * y) * scale, (2 * y - 1) * scale], dim=1)


def test_crii_loss_terms_and_perfect_ranking():
    y = _label()
    perfect = _perfect_logits(y)
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(2, 2, 32, 32, generator=g)
    out_l = torch.stack([coarse, perfect])
    weak = torch.randn(2, 2, 2, 32, 32, generator=g)
    strong = torch.randn(2, 2, 2, 32, 32, generator=g)
    loss = CRIINetLoss("crii_net", rampup_fraction=0.5, patch_size=16)  # the label is laid out for 16-px patches
    res = loss(out_l, {"image": weak, "image_strong": strong}, {"label": y}, {}, iteration=50, total_iterations=100)
    # a perfectly ranked refined output: both ranked losses are exactly zero
    assert float(res["intra"]) == 0.0 and float(res["inter"]) == 0.0
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    sup = dice_ce(coarse, y) + dice_ce(perfect, y)
    cons_loss = CoarseRefinedConsistencyLoss(temperature=0.5)
    cons = 0.5 * (cons_loss(weak[0], weak[1]) + cons_loss(strong[0], weak[1]))
    torch.testing.assert_close(res["sup"], sup)
    torch.testing.assert_close(res["consistency"], cons)
    assert float(res["consistency_weight"]) == pytest.approx(1.0)  # ramp finished at 50% of the run
    torch.testing.assert_close(res["loss"], sup + cons)
    assert torch.equal(res["pred"], perfect)
    # a wrongly ranked output has positive ranked terms
    res = loss(torch.stack([coarse, -perfect]), {}, {"label": y}, {}, iteration=0, total_iterations=100)
    assert float(res["intra"]) > 0.4 and float(res["inter"]) > 0.4 and float(res["consistency"]) == 0.0


def test_consistency_has_no_gradient_into_its_target_and_ramps_up():
    y = _label(1)
    out_l = torch.stack([_perfect_logits(y), _perfect_logits(y)])
    weak = torch.randn(2, 1, 2, 32, 32, requires_grad=True)
    loss = CRIINetLoss("crii_net", intra_weight=0.0, inter_weight=0.0)
    res = loss(out_l, {"image": weak}, {"label": y}, {}, iteration=99, total_iterations=100)
    res["loss"].backward()
    assert weak.grad[1].abs().sum() == 0  # the refined prediction is the (detached) target
    assert weak.grad[0].abs().sum() > 0  # the coarse prediction is pulled towards it
    assert loss.unsupervised_weight(0, 100) == pytest.approx(math.exp(-5.0))
    assert loss.unsupervised_weight(20, 100) == pytest.approx(math.exp(-5.0 * 0.25))
    assert loss.unsupervised_weight(40, 100) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        CRIINetLoss("fixmatch")
    with pytest.raises(ValueError, match=r"needs the training output \[2, B, C"):
        loss(torch.zeros(1, 2, 32, 32), {}, {"label": y}, {})


def test_mean_teacher_loss_and_ema():
    torch.manual_seed(0)
    y = _label(2)
    student, teacher = torch.randn(2, 2, 32, 32), torch.randn(2, 2, 32, 32)
    weak = torch.stack([torch.randn(2, 2, 32, 32), torch.randn(2, 2, 32, 32)])
    strong = torch.stack([torch.randn(2, 2, 32, 32), torch.randn(2, 2, 32, 32)])
    loss = CRIINetLoss("mean_teacher", rampup_fraction=0.0)
    res = loss(torch.stack([student, teacher]), {"image": weak, "image_strong": strong}, {"label": y}, {})
    sup = DiceCELoss(to_onehot_y=True, softmax=True)(student, y)
    cons = torch.mean((torch.softmax(strong[0], 1) - torch.softmax(weak[1], 1)) ** 2)
    torch.testing.assert_close(res["loss"], sup + cons)
    # EMA: a = min(1 - 1/(t+1), decay): the first update copies the student, the second averages
    net = MeanTeacherNet(torch.nn.Conv2d(1, 2, 1), decay=0.9)
    with torch.no_grad():
        net.student.weight.fill_(1.0)
        net.teacher.weight.fill_(0.0)
    assert net.update_teacher() == 0.0 and torch.all(net.teacher.weight == 1.0)
    with torch.no_grad():
        net.student.weight.fill_(3.0)
    assert net.update_teacher() == pytest.approx(0.5) and torch.allclose(net.teacher.weight, torch.full_like(net.teacher.weight, 2.0))
    for _ in range(20):
        a = net.update_teacher()
    assert a == pytest.approx(0.9) and int(net.updates) == 22
    assert not any(p.requires_grad for p in net.teacher.parameters())
    x = torch.rand(2, 1, 4, 4)
    assert net(x).shape == (2, 2, 2, 4, 4)  # training mode: student and teacher
    net.eval()
    torch.testing.assert_close(net(x), net.teacher(x))
    with pytest.raises(TypeError, match="needs a MeanTeacherNet"):
        EMAUpdateHandler(torch.nn.Conv2d(1, 2, 1))


def test_labeled_only_and_the_network_factory():
    y = _label(2)
    z = torch.randn(2, 2, 32, 32)
    res = CRIINetLoss("labeled_only")(z, {}, {"label": y}, {})
    torch.testing.assert_close(res["loss"], DiceCELoss(to_onehot_y=True, softmax=True)(z, y))
    assert isinstance(make_few_mask_network("crii_net"), CoarseRefinedNet)
    assert isinstance(make_few_mask_network("mean_teacher").student, PyMICUNet)
    assert type(make_few_mask_network("labeled_only")) is PyMICUNet
    with pytest.raises(ValueError, match="unknown few-masks method"):
        make_few_mask_network("fixmatch")


def test_a_few_steps_lower_the_crii_loss(one_torch_thread):
    torch.manual_seed(0)
    net = CoarseRefinedNet(spatial_dims=2, channels=(4, 8), dropout=(0.0, 0.0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = CRIINetLoss("crii_net")
    x, y = torch.rand(2, 1, 32, 32), _label(2)
    x = x + y  # a visible lesion
    u = torch.rand(2, 1, 32, 32)
    values = []
    for t in range(15):
        opt.zero_grad()
        res = loss(net(x), {"image": net(u)}, {"label": y}, {}, iteration=t, total_iterations=15)
        res["loss"].backward()
        opt.step()
        values.append(float(res["loss"].detach()))
    assert values[-1] < 0.7 * values[0]


@pytest.mark.slow
def test_unlabeled_masks_are_never_read(tmp_path):
    """Unlabeled items whose mask files are garbage (not images at all) train: the masks are never opened."""
    from monai.bundle import ConfigWorkflow

    data = make_tiny_dataset(tmp_path / "data", counts=(6, 2, 0))
    dl = json.loads((data / "datalist.json").read_text())
    for item in dl["training"][2:]:
        item["supervision"] = "none"  # a partition that kept the key: the loader must still drop it
        (data / item["label"]).write_bytes(b"not a PNG")
    (data / "datalist.json").write_text(json.dumps(dl))
    torch.set_num_threads(1)
    wf = ConfigWorkflow(
        config_file=str(BUNDLE2D / "configs" / "train.json"), meta_file=str(BUNDLE2D / "configs" / "metadata.json"),
        logging_file=False, workflow_type="train", bundle_root=str(tmp_path / "w"), dataset_dir=str(data),
        image_size=[32, 32], max_epochs=1, batch_size=2, progress_bar=False,
    )
    wf.initialize()
    labeled = wf.parser.get_parsed_content("train_datalist")
    unlabeled = wf.parser.get_parsed_content("unlabeled_datalist")
    assert len(labeled) == 2 and len(unlabeled) == 4 and all("label" not in i for i in unlabeled)
    wf.run()
    wf.finalize()
    # one epoch = one pass over the 4 unlabeled images (batch 2): 2 iterations, the 2 labeled ones cycled
    assert wf.trainer.state.iteration == 2 and (tmp_path / "w" / "models" / "checkpoint.pt").is_file()


def test_patch_side_scales_with_the_input_size():
    """#16: the ranked losses' patch is a fraction of the input (16/256 by default), so 64, 128 and 256 px inputs
    get 4, 8 and 16 px patches; an explicit patch_size (pixels) wins."""
    from usseg_monai.losses.ranked import resolve_patch_size

    assert [resolve_patch_size((s, s)) for s in (64, 128, 256)] == [(4, 4), (8, 8), (16, 16)]
    assert resolve_patch_size((64, 64, 32)) == (4, 4, 2) and resolve_patch_size((16, 8)) == (2, 2)  # at least 2
    assert resolve_patch_size((64, 64), patch_size=16) == (16, 16)
    assert resolve_patch_size((64, 64, 32), patch_size=(8, 8, 4)) == (8, 8, 4)
    assert resolve_patch_size((100, 100), patch_fraction=0.125) == (13, 13)  # rounded half up
    loss = CRIINetLoss("crii_net")
    assert loss.intra.patch_shape((128, 128)) == (8, 8) and loss.inter.patch_shape((64, 64)) == (4, 4)
    assert CRIINetLoss("crii_net", patch_size=16).inter.patch_shape((64, 64)) == (16, 16)
    with pytest.raises(ValueError, match=r"patch_fraction must be in \(0, 1\]"):
        CRIINetLoss("crii_net", patch_fraction=1.5)
    with pytest.raises(ValueError, match="both are None"):
        CRIINetLoss("crii_net", patch_size=None, patch_fraction=None)
    # the bundles use the fraction, not a fixed pixel size
    cfg = json.loads((BUNDLE2D / "configs" / "train.json").read_text())
    assert cfg["patch_size"] is None and cfg["patch_fraction"] == 0.0625 and cfg["loss"]["patch_fraction"] == "@patch_fraction"


@pytest.mark.parametrize("target, refined_gets_gradient", [("coarse", False), ("refined", True), ("both", True)])
def test_unlabeled_signal_reaches_the_inference_head_only_when_asked(target, refined_gets_gradient):
    """#16: ``unlabeled_target="coarse"`` (the default, the old behaviour) pulls only the coarse head towards the
    refined target: the refined head, used at inference, gets no gradient from unlabeled images; "refined" / "both"
    pull the strong view's refined prediction towards the weak view's (detached) one."""
    y = _label(1)
    out_l = torch.stack([_perfect_logits(y), _perfect_logits(y)])
    g = torch.Generator().manual_seed(1)
    weak = torch.randn(2, 1, 2, 32, 32, generator=g).requires_grad_(True)
    strong = torch.randn(2, 1, 2, 32, 32, generator=g).requires_grad_(True)
    loss = CRIINetLoss("crii_net", intra_weight=0.0, inter_weight=0.0, unlabeled_target=target)
    res = loss(out_l, {"image": weak, "image_strong": strong}, {"label": y}, {}, iteration=99, total_iterations=100)
    res["loss"].backward()
    gw = weak.grad if weak.grad is not None else torch.zeros_like(weak)
    gs = strong.grad if strong.grad is not None else torch.zeros_like(strong)
    assert gw[1].abs().sum() == 0  # the weak refined prediction is the target: never trained towards
    assert (gs[1].abs().sum() > 0) == refined_gets_gradient
    assert (gw[0].abs().sum() > 0) == (target != "refined")  # the coarse head's own consistency
    assert (float(res["consistency_refined"]) > 0) == refined_gets_gradient
    with pytest.raises(ValueError, match="unlabeled_target must be one of"):
        CRIINetLoss("crii_net", unlabeled_target="teacher")


# ---- cross pseudo supervision (method "cps") ---------------------------------------------------------------------


def _constant_logits(b, first_class_logit, second_class_logit, size=4):
    """``[B, 2, size, size]`` logits equal to (first_class_logit, second_class_logit) at every pixel."""
    z = torch.empty(b, 2, size, size, dtype=torch.float64)
    z[:, 0], z[:, 1] = first_class_logit, second_class_logit
    return z


def test_cps_loss_hand_checked():
    """Net 1 says lesion everywhere with p = 3/4 (logits (0, ln 3)), net 2 says background with p = 3/4: each
    network's CE against the other's pseudo-label is -ln(1/4) = ln 4 at every pixel, so L_cps = 2 ln 4 per set of
    images (labeled; each unlabeled view, averaged), on top of Dice + CE of both networks on the labeled images."""
    ln3, ln4 = math.log(3.0), math.log(4.0)
    y = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    y[:, :, :2] = 1.0
    first, second = _constant_logits(2, 0.0, ln3), _constant_logits(2, ln3, 0.0)
    torch.testing.assert_close(cross_pseudo_supervision(first, second), torch.tensor(2 * ln4, dtype=torch.float64))
    pair = torch.stack([first, second])
    loss = CRIINetLoss("cps", rampup_fraction=0.0)  # lambda = consistency_weight = 1 from the start
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    sup = dice_ce(first, y) + dice_ce(second, y)
    res = loss(pair, {"image": pair, "image_strong": pair}, {"label": y}, {})
    torch.testing.assert_close(res["sup"], sup)
    torch.testing.assert_close(res["cps_labeled"], torch.tensor(2 * ln4, dtype=torch.float64))
    torch.testing.assert_close(res["cps_unlabeled"], torch.tensor(2 * ln4, dtype=torch.float64))
    torch.testing.assert_close(res["loss"], sup + 4 * ln4)
    assert torch.equal(res["pred"], first)  # the first network is the one used at inference
    # two networks that agree (both argmax lesion, p = 3/4): CE = -ln(3/4) each way; the strong view disagrees
    agree = torch.stack([first, first])
    res = loss(pair, {"image": agree, "image_strong": pair}, {"label": y}, {})
    expected = 0.5 * (2 * math.log(4 / 3) + 2 * ln4)
    torch.testing.assert_close(res["cps_unlabeled"], torch.tensor(expected, dtype=torch.float64))
    # no unlabeled stream: only the labeled images' cross supervision; lambda ramps like the other methods
    ramped = CRIINetLoss("cps", consistency_weight=2.0, rampup_fraction=0.4)
    res = ramped(pair, {}, {"label": y}, {}, iteration=20, total_iterations=100)
    lam = 2.0 * math.exp(-5.0 * 0.25)
    assert float(res["cps_unlabeled"]) == 0.0 and float(res["consistency_weight"]) == pytest.approx(lam)
    torch.testing.assert_close(res["loss"], sup + lam * 2 * ln4)
    with pytest.raises(ValueError, match="same shape"):
        cross_pseudo_supervision(first, second[:1])
    with pytest.raises(ValueError, match=r"cps needs the training output \[2, B, C"):
        loss(first[:1], {}, {"label": y[:1]}, {})  # an eval-mode output [B, C, ...]


def test_cps_gradient_flows_through_each_prediction_never_through_a_pseudo_label():
    """d L_cps / d P_2 is exactly the gradient of CE(P_2, argmax P_1): being the other network's pseudo-label gives
    P_2 none. On an unlabeled-only batch both networks of a CrossPseudoNet get gradients."""
    from usseg_monai.networks.crii_net import CrossPseudoNet

    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    g1, g2 = torch.autograd.grad(cross_pseudo_supervision(z1, z2), (z1, z2))
    n = 2 * 4 * 4  # CE is the mean over batch and pixels
    onehot = lambda z: torch.nn.functional.one_hot(z.argmax(1), 2).permute(0, 3, 1, 2).to(z.dtype)  # noqa: E731
    torch.testing.assert_close(g1, (torch.softmax(z1, 1) - onehot(z2)).detach() / n)
    torch.testing.assert_close(g2, (torch.softmax(z2, 1) - onehot(z1)).detach() / n)
    # the whole loss on an unlabeled-only batch: the labeled output carries no graph, the unlabeled one reaches both
    torch.manual_seed(0)
    net = CrossPseudoNet(PyMICUNet(channels=(4, 8), dropout=(0.0, 0.0)), PyMICUNet(channels=(4, 8), dropout=(0.0, 0.0)))
    y = _label(2, size=16)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        out_l = net(x)
    out_u = net(torch.rand(2, 1, 16, 16))
    res = CRIINetLoss("cps", rampup_fraction=0.0)(out_l, {"image": out_u}, {"label": y}, {})
    res["loss"].backward()
    for name, p in net.named_parameters():
        if name.endswith("weight") and "conv" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_cps_network_two_initialisations_and_what_is_saved():
    from usseg_monai.export import export_program
    from usseg_monai.networks.crii_net import CrossPseudoNet, checkpoint_modules, inference_network

    torch.manual_seed(0)
    net = make_few_mask_network("cps", channels=(4, 8), dropout=(0.0, 0.0))
    assert isinstance(net, CrossPseudoNet) and type(net.first) is type(net.second) is PyMICUNet
    assert net.divisor == 2
    w1, w2 = net.first.out_conv.conv.weight, net.second.out_conv.conv.weight
    assert w1.shape == w2.shape and not torch.equal(w1, w2)  # two draws of the initialisation
    x = torch.rand(3, 1, 8, 8)
    out = net.train()(x)
    assert out.shape == (2, 3, 2, 8, 8)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), net.first(x))
        net.inference = "second"
        torch.testing.assert_close(net(x), net.second(x))
        net.inference = "first"
    # the bundle saves the inference network as "model" (what inference.json builds) and the peer apart
    assert inference_network(net) is net.first
    assert checkpoint_modules(net) == {"model": net.first, "peer": net.second}
    other = make_few_mask_network("crii_net", channels=(4, 8), dropout=(0.0, 0.0))
    assert inference_network(other) is other and checkpoint_modules(other) == {"model": other}
    served = make_few_mask_network("cps", channels=(4, 8), dropout=(0.0, 0.0), for_inference=True)
    assert type(served) is PyMICUNet
    served.load_state_dict(inference_network(net).state_dict())  # strict
    program = export_program(served.eval(), torch.rand(1, 1, 8, 8), dynamic_spatial=False)
    assert set(program.state_dict) <= set(net.first.state_dict())
    assert not any(k.startswith(("second.", "peer.", "first.")) for k in program.state_dict)
    with pytest.raises(ValueError, match="two networks"):
        CrossPseudoNet(net.first, net.first)
    with pytest.raises(ValueError, match="inference must be one of"):
        CrossPseudoNet(PyMICUNet(), PyMICUNet(), inference="both")


@pytest.mark.slow
@pytest.mark.parametrize("bundle", [BUNDLE2D, BUNDLE3D], ids=["2d", "3d"])
def test_cps_bundle_trains_resumes_evaluates_infers_and_exports(bundle, tmp_path):
    """method "cps": one tiny epoch on the tiny dataset (32 x 32 / 32 x 32 x 16, batch 2), resume to a second epoch,
    evaluate, infer, and export: model.pt and checkpoint.pt["model"] are the first network alone (a plain PyMIC UNet,
    what inference.json builds), checkpoint.pt["peer"] the second (for resuming); the .pt2 holds no second network."""
    from monai.bundle import ConfigParser, ConfigWorkflow

    from usseg_monai.export import load_program
    from usseg_monai.cli import main as usseg_main

    d = 2 if bundle is BUNDLE2D else 3
    size = [32, 32] if d == 2 else [32, 32, 16]
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=d, counts=(4, 2, 2))
    work = tmp_path / "w"
    torch.set_num_threads(1)
    common = dict(bundle_root=str(work), dataset_dir=str(data), image_size=size, method="cps")

    def workflow(files, wtype, **kw):
        cfg = [str(bundle / "configs" / f) for f in files]
        meta = str(bundle / "configs" / "metadata.json")
        return ConfigWorkflow(config_file=cfg if len(cfg) > 1 else cfg[0], meta_file=meta, logging_file=False,
                              workflow_type=wtype, **common, **kw)  # fmt: skip

    train = dict(max_epochs=1, batch_size=2, progress_bar=False)
    wf = workflow(["train.json"], "train", **train)
    wf.initialize()
    assert wf.check_properties() == []
    assert type(wf.parser.get_parsed_content("network_def")).__name__ == "CrossPseudoNet"
    wf.run()
    wf.finalize()
    first = wf.trainer.state.iteration
    assert first >= 1 and {"loss/cps_labeled", "loss/cps_unlabeled"} <= set(wf.trainer.state.output)  # not decollated
    model = torch.load(work / "models" / "model.pt", map_location="cpu", weights_only=True)
    full = torch.load(work / "models" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert {"model", "peer", "optimizer", "lr_scheduler", "trainer"} <= set(full)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["method"] = "cps"
    served = parser.get_parsed_content("network_def")
    assert type(served) is PyMICUNet
    served.load_state_dict(model)  # strict: model.pt is the first network alone
    served.load_state_dict(full["model"])
    assert set(full["peer"]) == set(full["model"])
    assert not all(torch.equal(full["peer"][k], full["model"][k]) for k in full["model"])  # two networks
    # resume: the peer comes back too, one more epoch
    wf = workflow(["train.json"], "train", **{**train, "max_epochs": 2, "resume": True})
    wf.initialize()
    wf.run()
    wf.finalize()
    assert wf.trainer.state.iteration == 2 * first
    # evaluate (merged over train.json) and infer
    wf = workflow(["train.json", "evaluate.json"], "eval", **train, eval_data_list_key="test",
                  output_dir=str(work / "ev"))
    wf.initialize()
    wf.run()
    wf.finalize()
    assert json.loads((work / "ev" / "summary.json").read_text())["cases"] == 2
    wf = workflow(["inference.json"], "infer", infer_data_list_key="test", output_dir=str(work / "inf"))
    wf.initialize()
    wf.run()
    wf.finalize()
    ext = ".png" if d == 2 else ".nii.gz"
    assert len(list((work / "inf").glob(f"*_seg{ext}"))) == 2
    if d == 3:
        return
    # export: the program's weights are the first network's, nothing of the second
    out = tmp_path / "model.pt2"
    rc = usseg_main(
        ["export", "--bundle_root", str(work), "--config_file", str(bundle / "configs" / "inference.json"),
         "--meta_file", str(bundle / "configs" / "metadata.json"), "--ckpt_file", str(work / "models" / "model.pt"),
         "--output", str(out), "--override", "dataset_dir", str(data), "--override", "image_size", json.dumps(size),
         "--override", "method", json.dumps("cps")]
    )  # fmt: skip
    assert rc == 0
    program, _ = load_program(out)
    assert set(program.state_dict) <= set(model)
    assert not any(k.startswith(("second.", "peer.")) for k in program.state_dict)
    n_params = sum(program.state_dict[k].numel() for k in program.graph_signature.parameters)
    assert n_params == sum(p.numel() for p in PyMICUNet().parameters()) == 1_813_474  # one UNet, not two

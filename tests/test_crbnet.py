"""CRBNet pieces beyond the losses: the two-branch network, the two-branch trainer, and the CRBNet bundles'
training from calipers alone (no mask in the training datalist), poly learning rate and schedule fractions.

The shared bundle tests (``tests/test_bundles.py``, ``tests/test_export.py``, ``tests/test_monailabel.py``)
cover the CRBNet bundles' workflow, export, torchrun and bad input like every other bundle's.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from bundle_utils import REPO_ROOT, make_tiny_dataset

from usseg_monai.engines import TwoBranchTrainer, loss_terms, total_iterations
from usseg_monai.networks import PyMICUNet, TwoBranchNet

CRBNET_BUNDLES = sorted((REPO_ROOT / "bundles").glob("crbnet_us_*_segmentation"))


def _unet(dims: int = 2, dropout: float = 0.0) -> PyMICUNet:
    return PyMICUNet(dims, 1, 2, channels=(4, 8, 8, 8, 8), dropout=(dropout,) * 5)


# ---------------------------------------------------------------------------------------------- network


def test_two_branch_net_modes_and_output_convention():
    torch.manual_seed(0)
    net = TwoBranchNet(_unet(), _unet())
    x = torch.rand(3, 1, 32, 32)
    net.train()
    both = net(x)
    assert both.shape == (2, 3, 2, 32, 32)
    net.eval()
    with torch.no_grad():
        z1, z2 = net.radical_branch(x), net.conservative_branch(x)
        out = net(x)
    expected = 0.5 * (torch.softmax(z1, 1) + torch.softmax(z2, 1))
    # a softmax of the eval output gives back the averaged probabilities exactly (they sum to one)
    torch.testing.assert_close(torch.softmax(out, 1), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.exp(), expected, atol=1e-6, rtol=0)
    net.inference = "radical"
    torch.testing.assert_close(net(x), z1)
    net.inference = "conservative"
    torch.testing.assert_close(net(x), z2)


def test_two_branch_net_errors_and_scripting():
    a = _unet()
    with pytest.raises(ValueError, match="same module object"):
        TwoBranchNet(a, a)
    with pytest.raises(ValueError, match="inference must be one of"):
        TwoBranchNet(_unet(), _unet(), inference="max")
    net = TwoBranchNet(_unet(), _unet()).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))
    odd = TwoBranchNet(_unet(), PyMICUNet(2, 1, 3, channels=(4, 8, 8, 8, 8))).eval()
    with pytest.raises(ValueError, match="different shapes"):
        odd(x)


# ---------------------------------------------------------------------------------------------- engine


def _toy_batch(n: int = 2, size: int = 32, dims: int = 2) -> dict[str, torch.Tensor]:
    """Images with a dark disc; nested radical / conservative / axis labels around it."""
    shape = (size,) * dims
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    r2 = sum((g - size / 2) ** 2 for g in grids)
    radical = (r2 <= (size / 4) ** 2).float()
    conservative = (r2 <= (size / 6) ** 2).float()
    axes = torch.zeros(shape)
    axes[(slice(size // 3, 2 * size // 3),) + (size // 2,) * (dims - 1)] = 1
    axes[(size // 2, slice(size // 3, 2 * size // 3)) + (size // 2,) * (dims - 2)] = 1
    image = 0.8 - 0.6 * radical + 0.05 * torch.rand(n, 1, *shape)
    rep = lambda t: t.expand(n, 1, *shape).clone()  # noqa: E731
    return {"image": image, "radical_label": rep(radical), "conservative_label": rep(conservative),
            "caliper_axes": rep(axes)}


def _trainer(net, loader, loss_fn, max_epochs=1, lr=0.05):
    opt1 = torch.optim.SGD(net.radical_branch.parameters(), lr=lr, momentum=0.9)
    opt2 = torch.optim.SGD(net.conservative_branch.parameters(), lr=lr, momentum=0.9)
    return TwoBranchTrainer(device="cpu", max_epochs=max_epochs, train_data_loader=loader, network=net,
                            optimizer=opt1, second_optimizer=opt2, loss_function=loss_fn, amp=False)


def test_one_engine_step_decreases_the_loss_and_changes_both_networks():
    from usseg_monai.losses import CRBNetLoss

    torch.manual_seed(0)
    net = TwoBranchNet(_unet(), _unet())
    batch = _toy_batch()
    # fixed beta so that the loss before and after the step is the same function of the weights
    loss_fn = functools.partial(CRBNetLoss(), beta=0.5)

    def loss_now() -> float:
        net.train()
        with torch.no_grad():
            both = net(batch["image"])
            return float(loss_fn(both[0], both[1], batch["radical_label"], batch["conservative_label"],
                                 batch["caliper_axes"], iteration=0, total_iterations=1)["loss"])

    before_w = [p.detach().clone() for p in (next(net.radical_branch.parameters()),
                                             next(net.conservative_branch.parameters()))]
    before = loss_now()
    trainer = _trainer(net, [batch], loss_fn)
    trainer.run()
    assert trainer.state.iteration == 1
    after = loss_now()
    assert after < before, (before, after)
    after_w = [next(net.radical_branch.parameters()), next(net.conservative_branch.parameters())]
    assert all(not torch.equal(a, b) for a, b in zip(before_w, after_w)), "both branches must be updated"
    out = trainer.state.output
    terms = loss_terms(out)
    for name in ("loss", "loss/crbs_radical", "loss/crbs_conservative", "loss/cap_radical", "loss/idmps_radical"):
        assert name in terms and terms[name] == terms[name]  # present, not NaN
    assert out[0]["pred"].shape == (2, 32, 32) if isinstance(out, list) else out["pred"].shape == (2, 2, 32, 32)


def test_engine_passes_iteration_and_run_length_and_reads_no_mask():
    seen = []

    def recording_loss(z1, z2, radical, conservative, axes, iteration, total_iterations):
        seen.append((iteration, total_iterations))
        return {"loss": (z1.mean() + z2.mean()) * 0 + radical.mean(), "marker": torch.tensor(float(iteration))}

    torch.manual_seed(0)
    batch = _toy_batch()
    assert "label" not in batch  # the trainer reads image + the three target keys only
    trainer = _trainer(TwoBranchNet(_unet(), _unet()), [batch, batch], recording_loss, max_epochs=2)
    trainer.run()
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert loss_terms(trainer.state.output)["loss/marker"] == 3.0
    assert total_iterations(3, 5) == 15
    with pytest.raises(ValueError, match=">= 1"):
        total_iterations(0, 5)


def test_engine_errors():
    net = TwoBranchNet(_unet(), _unet())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="same object"):
        TwoBranchTrainer(device="cpu", max_epochs=1, train_data_loader=[{}], network=net, optimizer=opt,
                         second_optimizer=opt, loss_function=lambda *a, **k: 0)
    batch = _toy_batch()
    del batch["caliper_axes"]
    trainer = _trainer(net, [batch], lambda *a, **k: a[0].mean())
    with pytest.raises(KeyError, match="no 'caliper_axes'"):
        trainer.run()
    single = _unet()
    trainer = TwoBranchTrainer(device="cpu", max_epochs=1, train_data_loader=[_toy_batch()], network=single,
                               optimizer=torch.optim.SGD(single.parameters(), lr=0.1),
                               second_optimizer=torch.optim.SGD(_unet().parameters(), lr=0.1),
                               loss_function=lambda *a, **k: a[0].mean())
    with pytest.raises(ValueError, match=r"stacked \[2, B, C, ...\]"):
        trainer.run()


# ---------------------------------------------------------------------------------------------- bundles


def _workflow(bundle: Path, files, workflow_type, **override):
    from monai.bundle import ConfigWorkflow

    cfg = [str(bundle / "configs" / f) for f in files]
    return ConfigWorkflow(config_file=cfg if len(cfg) > 1 else cfg[0],
                          meta_file=str(bundle / "configs" / "metadata.json"), logging_file=False,
                          workflow_type=workflow_type, **override)


@pytest.mark.slow
@pytest.mark.parametrize("bundle", CRBNET_BUNDLES, ids=[b.name for b in CRBNET_BUNDLES])
def test_crbnet_trains_without_masks_then_evaluates_with_them(bundle: Path, tmp_path):
    torch.set_num_threads(1)
    dims = json.loads((bundle / "configs" / "train.json").read_text())["spatial_dims"]
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=dims, counts=(4, 2, 2))
    dl = json.loads((data / "datalist.json").read_text())
    for item in dl["training"]:
        del item["label"]  # the training list holds images and calipers only
    (data / "datalist.json").write_text(json.dumps(dl))
    size = [32, 32] if dims == 2 else [32, 32, 16]
    ov = {"bundle_root": str(tmp_path / "work"), "dataset_dir": str(data), "image_size": size, "max_epochs": 2,
          "batch_size": 2, "progress_bar": False}
    wf = _workflow(bundle, ["train.json"], "train", **ov)
    wf.initialize()
    assert wf.check_properties() == []
    # the training chain produces the three caliper labels, nested, and never a mask
    item = wf.train_dataset[0] if hasattr(wf, "train_dataset") else wf.parser.get_parsed_content("train#dataset")[0]
    assert "label" not in item
    cons, rad, axes = item["conservative_label"], item["radical_label"], item["caliper_axes"]
    assert cons.shape == rad.shape == axes.shape == (1, *size)
    assert float(cons.sum()) > 0 and bool((cons <= rad).all())
    assert float(axes.sum()) > 0
    wf.run()
    wf.finalize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 4
    ckpt = torch.load(tmp_path / "work" / "models" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert {"model", "optimizer", "conservative_optimizer", "lr_scheduler", "conservative_lr_scheduler"} <= set(ckpt)
    assert any(k.startswith("radical_branch.") for k in ckpt["model"])
    assert any(k.startswith("conservative_branch.") for k in ckpt["model"])
    # poly decay over the whole run (4 iterations): the learning rate reaches 0 at the end, for both optimisers
    for key in ("optimizer", "conservative_optimizer"):
        assert ckpt[key]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    # evaluation reads the masks of the test section
    ev = _workflow(bundle, ["train.json", "evaluate.json"], "eval",
                   **{**ov, "eval_data_list_key": "test", "output_dir": str(tmp_path / "eval")})
    ev.initialize()
    ev.run()
    ev.finalize()
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["cases"] == 2 and 0.0 <= summary["metrics"]["dice"] <= 1.0


@pytest.mark.parametrize("bundle", CRBNET_BUNDLES, ids=[b.name for b in CRBNET_BUNDLES])
def test_crbnet_schedule_defaults_reproduce_the_paper(bundle: Path):
    """cap_fraction 1/3 and idmps_ramp_fraction 1 give CAP until 10000 and lambda's ramp over 30000 of 30000."""
    from monai.bundle import ConfigParser

    from usseg_monai.losses.crbnet import cap_active, idmps_weight

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    frac = parser.get_parsed_content("cap_fraction")
    ramp = parser.get_parsed_content("idmps_ramp_fraction")
    assert cap_active(10000, 30000, frac) and not cap_active(10001, 30000, frac)
    assert idmps_weight(29999, 30000, 0.1, ramp) == pytest.approx(0.1 * __import__("math").exp(-5 * (1 - 199 / 200) ** 2))
    assert idmps_weight(30000, 30000, 0.1, ramp) == pytest.approx(0.1)
    assert parser.get_parsed_content("radical_class_weights") == [1.0, 3.0]
    assert parser.get_parsed_content("conservative_class_weights") == [3.0, 1.0]
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, TwoBranchNet) and net.radical_branch is not net.conservative_branch


def test_make_optimizer_by_name_and_bundle_default_is_the_reference_sgd():
    from monai.bundle import ConfigParser

    from usseg_monai.engines import make_optimizer

    p = [torch.nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer(p, "sgd", lr=0.01, weight_decay=1e-4, momentum=0.9)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9 and sgd.defaults["lr"] == 0.01
    adamw = make_optimizer(p, "AdamW", lr=1e-3, weight_decay=1e-4)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 1e-4
    with pytest.raises(ValueError, match="must be one of"):
        make_optimizer(p, "lion")
    with pytest.raises(ValueError, match=">= 0"):
        make_optimizer(p, "sgd", lr=-1.0)
    for bundle in CRBNET_BUNDLES:
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "train.json"))
        parser["dataset_dir"] = "unused"  # the optimisers need the network only
        opt1, opt2 = parser.get_parsed_content("optimizer"), parser.get_parsed_content("conservative_optimizer")
        assert isinstance(opt1, torch.optim.SGD) and isinstance(opt2, torch.optim.SGD)
        assert opt1.defaults["lr"] == 0.01 and opt1.defaults["momentum"] == 0.9 and opt1.defaults["weight_decay"] == 1e-4
        net = parser.get_parsed_content("network_def")
        ids1 = {id(q) for g in opt1.param_groups for q in g["params"]}
        assert ids1 == {id(q) for q in net.radical_branch.parameters()}
        assert not ids1 & {id(q) for g in opt2.param_groups for q in g["params"]}

"""IMTL-G in SemiSeg-CAW: the feature tap, the gradient balance over several shared tensors, the loss scale carried
over, and the bundle's ``loss_weighting=imtl`` really balancing gradients (it used to be IMTL-L only)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from test_semiseg_caw import _train, _wf, tiny  # noqa: F401  (the module-scoped tiny dataset fixture)

from usseg_monai.losses.semiseg import IMTLWeights
from usseg_monai.losses.semiseg_caw import SemiSegCAWLoss
from usseg_monai.networks import SemiSegCAWNet
from usseg_monai.networks.feature_tap import FeatureTap


def test_feature_tap_keeps_training_outputs_only_and_is_bounded():
    lin, act = nn.Linear(2, 2), nn.ReLU()
    tap = FeatureTap([lin, act], max_items=3)
    x = torch.ones(1, 2)
    act(lin(x))
    kept = tap.pop()
    assert len(kept) == 2 and torch.equal(kept[1], torch.relu(kept[0])) and tap.pop() == []
    with torch.no_grad():
        lin(x)
    lin.eval()
    lin(x)
    assert tap.pop() == []  # no_grad and eval-mode passes are not kept
    lin.train()
    outs = [lin(x * i) for i in range(5)]
    kept = tap.pop()
    assert len(kept) == 3 and all(k is o for k, o in zip(kept, outs[2:]))  # the oldest are dropped
    tap.remove()
    lin(x)
    assert tap.pop() == []
    with pytest.raises(ValueError, match="max_items"):
        FeatureTap([lin, act], max_items=1)
    with pytest.raises(ValueError, match="no module"):
        FeatureTap([])


def test_feature_tap_is_shared_per_module_set():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    tap = FeatureTap.for_modules([a, b])
    assert FeatureTap.for_modules([a, b]) is tap
    with pytest.raises(ValueError, match="already read together with other modules"):
        FeatureTap.for_modules([a])
    tap.remove()
    assert FeatureTap.for_modules([a]) is not tap


def _two_features():
    """z1 = W1 x, z2 = W2 x; task 1 reads z1 . a1 + z2 . a2, task 2 reads z1 . b1 + z2 . b2."""
    torch.manual_seed(0)
    w1 = torch.randn(3, 3, requires_grad=True)
    w2 = torch.randn(2, 3, requires_grad=True)
    x = torch.randn(3)
    z1, z2 = w1 @ x, w2 @ x
    a1, a2, b1, b2 = torch.randn(3), torch.randn(2), torch.randn(3), torch.randn(2)
    return (w1, w2, x), (z1, z2), [z1 @ a1 + z2 @ a2, z1 @ b1 + z2 @ b2], (a1, a2, b1, b2)


@pytest.mark.parametrize("loss_scale", [1.0, 8.0])
def test_gradient_balance_over_several_shared_tensors(loss_scale):
    """Several shared tensors are one z: alpha from the concatenated task gradients, each tensor gets its part of
    sum alpha_t g_t, times the caller's loss scale (AMP's GradScaler multiplies the loss before backward)."""
    (w1, w2, x), (z1, z2), losses, (a1, a2, b1, b2) = _two_features()
    imtl = IMTLWeights(2)
    (imtl(losses, shared=[z1, z2]) * loss_scale).backward()
    g1, g2 = torch.cat([a1, a2]), torch.cat([b1, b2])  # the task gradients w.r.t. z = [z1, z2] (scales e^0 = 1)
    u1, u2 = g1 / g1.norm(), g2 / g2.norm()
    alpha = imtl.last_alpha
    assert float(alpha.sum()) == pytest.approx(1.0, abs=1e-6)
    g = alpha[0] * g1 + alpha[1] * g2
    assert float(g @ u1) == pytest.approx(float(g @ u2), abs=1e-5)  # equal projections: IMTL-G's condition
    torch.testing.assert_close(w1.grad, loss_scale * torch.outer(g[:3], x))
    torch.testing.assert_close(w2.grad, loss_scale * torch.outer(g[3:], x))
    # the scales keep their IMTL-L gradient (e^s L - 1), times the loss scale
    expected = torch.stack([losses[0].detach() - 1, losses[1].detach() - 1]) * loss_scale
    torch.testing.assert_close(imtl.log_scales.grad, expected)


def test_without_balance_the_shared_gradient_is_the_plain_sum():
    (w1, _, x), (z1, z2), losses, (a1, _, b1, _) = _two_features()
    IMTLWeights(2, gradient_balance=False)(losses, shared=[z1, z2]).backward()
    torch.testing.assert_close(w1.grad, torch.outer(a1 + b1, x))


def _caw_step(net, loss, seed=0):
    torch.manual_seed(seed)
    lab = {"image": torch.rand(2, 1, 64, 64), "label": (torch.rand(2, 1, 64, 64) > 0.7).float(),
           "class_index": torch.tensor([0, 1])}  # fmt: skip
    unl = {"image": torch.rand(2, 1, 64, 64), "class_index": torch.tensor([2, 0])}
    out = net(torch.cat([lab["image"], unl["image"]]))  # the bundle concatenates both streams
    res = loss(out[:2], {"image": out[2:]}, lab, unl)
    net.zero_grad()
    res["loss"].backward()
    return res


@pytest.mark.parametrize("backbone", ["malunet", "unext"])
def test_semiseg_caw_loss_balances_on_both_bottlenecks(backbone, one_torch_thread):
    torch.manual_seed(0)
    net = SemiSegCAWNet(backbone, num_cls_classes=3)
    mods = net.shared_feature_modules()
    assert mods == [net.core.shared_feature_module(), net.class_elevate.shared_feature_module()]
    loss = SemiSegCAWLoss("joint", num_cls_classes=3, weighting="imtl", shared_modules=mods)
    assert loss.tap is not None and loss.tap.modules == mods
    _caw_step(net, loss)
    alpha = loss.weighting.last_alpha
    assert alpha is not None and alpha.shape == (2,) and float(alpha.sum()) == pytest.approx(1.0, abs=1e-5)
    assert loss.tap.pop() == []  # the loss took the step's features
    balanced = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    # the same step with IMTL-L only: the encoders' gradients differ, the heads' (task-specific) do not
    plain = SemiSegCAWLoss("joint", num_cls_classes=3, weighting="imtl")
    assert plain.tap is None
    _caw_step(net, plain)
    assert plain.weighting.last_alpha is None
    assert len(loss.tap.pop()) == 2  # this forward was kept too (one pass, two bottlenecks), nobody took it
    head = "core.cls_head.weight"
    torch.testing.assert_close(net.get_parameter(head).grad, balanced[head])
    stem = "class_elevate.encoder.conv1.weight"
    assert not torch.allclose(net.get_parameter(stem).grad, balanced[stem])
    # eval-mode passes (validation, inference) are not kept
    net.eval()
    net(torch.rand(1, 1, 64, 64))
    assert loss.tap.pop() == []
    loss.tap.remove()


def test_other_weightings_and_the_supervised_stage_read_no_features():
    net = SemiSegCAWNet("malunet", num_cls_classes=3)
    mods = net.shared_feature_modules()
    assert SemiSegCAWLoss("joint", weighting="wgm", shared_modules=mods).tap is None
    assert SemiSegCAWLoss("supervised", weighting="imtl", shared_modules=mods).tap is None
    core = SemiSegCAWNet("malunet", num_cls_classes=3, auxiliary=False)
    assert core.shared_feature_modules() == [core.core.encoder[5]]


@pytest.mark.slow
def test_bundle_imtl_trains_with_gradient_balance(tiny, tmp_path):  # noqa: F811
    """loss_weighting=imtl in the bundle: both stages' losses read the bottlenecks and balance every step."""
    wf = _train(tmp_path / "w", tiny, loss_weighting="imtl")
    for key in ("loss", "pretrain#loss"):
        loss = wf.parser.get_parsed_content(key)
        assert loss.tap is not None and len(loss.tap.modules) == 2
        alpha = loss.weighting.last_alpha
        assert alpha is not None and float(alpha.sum()) == pytest.approx(1.0, abs=1e-5)
        assert loss.tap.pop() == []
    loss.tap.remove()


def test_bundle_imtl_l_override_reads_no_features(tiny):  # noqa: F811
    """The ablation's IMTL-L-only variant: ``loss#shared_modules`` set to null leaves IMTL without gradient balance."""
    wf = _wf(["train.json"], "train", dataset_dir=str(tiny), loss_weighting="imtl",
             **{"loss#shared_modules": None, "pretrain#loss#shared_modules": None})  # fmt: skip
    wf.initialize()
    for key in ("loss", "pretrain#loss"):
        loss = wf.parser.get_parsed_content(key)
        assert type(loss.weighting).__name__ == "IMTLWeights" and loss.tap is None

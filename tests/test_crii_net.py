"""CRII-Net's coarse-refined network: shapes (2D/3D), output convention, gradients, parameter counts, exports."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from usseg_monai.export import export_program
from usseg_monai.networks.crii_net import CoarseRefinedNet, split_coarse_refined
from usseg_monai.networks.unet import PyMICUNet

SMALL = dict(channels=(4, 8, 16), dropout=(0.0, 0.1, 0.2))  # 3 levels, divisor 4: quick 3D tests


def _shape(spatial_dims: int, batch: int = 2) -> tuple[int, ...]:
    """2D inputs for the default 5-level network (divisor 16), 3D ones for the 3-level ``SMALL`` (divisor 4)."""
    return (batch, 1, 32, 32) if spatial_dims == 2 else (batch, 1, 8, 16, 12)


def _net(spatial_dims: int, **kwargs) -> CoarseRefinedNet:
    """The default network in 2D; in 3D the 3-level ``SMALL`` one (the default 3D network is only counted)."""
    return CoarseRefinedNet(spatial_dims=spatial_dims, **({} if spatial_dims == 2 else SMALL), **kwargs)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_shapes_and_convention(spatial_dims):
    torch.manual_seed(0)
    net = _net(spatial_dims)
    x = torch.randn(*_shape(spatial_dims))
    out = net.train()(x)
    assert out.shape == (2, 2, 2) + x.shape[2:]  # [2 (coarse, refined), B, C, *spatial]
    coarse, refined = split_coarse_refined(out)
    assert coarse.shape == refined.shape == (2, 2) + x.shape[2:]
    net.eval()
    with torch.no_grad():
        c, r = net.forward_both(x)
        y = net(x)
    assert y.shape == (2, 2) + x.shape[2:]
    torch.testing.assert_close(y, r)
    assert not torch.allclose(c, r)  # two different heads
    net.inference = "coarse"
    with torch.no_grad():
        torch.testing.assert_close(net(x), c)


def test_coarse_branch_is_the_pymic_unet():
    """Same state-dict names as PyMICUNet plus the head; a PyMICUNet checkpoint gives the same coarse output."""
    torch.manual_seed(0)
    unet = PyMICUNet(spatial_dims=2).eval()
    net = CoarseRefinedNet(spatial_dims=2).eval()
    result = net.load_state_dict(unet.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith(("refine_block.", "refine_conv.")) for k in result.missing_keys)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.forward_both(x)[0], unet(x))
        # the refinement head sees the decoder features and softmax(P_c)
        feats = net.decoder_features(x)
        assert feats.shape == (1, 16, 32, 32)
        assert net.refine_block.conv1.conv.in_channels == 16 + 2


@pytest.mark.parametrize(
    "spatial_dims, total, unet_total", [(2, 1_818_756, 1_813_474), (3, 5_359_716, 5_344_066)]
)
def test_parameter_count(spatial_dims, total, unet_total):
    """Default 5 levels 16-256: the PyMIC UNet plus the refinement head (5,282 parameters in 2D, 15,650 in 3D)."""
    net = CoarseRefinedNet(spatial_dims=spatial_dims)
    n = sum(p.numel() for p in net.parameters())
    base = sum(p.numel() for p in PyMICUNet(spatial_dims=spatial_dims).parameters())
    head = sum(p.numel() for name, p in net.named_parameters() if name.startswith("refine_"))
    k = 3**spatial_dims
    # PyMICConvBlock(16 + 2 -> 16): two convs with bias + 2 batch norms; then a 3^d conv 16 -> 2 with bias
    assert head == (18 * 16 * k + 16) + (16 * 16 * k + 16) + 2 * 2 * 16 + (16 * 2 * k + 2)
    assert (n, base, n - base) == (total, unet_total, head)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradients_reach_every_parameter(spatial_dims):
    torch.manual_seed(0)
    net = _net(spatial_dims).train()
    x = torch.randn(*_shape(spatial_dims))
    target = (torch.rand((x.shape[0],) + x.shape[2:]) > 0.5).long()
    coarse, refined = split_coarse_refined(net(x))
    loss = nn.functional.cross_entropy(coarse, target) + nn.functional.cross_entropy(refined, target)
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    # a loss on P_r alone also trains the coarse decoder (through softmax(P_c)) and the encoder
    net.zero_grad()
    nn.functional.cross_entropy(split_coarse_refined(net(x))[1], target).backward()
    assert net.out_conv.conv.weight.grad.abs().sum() > 0 and net.encoder[0].conv1.conv.weight.grad.abs().sum() > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torchscript_script_and_trace_match_eager(spatial_dims):
    torch.manual_seed(0)
    net = _net(spatial_dims).eval()
    x = torch.randn(*_shape(spatial_dims, batch=1))
    x2 = torch.randn(*_shape(spatial_dims, batch=3))
    scripted = torch.jit.script(net)
    traced = torch.jit.trace(net, x, check_trace=False)
    with torch.no_grad():
        for inp in (x, x2):
            ref = net(inp)
            torch.testing.assert_close(scripted(inp), ref, atol=1e-5, rtol=0)
            torch.testing.assert_close(traced(inp), ref, atol=1e-5, rtol=0)
    # the scripted module keeps the training-mode convention too
    scripted.train()
    assert scripted(x).shape == (2, 1, 2) + x.shape[2:]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torch_export_matches_eager(spatial_dims):
    """3D: plain ``torch.export.export``; 2D: the project's exporter (``torch.export.export`` with a dynamic batch
    and dynamic spatial sizes, multiples of ``net.divisor``), checked at two batch and spatial sizes."""
    torch.manual_seed(0)
    net = _net(spatial_dims).eval()
    x = torch.randn(*_shape(spatial_dims, batch=2))
    if spatial_dims == 3:
        program = torch.export.export(net, (x,))
        inputs = [x]
    else:
        program = export_program(net, x)
        inputs = [x, torch.randn(3, 1, 48, 32)]
    assert not net.training
    with torch.no_grad():
        for inp in inputs:
            torch.testing.assert_close(program.module()(inp), net(inp), atol=1e-5, rtol=0)


def test_errors():
    net = CoarseRefinedNet(spatial_dims=2)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.zeros(1, 1, 32, 40))
    with pytest.raises(ValueError, match="inference must be one of"):
        CoarseRefinedNet(inference="mean")
    with pytest.raises(ValueError, match="refine_channels"):
        CoarseRefinedNet(refine_channels=0)
    with pytest.raises(ValueError, match="spatial_dims"):
        CoarseRefinedNet(spatial_dims=1)
    with pytest.raises(ValueError, match="training-mode output"):
        split_coarse_refined(torch.zeros(1, 2, 32, 32))


@pytest.mark.parametrize("target", ["coarse", "refined", "both"])
def test_unlabeled_only_batch_gradient_reaches_the_inference_head_only_when_asked(target):
    """#16, on the network's parameters: with the labeled output computed without a graph, the loss's gradient comes
    from the unlabeled weak and strong views alone. ``unlabeled_target="coarse"`` (the old behaviour) leaves the
    refinement head, the one used at inference, without any gradient (``grad is None``: it is not in the graph,
    the target is detached); ``"refined"`` / ``"both"`` give it a non-zero one. The shared encoder is trained from
    unlabeled images in every setting."""
    from usseg_monai.losses.crii_net import CRIINetLoss

    torch.manual_seed(0)
    net = CoarseRefinedNet(spatial_dims=2, channels=(4, 8), dropout=(0.0, 0.0)).train()
    y = torch.zeros(2, 1, 16, 16)
    y[:, :, 4:12, 4:12] = 1.0
    with torch.no_grad():
        out_l = net(torch.rand(2, 1, 16, 16))
    u = torch.rand(2, 1, 16, 16)
    out_u = net(torch.cat([u, (u + 0.1 * torch.randn_like(u)).clamp(0, 1)]))
    weak, strong = out_u[:, :2], out_u[:, 2:]
    loss = CRIINetLoss("crii_net", unlabeled_target=target, rampup_fraction=0.0)
    loss(out_l, {"image": weak, "image_strong": strong}, {"label": y}, {})["loss"].backward()
    head = {n: p for n, p in net.named_parameters() if n.startswith(("refine_block.", "refine_conv."))}
    assert head
    if target == "coarse":
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in head.values())
    else:
        assert all(p.grad is not None for p in head.values())
        assert net.refine_conv.conv.weight.grad.abs().sum() > 0
        assert net.refine_block.conv1.conv.weight.grad.abs().sum() > 0
    assert net.encoder[0].conv1.conv.weight.grad.abs().sum() > 0
    assert net.out_conv.conv.weight.grad.abs().sum() > 0  # coarse head: its own term, or through softmax(P_c)

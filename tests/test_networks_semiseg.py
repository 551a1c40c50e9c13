"""SemiSeg-CAW networks: MALUNet, UNeXt, ClassElevateSeg and their attention / MLP modules."""

from __future__ import annotations

import pytest
import torch

from usseg_monai.networks.class_elevate import ClassElevateSeg
from usseg_monai.networks.malunet import (
    ChannelAttentionBridge,
    DilatedGatedAttention,
    ExternalAttention,
    MALUNet,
    SpatialAttentionBridge,
)
from usseg_monai.networks.unext import OverlapPatchEmbed, ShiftedMLP, ShiftedMLPBlock, UNeXt, shift_tokens



pytestmark = pytest.mark.usefixtures("one_torch_thread")

def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def assert_all_grads(module: torch.nn.Module, outputs) -> None:
    """Backward a random projection of the outputs; every parameter must get a finite, non-zero gradient."""
    torch.manual_seed(1)
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    loss = sum((o * torch.randn_like(o)).sum() for o in outputs)
    module.zero_grad()
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


# ---------------------------------------------------------------- parameter counts (papers: 0.175 M, 1.47 M)


def test_malunet_parameter_count_matches_paper():
    count = n_params(MALUNet(in_channels=3, out_channels=1, num_classes_cls=0))
    assert count == 177_943  # the official JCruan519/MALUNet, counted with its own models/malunet.py
    assert n_params(MALUNet(in_channels=1, out_channels=2, num_classes_cls=0)) == 177_808  # the official's too
    assert abs(count - 175_000) / 175_000 < 0.10
    # the head adds 64 * 3 + 3, the second input channel removes 8 * 9
    assert n_params(MALUNet(in_channels=2, num_classes_cls=3)) == count + 195 - 72


def test_unext_parameter_count_matches_paper():
    count = n_params(UNeXt(in_channels=3, out_channels=1, num_classes_cls=0))
    assert count == 1_471_921
    assert abs(count - 1_470_000) / 1_470_000 < 0.10
    assert n_params(UNeXt(in_channels=2, num_classes_cls=3)) == count + 256 * 3 + 3 - 16 * 9


# ---------------------------------------------------------------- shapes and errors


@pytest.mark.parametrize("net_cls", [MALUNet, UNeXt])
@pytest.mark.parametrize("size", [(32, 32), (64, 96), (96, 32)])
def test_core_network_shapes(net_cls, size):
    torch.manual_seed(0)
    net = net_cls(in_channels=2, out_channels=1, num_classes_cls=3)
    seg, cls = net(torch.randn(2, 2, *size))
    assert seg.shape == (2, 1, *size)
    assert cls.shape == (2, 3)


@pytest.mark.parametrize("net_cls", [MALUNet, UNeXt])
def test_core_network_without_head(net_cls):
    plain = net_cls(in_channels=1, out_channels=2, num_classes_cls=0)
    assert plain.cls_head is None
    out = plain(torch.randn(2, 1, 32, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 32, 64)


@pytest.mark.parametrize("net_cls", [MALUNet, UNeXt])
def test_core_network_rejects_bad_sizes(net_cls):
    net = net_cls(in_channels=2)
    with pytest.raises(ValueError, match=r"divisible by 32.*\[1, 2, 48, 64\]"):
        net(torch.randn(1, 2, 48, 64))
    with pytest.raises(ValueError, match="expected a 4D input"):
        net(torch.randn(1, 2, 32, 32, 32))


def test_constructor_errors():
    with pytest.raises(ValueError, match="six stage widths"):
        MALUNet(widths=(8, 16, 24))
    with pytest.raises(ValueError, match="divisible by 4"):
        DilatedGatedAttention(10, 16)
    with pytest.raises(ValueError, match="five values"):
        UNeXt(widths=(16, 32))
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        ClassElevateSeg(spatial_dims=1)
    with pytest.raises(ValueError, match="out_channels must be 1"):
        ClassElevateSeg(out_channels=3)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("net_cls", [MALUNet, UNeXt])
def test_core_network_gradients_reach_every_parameter(net_cls):
    torch.manual_seed(0)
    net = net_cls(in_channels=2, out_channels=1, num_classes_cls=3)
    assert_all_grads(net, net(torch.randn(2, 2, 32, 64)))


def test_classification_head_reads_the_bottleneck_only():
    """The class logits depend on the encoder, never on the decoder."""
    torch.manual_seed(0)
    net = MALUNet(in_channels=2)
    _, cls = net(torch.randn(2, 2, 32, 32))
    cls.sum().backward()
    assert net.final.weight.grad is None
    assert all(p.grad is None for p in net.decoder.parameters())
    assert net.encoder[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "module, x",
    [
        (DilatedGatedAttention(24, 32), (2, 24, 16, 16)),
        (ExternalAttention(32), (2, 32, 8, 12)),
        (ShiftedMLP(20), (2, 20, 8, 8)),
        (ShiftedMLPBlock(20), (2, 20, 8, 8)),
        (OverlapPatchEmbed(12, 20), (2, 12, 16, 16)),
    ],
)
def test_attention_modules_shapes_and_gradients(module, x):
    torch.manual_seed(0)
    inp = torch.randn(*x, requires_grad=True)
    out = module(inp)
    expected = {
        DilatedGatedAttention: (2, 32, 16, 16),
        ExternalAttention: x,
        ShiftedMLP: x,
        ShiftedMLPBlock: x,
        OverlapPatchEmbed: (2, 20, 8, 8),
    }[type(module)]
    assert tuple(out.shape) == tuple(expected)
    assert_all_grads(module, out)
    assert inp.grad is not None and inp.grad.abs().sum() > 0


def test_attention_bridges():
    torch.manual_seed(0)
    widths = (8, 16, 24, 32, 48)
    feats = [torch.randn(2, w, 32 // 2**i, 32 // 2**i) for i, w in enumerate(widths)]
    sab, cab = SpatialAttentionBridge(), ChannelAttentionBridge(widths)
    s_att, c_att = sab(feats), cab(feats)
    for f, s, c in zip(feats, s_att, c_att):
        assert s.shape == (2, 1, *f.shape[2:])
        assert c.shape == (2, f.shape[1], 1, 1)
        assert ((s > 0) & (s < 1)).all() and ((c > 0) & (c < 1)).all()
    out = [f * s + f for f, s in zip(feats, s_att)] + [f * c + f for f, c in zip(feats, c_att)]
    assert_all_grads(sab, out[:5])
    assert_all_grads(cab, out[5:])
    # CAB mixes stages: the channel map of stage 0 depends on stage 4's features
    f4 = feats[4].clone().requires_grad_(True)
    cab(feats[:4] + [f4])[0].sum().backward()
    assert f4.grad.abs().sum() > 0


def test_shift_tokens_by_hand():
    """Five channels, shift 5: channel c moves by c - 2 positions along W, zero-filled (no wrap-around)."""
    x = torch.arange(1.0, 7.0).reshape(1, 1, 1, 6).repeat(1, 5, 2, 1)  # rows 1..6
    out = shift_tokens(x, 5, dim=3)
    assert out[0, 0, 0].tolist() == [3, 4, 5, 6, 0, 0]  # shift -2
    assert out[0, 1, 0].tolist() == [2, 3, 4, 5, 6, 0]  # -1
    assert out[0, 2, 0].tolist() == [1, 2, 3, 4, 5, 6]  # 0
    assert out[0, 3, 0].tolist() == [0, 1, 2, 3, 4, 5]  # +1
    assert out[0, 4, 0].tolist() == [0, 0, 1, 2, 3, 4]  # +2
    col = torch.arange(1.0, 5.0).reshape(1, 1, 4, 1).repeat(1, 5, 1, 3)
    out_h = shift_tokens(col, 5, dim=2)
    assert out_h[0, 4, :, 0].tolist() == [0, 0, 1, 2]
    assert out_h[0, 0, :, 2].tolist() == [3, 4, 0, 0]


# ---------------------------------------------------------------- ClassElevateSeg


@pytest.fixture(scope="module")
def class_elevate_2d():
    torch.manual_seed(0)
    return ClassElevateSeg(spatial_dims=2, in_channels=1, out_channels=1, num_classes=3)


@pytest.mark.parametrize("size", [(32, 32), (32, 64)])
def test_class_elevate_2d(class_elevate_2d, size):
    net = class_elevate_2d
    net.train()
    x = torch.randn(2, 1, *size)
    seg, cls = net(x)
    assert seg.shape == (2, 1, *size) and cls.shape == (2, 3)
    net.eval()
    with torch.no_grad():
        aux = net.auxiliary_map(x)
        seg_eval, _ = net(x)
    assert aux.shape == (2, 1, *size)
    assert ((aux >= 0) & (aux <= 1)).all()
    assert torch.allclose(aux, torch.sigmoid(seg_eval))


def test_class_elevate_gradients_and_softmax_map():
    torch.manual_seed(0)
    net = ClassElevateSeg(spatial_dims=2, in_channels=1, out_channels=2, num_classes=3, dropout=0.0)
    x = torch.randn(2, 1, 32, 32)
    assert_all_grads(net, net(x))
    net.eval()
    with torch.no_grad():
        seg, _ = net(x)
        aux = net.auxiliary_map(x)
    assert torch.allclose(aux, torch.softmax(seg, 1)[:, 1:2])
    with pytest.raises(ValueError, match="1 or 2 logit channels"):
        ClassElevateSeg.probability(torch.zeros(1, 3, 4, 4))


def test_class_elevate_3d_and_bad_size():
    torch.manual_seed(0)
    net = ClassElevateSeg(
        spatial_dims=3, in_channels=1, out_channels=1, num_classes=2, decoder_channels=(32, 16, 16, 8)
    )
    seg, cls = net(torch.randn(2, 1, 32, 32, 32))
    assert seg.shape == (2, 1, 32, 32, 32) and cls.shape == (2, 2)
    with pytest.raises(ValueError, match=r"divisible by 32.*\[1, 1, 32, 32, 40\]"):
        net(torch.randn(1, 1, 32, 32, 40))
    with pytest.raises(ValueError, match="expected a 5D input"):
        net(torch.randn(1, 1, 32, 32))

"""SemiSeg-CAW's backbones against their official code (#16): structure, parameter counts, init, TorchScript."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from usseg_monai.networks.unext import ShiftedMLP, UNeXt, shift_tokens


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_unext_parameter_counts_match_the_official_code():
    """Official jeya-maria-jose/UNeXt-pytorch ``archs.UNext`` (counted with its own file): 1,471,921 for 3 input
    channels / 1 class. With 1 input channel the official model still builds a 3-channel first convolution
    (``encoder1 = nn.Conv2d(3, 16, ...)`` ignores ``input_channels``: 1,471,938 for 2 classes); ours takes the
    channels it is given, 2 x 16 x 3 x 3 = 288 weights fewer."""
    assert _count(UNeXt(3, 1, num_classes_cls=None)) == 1_471_921
    assert _count(UNeXt(1, 2, num_classes_cls=None)) == 1_471_938 - 288


def test_shifted_mlp_rolls_height_first_then_width():
    """The official ``shiftmlp.forward`` rolls the channel groups along dim 2 (height) before ``fc1`` and along
    dim 3 (width) after the depthwise convolution: the module equals that order, not the swapped one."""
    torch.manual_seed(0)
    m = ShiftedMLP(10, 10, shift_size=5).eval()
    x = torch.randn(2, 10, 7, 9)

    def reference(first: int, second: int) -> torch.Tensor:
        b, _, h, w = x.shape
        t = shift_tokens(x, 5, dim=first)
        t = m.fc1(t.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
        t = F.gelu(m.dwconv(t))
        t = shift_tokens(t, 5, dim=second)
        return m.fc2(t.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)

    with torch.no_grad():
        out = m(x)
        torch.testing.assert_close(out, reference(2, 3))
        assert not torch.allclose(out, reference(3, 2), atol=1e-4)
    # shift_tokens moves channel group g by g - shift_size // 2 along the dim, zero-filled (not wrapped)
    t = torch.zeros(1, 5, 6, 1)
    t[:, :, 3, 0] = 1.0
    rows = [int(torch.nonzero(shift_tokens(t, 5, dim=2)[0, g, :, 0])[0]) for g in range(5)]
    assert rows == [1, 2, 3, 4, 5]


def test_unext_token_stage_has_the_official_initialisation():
    torch.manual_seed(0)
    m = UNeXt(3, 1, num_classes_cls=None)
    fc = m.block4.mlp.fc1
    assert fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.count_nonzero(fc.bias) == 0
    conv = m.embed4.proj  # fan_out = 3 * 3 * 256
    assert conv.weight.std().item() == pytest.approx((2.0 / (9 * 256)) ** 0.5, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0
    dw = m.block4.mlp.dwconv  # depthwise: fan_out = 3 * 3 * 256 / 256 = 9
    assert dw.weight.std().item() == pytest.approx((2.0 / 9) ** 0.5, rel=0.1)
    ln = m.block4.norm_in
    assert torch.all(ln.weight == 1) and torch.all(ln.bias == 0)
    # the convolutional stage keeps PyTorch's default (kaiming-uniform) init, as in the official code
    assert torch.count_nonzero(m.enc_convs[0].bias) > 0
    for size in (64, 128):
        assert m(torch.zeros(1, 3, size, size)).shape == (1, 1, size, size)


def test_malunet_matches_the_official_architecture():
    """JCruan519/MALUNet ``models/malunet.py`` (counted with its own file): 177,943 parameters for 3 input
    channels / 1 class, 177,808 for 1 / 2; encoder stages EA then DGA, decoder stages DGA then EA; DGA with
    dilations 7, 5, 2, 1, GroupNorm and a two-gate unit with a 1x1 shortcut; EA with 4 * C memory units."""
    from usseg_monai.networks.malunet import MALUNet, DilatedGatedAttention, ExternalAttention, GatedAttentionUnit

    assert _count(MALUNet(3, 1, num_classes_cls=0)) == 177_943
    assert _count(MALUNet(1, 2, num_classes_cls=0)) == 177_808
    torch.manual_seed(0)
    m = MALUNet(2, 2, num_classes_cls=3)
    for stage in m.encoder[3:]:
        assert [type(b) for b in stage] == [ExternalAttention, DilatedGatedAttention]
    for stage in m.decoder[:3]:
        assert [type(b) for b in stage] == [DilatedGatedAttention, ExternalAttention]
    dga = m.encoder[3][1]
    assert dga.dilations == (7, 5, 2, 1) and [c.dilation[0] for c in dga.branches] == [7, 5, 2, 1]
    assert isinstance(dga.norm, torch.nn.GroupNorm) and dga.norm.num_groups == 4
    assert isinstance(dga.gau, GatedAttentionUnit) and dga.gau.value.depthwise.kernel_size == (5, 5)
    assert dga.gau.shortcut.kernel_size == (1, 1)
    ea = m.encoder[4][0]
    assert ea.memory == 4 * 32 and ea.memory_k.weight.shape == (128, 32, 1)
    # the official init: M_k starts as M_v transposed, normal with std sqrt(2 / C); conv biases zero
    torch.testing.assert_close(ea.memory_k.weight, ea.memory_v.weight.permute(1, 0, 2))
    big = MALUNet(3, 1, widths=(8, 16, 24, 32, 48, 256), num_classes_cls=0).encoder[5][0]
    assert big.memory_v.weight.std().item() == pytest.approx((2.0 / 48) ** 0.5, rel=0.1)
    assert torch.count_nonzero(m.encoder[0].bias) == 0
    assert m.encoder[0].weight.std().item() == pytest.approx((2.0 / (9 * 8)) ** 0.5, rel=0.25)
    # GELU after the bottleneck: the class head reads features >= GELU's minimum (about -0.17)
    feats = {}
    m.cls_head.register_forward_pre_hook(lambda mod, inp: feats.update(x=inp[0]) or None)
    for size in (64, 128):
        seg, cls = m(torch.randn(2, 2, size, size) * 3)
        assert seg.shape == (2, 2, size, size) and cls.shape == (2, 3)
    assert feats["x"].min() >= -0.17 - 1e-4


def test_malunet_initialisation_and_norms_are_the_official_ones():
    """The official ``_init_weights``: linear layers (CAB's, and our class head) truncated normal std 0.02 with
    zero biases; 2D convolutions normal with std ``sqrt(2 / fan_out)`` and zero biases; GroupNorm (4 groups)
    everywhere the official has it, at PyTorch's 1 / 0."""
    from usseg_monai.networks.malunet import DepthwiseSeparableConv, MALUNet

    torch.manual_seed(0)
    m = MALUNet(2, 2, num_classes_cls=3)
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(linears) == 5 + 1  # CAB's five heads + the class head
    weights = torch.cat([lin.weight.flatten() for lin in linears])
    # timm's / torch's trunc_normal_ cuts at +-2 in absolute value (100 std): in effect a plain normal
    assert weights.std().item() == pytest.approx(0.02, rel=0.1) and weights.abs().max() > 0.04
    assert all(torch.count_nonzero(lin.bias) == 0 for lin in linears)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert all(c.bias is None or torch.count_nonzero(c.bias) == 0 for c in convs)
    mix = m.decoder[0][0].mix  # DGA(64 -> 48): its 1x1 mix keeps the 64 input channels, fan_out 64
    assert mix.weight.std().item() == pytest.approx((2.0 / 64) ** 0.5, rel=0.1)
    norms = [mod for mod in m.modules() if isinstance(mod, torch.nn.GroupNorm)]
    assert norms and all(n.num_groups == 4 and torch.all(n.weight == 1) and torch.all(n.bias == 0) for n in norms)
    assert not any(isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)) for mod in m.modules())
    dsc = [mod for mod in m.modules() if isinstance(mod, DepthwiseSeparableConv)]
    assert len(dsc) == 6 * 3 and all(isinstance(d.norm, torch.nn.GroupNorm) for d in dsc)  # 3 per DGA gate unit


def test_malunet_bridge_is_the_official_combination():
    """``SC_Att_Bridge``: ``s = SAB(t) t``, ``u = s + t``, ``out = CAB(u) u + s``, on each of the five skips."""
    from usseg_monai.networks.malunet import MALUNet

    torch.manual_seed(0)
    m = MALUNet(1, 2, num_classes_cls=0).eval()
    seen = {}
    m.sab.register_forward_hook(lambda mod, inp, out: seen.update(t=inp[0], s_att=out) or None)
    m.cab.register_forward_hook(lambda mod, inp, out: seen.update(u=inp[0], c_att=out) or None)
    with torch.no_grad():
        m(torch.randn(1, 1, 64, 64))
    assert len(seen["t"]) == 5 and [t.shape[1] for t in seen["t"]] == [8, 16, 24, 32, 48]
    for t, sa, u in zip(seen["t"], seen["s_att"], seen["u"]):
        torch.testing.assert_close(u, t * sa + t)


def test_shift_tokens_splits_channels_as_torch_chunk():
    """The official splits the channels with ``torch.chunk`` (group size ``ceil(C / 5)``) and pairs the groups with
    the shifts -2..2 in order: 12 channels make four groups of 3, shifted by -2, -1, 0, +1."""
    x = torch.zeros(1, 12, 7, 1)
    x[:, :, 3, 0] = 1.0
    out = shift_tokens(x, 5, dim=2)
    rows = [int(torch.nonzero(out[0, c, :, 0])[0]) for c in range(12)]
    assert rows == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    # along the width (dim 3) the same groups move left / right; nothing wraps around
    y = torch.zeros(1, 5, 1, 4)
    y[:, :, 0, 0] = 1.0
    assert shift_tokens(y, 5, dim=3)[0, :, 0, :].sum(dim=1).tolist() == [0, 0, 1, 1, 1]


@pytest.mark.parametrize("backbone", ["MALUNet", "UNeXt"])
@pytest.mark.parametrize("head", [0, 3])
def test_backbones_are_scriptable_and_exportable(backbone, head):
    import usseg_monai.networks as nets

    torch.manual_seed(0)
    net = getattr(nets, backbone)(in_channels=2, out_channels=2, num_classes_cls=head).eval()
    scripted = torch.jit.script(net)
    for size in (64, 128):
        x = torch.randn(1, 2, size, size)
        with torch.no_grad():
            eager, script = net(x), scripted(x)
        eager = eager if isinstance(eager, tuple) else (eager,)
        script = script if isinstance(script, tuple) else (script,)
        assert len(eager) == len(script) == (2 if head else 1)
        assert eager[0].shape == (1, 2, size, size)
        for a, b in zip(eager, script):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(Exception, match="divisible by 32"):
        scripted(torch.randn(1, 2, 48, 64))
    if head == 0:
        program = torch.export.export(net, (torch.randn(1, 2, 64, 64),))
        x = torch.randn(1, 2, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), net(x), atol=1e-5, rtol=0)

"""SemiSeg-CAW's backbones against their official code (#16): UNeXt's block order, parameter counts, init."""

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

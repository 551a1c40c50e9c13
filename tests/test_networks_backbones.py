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

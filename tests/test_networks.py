"""Tests of usseg_monai.networks.PyMICUNet (the PyMIC / SSL4MIS / CRBNet UNet), 2D and 3D."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from usseg_monai.networks import PyMICUNet

CHANNELS = (16, 32, 64, 128, 256)


def _conv(cin: int, cout: int, k: int, d: int) -> int:
    return k**d * cin * cout + cout  # weights + bias


def _block(cin: int, cout: int, d: int) -> int:
    return _conv(cin, cout, 3, d) + 2 * cout + _conv(cout, cout, 3, d) + 2 * cout  # two conv + BN(weight, bias)


def expected_parameters(d: int, upsample: str = "linear", in_ch: int = 1, out_ch: int = 2, ch=CHANNELS) -> int:
    """Parameter count of the architecture in methods.md section 1, counted by hand."""
    n = _block(in_ch, ch[0], d) + sum(_block(ch[i - 1], ch[i], d) for i in range(1, len(ch)))
    for i in range(len(ch) - 1, 0, -1):
        if upsample == "linear":
            n += _conv(ch[i], ch[i - 1], 1, d)  # 1x1 conv before the interpolation
        else:
            n += 2**d * ch[i] * ch[i - 1] + ch[i - 1]  # 2x2 transposed conv
        n += _block(2 * ch[i - 1], ch[i - 1], d)
    return n + _conv(ch[0], out_ch, 3, d)


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(
    "spatial_dims,shape", [(2, (2, 1, 48, 80)), (2, (1, 1, 16, 112)), (3, (1, 1, 32, 16, 48))]
)
@pytest.mark.parametrize("upsample", ["linear", "deconv"])
def test_output_shape(spatial_dims, shape, upsample):
    net = PyMICUNet(spatial_dims=spatial_dims, upsample=upsample).eval()
    with torch.no_grad():
        out = net(torch.randn(*shape))
    assert out.shape == (shape[0], 2) + shape[2:]
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("spatial_dims,upsample", [(2, "linear"), (2, "deconv"), (3, "linear"), (3, "deconv")])
def test_parameter_count(spatial_dims, upsample):
    net = PyMICUNet(spatial_dims=spatial_dims, upsample=upsample)
    n = _count(net)
    print(f"PyMICUNet {spatial_dims}D upsample={upsample}: {n} parameters")
    assert n == expected_parameters(spatial_dims, upsample)
    if spatial_dims == 2 and upsample == "linear":
        assert n == 1_813_474  # the SSL4MIS/CRBNet UNet with 1 input channel and 2 classes


def test_other_in_out_channels_parameter_count():
    net = PyMICUNet(spatial_dims=2, in_channels=3, out_channels=4)
    assert _count(net) == expected_parameters(2, "linear", in_ch=3, out_ch=4)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 4, 32, 32)


def test_dropout_values_encoder_only():
    net = PyMICUNet(spatial_dims=2)
    enc = [m.p for m in net.encoder.modules() if isinstance(m, nn.Dropout)]
    assert enc == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.5])
    dec = [m for m in list(net.decoder.modules()) + list(net.upsamples.modules()) if isinstance(m, nn.Dropout)]
    assert dec == []
    # the dropout sits between the two convolutions of a block, after BN and LeakyReLU
    first = net.encoder[0].conv1.adn
    assert [type(m).__name__ for m in first.children()] == ["BatchNorm2d", "LeakyReLU", "Dropout"]
    assert first.A.negative_slope == pytest.approx(0.01)


def test_upsampling_is_1x1_conv_then_bilinear_or_trilinear():
    for d, mode in [(2, "bilinear"), (3, "trilinear")]:
        net = PyMICUNet(spatial_dims=d)
        up = net.upsamples[0]
        pre = up.preconv
        assert pre.kernel_size == (1,) * d and pre.in_channels == 256 and pre.out_channels == 128
        interp = up.upsample_non_trainable
        assert interp.mode == mode and interp.align_corners is True and tuple(interp.scale_factor) == (2.0,) * d
    net = PyMICUNet(spatial_dims=2, upsample="deconv")
    assert isinstance(net.upsamples[0].deconv, nn.ConvTranspose2d)
    assert net.upsamples[0].deconv.kernel_size == (2, 2) and net.upsamples[0].deconv.stride == (2, 2)


def test_downsampling_is_max_pool():
    net = PyMICUNet(spatial_dims=3)
    assert isinstance(net.pool, nn.MaxPool3d) and net.pool.kernel_size == 2


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradients_flow_to_every_parameter(spatial_dims):
    torch.manual_seed(0)
    net = PyMICUNet(spatial_dims=spatial_dims).train()
    shape = (2, 1, 32, 48) if spatial_dims == 2 else (2, 1, 16, 16, 32)
    x = torch.randn(*shape, requires_grad=True)
    target = (torch.rand((shape[0],) + shape[2:]) > 0.5).long()
    loss = nn.functional.cross_entropy(net(x), target)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torchscript_matches_eager(spatial_dims):
    net = PyMICUNet(spatial_dims=spatial_dims).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(1, 1, 32, 48) if spatial_dims == 2 else torch.randn(1, 1, 16, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=0)


def test_dropout_active_in_train_mode_only():
    torch.manual_seed(0)
    net = PyMICUNet(spatial_dims=2)
    x = torch.randn(1, 1, 32, 32)
    net.train()
    a, b = net(x), net(x)
    assert not torch.allclose(a, b)  # stochastic dropout
    net.eval()
    torch.testing.assert_close(net(x), net(x))


def test_size_not_divisible_by_16_is_a_clear_error():
    net = PyMICUNet(spatial_dims=2)
    with pytest.raises(ValueError, match=r"divisible by 16, got input shape \[1, 1, 40, 36\]"):
        net(torch.randn(1, 1, 40, 36))
    small = PyMICUNet(spatial_dims=2, channels=(8, 16, 32), dropout=(0.0, 0.1, 0.2))
    assert small(torch.randn(1, 1, 12, 20)).shape == (1, 2, 12, 20)  # 2 poolings: multiples of 4


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"spatial_dims": 1}, "spatial_dims must be 2 or 3"),
        ({"dropout": (0.1, 0.2)}, "one value per level"),
        ({"dropout": (0.05, 0.1, 0.2, 0.3, 1.0)}, r"in \[0, 1\)"),
        ({"upsample": "nearest"}, "'linear' or 'deconv'"),
        ({"channels": (16,), "dropout": (0.1,)}, "at least two levels"),
    ],
)
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        PyMICUNet(**kwargs)

"""SemiSeg-CAW losses: Focal Tversky, segmentation loss with masks, WGM, static weights, IMTL."""

from __future__ import annotations

import math

import pytest
import torch

from usseg_monai.losses.semiseg import (
    FocalTverskyLoss,
    IMTLWeights,
    SegmentationLoss,
    StaticLossWeights,
    WeightGenerationModule,
    imtl_gradient_weights,
    make_loss_weighting,
    tversky_index,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# image 1: p = (0.9, 0.2, 0.6, 0.1), g = (1, 1, 0, 0): TP = 1.1, FN = 0.1 + 0.8 = 0.9, FP = 0.6 + 0.1 = 0.7
#   TI = 1.1 / (1.1 + 0.7 * 0.9 + 0.3 * 0.7) = 1.1 / 1.94 = 0.5670103; FTL = (0.84 / 1.94) ** 0.75 = 0.5337749
# image 2: p = (0.5, 0.5, 0.5, 0.5), g = (1, 0, 0, 0): TP = 0.5, FN = 0.5, FP = 1.5
#   TI = 0.5 / (0.5 + 0.35 + 0.45) = 0.3846154; FTL = (0.8 / 1.3) ** 0.75 = 0.6948003
P = torch.tensor([[[0.9, 0.2, 0.6, 0.1]], [[0.5, 0.5, 0.5, 0.5]]])
G = torch.tensor([[[1.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]]])
FTL1, FTL2 = 0.5337749, 0.6948003


def test_focal_tversky_hand_values():
    loss = FocalTverskyLoss(alpha=0.7, beta=0.3, gamma=4 / 3, smooth_nr=0.0, smooth_dr=0.0, reduction="none")
    out = loss(P, G)
    assert out.shape == (2, 1)
    assert out[:, 0].tolist() == pytest.approx([FTL1, FTL2], abs=1e-6)
    ti = tversky_index(P, G, 0.7, 0.3, smooth_nr=0.0, smooth_dr=0.0)
    assert ti[:, 0].tolist() == pytest.approx([1.1 / 1.94, 0.5 / 1.3], abs=1e-6)
    mean = FocalTverskyLoss(smooth_nr=0.0, smooth_dr=0.0)(P, G)
    assert float(mean) == pytest.approx((FTL1 + FTL2) / 2, abs=1e-6)
    total = FocalTverskyLoss(smooth_nr=0.0, smooth_dr=0.0, reduction="sum")(P, G)
    assert float(total) == pytest.approx(FTL1 + FTL2, abs=1e-6)


def test_focal_tversky_alpha_weighs_false_negatives():
    """Abraham & Khan's convention: alpha multiplies FN. Swapping alpha and beta changes image 1's value to
    TI = 1.1 / (1.1 + 0.3 * 0.9 + 0.7 * 0.7) = 0.5913978, FTL = 0.5110642."""
    swapped = FocalTverskyLoss(alpha=0.3, beta=0.7, smooth_nr=0.0, smooth_dr=0.0, reduction="none")(P[:1], G[:1])
    assert float(swapped) == pytest.approx(0.5110642, abs=1e-6)
    # a prediction missing the lesion (FN) costs more than one with the same amount of spurious lesion (FP)
    g = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    miss = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    spurious = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])
    ftl = FocalTverskyLoss(smooth_nr=0.0, smooth_dr=0.0)
    assert float(ftl(miss, g)) > float(ftl(spurious, g))


def test_focal_tversky_gamma_one_is_tversky_and_dice():
    tv = FocalTverskyLoss(alpha=0.5, beta=0.5, gamma=1.0, smooth_nr=0.0, smooth_dr=0.0, reduction="none")(P, G)
    # Dice of image 1: 2 * 1.1 / (1.8 + 2) = 0.5789474
    assert float(tv[0, 0]) == pytest.approx(1 - 2.2 / 3.8, abs=1e-6)


def test_focal_tversky_logits_softmax_onehot():
    logits = torch.tensor([[[2.0, -1.0, 0.5, -3.0]]])
    sig = FocalTverskyLoss(sigmoid=True)(logits, G[:1])
    assert float(sig) == pytest.approx(float(FocalTverskyLoss()(torch.sigmoid(logits), G[:1])), abs=1e-7)
    # two-channel softmax with logit difference z equals the sigmoid of z on the foreground channel
    two = torch.cat([torch.zeros_like(logits), logits], dim=1)
    idx = G[:1].clone()
    soft = FocalTverskyLoss(softmax=True, to_onehot_y=True, include_background=False)(two, idx)
    assert float(soft) == pytest.approx(float(sig), abs=1e-6)


def test_focal_tversky_errors():
    with pytest.raises(ValueError, match="mutually exclusive"):
        FocalTverskyLoss(sigmoid=True, softmax=True)
    with pytest.raises(ValueError, match="reduction"):
        FocalTverskyLoss(reduction="avg")
    with pytest.raises(ValueError, match="does not match input"):
        FocalTverskyLoss()(P, G[:, :, :2])
    with pytest.raises(ValueError, match=r"indices must be in \[0, 1\]"):
        FocalTverskyLoss(softmax=True, to_onehot_y=True)(torch.zeros(1, 2, 4), torch.full((1, 1, 4), 2.0))


def test_focal_tversky_perfect_prediction_has_finite_zero_gradient():
    p = G.clone().requires_grad_(True)
    loss = FocalTverskyLoss(smooth_nr=0.0, smooth_dr=1e-5)(p, G)
    loss.backward()
    assert torch.isfinite(p.grad).all()


# ---------------------------------------------------------------- segmentation loss


def test_segmentation_loss_hand_value():
    """p = 0.5 on two pixels, g = (1, 0): BCE = ln 2; Dice = 1 - 2 * 0.5 / 2 = 0.5;
    TI = 0.5 / (0.5 + 0.7 * 0.5 + 0.3 * 0.5) = 0.5, FTL = 0.5 ** 0.75; total 1.7877507."""
    loss = SegmentationLoss(smooth=0.0)
    out = loss(torch.zeros(1, 1, 2), torch.tensor([[[1.0, 0.0]]]))
    assert float(out) == pytest.approx(math.log(2) + 0.5 + 0.5**0.75, abs=1e-6)
    assert float(out) == pytest.approx(1.7877507, abs=1e-6)
    assert loss.last_components == pytest.approx({"bce": math.log(2), "dice": 0.5, "ftl": 0.5**0.75}, abs=1e-6)
    weighted = SegmentationLoss(bce_weight=2.0, dice_weight=0.0, ftl_weight=0.0, smooth=0.0)
    assert float(weighted(torch.zeros(1, 1, 2), torch.tensor([[[1.0, 0.0]]]))) == pytest.approx(2 * math.log(2))


def test_segmentation_loss_softmax_matches_sigmoid():
    torch.manual_seed(0)
    z = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.6).float()
    one = SegmentationLoss()(z, target)
    two = SegmentationLoss()(torch.cat([torch.zeros_like(z), z], 1), target)
    assert float(two) == pytest.approx(float(one), abs=1e-5)
    onehot = torch.cat([1 - target, target], 1)
    two_onehot = SegmentationLoss()(torch.cat([torch.zeros_like(z), z], 1), onehot)
    assert float(two_onehot) == pytest.approx(float(one), abs=1e-5)


@pytest.mark.parametrize("channels", [1, 2])
def test_class_only_images_contribute_no_mask_loss(channels):
    torch.manual_seed(0)
    logits = torch.randn(3, channels, 8, 8, requires_grad=True)
    target = (torch.rand(3, 1, 8, 8) > 0.5).float()
    image_mask = torch.tensor([1.0, 0.0, 1.0])
    loss_fn = SegmentationLoss()
    loss = loss_fn(logits, target, image_mask=image_mask)
    loss.backward()
    assert torch.equal(logits.grad[1], torch.zeros_like(logits.grad[1]))
    assert logits.grad[0].abs().sum() > 0 and logits.grad[2].abs().sum() > 0
    # same value as the loss on the masked images alone, whatever the class-only image's target says
    keep = torch.tensor([0, 2])
    alone = loss_fn(logits.detach()[keep], target[keep])
    assert float(loss.detach()) == pytest.approx(float(alone), abs=1e-6)
    target2 = target.clone()
    target2[1] = 1 - target2[1]
    flipped = loss_fn(logits.detach(), target2, image_mask=image_mask)
    assert float(flipped) == pytest.approx(float(loss.detach()), abs=1e-7)


def test_pixel_weights_and_all_class_only_batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    target = (torch.rand(2, 1, 4, 4) > 0.5).float()
    weight = torch.ones(2, 1, 4, 4)
    weight[:, :, :2] = 0.0  # top half ignored
    SegmentationLoss()(logits, target, weight=weight).backward()
    assert torch.equal(logits.grad[:, :, :2], torch.zeros(2, 1, 2, 4))
    assert logits.grad[:, :, 2:].abs().sum() > 0
    # equal to the loss on the bottom half alone
    full = SegmentationLoss()(logits.detach(), target, weight=weight)
    half = SegmentationLoss()(logits.detach()[:, :, 2:], target[:, :, 2:])
    assert float(full) == pytest.approx(float(half), abs=1e-6)
    # nothing counts: loss 0, zero (finite) gradient
    logits.grad = None
    none = SegmentationLoss()(logits, target, image_mask=torch.zeros(2))
    none.backward()
    assert float(none.detach()) == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_segmentation_loss_errors():
    loss = SegmentationLoss()
    with pytest.raises(ValueError, match="image_mask needs 2 values"):
        loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), image_mask=torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), weight=-torch.ones(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 0.0..2.0"):
        loss(torch.zeros(1, 1, 2), torch.tensor([[[0.0, 2.0]]]))
    with pytest.raises(ValueError, match="does not match logits"):
        loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="1 \\(indices\\) or 3 \\(one-hot\\)"):
        loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 2, 4, 4))


# ---------------------------------------------------------------- loss weighting


def test_wgm_hand_values():
    """s = (0, ln 2), L = (2, 0.5): total = e^0 * 2 + 0 + e^-ln2 * 0.5 + ln 2 = 2.25 + 0.6931472 = 2.9431472;
    d/ds = 1 - e^-s L = (1 - 2, 1 - 0.25) = (-1, 0.75); d/dL = e^-s = (1, 0.5)."""
    wgm = WeightGenerationModule(2, init=[0.0, math.log(2.0)])
    losses = torch.tensor([2.0, 0.5], requires_grad=True)
    total = wgm([losses[0], losses[1]])
    assert float(total.detach()) == pytest.approx(2.9431472, abs=1e-6)
    total.backward()
    assert wgm.log_vars.grad.tolist() == pytest.approx([-1.0, 0.75], abs=1e-6)
    assert losses.grad.tolist() == pytest.approx([1.0, 0.5], abs=1e-6)
    assert wgm.weights.tolist() == pytest.approx([1.0, 0.5], abs=1e-6)


def test_wgm_learns_s_equal_log_loss():
    wgm = WeightGenerationModule(2)
    opt = torch.optim.SGD(wgm.parameters(), lr=0.2)
    losses = torch.tensor([4.0, 0.25])
    for _ in range(300):
        opt.zero_grad()
        wgm(losses).backward()
        opt.step()
    assert wgm.log_vars.detach().tolist() == pytest.approx([math.log(4.0), math.log(0.25)], abs=1e-3)
    assert (wgm.weights * losses).tolist() == pytest.approx([1.0, 1.0], abs=1e-3)


def test_static_weights():
    static = StaticLossWeights(2, weights=[1.0, 0.5])
    assert float(static(torch.tensor([2.0, 4.0]))) == pytest.approx(4.0)
    assert len(list(static.parameters())) == 0
    with pytest.raises(ValueError, match="need 2 non-negative weights"):
        StaticLossWeights(2, weights=[1.0])
    with pytest.raises(ValueError, match="expected 2 scalar losses"):
        static(torch.tensor([1.0, 2.0, 3.0]))


def test_imtl_gradient_weights_by_hand():
    """g1 = (1, 0), g2 = (0, 2): u1 = (1, 0), u2 = (0, 1);
    alpha2 = g1.(u1 - u2) / ((g1 - g2).(u1 - u2)) = 1 / (1 + 2) = 1/3, alpha1 = 2/3;
    g = (2/3, 2/3): equal projections 2/3 on u1 and u2."""
    grads = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    alpha = imtl_gradient_weights(grads)
    assert alpha.tolist() == pytest.approx([2 / 3, 1 / 3], abs=1e-6)
    g = alpha @ grads
    assert g.tolist() == pytest.approx([2 / 3, 2 / 3], abs=1e-6)


def test_imtl_gradient_weights_equal_projections_three_tasks():
    torch.manual_seed(0)
    grads = torch.randn(3, 10) * torch.tensor([[1.0], [5.0], [0.2]])
    alpha = imtl_gradient_weights(grads)
    assert float(alpha.sum()) == pytest.approx(1.0, abs=1e-5)
    g = alpha @ grads
    proj = [(g @ gt / gt.norm()).item() for gt in grads]
    assert proj == pytest.approx([proj[0]] * 3, rel=1e-4)


def test_imtl_loss_balance():
    """IMTL-L: total = sum e^s L - s; d/ds = e^s L - 1 (at s = 0: L - 1); the scales drive e^s L to 1."""
    imtl = IMTLWeights(2)
    losses = torch.tensor([4.0, 0.25])
    total = imtl(losses)
    assert float(total.detach()) == pytest.approx(4.25)
    total.backward()
    assert imtl.log_scales.grad.tolist() == pytest.approx([3.0, -0.75])
    opt = torch.optim.SGD(imtl.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        imtl(losses).backward()
        opt.step()
    assert (imtl.weights * losses).tolist() == pytest.approx([1.0, 1.0], abs=1e-3)
    assert imtl.last_alpha is None


def test_imtl_gradient_balance_on_shared_feature():
    """z = W x (shared); L1 = z . a, L2 = z . b with scales 1: dL/dz is replaced by alpha1 a + alpha2 b."""
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    w = torch.eye(2, requires_grad=True)
    x = torch.tensor([1.0, 1.0])
    z = w @ x
    imtl = IMTLWeights(2)
    total = imtl([z @ a, z @ b], shared=z)
    total.backward()
    assert imtl.last_alpha.tolist() == pytest.approx([2 / 3, 1 / 3], abs=1e-6)
    # dTotal/dW = outer(dL/dz, x) with dL/dz = (2/3, 2/3) instead of the unbalanced (1, 2)
    assert w.grad.flatten().tolist() == pytest.approx([2 / 3] * 4, abs=1e-6)
    # the scales keep their IMTL-L gradient e^s L - 1
    assert imtl.log_scales.grad.tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    with pytest.raises(ValueError, match="intermediate feature"):
        IMTLWeights(2)([w.sum(), w.sum()], shared=w)


def test_make_loss_weighting():
    assert isinstance(make_loss_weighting("wgm", 2), WeightGenerationModule)
    assert isinstance(make_loss_weighting("STATIC", 3, weights=[1, 2, 3]), StaticLossWeights)
    imtl = make_loss_weighting("imtl", 2, gradient_balance=False)
    assert isinstance(imtl, IMTLWeights) and not imtl.gradient_balance
    with pytest.raises(ValueError, match="unknown weighting 'gradnorm'"):
        make_loss_weighting("gradnorm", 2)


@pytest.mark.parametrize("name", ["wgm", "static", "imtl"])
def test_semiseg_step_with_malunet(name):
    """One SemiSeg-CAW step: MALUNet (image + auxiliary map), segmentation loss on masked images only, CE on all,
    combined by the selected weighting; IMTL-G reads the bottleneck through a forward hook."""
    from usseg_monai.networks.malunet import MALUNet

    torch.manual_seed(0)
    net = MALUNet(in_channels=2, out_channels=1, num_classes_cls=3)
    feats = {}
    net.encoder[5].register_forward_hook(lambda _m, _i, out: feats.__setitem__("z", out))
    weighting = make_loss_weighting(name, 2)
    x = torch.randn(3, 2, 32, 64)
    mask = (torch.rand(3, 1, 32, 64) > 0.7).float()
    labels = torch.tensor([0, 1, 2])
    image_mask = torch.tensor([1.0, 0.0, 1.0])  # image 1 is class-only
    seg, cls = net(x)
    seg.retain_grad()
    l_seg = SegmentationLoss()(seg, mask, image_mask=image_mask)
    l_cls = torch.nn.functional.cross_entropy(cls, labels)
    total = weighting([l_seg, l_cls], shared=feats["z"]) if name == "imtl" else weighting([l_seg, l_cls])
    total.backward()
    assert torch.isfinite(total.detach())
    assert torch.equal(seg.grad[1], torch.zeros_like(seg.grad[1]))
    assert seg.grad[0].abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    assert net.cls_head.weight.grad.abs().sum() > 0 and net.encoder[0].weight.grad.abs().sum() > 0
    for p in weighting.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    if name == "imtl":
        assert weighting.last_alpha is not None and float(weighting.last_alpha.sum()) == pytest.approx(1.0, abs=1e-5)

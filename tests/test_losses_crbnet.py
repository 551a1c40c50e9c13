"""CRBNet losses (usseg_monai.losses.crbnet): hand-computed values, schedules, CAP cut-off, 3D, gradients, frames.

Expected values are written out from the formulas in the comments (plain arithmetic with ``math``), never by
calling the code under test. Tiny tensors only: the whole file runs in a few seconds on one CPU thread.
"""

from __future__ import annotations

import math

import pytest
import torch

from usseg_monai.losses import (
    CAPLoss,
    CRBNetLoss,
    CRBSLoss,
    IDMPSLoss,
    cap_active,
    estimate_caliper_frame,
    idmps_weight,
    soft_dice_loss,
)

S = 1e-5  # the reference's Dice smoothing
L3 = math.log(3.0)


def _two_class_logits(fg: list[list[float]]) -> torch.Tensor:
    """[1, 2, x, y] logits with background logit 0 and the given lesion logits: p_lesion = sigmoid(fg)."""
    fg_t = torch.tensor(fg, dtype=torch.float64)
    return torch.stack([torch.zeros_like(fg_t), fg_t])[None]


def _label(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)[None, None]


# lesion logits log 3, 0, -log 3 give lesion probabilities 3/4, 1/2, 1/4 (background logit 0)
FG = [[L3, 0.0], [-L3, L3]]  # p1 = [[.75, .5], [.25, .75]] at [x, y]
Y = [[1.0, 1.0], [0.0, 0.0]]  # lesion at x = 0


# ---------------------------------------------------------------------------------------------------------------
# Dice and CRBS
# ---------------------------------------------------------------------------------------------------------------
def test_soft_dice_hand_computed():
    p1 = torch.tensor([[0.8, 0.6], [0.2, 0.0]], dtype=torch.float64)
    probs = torch.stack([1 - p1, p1])[None]
    y1 = torch.tensor(Y, dtype=torch.float64)
    onehot = torch.stack([1 - y1, y1])[None]
    # lesion: sum p y = 1.4, sum p^2 = .64 + .36 + .04 = 1.04, sum y^2 = 2
    # background: p0 = [.2, .4, .8, 1], y0 = [0, 0, 1, 1]: sum p y = 1.8, sum p^2 = 1.84, sum y^2 = 2
    expected = 0.5 * ((1 - (2.8 + S) / (3.04 + S)) + (1 - (3.6 + S) / (3.84 + S)))
    assert float(soft_dice_loss(probs, onehot)) == pytest.approx(expected, abs=1e-12)
    # sums run over the whole batch (not a mean of per-image Dices): two copies double every sum
    doubled = 0.5 * ((1 - (5.6 + S) / (6.08 + S)) + (1 - (7.2 + S) / (7.68 + S)))
    assert float(soft_dice_loss(probs.repeat(2, 1, 1, 1), onehot.repeat(2, 1, 1, 1))) == pytest.approx(
        doubled, abs=1e-12
    )
    with pytest.raises(ValueError, match=r"\(1, 2, 2, 2\).*\(1, 2, 2, 3\)"):
        soft_dice_loss(probs, torch.zeros(1, 2, 2, 3, dtype=torch.float64))


def test_crbs_hand_computed_both_weightings():
    logits, y = _two_class_logits(FG), _label(Y)
    # per-pixel CE: (0,0) y=1 p1=.75 -> log 4/3; (0,1) y=1 p1=.5 -> log 2;
    #               (1,0) y=0 p0=.75 -> log 4/3; (1,1) y=0 p0=.25 -> log 4
    # Dice: lesion p1=[.75,.5,.25,.75], y1=[1,1,0,0]: spy = 1.25, sp2 = 1.4375, sy2 = 2
    #       background p0=[.25,.5,.75,.25], y0=[0,0,1,1]: spy = 1.0, sp2 = .9375, sy2 = 2
    dice = 0.5 * ((1 - (2.5 + S) / (3.4375 + S)) + (1 - (2.0 + S) / (2.9375 + S)))
    l43, l2, l4 = math.log(4 / 3), math.log(2), math.log(4)
    # weights [1, 3] (radical branch): weighted mean over pixels, weight of each pixel's true class
    ce_radical = (3 * l43 + 3 * l2 + 1 * l43 + 1 * l4) / (3 + 3 + 1 + 1)
    # weights [3, 1] (conservative branch)
    ce_conservative = (1 * l43 + 1 * l2 + 3 * l43 + 3 * l4) / (1 + 1 + 3 + 3)
    assert float(CRBSLoss([1, 3])(logits, y)) == pytest.approx(ce_radical + dice, abs=1e-10)
    assert float(CRBSLoss([3, 1])(logits, y)) == pytest.approx(ce_conservative + dice, abs=1e-10)
    # the two parts can be re-weighted; the reference adds them with weight 1 each
    assert float(CRBSLoss([1, 3], ce_weight=0.0)(logits, y)) == pytest.approx(dice, abs=1e-10)
    # integer labels work the same as float ones
    assert float(CRBSLoss([1, 3])(logits, y.long())) == pytest.approx(ce_radical + dice, abs=1e-10)


# ---------------------------------------------------------------------------------------------------------------
# CAP
# ---------------------------------------------------------------------------------------------------------------
def test_cap_axis_hand_computed_reference_formula():
    logits = _two_class_logits(FG)  # p1 = [[.75, .5], [.25, .75]], p0 = 1 - p1
    axes = _label(Y)  # a caliper along y at x = 0
    # onto axis 0 (max over y): p0 = [.5, .75], p1 = [.75, .75], a = [1, 0]
    #   reference Dice: 2 sum_c p_c a = 2 (.5 + .75) = 2.5; sum p^2 = .25 + 3 * .5625 = 1.9375; sum a^2 = 1
    # onto axis 1 (max over x): p0 = [.75, .5], p1 = [.75, .75], a = [1, 1]
    #   2 sum_c p_c a = 2 (1.5 + 1.25) = 5.5; sum p^2 = 1.9375; sum a^2 = 2  (the reference's Dice can go below 0:
    #   the single-channel target meets both channels in the numerator but is counted once in the denominator)
    expected = (1 - (2.5 + S) / (2.9375 + S)) + (1 - (5.5 + S) / (3.9375 + S))
    assert float(CAPLoss("axis")(logits, axes)) == pytest.approx(expected, abs=1e-10)
    assert expected < 0
    # lesion channel only: axis 0: p1 = [.75, .75], a = [1, 0]; axis 1: p1 = [.75, .75], a = [1, 1]
    expected_fg = (1 - (1.5 + S) / (2.125 + S)) + (1 - (3.0 + S) / (3.125 + S))
    assert float(CAPLoss("axis", include_background=False)(logits, axes)) == pytest.approx(expected_fg, abs=1e-10)


def test_cap_empty_axis_mask_is_finite_and_matches_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 4, requires_grad=True)
    axes = torch.zeros(2, 1, 5, 4)
    p = torch.softmax(logits.detach(), 1)
    # the target profiles are zero: each axis gives 1 - s / (sum p_proj^2 + s)
    expected = sum(1 - S / (float((p.amax(dim=d) ** 2).sum()) + S) for d in (3, 2))
    for projection in ("axis", "caliper_frame"):
        loss = CAPLoss(projection)(logits, axes)
        assert torch.isfinite(loss)
        assert loss.item() == pytest.approx(expected, rel=1e-5)
        (g,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(g).all()


def test_cap_3d_three_projections():
    # a 3D box prediction exactly spanning the calipers' extents: each of the 3 lesion-channel Dices is ~0;
    # an all-background prediction: each is ~1, total ~3
    axes = torch.zeros(1, 1, 7, 6, 5)
    axes[0, 0, 1:6, 3, 2] = 1  # caliper along x: x in [1, 5]
    axes[0, 0, 3, 1:5, 2] = 1  # along y: y in [1, 4]
    axes[0, 0, 3, 3, 1:4] = 1  # along z: z in [1, 3]
    fg = torch.full((7, 6, 5), -30.0)
    fg[1:6, 1:5, 1:4] = 30.0
    good = torch.stack([torch.zeros_like(fg), fg])[None]
    bad = torch.stack([torch.zeros_like(fg), torch.full_like(fg, -30.0)])[None]
    cap = CAPLoss("axis", include_background=False)
    assert float(cap(good, axes)) == pytest.approx(0.0, abs=1e-5)
    # all background: per axis 1 - s / (0 + n_a + s) with n_a the extent in voxels (5, 4, 3)
    assert float(cap(bad, axes)) == pytest.approx(sum(1 - S / (n + S) for n in (5, 4, 3)), abs=1e-6)
    assert float(cap(bad, axes)) == pytest.approx(3.0, abs=1e-5)
    # the caliper frame of an axis-aligned 3D cross that bisects itself is a signed permutation: same value
    axes_sym = torch.zeros(1, 1, 7, 7, 7)
    axes_sym[0, 0, 1:6, 3, 3] = 1
    axes_sym[0, 0, 3, 2:5, 3] = 1
    axes_sym[0, 0, 3, 3, 3:4] = 1
    torch.manual_seed(1)
    logits = torch.randn(1, 2, 7, 7, 7)
    for bg in (True, False):
        a = float(CAPLoss("axis", include_background=bg)(logits, axes_sym))
        f = float(CAPLoss("caliper_frame", include_background=bg)(logits, axes_sym))
        assert f == pytest.approx(a, abs=1e-6)


def _cross_2d(shape, long_pts, short_pts) -> torch.Tensor:
    axes = torch.zeros(1, 1, *shape)
    for x, y in list(long_pts) + list(short_pts):
        axes[0, 0, x, y] = 1
    return axes


def test_caliper_frame_equals_axis_for_axis_aligned_cross():
    # long caliper along y (x = 5, y in 1..9), short along x (y = 5, x in 3..7), bisecting: 11 x 12 image
    axes = _cross_2d((11, 12), [(5, y) for y in range(1, 10)], [(x, 5) for x in range(3, 8)])
    centre, frame = estimate_caliper_frame(axes[0, 0])
    assert centre.tolist() == [5.0, 5.0]
    assert frame.abs().tolist() == [[0.0, 1.0], [1.0, 0.0]]  # long axis (y) first
    torch.manual_seed(2)
    logits = torch.randn(3, 2, 11, 12)
    axes3 = axes.repeat(3, 1, 1, 1)
    for bg in (True, False):
        a = float(CAPLoss("axis", include_background=bg)(logits, axes3))
        f = float(CAPLoss("caliper_frame", include_background=bg)(logits, axes3))
        assert f == pytest.approx(a, abs=1e-6)


def test_caliper_frame_is_right_for_a_45_degree_cross():
    c = 8
    long_pts = [(c + k, c + k) for k in range(-5, 6)]  # along (1, 1): length 10 sqrt 2
    short_pts = [(c + k, c - k) for k in range(-3, 4)]  # along (1, -1): length 6 sqrt 2
    axes = _cross_2d((17, 17), long_pts, short_pts)
    centre, frame = estimate_caliper_frame(axes[0, 0])
    assert centre.tolist() == [8.0, 8.0]
    r = 1 / math.sqrt(2)
    assert frame[:, 0].abs().tolist() == pytest.approx([r, r], abs=1e-9)  # long caliper first
    assert frame[:, 1].abs().tolist() == pytest.approx([r, r], abs=1e-9)
    assert float(frame[0, 1] * frame[1, 1]) < 0  # the short one along (1, -1)

    xs, ys = torch.meshgrid(torch.arange(17.0), torch.arange(17.0), indexing="ij")
    u, v = ((xs - c) + (ys - c)) * r, ((ys - c) - (xs - c)) * r
    # extents of the cross in the frame, in whole pixels: u in round(k sqrt 2), k = -5..5 -> [-7, 7];
    # v in round(k sqrt 2), k = -3..3 -> [-4, 4]
    rect = (torch.round(u).abs() <= 7) & (torch.round(v).abs() <= 4)  # the lesion the calipers describe
    square = (xs >= 3) & (xs <= 13) & (ys >= 3) & (ys <= 13)  # what image-axis extents describe

    def logits_of(mask):
        fg = torch.where(mask, 30.0, -30.0)
        return torch.stack([torch.zeros_like(fg), fg])[None]

    frame_fg = CAPLoss("caliper_frame", include_background=False)
    axis_fg = CAPLoss("axis", include_background=False)
    # the oriented lesion matches the calipers' extents along the frame exactly
    assert float(frame_fg(logits_of(rect), axes)) == pytest.approx(0.0, abs=1e-5)
    # the axis-aligned square matches the image-axis extents, but along v it spans [-7, 7] (15 bins) against
    # the short caliper's 9: Dice 2 * 9 / (15 + 9) -> loss 0.25
    assert float(axis_fg(logits_of(square), axes)) == pytest.approx(0.0, abs=1e-5)
    assert float(frame_fg(logits_of(square), axes)) == pytest.approx(1 - 18 / 24, abs=1e-5)
    # and the axis projection wrongly penalises the oriented lesion
    assert float(axis_fg(logits_of(rect), axes)) > 0.2
    # so the two projections differ on oblique calipers
    torch.manual_seed(3)
    z = torch.randn(1, 2, 17, 17)
    assert abs(float(CAPLoss("caliper_frame")(z, axes)) - float(CAPLoss("axis")(z, axes))) > 1e-3


# ---------------------------------------------------------------------------------------------------------------
# IDMPS
# ---------------------------------------------------------------------------------------------------------------
RADICAL = [[1.0, 1.0], [1.0, 0.0]]
CONSERVATIVE = [[1.0, 0.0], [0.0, 0.0]]  # ring M = radical - conservative = [[0, 1], [1, 0]]


def test_idmps_hand_computed_on_the_ring():
    z1 = _two_class_logits(FG)  # p1 lesion = [[.75, .5], [.25, .75]]
    z2 = _two_class_logits([[-L3, L3], [-L3, -L3]])  # p2 lesion = [[.25, .75], [.25, .25]]
    yr, yc = _label(RADICAL), _label(CONSERVATIVE)
    # beta = .5: mixed lesion prob on the ring: (0,1) .625 -> Yhat 1; (1,0) .25 -> Yhat 0
    # branch 1: (0,1) p1 = .5 -> log 2; (1,0) p0 = .75 -> log 4/3; branch 2: (0,1) p2 = .75, (1,0) p0 = .75
    l1, l2 = IDMPSLoss()(z1, z2, yr, yc, beta=0.5)
    assert float(l1) == pytest.approx((math.log(2) + math.log(4 / 3)) / (2 + 1e-16), abs=1e-12)
    assert float(l2) == pytest.approx((2 * math.log(4 / 3)) / (2 + 1e-16), abs=1e-12)
    # beta = 1: Yhat = argmax p1; on the ring (0,1) is a tie .5/.5 -> argmax takes background (index 0)
    l1, l2 = IDMPSLoss()(z1, z2, yr, yc, beta=1.0)
    assert float(l1) == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, abs=1e-12)
    assert float(l2) == pytest.approx((math.log(4) + math.log(4 / 3)) / 2, abs=1e-12)


def test_idmps_right_on_ring_wrong_elsewhere_is_zero():
    yr, yc = _label(RADICAL), _label(CONSERVATIVE)
    ring = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # on the ring both branches say lesion with logit 20; off the ring they disagree (+8 vs -8) and branch 1
    # calls the conservative core background: wrong everywhere off the ring
    fg1 = torch.where(ring > 0, 20.0, torch.tensor([[-8.0, 0.0], [0.0, 8.0]]))
    fg2 = torch.where(ring > 0, 20.0, torch.tensor([[8.0, 0.0], [0.0, -8.0]]))
    z1 = torch.stack([torch.zeros(2, 2), fg1])[None].double().requires_grad_(True)
    z2 = torch.stack([torch.zeros(2, 2), fg2])[None].double().requires_grad_(True)
    l1, l2 = IDMPSLoss()(z1, z2, yr, yc, beta=0.3)
    # CE on the ring = log(1 + e^-20) ~ 2.1e-9 per voxel
    assert l1.item() == pytest.approx(math.log1p(math.exp(-20)), rel=1e-4)
    assert l1.item() < 1e-8 and l2.item() < 1e-8
    # off-ring voxels get no gradient at all
    g1, g2 = torch.autograd.grad(l1 + l2, (z1, z2))
    assert torch.all(g1[0, :, ring == 0] == 0) and torch.all(g2[0, :, ring == 0] == 0)
    # control: the same predictions with the whole image as ring are far from 0 (the disagreement is seen)
    l1_all, l2_all = IDMPSLoss()(z1, z2, torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), beta=0.3)
    assert l1_all.item() + l2_all.item() > 1.0
    # an empty ring gives exactly 0 (the 1e-16 guard), not NaN
    l1_e, _ = IDMPSLoss()(z1, z2, yc, yc, beta=0.3)
    assert l1_e.item() == 0.0


def test_idmps_pseudo_label_carries_no_gradient():
    torch.manual_seed(4)
    z1 = torch.randn(2, 2, 4, 3, requires_grad=True)
    z2 = torch.randn(2, 2, 4, 3, requires_grad=True)
    yr = torch.zeros(2, 1, 4, 3)
    yr[:, :, :3] = 1
    yc = torch.zeros(2, 1, 4, 3)
    yc[:, :, 1:2] = 1
    l1, l2 = IDMPSLoss()(z1, z2, yr, yc, beta=0.6)
    # L1 depends on z2 only through the pseudo-label: no gradient may reach z2
    g = torch.autograd.grad(l1, (z1, z2), allow_unused=True)
    assert g[1] is None or torch.all(g[1] == 0)
    # and L1's gradient is the plain CE gradient towards a fixed target: (p1 - onehot(Yhat)) M / sum M
    with torch.no_grad():
        p1, p2 = torch.softmax(z1, 1), torch.softmax(z2, 1)
        yhat = (0.6 * p1 + 0.4 * p2).argmax(1)
        m = (yr - yc)[:, 0]
        onehot = torch.stack([(yhat == 0).double(), (yhat == 1).double()], 1).float()
        expected = (p1 - onehot) * m[:, None] / m.sum()
    torch.testing.assert_close(g[0], expected, atol=1e-6, rtol=1e-5)


def test_idmps_beta_from_torch_rng():
    z = torch.zeros(1, 2, 2, 2)
    y = torch.zeros(1, 1, 2, 2)
    torch.manual_seed(7)
    _, _, b1 = IDMPSLoss().terms(z, z, y, y)
    torch.manual_seed(7)
    _, _, b2 = IDMPSLoss().terms(z, z, y, y)
    _, _, b3 = IDMPSLoss().terms(z, z, y, y)
    assert float(b1) == float(b2) and float(b1) != float(b3)
    assert 0.0 < float(b1) <= 1.0
    with pytest.raises(ValueError, match="beta"):
        IDMPSLoss()(z, z, y, y, beta=1.5)


# ---------------------------------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------------------------------
def _reference_lambda(t: int) -> float:
    # train_IDAMP.py: 0.1 * sigmoid_rampup(iter_num // 150, 200) = 0.1 exp(-5 (1 - min(t // 150, 200) / 200)^2)
    phase = 1.0 - min(t // 150, 200) / 200
    return 0.1 * math.exp(-5.0 * phase * phase)


def test_idmps_weight_start_middle_end_and_reference_equality():
    assert idmps_weight(0, 30000) == 0.1 * math.exp(-5.0)  # start: ~6.7e-4
    assert idmps_weight(15000, 30000) == 0.1 * math.exp(-5.0 * 0.25)  # middle: stage 100 of 200
    assert idmps_weight(30000, 30000) == 0.1  # end
    assert idmps_weight(29999, 30000) == 0.1 * math.exp(-5 * (1 / 200) ** 2)
    for t in [0, 1, 149, 150, 151, 299, 300, 9999, 10000, 10001, 14999, 15000, 29849, 29850, 29999, 30000, 45000]:
        assert idmps_weight(t, 30000) == _reference_lambda(t), t
    for t in range(0, 30001, 37):
        assert idmps_weight(t, 30000) == _reference_lambda(t), t
    # a short run has the same shape: total 30 -> step length 0.15 iterations
    assert idmps_weight(15, 30) == 0.1 * math.exp(-5.0 * 0.25)
    assert idmps_weight(30, 30) == 0.1
    # ramp over half the run: full weight from iteration 15000 on
    assert idmps_weight(14999, 30000, ramp_fraction=0.5) < 0.1 == idmps_weight(15000, 30000, ramp_fraction=0.5)
    assert idmps_weight(100, 30000, max_weight=1.0) == math.exp(-5.0)
    with pytest.raises(ValueError, match="total_iterations"):
        idmps_weight(0, 0)


def test_cap_active_boundary():
    assert cap_active(10000, 30000) and not cap_active(10001, 30000)
    assert cap_active(0, 30000)
    # the bundle writes 1/3 as a float literal: still exactly 10000
    assert cap_active(10000, 30000, 0.3333333333333333) and not cap_active(10001, 30000, 0.3333333333333333)
    assert cap_active(10, 30) and not cap_active(11, 30)
    assert cap_active(0, 1) and not cap_active(1, 1)
    assert cap_active(3, 10, 0.3) and not cap_active(4, 10, 0.3)
    assert cap_active(30000, 30000, 1.0) and not cap_active(1, 30000, 0.0)


# ---------------------------------------------------------------------------------------------------------------
# total loss
# ---------------------------------------------------------------------------------------------------------------
def _toy(spatial=(8, 8), batch=2, seed=5, grad=False):
    torch.manual_seed(seed)
    z1 = torch.randn(batch, 2, *spatial, requires_grad=grad)
    z2 = torch.randn(batch, 2, *spatial, requires_grad=grad)
    yr = torch.zeros(batch, 1, *spatial)
    yc = torch.zeros(batch, 1, *spatial)
    ax = torch.zeros(batch, 1, *spatial)
    inner = tuple(slice(1, n - 1) for n in spatial)
    core = tuple(slice(2, n - 2) for n in spatial)
    yr[(slice(None), slice(None), *inner)] = 1
    yc[(slice(None), slice(None), *core)] = 1
    mid = [n // 2 for n in spatial]
    for d, n in enumerate(spatial):
        idx = [slice(None), slice(None)] + list(mid)
        idx[2 + d] = slice(1, n - 1)
        ax[tuple(idx)] = 1
    return z1, z2, yr, yc, ax


def test_crbnet_total_is_the_sum_of_its_terms_and_cap_switches_off():
    z1, z2, yr, yc, ax = _toy()
    loss = CRBNetLoss()
    on = loss(z1, z2, yr, yc, ax, iteration=10000, total_iterations=30000, beta=0.4)
    off = loss(z1, z2, yr, yc, ax, iteration=10001, total_iterations=30000, beta=0.4)
    lam = 0.1 * math.exp(-5 * (1 - 66 / 200) ** 2)  # floor(10000 / 150) = floor(10001 / 150) = 66
    assert float(on["idmps_weight"]) == pytest.approx(lam) and float(off["idmps_weight"]) == pytest.approx(lam)
    assert float(on["cap_weight"]) == pytest.approx(0.3) and float(off["cap_weight"]) == 0.0
    for out, w in ((on, 0.3), (off, 0.0)):
        manual = (out["crbs_radical"] + out["crbs_conservative"] + w * (out["cap_radical"] + out["cap_conservative"])
                  + lam * (out["idmps_radical"] + out["idmps_conservative"]))
        assert float(out["loss"]) == pytest.approx(float(manual), rel=1e-6)
        assert float(out["beta"]) == pytest.approx(0.4)
        for k, v in out.items():
            if k != "loss":
                assert not v.requires_grad and v.ndim == 0, k
    # crossing the boundary removes exactly 0.3 (CAP1 + CAP2)
    cap = CAPLoss()
    expected_drop = 0.3 * (float(cap(z1, ax)) + float(cap(z2, ax)))
    assert float(on["loss"]) - float(off["loss"]) == pytest.approx(expected_drop, rel=1e-5)
    assert abs(expected_drop) > 1e-3
    # the same boundary in a short run (total 30 -> iteration 10)
    short_on = loss(z1, z2, yr, yc, ax, iteration=10, total_iterations=30, beta=0.4)
    short_off = loss(z1, z2, yr, yc, ax, iteration=11, total_iterations=30, beta=0.4)
    assert float(short_on["cap_weight"]) == pytest.approx(0.3) and float(short_off["cap_weight"]) == 0.0


def test_crbnet_gradients_reach_both_branches_2d_and_3d():
    for spatial in ((8, 8), (6, 6, 5)):
        z1, z2, yr, yc, ax = _toy(spatial, grad=True)
        for projection in ("axis", "caliper_frame"):
            out = CRBNetLoss(cap_projection=projection)(z1, z2, yr, yc, ax, iteration=5, total_iterations=30)
            g1, g2 = torch.autograd.grad(out["loss"], (z1, z2))
            assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
            assert g1.abs().sum() > 0 and g2.abs().sum() > 0
            assert torch.isfinite(g1).all() and torch.isfinite(g2).all()
            assert float(out["cap_radical"]) != 0.0


def test_crbnet_branch_weights_follow_the_reference():
    loss = CRBNetLoss()
    assert loss.crbs_radical.class_weights.tolist() == [1.0, 3.0]
    assert loss.crbs_conservative.class_weights.tolist() == [3.0, 1.0]
    z1, z2, yr, yc, ax = _toy()
    out = loss(z1, z2, yr, yc, ax, iteration=0, total_iterations=10, beta=0.5)
    assert float(out["crbs_radical"]) == pytest.approx(float(CRBSLoss([1, 3])(z1, yr)))
    assert float(out["crbs_conservative"]) == pytest.approx(float(CRBSLoss([3, 1])(z2, yc)))


def test_input_validation_messages():
    z1, z2, yr, yc, ax = _toy()
    loss = CRBNetLoss()
    with pytest.raises(ValueError, match=r"radical_label.*\(2, 1, 8, 8\).*\(2, 2, 8, 8\).*\(2, 1, 8, 7\)"):
        loss(z1, z2, yr[..., :7], yc, ax, iteration=0, total_iterations=10)
    with pytest.raises(ValueError, match=r"logits1 \(2, 2, 8, 8\) and logits2 \(2, 2, 8, 7\)"):
        loss(z1, z2[..., :7], yr, yc, ax, iteration=0, total_iterations=10)
    with pytest.raises(ValueError, match="C = 3"):
        CRBSLoss([1, 3])(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="2D or 3D"):
        CAPLoss()(torch.zeros(1, 2, 4), torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="caliper_axes"):
        CAPLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="projection"):
        CAPLoss("oblique")
    with pytest.raises(ValueError, match="class_weights"):
        CRBSLoss([1, 2, 3])

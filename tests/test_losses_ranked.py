"""CRII-Net losses: Intra-/Inter-Patch Ranked Losses (hand-computed examples) and the coarse-refined consistency.

Scores in the hand examples are given as probabilities (``activation="none"``, channel 1 = lesion score) and
written in the project's ``(x, y)`` index order; patches are numbered in C order of their grid position.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from usseg_monai.losses.consistency import CoarseRefinedConsistencyLoss, sharpen
from usseg_monai.losses.ranked import InterPatchRankedLoss, IntraPatchRankedLoss, lesion_scores, patchify


def _probs(scores) -> torch.Tensor:
    """``[B, 2, *spatial]`` probabilities (background, lesion) from lesion scores ``[B, *spatial]``."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    return torch.stack([1 - s, s], dim=1)


def _labels(labels) -> torch.Tensor:
    return torch.as_tensor(labels, dtype=torch.float64).unsqueeze(1)


# ---- patches ---------------------------------------------------------------------------------------------------


def test_patchify_order_and_padding_2d_3d():
    x = torch.arange(4 * 6, dtype=torch.float32).reshape(1, 4, 6)  # x = 4, y = 6
    p = patchify(x, (2, 3))
    assert p.shape == (1, 4, 6)
    torch.testing.assert_close(p[0, 0], torch.tensor([0.0, 1, 2, 6, 7, 8]))  # x 0-1, y 0-2
    torch.testing.assert_close(p[0, 1], torch.tensor([3.0, 4, 5, 9, 10, 11]))  # x 0-1, y 3-5
    torch.testing.assert_close(p[0, 2], torch.tensor([12.0, 13, 14, 18, 19, 20]))  # x 2-3, y 0-2
    # 5 x 6 with 2 x 4 patches: 3 x 2 patches, the last row/column padded with the pad value
    p = patchify(torch.ones(2, 5, 6), (2, 4), pad_value=-1.0)
    assert p.shape == (2, 6, 8)
    assert (p == 1).sum().item() == 2 * 30 and (p == -1).sum().item() == 2 * (48 - 30)
    v = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    p3 = patchify(v, 2)
    assert p3.shape == (2, 8, 8)
    torch.testing.assert_close(p3[1, 7], v[1, 2:, 2:, 2:].reshape(-1))
    with pytest.raises(ValueError, match="patch_size"):
        patchify(v, (2, 2))


def test_lesion_scores_activations_and_errors():
    z = torch.randn(2, 2, 4, 4)
    torch.testing.assert_close(lesion_scores(z), torch.softmax(z, 1)[:, 1])
    torch.testing.assert_close(lesion_scores(z[:, :1], "sigmoid", 0), torch.sigmoid(z[:, 0]))
    torch.testing.assert_close(lesion_scores(z, "none"), z[:, 1])
    with pytest.raises(ValueError, match="softmax.*2 channels"):
        lesion_scores(z[:, :1])
    with pytest.raises(ValueError, match="lesion_channel 1 is out of range"):
        lesion_scores(z[:, :1], "sigmoid")
    with pytest.raises(ValueError, match="activation"):
        lesion_scores(z, "relu")


# ---- Intra-Patch Ranked Loss -----------------------------------------------------------------------------------

#: one 4 x 4 image (x, y), 2 x 2 patches: patch 0 (x 0-1, y 0-1) lesion scores 0.9 0.6 / 0.4 0.2 with the x = 0
#: pixels lesion; patch 1 (x 0-1, y 2-3) one lesion pixel scored 0.8 among 0.3 0.1 0.5; patch 2 all background;
#: patch 3 all lesion (neither is mixed).
INTRA_SCORES = [
    [
        [0.9, 0.6, 0.3, 0.8],
        [0.4, 0.2, 0.1, 0.5],
        [0.7, 0.1, 0.9, 0.2],
        [0.3, 0.3, 0.4, 0.1],
    ]
]
INTRA_LABELS = [
    [
        [1, 1, 0, 1],
        [0, 0, 0, 0],
        [0, 0, 1, 1],
        [0, 0, 1, 1],
    ]
]
# margin 0.5. patch 0: pairs (0.9, 0.4) 0, (0.9, 0.2) 0, (0.6, 0.4) 0.3, (0.6, 0.2) 0.1 -> 0.4 / 4 = 0.1
# patch 1: (0.8, 0.3) 0, (0.8, 0.1) 0, (0.8, 0.5) 0.2 -> 0.2 / 3
INTRA_PER_PATCH = [0.1, 0.2 / 3]


def test_intra_hand_computed_example():
    x, y = _probs(INTRA_SCORES), _labels(INTRA_LABELS)
    none = IntraPatchRankedLoss(patch_size=2, margin=0.5, activation="none", reduction="none")(x, y)
    torch.testing.assert_close(none, torch.tensor(INTRA_PER_PATCH, dtype=torch.float64))
    mean = IntraPatchRankedLoss(patch_size=2, margin=0.5, activation="none")(x, y)
    torch.testing.assert_close(mean, torch.tensor((0.1 + 0.2 / 3) / 2, dtype=torch.float64))
    total = IntraPatchRankedLoss(patch_size=2, margin=0.5, activation="none", reduction="sum")(x, y)
    torch.testing.assert_close(total, torch.tensor(0.1 + 0.2 / 3, dtype=torch.float64))
    # 0/255 labels are binarised the same way
    torch.testing.assert_close(
        IntraPatchRankedLoss(patch_size=2, margin=0.5, activation="none")(x, y * 255), mean
    )


def test_intra_3d_equals_2d_with_flat_patches():
    x2, y2 = _probs(INTRA_SCORES), _labels(INTRA_LABELS)
    loss = IntraPatchRankedLoss(patch_size=(2, 2, 1), margin=0.5, activation="none", reduction="none")
    expected_2d = torch.tensor(INTRA_PER_PATCH, dtype=torch.float64)
    torch.testing.assert_close(loss(x2.unsqueeze(-1), y2.unsqueeze(-1)), expected_2d)
    # a 2 x 2 x 2 patch, margin 0.5: the lesion voxel scores 0.7, the 7 background ones 0.1 0.2 0.3 0.4 0.5 0.6
    # 0.6: hinges max(0, b - 0.2) = 0, 0, 0.1, 0.2, 0.3, 0.4, 0.4 -> 1.4 / 7 = 0.2
    s = torch.tensor([0.7, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6], dtype=torch.float64).reshape(1, 2, 2, 2)
    lab = torch.zeros(1, 2, 2, 2)
    lab[0, 0, 0, 0] = 1
    expected = (0.0 + 0.0 + 0.1 + 0.2 + 0.3 + 0.4 + 0.4) / 7
    out = IntraPatchRankedLoss(patch_size=2, margin=0.5, activation="none")(_probs(s), lab.unsqueeze(1))
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


def test_intra_perfectly_ranked_patch_is_zero_with_zero_gradient():
    s = torch.tensor([[[0.9, 0.95], [0.3, 0.0]]], dtype=torch.float64)  # lesion row 0.9, 0.95; background <= 0.3
    x = _probs(s).requires_grad_(True)
    y = _labels([[[1, 1], [0, 0]]])
    loss = IntraPatchRankedLoss(patch_size=2, margin=0.6, activation="none")(x, y)
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum().item() == 0.0


def test_intra_no_mixed_patch_zero_gradient_safe():
    z = torch.randn(2, 2, 8, 8, requires_grad=True)
    for labels in (torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)):
        loss = IntraPatchRankedLoss(patch_size=4)(z, labels)
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum().item() == 0.0
    empty = IntraPatchRankedLoss(patch_size=4, reduction="none")(z, torch.zeros(2, 1, 8, 8))
    assert empty.shape == (0,)


def _brute_force_intra(
    scores: torch.Tensor, labels: torch.Tensor, patch: tuple[int, int], margin: float
) -> torch.Tensor:
    """Per mixed patch, the mean hinge over every (lesion, background) pair, by explicit loops (2D, ``[B, x, y]``)."""
    out = []
    px, py = patch
    for b in range(scores.shape[0]):
        for i in range(0, scores.shape[1], px):
            for j in range(0, scores.shape[2], py):
                s = scores[b, i : i + px, j : j + py].reshape(-1)
                g = labels[b, i : i + px, j : j + py].reshape(-1) > 0
                if g.any() and (~g).any():
                    h = [max(0.0, margin - (float(f) - float(k))) for f in s[g] for k in s[~g]]
                    out.append(sum(h) / len(h))
    return torch.tensor(out, dtype=torch.float64)


def test_intra_exact_when_pairs_under_the_bound():
    """2 x 12 x 10 images, 4 x 5 patches (20 px: at most 100 pairs), max_pairs 100: every pair, seed-independent."""
    g = torch.Generator().manual_seed(3)
    s = torch.rand(2, 12, 10, generator=g, dtype=torch.float64)
    lab = (torch.rand(2, 12, 10, generator=g) > 0.6).double()
    loss = IntraPatchRankedLoss(patch_size=(4, 5), margin=0.3, max_pairs=100, activation="none", reduction="none")
    torch.manual_seed(0)
    a = loss(_probs(s), lab.unsqueeze(1))
    torch.manual_seed(1)
    b = loss(_probs(s), lab.unsqueeze(1))
    torch.testing.assert_close(a, b)
    ref = _brute_force_intra(s, lab, (4, 5), 0.3)
    assert ref.numel() >= 4
    torch.testing.assert_close(a, ref)


def test_intra_sampling_respects_the_bound_and_is_unbiased():
    """One lesion pixel per 4 x 4 patch (15 pairs) whose hinge is 1 against one background pixel, 0 otherwise.

    Exact per-patch value: 1 / 15. With max_pairs = 4 < 15 pairs, each patch's loss is a mean of exactly 4
    sampled pairs (a multiple of 1/4), and the mean over many patches estimates 1/15 without bias.
    """
    n = 400
    s = torch.full((n, 4, 4), 0.5, dtype=torch.float64)
    lab = torch.zeros(n, 4, 4)
    lab[:, 0, 0] = 1
    s[:, 0, 0] = 1.0
    s[:, 3, 3] = 1.0  # one background pixel scored like the lesion: hinge 0.5; the others (0.5): hinge 0
    loss = IntraPatchRankedLoss(patch_size=4, margin=0.5, max_pairs=4, activation="none", reduction="none")
    torch.manual_seed(0)
    per_patch = loss(_probs(s), lab.unsqueeze(1))
    assert per_patch.shape == (n,)
    quarters = per_patch * 4 / 0.5  # hinge is 0.5 on the hard pair, 0 on the others
    torch.testing.assert_close(quarters, quarters.round())
    assert set(quarters.round().long().tolist()) <= {0, 1, 2, 3, 4}
    assert abs(per_patch.mean().item() - 0.5 / 15) < 0.012  # binomial s.d. of the mean ~ 0.0031
    exact = IntraPatchRankedLoss(patch_size=4, margin=0.5, max_pairs=15, activation="none", reduction="none")
    expected = torch.full((3,), 0.5 / 15, dtype=torch.float64)
    torch.testing.assert_close(exact(_probs(s[:3]), lab[:3].unsqueeze(1)), expected)


def test_intra_logits_gradient_and_border_patches():
    torch.manual_seed(0)
    z = torch.randn(2, 2, 20, 18, requires_grad=True)  # not multiples of 8: border patches are smaller
    lab = torch.zeros(2, 1, 20, 18)
    lab[:, :, 5:17, 4:15] = 1
    loss = IntraPatchRankedLoss(patch_size=8, max_pairs=64)(z, lab)
    assert 0 < loss.item() < 1
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    # only pixels of mixed patches get a gradient: the all-lesion interior and all-background patches do not
    grad_px = z.grad.abs().sum(1)[0]
    assert grad_px[0:8, 0:8].sum() > 0  # patch (0, 0) holds x 5-7, y 4-7 lesion
    assert grad_px[16:20, 16:18].sum() == 0  # border patch, all background


def test_intra_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="max_pairs"):
        IntraPatchRankedLoss(max_pairs=0)
    with pytest.raises(ValueError, match="margin"):
        IntraPatchRankedLoss(margin=-0.1)
    with pytest.raises(ValueError, match="patch_size"):
        IntraPatchRankedLoss(patch_size=0)
    with pytest.raises(ValueError, match="reduction"):
        IntraPatchRankedLoss(reduction="max")
    loss = IntraPatchRankedLoss(patch_size=4)
    with pytest.raises(ValueError, match="target must be"):
        loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="does not match"):
        loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 4))
    with pytest.raises(ValueError, match="3 value"):
        IntraPatchRankedLoss(patch_size=(2, 2, 2))(torch.zeros(1, 2, 8, 8), torch.zeros(1, 1, 8, 8))


# ---- Inter-Patch Ranked Loss -----------------------------------------------------------------------------------

#: two 4 x 4 images, 2 x 2 patches. Image 0: patch 0 all lesion, scores 0.9 0.8 / 0.7 0.6 (mean 0.75, positive);
#: patch 1 three lesion pixels, scores 0.5 0.5 / 0.5 0.1 (mean 0.4, positive at lesion_fraction 0.5); patch 2 one
#: lesion pixel (ignored); patch 3 background, mean 0.25. Image 1: background patches of means 0.1, 0.3, 0.05, 0.5.
INTER_SCORES = [
    [[0.9, 0.8, 0.5, 0.5], [0.7, 0.6, 0.5, 0.1], [0.9, 0.9, 0.2, 0.2], [0.9, 0.9, 0.3, 0.3]],
    [[0.1, 0.1, 0.3, 0.3], [0.1, 0.1, 0.3, 0.3], [0.05, 0.05, 0.5, 0.5], [0.05, 0.05, 0.5, 0.5]],
]
INTER_LABELS = [
    [[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]],
    [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
]


def test_inter_patch_scores():
    x, y = _probs(INTER_SCORES), _labels(INTER_LABELS)
    score, fraction = InterPatchRankedLoss(patch_size=2, activation="none").patch_scores(x, y)
    expected = torch.tensor([[0.75, 0.4, 0.9, 0.25], [0.1, 0.3, 0.05, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(score, expected)
    torch.testing.assert_close(fraction, torch.tensor([[1.0, 0.75, 0.25, 0.0], [0, 0, 0, 0]], dtype=torch.float64))


def test_inter_hand_computed_hardest_negatives():
    """Negatives 0.25, 0.1, 0.3, 0.05, 0.5; the 2 hardest: 0.5 and 0.3. Margin 0.5.

    positive 0.75: max(0, 0.5 - 0.25) = 0.25, max(0, 0.5 - 0.45) = 0.05 -> 0.15
    positive 0.40: max(0, 0.5 + 0.1) = 0.6,   max(0, 0.5 - 0.1) = 0.4   -> 0.5;  mean of the 4 pairs 0.325
    """
    x, y = _probs(INTER_SCORES), _labels(INTER_LABELS)
    kw = dict(patch_size=2, margin=0.5, lesion_fraction=0.5, hardest_negatives=2, activation="none")
    torch.testing.assert_close(InterPatchRankedLoss(**kw)(x, y), torch.tensor(0.325, dtype=torch.float64))
    torch.testing.assert_close(
        InterPatchRankedLoss(reduction="none", **kw)(x, y), torch.tensor([0.15, 0.5], dtype=torch.float64)
    )
    total = InterPatchRankedLoss(reduction="sum", **kw)(x, y)
    torch.testing.assert_close(total, torch.tensor(0.65, dtype=torch.float64))


def test_inter_all_negatives_and_lesion_fraction():
    """All 5 negatives: positive 0.75 -> (0 + 0 + 0.05 + 0 + 0.25) / 5 = 0.06; 0.40 -> (0.35 + 0.2 + 0.4 + 0.15 + 0.6)
    / 5 = 0.34; mean 0.2. At lesion_fraction 0.8 only the all-lesion patch is positive: 0.06."""
    x, y = _probs(INTER_SCORES), _labels(INTER_LABELS)
    kw = dict(patch_size=2, margin=0.5, hardest_negatives=None, activation="none")
    torch.testing.assert_close(InterPatchRankedLoss(**kw)(x, y), torch.tensor(0.2, dtype=torch.float64))
    torch.testing.assert_close(
        InterPatchRankedLoss(lesion_fraction=0.8, **kw)(x, y), torch.tensor(0.06, dtype=torch.float64)
    )
    # more hard negatives asked for than there are: all of them
    torch.testing.assert_close(
        InterPatchRankedLoss(patch_size=2, margin=0.5, hardest_negatives=50, activation="none")(x, y),
        torch.tensor(0.2, dtype=torch.float64),
    )


def test_inter_perfect_ranking_zero_and_no_pairs_zero():
    s = torch.zeros(1, 4, 4, dtype=torch.float64)
    s[0, :2] = 0.9
    lab = torch.zeros(1, 4, 4)
    lab[0, :2] = 1
    x = _probs(s).requires_grad_(True)
    loss = InterPatchRankedLoss(patch_size=2, margin=0.9, activation="none")(x, lab.unsqueeze(1))
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad.abs().sum().item() == 0.0
    z = torch.randn(2, 2, 8, 8, requires_grad=True)
    for labels in (torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)):  # no positive / no negative patch
        loss = InterPatchRankedLoss(patch_size=4)(z, labels)
        assert loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum().item() == 0.0
    assert InterPatchRankedLoss(patch_size=4, reduction="none")(z, torch.zeros(2, 1, 8, 8)).shape == (0,)


def test_inter_3d_pairs_across_the_batch_and_gradient_direction():
    """3D: image 0 holds only positive patches, image 1 only negatives: every pair crosses the batch."""
    torch.manual_seed(0)
    z = torch.zeros(2, 2, 4, 4, 4, requires_grad=True)
    lab = torch.zeros(2, 1, 4, 4, 4)
    lab[0] = 1  # image 0 all lesion (8 positive patches), image 1 all background (8 negative patches)
    loss = InterPatchRankedLoss(patch_size=2, margin=0.5, hardest_negatives=3)(z, lab)
    torch.testing.assert_close(loss, torch.tensor(0.5))  # softmax of zero logits: every patch scores 0.5
    loss.backward()
    # raising the lesion logit helps the positive image and hurts the negative one
    assert (z.grad[0, 1] < 0).all() and (z.grad[1, 1] >= 0).all() and z.grad[1, 1].sum() > 0
    # only the 3 hardest negatives of image 1 get a gradient: with all scores equal, 3 of its 8 patches
    touched = patchify(z.grad[1, 1].abs().unsqueeze(0), 2).sum(-1)[0] > 0
    assert touched.sum().item() == 3


def test_inter_bad_arguments():
    with pytest.raises(ValueError, match="lesion_fraction"):
        InterPatchRankedLoss(lesion_fraction=0.0)
    with pytest.raises(ValueError, match="hardest_negatives"):
        InterPatchRankedLoss(hardest_negatives=0)
    with pytest.raises(ValueError, match="activation"):
        InterPatchRankedLoss(activation="tanh")
    with pytest.raises(ValueError, match="input must be"):
        InterPatchRankedLoss()(torch.zeros(2, 8), torch.zeros(2, 8))


# ---- coarse-refined consistency --------------------------------------------------------------------------------


def test_sharpen_values():
    p = torch.tensor([[0.6, 0.4], [0.5, 0.5], [1.0, 0.0]]).T.unsqueeze(-1)  # [2 classes, 3, 1] -> dim 0
    out = sharpen(p, 0.5, dim=0)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([0.36 / 0.52, 0.16 / 0.52]))
    torch.testing.assert_close(out[:, 1, 0], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(out[:, 2, 0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(sharpen(p, 1.0, dim=0), p)
    flat = sharpen(torch.tensor([[0.9, 0.1]]), 1e6)
    torch.testing.assert_close(flat, torch.tensor([[0.5, 0.5]]), atol=1e-5, rtol=0)
    z = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(sharpen(torch.softmax(z, 1), 0.3), torch.softmax(z / 0.3, 1), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="temperature"):
        sharpen(p, 0.0)


def test_consistency_no_gradient_into_the_refined_branch():
    torch.manual_seed(0)
    for loss_name in ("mse", "ce"):
        coarse = torch.randn(2, 2, 8, 8, requires_grad=True)
        refined = torch.randn(2, 2, 8, 8, requires_grad=True)
        loss = CoarseRefinedConsistencyLoss(loss=loss_name)(coarse, refined)
        loss.backward()
        assert refined.grad is None, loss_name
        assert coarse.grad is not None and coarse.grad.abs().sum() > 0, loss_name
    # through a shared parameter too: only the coarse path carries gradient
    w = torch.tensor(2.0, requires_grad=True)
    base = torch.randn(1, 2, 4, 4)
    v = torch.tensor(3.0, requires_grad=True)
    CoarseRefinedConsistencyLoss()(base * w, base * v).backward()
    assert v.grad is None and w.grad is not None and w.grad != 0


def test_consistency_values_mse_ce_and_probability_inputs():
    coarse = torch.log(torch.tensor([0.7, 0.3])).reshape(1, 2, 1, 1)
    refined = torch.log(torch.tensor([0.6, 0.4])).reshape(1, 2, 1, 1)
    t = torch.tensor([0.36 / 0.52, 0.16 / 0.52])  # sharpen([0.6, 0.4], 0.5)
    mse = CoarseRefinedConsistencyLoss(temperature=0.5)(coarse, refined)
    torch.testing.assert_close(mse, ((torch.tensor([0.7, 0.3]) - t) ** 2).mean())
    ce = CoarseRefinedConsistencyLoss(temperature=0.5, loss="ce")(coarse, refined)
    torch.testing.assert_close(ce, -(t * torch.log(torch.tensor([0.7, 0.3]))).sum())
    for name in ("mse", "ce"):
        logits = CoarseRefinedConsistencyLoss(loss=name)(coarse, refined)
        probs = CoarseRefinedConsistencyLoss(loss=name, softmax=False)(coarse.exp(), refined.exp())
        torch.testing.assert_close(probs, logits)
    # "mean" of "mse" is F.mse_loss on the probability maps against the sharpened target
    z1, z2 = torch.randn(2, 2, 6, 6, 6), torch.randn(2, 2, 6, 6, 6)
    torch.testing.assert_close(
        CoarseRefinedConsistencyLoss(temperature=0.4)(z1, z2),
        F.mse_loss(torch.softmax(z1, 1), torch.softmax(z2 / 0.4, 1)),
    )


def test_consistency_mask_reductions_and_errors():
    z1, z2 = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    none = CoarseRefinedConsistencyLoss(reduction="none")(z1, z2)
    assert none.shape == (2, 1, 4, 4) and (none >= 0).all()
    torch.testing.assert_close(CoarseRefinedConsistencyLoss(reduction="sum")(z1, z2), none.sum())
    mask = torch.zeros(2, 1, 4, 4)
    mask[0] = 1
    torch.testing.assert_close(CoarseRefinedConsistencyLoss()(z1, z2, mask), none[0].sum() / none.numel())
    per_image = torch.tensor([1.0, 0.0]).reshape(2, 1, 1, 1)
    torch.testing.assert_close(CoarseRefinedConsistencyLoss()(z1, z2, per_image), none[0].sum() / none.numel())
    with pytest.raises(ValueError, match="same shape"):
        CoarseRefinedConsistencyLoss()(z1, z2[:, :, :2])
    with pytest.raises(ValueError, match="does not broadcast"):
        CoarseRefinedConsistencyLoss()(z1, z2, torch.ones(3, 1, 4, 4))
    with pytest.raises(ValueError, match="changes the loss map"):
        CoarseRefinedConsistencyLoss()(z1, z2, torch.ones(2, 3, 4, 4))
    with pytest.raises(ValueError, match="loss must be"):
        CoarseRefinedConsistencyLoss(loss="l1")
    with pytest.raises(ValueError, match="temperature"):
        CoarseRefinedConsistencyLoss(temperature=-1)


# ---- patch side as a fraction of the input (#16) -----------------------------------------------------------------


def test_resolve_patch_size_fraction_override_and_errors():
    from usseg_monai.losses.ranked import DEFAULT_PATCH_FRACTION, resolve_patch_size

    assert DEFAULT_PATCH_FRACTION == 0.0625
    assert [resolve_patch_size((s, s))[0] for s in (64, 128, 256)] == [4, 8, 16]
    assert resolve_patch_size((256, 128, 64)) == (16, 8, 4)  # anisotropic 3D: per axis
    assert resolve_patch_size((20, 1)) == (2, 2)  # never below 2
    assert resolve_patch_size((64, 64), patch_size=16, patch_fraction=0.5) == (16, 16)  # pixels win
    assert resolve_patch_size((10,) * 3, patch_size=None, patch_fraction=1.0) == (10, 10, 10)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"patch_fraction must be in \(0, 1\]"):
            resolve_patch_size((64, 64), patch_fraction=bad)
    with pytest.raises(ValueError, match="patch_fraction must be a number"):
        resolve_patch_size((64, 64), patch_fraction="0.1")
    with pytest.raises(ValueError, match="both are None"):
        resolve_patch_size((64, 64), patch_size=None, patch_fraction=None)
    with pytest.raises(ValueError, match="has 3 value"):
        resolve_patch_size((64, 64), patch_size=(4, 4, 4))
    with pytest.raises(ValueError, match="patch_size values must be >= 1"):
        resolve_patch_size((64, 64), patch_size=0)
    with pytest.raises(ValueError, match="whole number"):
        resolve_patch_size((64, 64), patch_size=2.5)
    with pytest.raises(ValueError, match="spatial sizes must be >= 1"):
        resolve_patch_size((64, 0))
    # the losses take the patch from their input's size: at 32 px the default fraction gives 2 px patches
    loss = IntraPatchRankedLoss(activation="none", reduction="none")
    assert loss.patch_shape((32, 32)) == (2, 2) and loss.patch_shape((64, 64, 32)) == (4, 4, 2)
    y = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    y[..., 0, 0] = 1.0  # one lesion pixel: one mixed 2 x 2 patch by the fraction, one mixed 16 x 16 by pixels
    s = torch.full((1, 32, 32), 0.9, dtype=torch.float64)  # background scores high, except next to the lesion
    s[0, :2, :2] = 0.1
    s[0, 0, 0] = 0.9
    # 2 x 2 patch: the lesion (0.9) is 0.8 above its 3 neighbours (0.1): every hinge is 0
    torch.testing.assert_close(loss(_probs(s), y), torch.zeros(1, dtype=torch.float64))
    # 16 x 16 patch: 252 of its 255 background pixels score as the lesion: 252 hinges of 0.5 (all 255 pairs exact)
    by_pixels = IntraPatchRankedLoss(patch_size=16, max_pairs=256, activation="none", reduction="none")
    torch.testing.assert_close(by_pixels(_probs(s), y), torch.tensor([252 * 0.5 / 255], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"InterPatchRankedLoss: patch_fraction must be in \(0, 1\]"):
        InterPatchRankedLoss(patch_fraction=0.0)

"""channel_argmax and AsDiscreteFast(d): the same results as torch.argmax and MONAI's AsDiscrete(d) (#20)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import AsDiscrete, AsDiscreted

from usseg_monai.transforms import AsDiscreteFast, AsDiscreteFastd
from usseg_monai.utils import channel_argmax

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


@pytest.mark.parametrize("shape,dim", [((8, 2, 16, 16), 1), ((3, 4, 5, 6, 7), 1), ((2, 9, 9), 0), ((5, 3), 1)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_channel_argmax_equals_torch_argmax_with_ties_and_nan(shape, dim, keepdim):
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randint(0, 3, shape, generator=g).float()  # many ties: the first maximal index must win
        x.view(-1)[:: 7] = float("nan")  # a NaN counts as the maximum in torch.argmax
        got = channel_argmax(x, dim=dim, keepdim=keepdim)
        assert got.dtype == torch.int64
        assert torch.equal(got, torch.argmax(x, dim=dim, keepdim=keepdim))


def test_channel_argmax_ties_go_to_the_lowest_index():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 1:, 0, 0] = 1.0  # classes 1 and 2 tie at the maximum
    assert channel_argmax(x).tolist() == [[[1, 0], [0, 0]]]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"argmax": True},
        {"argmax": True, "to_onehot": 3},
        {"argmax": True, "to_onehot": 3, "dim": 1},
        {"argmax": True, "keepdim": False, "dim": 1},
        {"argmax": False, "threshold": 0.5},
        {"argmax": True, "dtype": torch.uint8},
    ],
)
def test_as_discrete_fast_matches_monai(kwargs):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 6, 5, generator=g) if kwargs.get("dim") == 1 else torch.rand(3, 6, 5, generator=g)
    ours, theirs = AsDiscreteFast(**kwargs)(x), AsDiscrete(**kwargs)(x)
    assert type(ours) is type(theirs) and ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert torch.equal(torch.as_tensor(ours), torch.as_tensor(theirs))


def test_as_discrete_fast_keeps_metadata_and_numpy():
    meta = {"filename_or_obj": "case_7.png", "spacing": [0.1, 0.1]}
    img = MetaTensor(torch.rand(2, 8, 8), affine=torch.diag(torch.tensor([0.1, 0.1, 1.0, 1.0])), meta=meta)
    out = AsDiscreteFast(argmax=True, to_onehot=2)(img)
    assert isinstance(out, MetaTensor)
    assert out.meta["filename_or_obj"] == "case_7.png"
    assert torch.equal(out.affine, img.affine)
    assert torch.equal(out.as_tensor(), AsDiscrete(argmax=True, to_onehot=2)(img).as_tensor())
    arr = np.random.default_rng(0).random((2, 4, 4)).astype(np.float32)
    out_np, theirs = AsDiscreteFast(argmax=True)(arr), AsDiscrete(argmax=True)(arr)
    assert type(out_np) is type(theirs)  # MONAI's own returns a tensor for an array; so does ours
    np.testing.assert_array_equal(np.asarray(out_np), np.asarray(theirs))


def test_as_discrete_fastd_matches_monai_per_key():
    g = torch.Generator().manual_seed(2)
    data = {"pred": torch.randn(4, 2, 8, 8, generator=g), "label": (torch.rand(4, 1, 8, 8, generator=g) > 0.5).float()}
    kw = {"keys": ["pred", "label"], "argmax": [True, False], "to_onehot": 2, "dim": 1}
    ours, theirs = AsDiscreteFastd(**kw)(data), AsDiscreted(**kw)(data)
    for k in ("pred", "label"):
        assert torch.equal(ours[k], theirs[k])
    assert ours["pred"].shape == (4, 2, 8, 8)


def _targets(node, out):
    if isinstance(node, dict):
        if "_target_" in node:
            out.append(node)
        for v in node.values():
            _targets(v, out)
    elif isinstance(node, list):
        for v in node:
            _targets(v, out)
    return out


@pytest.mark.parametrize("config", sorted(BUNDLES.glob("*/configs/*.json")), ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_bundles_use_the_fast_argmax_and_dice(config):
    """Every argmax of the bundles' post-processing goes through AsDiscreteFastd (MONAI's costs 6-46 ms a batch)
    and every Dice key metric through MeanDiceFast."""
    targets = _targets(json.loads(config.read_text()), [])
    slow = [t for t in targets if t["_target_"] == "AsDiscreted" and t.get("argmax")]
    assert not slow, f"{config}: AsDiscreted with argmax (use usseg_monai.transforms.AsDiscreteFastd)"
    assert not [t for t in targets if t["_target_"] == "MeanDice"], f"{config}: MeanDice (use usseg_monai.handlers.MeanDiceFast)"


@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("ignore_empty", [True, False])
@pytest.mark.parametrize("shape", [(6, 2, 9, 7), (3, 3, 5, 4, 6)])
def test_batch_dice_equals_monai_dice(include_background, ignore_empty, shape):
    from monai.metrics import DiceMetric

    from usseg_monai.metrics import batch_dice_metric

    g = torch.Generator().manual_seed(3)
    c = shape[1]
    pred = torch.nn.functional.one_hot(torch.randint(0, c, (shape[0], *shape[2:]), generator=g), c).movedim(-1, 1).float()
    truth = torch.nn.functional.one_hot(torch.randint(0, c, (shape[0], *shape[2:]), generator=g), c).movedim(-1, 1).float()
    truth[0, 1:] = 0  # an image whose foreground is empty: NaN (ignored) or 1 / 0 by the prediction
    truth[0, 0] = 1
    pred[1, 1:] = 0
    pred[1, 0] = 1  # a prediction without foreground
    kw = {"include_background": include_background, "ignore_empty": ignore_empty, "reduction": "none"}
    ours, theirs = batch_dice_metric(DiceMetric(**kw)), DiceMetric(**kw)
    for m in (ours, theirs):
        m(pred, truth)
    a, b = ours.aggregate(), theirs.aggregate()
    assert a.shape == b.shape == (shape[0], c - (0 if include_background else 1))
    assert torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(-1), b.nan_to_num(-1))


def test_mean_dice_fast_handler_gives_monai_mean_dice():
    from monai.handlers import MeanDice

    from usseg_monai.handlers import MeanDiceFast

    g = torch.Generator().manual_seed(4)
    handlers = [MeanDiceFast(include_background=False, save_details=False), MeanDice(include_background=False, save_details=False)]
    for _ in range(3):  # accumulated over iterations, reduced at the end as the handler's compute() does
        pred = torch.nn.functional.one_hot(torch.randint(0, 2, (4, 8, 8), generator=g), 2).movedim(-1, 1).float()
        truth = torch.nn.functional.one_hot(torch.randint(0, 2, (4, 8, 8), generator=g), 2).movedim(-1, 1).float()
        for h in handlers:
            h.update((pred, truth))
    fast, ref = (h.compute() for h in handlers)
    assert fast == pytest.approx(ref, abs=0) and 0.0 < fast < 1.0
    # a shape it does not vectorise (class-index labels) still gives MONAI's value through MONAI's own loop
    m = MeanDiceFast(include_background=False, num_classes=2, save_details=False)
    r = MeanDice(include_background=False, num_classes=2, save_details=False)
    idx = torch.randint(0, 2, (2, 1, 6, 6), generator=g).float()
    for h in (m, r):
        h.update((idx, idx))
    assert m.compute() == r.compute() == 1.0

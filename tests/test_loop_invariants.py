"""The #20 speed changes train the same network: gradients set to None between iterations
(``optim_set_to_none``, as PyTorch's own default) give bit-identical losses and weights to zeroed gradients for
every bundle's trainer, because every parameter gets a gradient in every iteration (0 + g is exact)."""

from __future__ import annotations

import pytest
import torch

from bundle_utils import bundle_dirs, bundle_spatial_dims, make_tiny_dataset, train_losses

#: the trainers of every bundle (train#trainer; SemiSeg-CAW's pretraining stage has its own trainer, checked too)
CASES = [(b.name, {}) for b in bundle_dirs()] + [("semiseg_caw_us_2d_segmentation", {"stage": "pretrain"})]


@pytest.mark.parametrize("bundle, extra", CASES, ids=lambda c: c if isinstance(c, str) else "-".join(c.values()))
def test_gradients_set_to_none_train_the_same_network(tmp_path, bundle, extra):
    dims = bundle_spatial_dims(bundle_dirs()[0].parent / bundle)
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=dims, counts=(4, 1, 0))
    trainer = "pretrain#trainer" if extra.get("stage") == "pretrain" else "train#trainer"
    extra = {**extra, "pretrain_epochs": 1} if bundle.startswith("semiseg") else extra
    fast_losses, fast_state = train_losses(bundle, data, tmp_path / "a", dict(extra))
    slow_losses, slow_state = train_losses(bundle, data, tmp_path / "b", {**extra, f"{trainer}#optim_set_to_none": False})
    assert len(fast_losses) >= 2 and fast_losses == slow_losses
    assert fast_state.keys() == slow_state.keys()
    for k in fast_state:
        assert torch.equal(fast_state[k], slow_state[k]), k

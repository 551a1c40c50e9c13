"""PlainTensorCompose (#20 item 2): the random training transforms on plain tensors give the tensors of the tracked
path, restore MONAI's metadata tracking, keep the source file, and every bundle's training chain ends with one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import CacheDataset, DataLoader, MetaTensor, get_track_meta
from monai.transforms import Compose, Lambdad

from bundle_utils import bundle_dirs, make_tiny_dataset, train_losses
from usseg_monai.handlers import batch_sources
from usseg_monai.transforms import (
    PlainTensorCompose,
    PlainTensorsd,
    plain_random_transforms,
    train_augmentation,
)


def _item(seed: int, spatial_dims: int = 2) -> dict:
    shape = (1, 24, 20) if spatial_dims == 2 else (1, 12, 10, 8)
    rng = np.random.default_rng(seed)
    img = MetaTensor(torch.as_tensor(rng.random(shape, dtype=np.float32)), meta={"filename_or_obj": f"/d/{seed}.png"})
    lab = MetaTensor((img > 0.5).float(), meta={"filename_or_obj": f"/d/{seed}_seg.png"})
    return {"image": img, "label": lab, "case": seed}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", ["reference", "flip_affine"])
def test_same_tensors_as_the_tracked_path(name, spatial_dims):
    keys, modes = ["image", "label"], ["bilinear", "nearest"]
    tracked = Compose(train_augmentation(name, keys, modes, spatial_dims=spatial_dims))
    plain = PlainTensorCompose(train_augmentation(name, keys, modes, spatial_dims=spatial_dims))
    tracked.set_random_state(seed=7)
    plain.set_random_state(seed=7)
    for seed in range(12):
        a, b = tracked(_item(seed, spatial_dims)), plain(_item(seed, spatial_dims))
        for k in keys:
            assert isinstance(a[k], MetaTensor)
            assert type(b[k]) is torch.Tensor
            torch.testing.assert_close(b[k], a[k].as_tensor(), rtol=0, atol=0)
        assert b["case"] == seed and b["filename_or_obj"] == f"/d/{seed}.png"
    assert get_track_meta() is True


def test_tracking_restored_when_a_transform_fails_and_input_checked():
    def boom(x):
        assert get_track_meta() is False  # the transforms run untracked
        raise RuntimeError("bad draw")

    t = PlainTensorCompose([Lambdad("image", boom)])
    with pytest.raises(RuntimeError, match="applying transform") as err:
        t(_item(0))
    assert "bad draw" in str(err.value.__cause__)
    assert get_track_meta() is True
    with pytest.raises(TypeError, match="PlainTensorCompose: expects a dictionary item, got Tensor"):
        t(torch.zeros(1, 4, 4))
    with pytest.raises(TypeError, match="PlainTensorsd: expects a dictionary item, got list"):
        PlainTensorsd()([1])
    kept = PlainTensorCompose([], source_key=None)(_item(1))
    assert "filename_or_obj" not in kept and type(kept["image"]) is torch.Tensor
    named = PlainTensorCompose([])({**_item(2), "filename_or_obj": "/given.png"})
    assert named["filename_or_obj"] == "/given.png"  # an existing key is not overwritten


def test_cache_stops_before_it_and_batches_are_plain_with_their_files():
    calls = []

    def count(x):
        calls.append(1)
        return x

    chain = Compose([Lambdad("image", count)] + plain_random_transforms(train_augmentation(
        "flip_affine", ["image", "label"], ["bilinear", "nearest"])))
    ds = CacheDataset([_item(i) for i in range(4)], chain, progress=False)
    assert len(calls) == 4  # the deterministic part ran once per item, at caching
    assert all(type(c["image"]) is torch.Tensor and c["filename_or_obj"] == f"/d/{i}.png"
               for i, c in enumerate(ds._cache))  # the cache holds plain tensors and each item's file
    batches = [next(iter(DataLoader(ds, batch_size=4))) for _ in range(2)]
    assert len(calls) == 4
    for b in batches:
        assert type(b["image"]) is torch.Tensor and b["image"].shape == (4, 1, 24, 20)
        assert batch_sources(b) == [f"/d/{i}.png" for i in range(4)]
    assert not torch.equal(batches[0]["image"], batches[1]["image"])  # random on every draw


@pytest.mark.parametrize("bundle", bundle_dirs(), ids=lambda p: p.name)
def test_every_training_chain_runs_its_random_part_on_plain_tensors(bundle):
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    ids = ["train#preprocessing"] + (["train#unlabeled_preprocessing"]
                                     if "unlabeled_preprocessing" in parser["train"] else [])
    for i in ids:
        chain = parser.get_parsed_content(i)
        assert isinstance(chain.transforms[-1], PlainTensorCompose), i
        assert isinstance(chain.transforms[-2], PlainTensorsd), i  # cached: plain tensors in the cache
        assert not any(isinstance(t, (PlainTensorCompose, PlainTensorsd)) for t in chain.transforms[:-2]), i


TRACKED = "[monai.transforms.Compose(@train#random_transforms)]"


@pytest.mark.parametrize("bundle, chain", [
    ("unet_us_2d_segmentation", "$@load_transforms + @resize_label_transforms + " + TRACKED),
    ("crbnet_us_2d_segmentation", "$@pseudo_label_transforms + " + TRACKED),
])
def test_training_is_unchanged_by_the_plain_path(tmp_path, bundle, chain):
    """The same seed gives the same loss at every iteration with the random part tracked and untracked (the
    bundle's own chain): metadata off changes nothing that is trained. The tracked chain nests its random part in
    a Compose as the plain one does: a nested Compose seeds its transforms from its own generator, so the chain
    before #20 (not nested) draws other augmentations from the same seed, as another seed would."""
    data = make_tiny_dataset(tmp_path / "data", counts=(6, 2, 0))
    plain, _ = train_losses(bundle, data, tmp_path / "a", {})
    tracked, _ = train_losses(bundle, data, tmp_path / "b", {"train#preprocessing#transforms": chain})
    assert len(plain) == 6 and plain == tracked


def test_augment_device_moves_the_cached_tensors_and_is_checked():
    moved = PlainTensorsd(device="meta")(_item(0))  # the meta device stands in for a GPU: every tensor moves
    assert moved["image"].device.type == "meta" and moved["label"].device.type == "meta" and moved["case"] == 0
    assert PlainTensorsd()(_item(0))["image"].device.type == "cpu"
    from usseg_monai.config_checks import check_settings
    from usseg_monai.utils.errors import ConfigError

    assert check_settings({"augment_device": "cuda:1", "num_workers": 0})["augment_device"] == "cuda:1"
    with pytest.raises(ConfigError, match=r"setting 'augment_device' must be 'cpu', 'cuda' or 'cuda:N'.*got 'gpu'"):
        check_settings({"augment_device": "gpu"})
    with pytest.raises(ConfigError, match=r"augment_device 'cuda' needs num_workers 0 .*got num_workers 2"):
        check_settings({"augment_device": "cuda", "num_workers": 2})

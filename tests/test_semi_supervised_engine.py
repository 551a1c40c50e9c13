"""SemiSupervisedTrainer (the labeled + unlabeled engine shared by SemiSeg-CAW and CRII-Net) and its ramp-up."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from usseg_monai.engines import CyclicLoader, SemiSupervisedTrainer, loss_terms, sigmoid_rampup


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0, 100, 0.5) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(25, 100, 0.5) == pytest.approx(math.exp(-5.0 * 0.25))
    assert sigmoid_rampup(50, 100, 0.5) == pytest.approx(1.0)
    assert sigmoid_rampup(99, 100, 0.5) == pytest.approx(1.0)
    assert sigmoid_rampup(0, 100, 0.0) == 1.0
    values = [sigmoid_rampup(t, 100, 0.4) for t in range(0, 60, 5)]
    assert values == sorted(values)
    with pytest.raises(ValueError, match="total_iterations"):
        sigmoid_rampup(0, 0)


class _Sampler:
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def set_epoch(self, e: int) -> None:
        self.epochs.append(e)


class _Loader(list):
    def __init__(self, items):
        super().__init__(items)
        self.sampler = _Sampler()


def test_cyclic_loader_restarts_and_sets_sampler_epoch():
    loader = _Loader([1, 2])
    stream = CyclicLoader(loader)
    assert [next(stream) for _ in range(5)] == [1, 2, 1, 2, 1]
    assert loader.sampler.epochs == [0, 1, 2]
    with pytest.raises(ValueError, match="my_stream yields no batch"):
        next(CyclicLoader([], name="my_stream"))


def _labeled(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {"image": torch.rand(1, 8, 8, generator=g), "label": (torch.rand(1, 8, 8, generator=g) > 0.5).float()}
        for _ in range(n)
    ]


def _unlabeled(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    # a mask is present in these items on purpose: the trainer must never pass it on
    return [
        {
            "image": torch.rand(1, 8, 8, generator=g),
            "image_strong": torch.rand(1, 8, 8, generator=g),
            "label": torch.ones(1, 8, 8),
            "class": torch.tensor(i % 3),
        }
        for i in range(n)
    ]


class _RecordingLoss:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, out_l, outs_u, labeled, unlabeled, iteration, total_iterations):
        self.calls.append(
            {
                "out_l": tuple(out_l.shape),
                "outs_u": {k: tuple(v.shape) for k, v in outs_u.items()},
                "labeled": sorted(labeled),
                "unlabeled": sorted(unlabeled),
                "t": iteration,
                "T": total_iterations,
                "unlabeled_image_sum": float(unlabeled["image"].sum()),
            }
        )
        sup = torch.nn.functional.binary_cross_entropy_with_logits(out_l, labeled["label"])
        unsup = sum((torch.sigmoid(v) - 0.5).pow(2).mean() for v in outs_u.values())
        return {"loss": sup + unsup, "supervised": sup, "unsupervised": unsup}


def _trainer(loss, max_epochs=2, unlabeled=True, **kwargs) -> tuple[SemiSupervisedTrainer, torch.nn.Module]:
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    trainer = SemiSupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=DataLoader(_labeled(6), batch_size=2),
        unlabeled_data_loader=DataLoader(_unlabeled(4), batch_size=3) if unlabeled else None,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=loss,
        decollate=kwargs.pop("decollate", False),
        **kwargs,
    )
    return trainer, net


def test_trainer_streams_keys_iterations_and_step():
    loss = _RecordingLoss()
    trainer, net = _trainer(loss, unlabeled_keys=("image", "image_strong", "class"), unlabeled_image_keys=("image", "image_strong"))
    before = [p.detach().clone() for p in net.parameters()]
    trainer.run()
    assert len(loss.calls) == 6  # 2 epochs x 3 labeled batches
    assert [c["t"] for c in loss.calls] == list(range(6))
    assert all(c["T"] == 6 for c in loss.calls)
    first = loss.calls[0]
    assert first["out_l"] == (2, 1, 8, 8)
    assert first["outs_u"] == {"image": (3, 1, 8, 8), "image_strong": (3, 1, 8, 8)}
    assert first["labeled"] == ["image", "label"]
    assert all(c["unlabeled"] == ["class", "image", "image_strong"] for c in loss.calls)  # no 'label'
    # the unlabeled stream cycles: 4 items in batches of 3 -> sizes 3, 1, 3, 1, ...; the same first batch recurs
    assert loss.calls[2]["unlabeled_image_sum"] == pytest.approx(loss.calls[0]["unlabeled_image_sum"])
    assert loss.calls[1]["unlabeled_image_sum"] != pytest.approx(loss.calls[0]["unlabeled_image_sum"])
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    out = trainer.state.output
    terms = loss_terms(out)
    assert set(terms) == {"loss", "loss/supervised", "loss/unsupervised"}
    assert terms["loss"] == pytest.approx(terms["loss/supervised"] + terms["loss/unsupervised"], rel=1e-5)
    assert out["pred"].shape == (2, 1, 8, 8) and not out["pred"].requires_grad
    last_labels = torch.stack([item["label"] for item in _labeled(6)[4:]])
    assert torch.equal(out["label"], last_labels)


def test_trainer_decollated_output_still_gives_loss_terms():
    trainer, _ = _trainer(_RecordingLoss(), max_epochs=1, decollate=True)
    trainer.run()
    assert isinstance(trainer.state.output, list) and len(trainer.state.output) == 2
    assert set(loss_terms(trainer.state.output)) == {"loss", "loss/supervised", "loss/unsupervised"}


class _BatchStats(torch.nn.Module):
    """Records the batch size of every call; output = input + batch mean (so a split of a joint pass differs)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return self.w * (x + x.mean(dim=0, keepdim=True))


def test_trainer_concat_streams_runs_one_pass_and_splits():
    seen = []

    def loss(out_l, outs_u, labeled, unlabeled, iteration, total_iterations):
        seen.append((tuple(out_l.shape), {k: tuple(v.shape) for k, v in outs_u.items()}))
        both = torch.cat([labeled["image"]] + [unlabeled[k] for k in outs_u])
        expected = both + both.mean(dim=0, keepdim=True)
        torch.testing.assert_close(torch.cat([out_l] + list(outs_u.values())), expected)
        return out_l.mean() + sum(v.mean() for v in outs_u.values())

    net = _BatchStats()
    trainer = SemiSupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=DataLoader(_labeled(4), batch_size=2),
        unlabeled_data_loader=DataLoader(_unlabeled(3), batch_size=3), network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_function=loss, decollate=False,
        unlabeled_keys=("image", "image_strong"), unlabeled_image_keys=("image", "image_strong"), concat_streams=True,
    )
    trainer.run()
    assert net.calls == [8, 8]  # 2 labeled + 3 + 3 unlabeled views, one pass per iteration
    assert seen[0] == ((2, 1, 8, 8), {"image": (3, 1, 8, 8), "image_strong": (3, 1, 8, 8)})


def test_trainer_epoch_length_cycles_the_labeled_stream():
    loss = _RecordingLoss()
    trainer, _ = _trainer(loss, max_epochs=1, epoch_length=7)
    trainer.run()
    assert [c["t"] for c in loss.calls] == list(range(7))
    assert all(c["T"] == 7 for c in loss.calls)


def test_trainer_without_unlabeled_stream_is_labeled_only():
    seen = []

    def loss(out_l, outs_u, labeled, unlabeled, iteration, total_iterations):
        seen.append((dict(outs_u), dict(unlabeled)))
        return out_l.pow(2).mean()

    trainer, _ = _trainer(loss, max_epochs=1, unlabeled=False)
    trainer.run()
    assert seen == [({}, {})] * 3


def test_trainer_loss_can_return_pred_and_plain_tensor():
    def with_pred(out_l, outs_u, labeled, unlabeled, iteration, total_iterations):
        return {"loss": out_l.mean() * 0 + 1.0, "pred": torch.zeros(2, 2, 8, 8)}

    trainer, _ = _trainer(with_pred, max_epochs=1)
    trainer.run()
    assert trainer.state.output["pred"].shape == (2, 2, 8, 8)

    def plain(out_l, outs_u, labeled, unlabeled, iteration, total_iterations):
        return out_l.pow(2).mean()

    trainer, _ = _trainer(plain, max_epochs=1)
    trainer.run()
    assert set(loss_terms(trainer.state.output)) == {"loss"}


def test_trainer_errors_name_the_problem():
    loss = _RecordingLoss()
    with pytest.raises(ValueError, match="accumulation"):
        _trainer(loss, accumulation_steps=2)
    with pytest.raises(ValueError, match="label_key 'mask' is not in labeled_keys"):
        _trainer(loss, label_key="mask")
    with pytest.raises(ValueError, match="unlabeled_image_keys \\['image_weak'\\] are not in unlabeled_keys"):
        _trainer(loss, unlabeled_image_keys=("image_weak",))
    trainer, _ = _trainer(loss, unlabeled_keys=("image", "class_label"))
    with pytest.raises(KeyError, match="unlabeled batch has no 'class_label'"):
        trainer.run()

    def no_loss(*args, **kwargs):
        return {"total": torch.tensor(1.0)}

    trainer, _ = _trainer(no_loss)
    with pytest.raises(KeyError, match="without 'loss'"):
        trainer.run()

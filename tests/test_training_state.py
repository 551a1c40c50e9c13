"""TrainingStateSaver / TrainingStateLoader: the trainer's own state saved and restored from train#handlers (#18)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from usseg_monai.handlers import TrainingStateLoader, TrainingStateSaver


def _engine(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Engine:
    def step(engine, batch):
        opt.zero_grad()
        loss = model(batch).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    return Engine(step)


def test_saver_writes_engine_state_and_loader_resumes(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = _engine(model, opt)
    saver = TrainingStateSaver(
        str(tmp_path), {"model": model, "optimizer": opt}, save_final=True, final_filename="checkpoint.pt"
    )
    saver.attach(trainer)
    data = [torch.rand(4, 3) for _ in range(5)]
    trainer.run(data, max_epochs=2)
    ckpt = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert set(ckpt) == {"model", "optimizer", "trainer"}
    assert ckpt["trainer"]["iteration"] == 10 and ckpt["trainer"]["epoch_length"] == 5  # ignite state_dict
    assert torch.equal(ckpt["model"]["weight"], model.weight.detach())

    # a new run restores the weights and continues from epoch 2 to 3 (5 more iterations, not 15)
    model2 = torch.nn.Linear(3, 1)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    trainer2 = _engine(model2, opt2)
    TrainingStateLoader(str(tmp_path / "checkpoint.pt"), {"model": model2, "optimizer": opt2}).attach(trainer2)
    loaded = {}  # the weights right after the loader ran (handlers of an event run in the order attached)
    trainer2.add_event_handler(Events.STARTED, lambda e: loaded.update(w=model2.weight.detach().clone()))
    trainer2.state.max_epochs = None
    trainer2.run(data, max_epochs=3)
    assert torch.equal(loaded["w"], ckpt["model"]["weight"])
    assert trainer2.state.iteration == 15 and trainer2.state.epoch == 3


@pytest.mark.parametrize("cls", [TrainingStateSaver, TrainingStateLoader])
def test_reserved_engine_key(cls, tmp_path):
    model = torch.nn.Linear(2, 1)
    handler = cls(str(tmp_path / "x.pt"), {"model": model, "trainer": model})
    with pytest.raises(ValueError, match="key 'trainer' is reserved"):
        handler.attach(Engine(lambda e, b: None))
    with pytest.raises(TypeError, match="expected a dict"):
        cls(str(tmp_path / "x.pt"), [model]).attach(Engine(lambda e, b: None))


def test_other_engine_key_and_passthrough(tmp_path):
    model = torch.nn.Linear(2, 1)
    trainer = Engine(lambda e, b: None)
    saver = TrainingStateSaver(str(tmp_path), {"model": model}, engine_key="engine", save_interval=1, n_saved=None)
    saver.attach(trainer)
    trainer.run([0, 1], max_epochs=1)
    # save_interval 1 (iterations, MONAI's default epoch_level=True counts epochs) -> one file per epoch
    files = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert files == ["checkpoint_epoch=1.pt"]
    assert set(torch.load(tmp_path / files[0], weights_only=False)) == {"model", "engine"}

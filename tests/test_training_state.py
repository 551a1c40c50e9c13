"""TrainingStateSaver / TrainingStateLoader: the trainer's whole state saved every epoch and restored (#18, #19)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from usseg_monai.handlers import TrainingStateLoader, TrainingStateSaver
from usseg_monai.handlers.training_state import check_writable_dir, rng_state, set_rng_state


def _engine(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Engine:
    def step(engine, batch):
        opt.zero_grad()
        loss = model(batch).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    return Engine(step)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, opt, _engine(model, opt)


DATA = [torch.rand(4, 3, generator=torch.Generator().manual_seed(i)) for i in range(5)]


def test_saves_every_epoch_and_at_the_end(tmp_path):
    model, opt, trainer = _setup()
    saver = TrainingStateSaver(str(tmp_path), {"model": model, "optimizer": opt}, epoch_interval=1)
    saver.attach(trainer)
    seen = []
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        lambda e: seen.append(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"]["iteration"]),
    )
    trainer.run(DATA, max_epochs=3)
    assert seen == [5, 10, 15]  # written before the next handler of the same event ran
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # loadable without unpickling code
    assert set(ckpt) == {"model", "optimizer", "trainer", "rng"}
    assert ckpt["trainer"]["iteration"] == 15 and ckpt["trainer"]["epoch_length"] == 5
    assert torch.equal(ckpt["model"]["weight"], model.weight.detach())
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_interval_zero_saves_only_at_the_end_and_on_exception(tmp_path):
    model, opt, trainer = _setup()
    TrainingStateSaver(str(tmp_path), {"model": model}, epoch_interval=0).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: (tmp_path / "checkpoint.pt").exists() and pytest.fail())
    trainer.run(DATA, max_epochs=1)
    assert (tmp_path / "checkpoint.pt").is_file()

    model, opt, trainer = _setup()
    out = tmp_path / "exc"

    @trainer.on(Events.ITERATION_COMPLETED(once=7))
    def _boom(engine):
        raise RuntimeError("boom")

    TrainingStateSaver(str(out), {"model": model}, epoch_interval=0).attach(trainer)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.run(DATA, max_epochs=3)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 7


def test_resume_continues_from_the_saved_epoch_and_matches_an_uninterrupted_run(tmp_path):
    # uninterrupted: 4 epochs
    model_a, opt_a, trainer_a = _setup()
    trainer_a.run(DATA, max_epochs=4)

    # interrupted after epoch 2, then resumed to 4 in a new process-like setting (fresh objects)
    model_b, opt_b, trainer_b = _setup()
    TrainingStateSaver(str(tmp_path), {"model": model_b, "optimizer": opt_b}).attach(trainer_b)
    trainer_b.run(DATA, max_epochs=2)
    model_c, opt_c, trainer_c = _setup(seed=99)  # other initial weights: the checkpoint must replace them
    TrainingStateLoader(str(tmp_path / "checkpoint.pt"), {"model": model_c, "optimizer": opt_c}).attach(trainer_c)
    epochs = []
    trainer_c.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    trainer_c.run(DATA, max_epochs=4)
    assert epochs == [3, 4] and trainer_c.state.iteration == 20
    torch.testing.assert_close(model_c.weight, model_a.weight)  # momentum restored too
    torch.testing.assert_close(model_c.bias, model_a.bias)


def test_rng_states_round_trip():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_loader_errors_name_the_file(tmp_path):
    model, opt, trainer = _setup()
    missing = tmp_path / "none.pt"
    TrainingStateLoader(str(missing), {"model": model}).attach(trainer)
    with pytest.raises(FileNotFoundError, match=f"no checkpoint {missing}.*train without --resume"):
        trainer.run(DATA, max_epochs=1)

    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"PK\x03\x04 not a zip archive")
    model, opt, trainer = _setup()
    TrainingStateLoader(str(damaged), {"model": model}).attach(trainer)
    with pytest.raises(ValueError, match=f"checkpoint {damaged} is damaged"):
        trainer.run(DATA, max_epochs=1)

    weights_only = tmp_path / "model.pt"
    torch.save(model.state_dict(), weights_only)
    model, opt, trainer = _setup()
    TrainingStateLoader(str(weights_only), {"model": model}).attach(trainer)
    with pytest.raises(ValueError, match=r"lacks \['model', 'trainer'\]"):
        trainer.run(DATA, max_epochs=1)


def test_loader_refuses_a_finished_run(tmp_path):
    model, opt, trainer = _setup()
    TrainingStateSaver(str(tmp_path), {"model": model}).attach(trainer)
    trainer.run(DATA, max_epochs=2)
    model, opt, trainer = _setup()
    TrainingStateLoader(str(tmp_path / "checkpoint.pt"), {"model": model}).attach(trainer)
    with pytest.raises(ValueError, match="is at epoch 2, the run's max_epochs is 2: nothing to train"):
        trainer.run(DATA, max_epochs=2)


@pytest.mark.parametrize("cls", [TrainingStateSaver, TrainingStateLoader])
def test_reserved_keys(cls, tmp_path):
    model = torch.nn.Linear(2, 1)
    for key in ("trainer", "rng"):
        with pytest.raises(ValueError, match=f"key '{key}' is reserved"):
            cls(str(tmp_path), {"model": model, key: model}).attach(Engine(lambda e, b: None))
    with pytest.raises(TypeError, match="expected a dict"):
        cls(str(tmp_path), [model]).attach(Engine(lambda e, b: None))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_unwritable_checkpoint_folder_is_named_before_training(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        model, opt, trainer = _setup()
        with pytest.raises(PermissionError, match=f"checkpoint folder \\(ckpt_dir\\) {ro} is not writable"):
            TrainingStateSaver(str(ro), {"model": model}).attach(trainer)
    finally:
        ro.chmod(0o700)


def test_check_writable_dir_names_a_file_in_the_way(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=f"output folder {blocker / 'sub'} is not writable"):
        check_writable_dir(blocker / "sub")
    assert check_writable_dir(tmp_path / "new" / "dir").is_dir()


def test_a_non_finite_state_is_never_saved(tmp_path, caplog):
    model, opt, trainer = _setup()
    saver = TrainingStateSaver(str(tmp_path), {"model": model, "optimizer": opt})
    saver.attach(trainer)
    trainer.run(DATA, max_epochs=1)
    good = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    with torch.no_grad():
        model.weight[0, 1] = float("nan")
    with caplog.at_level("ERROR", logger="usseg_monai.handlers.training_state"):
        assert saver.save(trainer) is None
    assert "non-finite values in model.weight" in caplog.text
    kept = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(kept["model"]["weight"], good["model"]["weight"])

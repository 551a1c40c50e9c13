"""ShortRunNote (#17): one warning at the end of a run whose best validation metric stayed below the threshold."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from ignite.engine import Engine, Events

from usseg_monai.handlers import ShortRunNote

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = sorted((ROOT / "bundles").glob("*/configs/train.json"))


def _run(best_metric: float, epochs: int = 2, iterations_per_epoch: int = 3) -> Engine:
    validator = Engine(lambda e, b: None)
    validator.state.best_metric = best_metric
    trainer = Engine(lambda e, b: None)
    note = ShortRunNote(validator, min_metric=0.05)
    note.attach(trainer)
    assert trainer.has_event_handler(note, Events.COMPLETED)
    trainer.run(range(iterations_per_epoch), max_epochs=epochs)
    return trainer


def test_note_logged_once_for_a_run_that_did_not_learn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="usseg_monai.handlers.short_run"):
        _run(best_metric=0.0)
    notes = [r.getMessage() for r in caplog.records if r.name == "usseg_monai.handlers.short_run"]
    assert len(notes) == 1
    assert "0.000 after 2 epoch(s) / 6 iteration(s)" in notes[0] and "expected for a run this short" in notes[0]


def test_no_note_for_a_run_that_learned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="usseg_monai.handlers.short_run"):
        _run(best_metric=0.05)  # the threshold itself counts as learned
        _run(best_metric=0.71)
    assert not [r for r in caplog.records if r.name == "usseg_monai.handlers.short_run"]


def test_note_when_no_validation_ran() -> None:
    validator, trainer = Engine(lambda e, b: None), Engine(lambda e, b: None)
    validator.state.best_metric = -1  # MONAI Workflow's value before the first validation
    trainer.run(range(4), max_epochs=1)
    message = ShortRunNote(validator).message(trainer)
    assert message is not None and "without a validation round" in message and "1 epoch(s) / 4 iteration(s)" in message


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_threshold_outside_unit_interval_refused(bad: float) -> None:
    with pytest.raises(ValueError, match=r"ShortRunNote: min_metric must be in \[0, 1\]"):
        ShortRunNote(Engine(lambda e, b: None), min_metric=bad)


@pytest.mark.parametrize("config", TRAIN_CONFIGS, ids=lambda p: p.parent.parent.name)
def test_every_bundle_attaches_the_note_to_its_validator(config: Path) -> None:
    handlers = json.loads(config.read_text())["train"]["handlers"]
    notes = [h for h in handlers if h.get("_target_") == "usseg_monai.handlers.ShortRunNote"]
    assert notes == [{"_target_": "usseg_monai.handlers.ShortRunNote", "validator": "@validate#evaluator"}]
    multi = json.loads((config.parent / "multi_gpu_train.json").read_text())
    assert "usseg_monai.handlers.ShortRunNote" in multi["rank0_only_handler_types"]  # one line, not one per rank

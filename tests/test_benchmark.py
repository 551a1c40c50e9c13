"""Benchmark runner: end to end on a tiny phantom dataset with the smoke budget; budgets; clear errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from usseg_monai.evaluation import BUDGETS, Budget, get_budget, run_benchmark
from usseg_monai.data.io import DatasetError

BUNDLE = "unet_us_2d_segmentation"


@pytest.fixture(scope="module")
def tiny_phantom(tmp_path_factory) -> Path:
    from usseg_monai.data.phantom import prepare_phantom

    root = tmp_path_factory.mktemp("phantom")
    prepare_phantom(root / "ds", n_images=8, image_size=(64, 48), seed=0, val_fraction=0.25, test_fraction=0.25)
    return root / "ds" / "datalist.json"


def test_budgets_table_and_overrides():
    assert {"smoke", "cpu-quick", "cpu-yardstick", "paper"} <= set(BUDGETS)
    y = BUDGETS["cpu-yardstick"]
    assert y.image_size(2) == [128, 128] and y.max_epochs == 40
    assert BUDGETS["smoke"].max_epochs == 1 and BUDGETS["smoke"].image_size(2) == [64, 64]
    assert len(BUDGETS["smoke"].image_size(3)) == 3
    b = get_budget("cpu-yardstick", max_epochs=3, batch_size=None)
    assert isinstance(b, Budget) and b.max_epochs == 3 and b.batch_size == y.batch_size
    with pytest.raises(ValueError, match="unknown budget 'huge'"):
        get_budget("huge")
    with pytest.raises(ValueError, match="unknown budget field"):
        get_budget("smoke", epochs=3)


def test_paper_budget_gives_each_protocol_its_papers_settings():
    paper = BUDGETS["paper"]
    cal = paper.for_protocol("calipers")
    # CRBNet's reference code: 30000 iterations at batch 24, 256x256
    assert (cal.batch_size, cal.max_iterations, cal.image_size(2)) == (24, 30000, [256, 256]) and cal.protocols == {}
    # 414 BUSI lesion images at batch 24: 18 iterations an epoch, 1667 epochs >= 30000 iterations
    assert cal.epochs_for(414) == 1667 and 1667 * 18 >= 30000 > 1666 * 18
    cls = paper.for_protocol("class_labels")
    assert (cls.batch_size, cls.max_epochs, cls.max_iterations) == (8, 300, 0) and cls.epochs_for(414) == 300
    assert paper.for_protocol("few_masks").max_epochs == 200
    # an unknown protocol, or a budget without per-protocol settings, is the budget itself
    assert paper.for_protocol("other") == replace(paper, protocols={})
    quick = BUDGETS["cpu-quick"]
    assert quick.for_protocol("calipers") == quick
    # an explicit override wins over the per-protocol settings (and epochs replace iterations)
    short = get_budget("paper", max_epochs=2, batch_size=4)
    for key in ("calipers", "class_labels", "few_masks"):
        b = short.for_protocol(key)
        assert (b.max_epochs, b.batch_size, b.max_iterations) == (2, 4, 0) and b.epochs_for(100) == 2
    assert get_budget("paper", image_size_2d=(128, 128)).for_protocol("calipers").max_iterations == 30000


def test_max_iterations_sets_the_epochs(tiny_phantom, tmp_path):
    # 4 training images at batch 2 = 2 iterations an epoch: 3 iterations need 2 epochs (4 iterations run)
    r = run_benchmark(
        BUNDLE, tiny_phantom, tiny_phantom, tmp_path / "run", test_key="test", n_resamples=20, device="cpu", threads=1,
        budget=get_budget("smoke", max_iterations=3),
    )
    assert r["budget"]["max_epochs"] == 2 and r["budget"]["max_iterations"] == 3
    assert r["timing"]["train_iterations"] == 4 and [e["epoch"] for e in r["training_curve"]] == [1, 2]


def test_interrupted_training_resumes_and_a_finished_one_is_only_scored(tiny_phantom, tmp_path, monkeypatch, capsys):
    import torch

    from usseg_monai.evaluation import runner
    from usseg_monai.evaluation.train_state import TRAIN_STATE

    # 4 training images at batch 2: 2 iterations an epoch, 3 epochs = 6; the run dies after iteration 5 (mid epoch 3)
    kwargs = dict(test_key="test", n_resamples=20, device="cpu", threads=1, budget=get_budget("smoke", max_epochs=3))
    run = tmp_path / "run"
    stop = runner.IterationTimer._stop

    def dying_stop(self, engine):
        stop(self, engine)
        if engine.state.iteration == 5:
            raise RuntimeError("killed")

    monkeypatch.setattr(runner.IterationTimer, "_stop", dying_stop)
    with pytest.raises(RuntimeError) as raised:  # the bundle's run expression wraps it
        run_benchmark(BUNDLE, tiny_phantom, tiny_phantom, run, **kwargs)
    chain, e = [], raised.value
    while e is not None:
        chain, e = [*chain, str(e)], e.__cause__ or e.__context__
    assert "killed" in chain
    assert not (run / "results.json").exists()
    ckpt = run / "models" / "checkpoint.pt"
    # the last complete epoch's (the bundle's StatsHandler re-raises first, so nothing is saved on the error)
    assert torch.load(ckpt, weights_only=True)["trainer"]["iteration"] == 4
    state = json.loads((run / TRAIN_STATE).read_text())
    assert [c["epoch"] for c in state["progress"]["curve"]] == [1, 2] and len(state["progress"]["iteration_s"]) == 4
    monkeypatch.setattr(runner.IterationTimer, "_stop", stop)

    capsys.readouterr()  # the bundle's logging.conf sends the runner's log to stdout (it replaces caplog's handler)
    r = run_benchmark(BUNDLE, tiny_phantom, tiny_phantom, run, **kwargs)
    assert "resume: training from iteration 4" in capsys.readouterr().out
    t = r["timing"]
    assert t["train_iterations"] == 6 and t["resumed_at_iterations"] == [4]
    assert [c["epoch"] for c in r["training_curve"]] == [1, 2, 3]
    assert t["train_wall_s"] >= state["progress"]["train_wall_s"]
    assert torch.load(ckpt, weights_only=True)["trainer"]["iteration"] == 6

    # killed during the test pass: the finished checkpoint is scored again, not trained again
    (run / "results.json").unlink()
    mtime = ckpt.stat().st_mtime_ns
    again = run_benchmark(BUNDLE, tiny_phantom, tiny_phantom, run, **kwargs)
    assert "is at iteration 6, the last: not trained again" in capsys.readouterr().out
    assert ckpt.stat().st_mtime_ns == mtime
    assert again["timing"]["train_iterations"] == 6 and again["timing"]["resumed_at_iterations"] == [4, 6]
    assert again["training_curve"] == r["training_curve"]
    assert again["metrics"]["dice"]["mean"] == pytest.approx(r["metrics"]["dice"]["mean"])
    # a resumed run's total time holds the training of the processes it resumed from (the report's test column is
    # total - setup - training)
    for rec in (r, again):
        assert rec["timing"]["total_wall_s"] >= rec["timing"]["setup_s"] + rec["timing"]["train_wall_s"]

    # other settings (a seed) in the same folder: trained from the start, the reason logged
    other = run_benchmark(BUNDLE, tiny_phantom, tiny_phantom, run, **{**kwargs, "seed": 1})
    assert "trained with other settings (seed): training from the start" in capsys.readouterr().out
    assert other["timing"]["resumed_at_iterations"] == [] and other["timing"]["train_iterations"] == 6


def test_missing_test_datalist_is_a_clear_error(tiny_phantom, tmp_path):
    missing = tmp_path / "held_back" / "test.json"
    with pytest.raises(DatasetError, match=r"test datalist not found: .*held_back/test\.json"):
        run_benchmark(BUNDLE, tiny_phantom, missing, tmp_path / "run")
    with pytest.raises(DatasetError, match="section 'holdout' is missing or empty"):
        run_benchmark(BUNDLE, tiny_phantom, tiny_phantom, tmp_path / "run", test_key="holdout")
    with pytest.raises(DatasetError, match="bundle 'no_such_bundle' not found"):
        run_benchmark("no_such_bundle", tiny_phantom, tiny_phantom, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing started


def test_cli_missing_test_datalist(tiny_phantom, tmp_path, capsys):
    from usseg_monai.cli import main

    rc = main(["benchmark", BUNDLE, "--train-datalist", str(tiny_phantom), "--test-datalist",
               str(tmp_path / "nope.json"), "--output", str(tmp_path / "r")])
    assert rc == 2
    assert "test datalist not found" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_end_to_end(tiny_phantom, tmp_path):
    # a held-back test set used as is: a separate datalist file in its own folder, pointing at the images
    data = json.loads(tiny_phantom.read_text())
    held = tmp_path / "held_back"
    held.mkdir()
    base = tiny_phantom.parent
    keys = ("image", "label", "calipers")
    test_items = [{**it, **{k: str(base / it[k]) for k in keys if k in it}} for it in data["test"]]
    # the files stay in the dataset: the datalist lists its folder (the path rule)
    (held / "test_datalist.json").write_text(json.dumps({"test": test_items, "allowed_roots": [str(base)]}))
    run = tmp_path / "run"
    r = run_benchmark(
        BUNDLE, tiny_phantom, held / "test_datalist.json", run, test_key="test", budget="smoke", n_resamples=200,
        seed=1, device="cpu", threads=1,
        bundle_overrides={"train#random_transforms": []},  # a train-only nested id: must not reach inference.json
    )
    assert r["bundle_overrides"] == {"train#random_transforms": []}
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["metrics"]["dice"]["mean"] == pytest.approx(r["metrics"]["dice"]["mean"])
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # atomic write left nothing behind
    n_test = len(test_items)
    expected = {"path": str((held / "test_datalist.json").resolve()), "section": "test", "n": n_test}
    assert r["datalists"]["test"] == expected
    assert r["datalists"]["train"]["n"] == len(data["training"])
    assert r["datalists"]["train"]["n_with_mask"] == len(data["training"])
    curve = r["training_curve"]
    assert [e["epoch"] for e in curve] == [1] and curve[0]["loss"] > 0
    assert r["budget"]["name"] == "smoke" and r["budget"]["image_size"] == [64, 64] and r["budget"]["max_epochs"] == 1
    assert r["seed"] == 1
    from usseg_monai.networks import PyMICUNet

    assert r["params"] == sum(p.numel() for p in PyMICUNet(2, 1, 2).parameters())
    for key in ("dice", "iou", "hd95_mm", "asd_mm", "recall", "precision", "specificity", "accuracy"):
        m = r["metrics"][key]
        assert set(m) >= {"mean", "ci_low", "ci_high", "n", "n_resamples"}
        if m["mean"] is not None:
            assert m["ci_low"] <= m["mean"] <= m["ci_high"]
            if key not in ("hd95_mm", "asd_mm"):
                assert 0.0 <= m["ci_low"] and m["ci_high"] <= 1.0
            else:
                assert m["mean"] >= 0.0
    assert 0.0 <= r["metrics"]["dice"]["mean"] <= 1.0 and r["metrics"]["dice"]["n"] == n_test
    assert len(r["cases"]) == n_test and all("image" in c for c in r["cases"])
    me = r["measurement_error"]
    assert me["n_measured"] + me["n_missed"] + me["n_no_truth"] + me["n_both_empty"] == n_test
    t = r["timing"]
    assert t["train_iterations"] == 2  # 4 training images, batch 2, 1 epoch
    assert t["seconds_per_iteration"] > 0 and t["train_wall_s"] >= t["seconds_per_iteration"] * 2
    assert t["inference_ms_per_image"] > 0 and t["total_wall_s"] >= t["train_wall_s"]
    assert r["memory"]["peak_rss_mb"] > 50
    assert r["device"].startswith("CPU") and "torch threads 1" in r["device"]
    assert set(r["versions"]) == {"torch", "monai", "usseg_monai", "python"}
    assert (run / "models" / "checkpoint.pt").is_file()
    assert len(list((run / "predictions").glob("*_seg.png"))) == n_test

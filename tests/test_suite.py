"""The results suite (`usseg benchmark --suite`): its plan, derived datalists, and the smallest budget end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from usseg_monai.data.io import atomic_write_json, load_png, read_json
from usseg_monai.evaluation.claims import PROTOCOLS
from usseg_monai.evaluation.plan import plan_suite
from usseg_monai.evaluation.suite import epoch_length_mismatch, record_epoch_length, reuse_mismatch, run_suite


CAL_PROJECT, CAL_OFFICIAL = "calipers (recipe project)", "calipers (recipe crbnet_official)"


def test_plan_lists_every_protocol_and_shares_the_reference():
    plan = plan_suite(PROTOCOLS, 2, class_only=(48, 96), fractions=(0.04, 0.1), num_cls_classes=6)
    protocols = list(dict.fromkeys(r.protocol for r in plan))
    assert protocols == [
        CAL_PROJECT,
        CAL_OFFICIAL,
        "class_labels (48 class-only)",
        "class_labels (96 class-only)",
        "few_masks (4% masks)",
        "few_masks (10% masks)",
    ]
    for title, recipe in ((CAL_PROJECT, "project"), (CAL_OFFICIAL, "crbnet_official")):
        calipers = [r for r in plan if r.protocol == title]
        assert [r.train_variant for r in calipers] == ["full", "radical", "conservative", "full", "full", "full"]
        assert {r.recipe for r in calipers} == {recipe}
        # one CRBNet training scored three ways: the mean of the branches and each branch alone
        crb = calipers[3:]
        assert {r.bundle for r in crb} == {"crbnet_us_2d_segmentation"} and len({r.run_id for r in crb}) == 1
        assert [r.test_variant for r in crb] == [None, "radical", "conservative"]
        assert crb[0].test_variants == {"radical": {"inference_mode": "radical"}, "conservative": {"inference_mode": "conservative"}}
    c48 = [r for r in plan if r.protocol.startswith("class_labels (48")]
    assert len(c48) == 6 and {r.overrides["backbone"] for r in c48} == {"malunet", "unext"}
    assert all(r.overrides["num_cls_classes"] == 6 for r in c48) and {r.recipe for r in c48} == {None}
    assert [r.train_variant for r in c48[:3]] == ["full", "class_only:48", "class_only:48"]
    # the all-mask backbone runs do not depend on the class-only amount: one run each, listed twice
    ids = [r.run_id for r in plan]
    assert ids.count("malunet_full") == 2 and ids.count("unext_full") == 2
    few = [r for r in plan if r.protocol.startswith("few_masks (4%")]
    assert [r.overrides.get("method") for r in few] == ["labeled_only", "mean_teacher", "cps", "crii_net", "crii_net", None]
    assert few[4].overrides["unlabeled_target"] == "both" and "unlabeled_target" not in few[3].overrides
    assert {r.train_variant for r in few[:5]} == {"labeled:0.04"} and {r.recipe for r in few} == {"project"}
    # the reference UNet under the project recipe: the calipers table and both few-mask tables, one training
    assert ids.count("unet_full-project") == 3 and ids.count("unet_full-crbnet_official") == 1
    plan3 = plan_suite(["calipers", "few_masks"], 3)
    assert {r.bundle for r in plan3} == {"unet_us_3d_segmentation", "crbnet_us_3d_segmentation", "crii_net_us_3d_segmentation"}
    with pytest.raises(ValueError, match="2D only"):
        plan_suite(["class_labels"], 3)
    with pytest.raises(ValueError, match="unknown protocol"):
        plan_suite(["masks"], 2)


def test_every_row_of_a_recipe_table_trains_with_the_recipe():
    """The recipe's overrides reach every row, and each bundle builds the optimiser, schedule and augmentation
    the recipe names (parsed from the bundle configs, as the suite's runs are)."""
    from monai.bundle import ConfigParser

    from usseg_monai.recipes import RECIPES, describe_training

    from usseg_monai.data.phantom import ensure_phantom_dataset

    ensure_phantom_dataset(2)  # the default dataset_dir: what the configs' create_phantom step makes before a run
    plan = plan_suite(["calipers"], 2)
    built = {}
    for spec in plan:
        if spec.test_variant is not None:
            continue
        parser = ConfigParser()
        parser.read_config(str(Path("bundles", spec.bundle, "configs", "train.json")))
        parser.update({"bundle_root": str(Path("bundles", spec.bundle)), **RECIPES[spec.recipe].overrides(), **spec.overrides})
        built[(spec.protocol, spec.method)] = describe_training(parser)
    for title, opt, sched, first in ((CAL_PROJECT, "AdamW", "CosineAnnealingLR", "RandFlipd"), (CAL_OFFICIAL, "SGD", "PolynomialLR", "OneOf")):
        rows = {m: d for (p, m), d in built.items() if p == title}
        assert len(rows) == 4
        for method, d in rows.items():
            assert d["optimizer"] == opt and d["lr_schedule"] == sched and d["lr_step"] == "iteration", method
            assert d["loss_family"] == "CE + Dice"
            assert (next(iter(d["augmentation"][0])) if first == "OneOf" else d["augmentation"][0]["transform"]) == first
        # the same recipe in every row, key-independent (CRBNet moves four keys, the UNet two)
        ref = next(iter(rows.values()))
        assert all(d["augmentation"] == ref["augmentation"] and d["learning_rate"] == ref["learning_rate"] for d in rows.values())
    assert built[(CAL_OFFICIAL, "UNet, full masks")]["learning_rate"] == 0.01
    assert built[(CAL_OFFICIAL, "UNet, full masks")]["momentum"] == 0.9


def test_a_row_that_differs_from_its_table_is_refused():
    from usseg_monai.recipes import RECIPES, check_bundle_accepts, check_same_recipe
    from usseg_monai.evaluation.plan import RunSpec, check_recipes_accepted, check_row_overrides

    a = {"optimizer": "SGD", "learning_rate": 0.01, "weight_decay": 1e-4, "momentum": 0.9, "lr_schedule": "PolynomialLR",
         "lr_step": "iteration", "augmentation": [{"transform": "OneOf"}], "loss_family": "CE + Dice",
         "image_size": [64, 64], "batch_size": 8}  # fmt: skip
    check_same_recipe([("UNet", a), ("CRBNet", dict(a))], "t")
    for key, value in (("optimizer", "AdamW"), ("augmentation", [{"transform": "RandFlipd"}]), ("lr_step", "epoch"), ("batch_size", 4)):
        with pytest.raises(ValueError, match=rf"table 't': 'CRBNet' trains with {key}="):
            check_same_recipe([("UNet", a), ("CRBNet", {**a, key: value})], "t")
    # momentum only matters where SGD is used
    adam = {**a, "optimizer": "AdamW"}
    check_same_recipe([("UNet", adam), ("CRBNet", {**adam, "momentum": None})], "t")
    with pytest.raises(ValueError, match="does not declare"):
        check_bundle_accepts({"optimizer_name": "sgd"}, RECIPES["project"], "b")
    with pytest.raises(ValueError, match="unknown recipe"):
        check_recipes_accepted([RunSpec("r", "p", "m", "unet_us_2d_segmentation", recipe="fast")])
    with pytest.raises(ValueError, match=r"row 'm' of 'p' overrides recipe key\(s\) \['learning_rate'\]"):
        check_row_overrides([RunSpec("r", "p", "m", "b", overrides={"learning_rate": 1.0, "method": "x"}, recipe="project")])
    check_row_overrides(plan_suite(PROTOCOLS, 2))


def test_run_budgets_share_the_reference_only_at_one_budget():
    from usseg_monai.evaluation.budgets import BUDGETS
    from usseg_monai.evaluation.claims import protocol_key
    from usseg_monai.evaluation.plan import run_budgets

    plan = plan_suite(PROTOCOLS, 2, class_only=(48, 96), fractions=(0.04, 0.1), num_cls_classes=6)
    assert protocol_key("class_labels (48 class-only)") == "class_labels" and protocol_key(CAL_PROJECT) == "calipers"
    quick = run_budgets(plan, BUDGETS["cpu-quick"])
    assert len(quick) == len(plan)
    assert all(rb == BUDGETS["cpu-quick"] and rid == spec.run_id for spec, (rb, rid) in zip(plan, quick))
    paper = run_budgets(plan, BUDGETS["paper"])
    by = {(spec.protocol, spec.method): rb_id for spec, rb_id in zip(plan, paper)}
    ref_cal = by[(CAL_PROJECT, "UNet, full masks")]
    ref_few = by[("few_masks (4% masks)", "UNet, full masks (reference)")]
    # the calipers protocol trains every row CRBNet's way; the few-masks reference is its own run at 200 epochs
    assert ref_cal[1] == "unet_full-project" and ref_cal[0].max_iterations == 30000 and ref_cal[0].batch_size == 24
    assert by[(CAL_PROJECT, "CRBNet (calipers only)")][0] == ref_cal[0]
    assert ref_few[1] == "unet_full-project__few_masks" and ref_few[0].max_epochs == 200 and ref_few[0].max_iterations == 0
    assert by[("few_masks (10% masks)", "UNet, full masks (reference)")][1] == "unet_full-project__few_masks"
    assert {by[("class_labels (96 class-only)", m)][0].max_epochs for m in ("MALUNet, full masks", "SemiSeg-CAW (UNeXt)")} == {300}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    from usseg_monai.data.phantom import prepare_phantom

    root = tmp_path_factory.mktemp("suite_phantom")
    prepare_phantom(root / "ds", n_images=12, image_size=(64, 48), seed=0, val_fraction=0.25, test_fraction=0.25)
    return root / "ds" / "datalist.json"


def test_variant_datalists(phantom, tmp_path):
    from usseg_monai.evaluation.plan import variant_datalist

    assert variant_datalist("full", phantom, "training", tmp_path, 0) == phantom
    rad = json.loads(variant_datalist("radical", phantom, "training", tmp_path, 0).read_text())
    con = json.loads(variant_datalist("conservative", phantom, "training", tmp_path, 0).read_text())
    source = json.loads(phantom.read_text())["training"]
    n_lesions = 0
    for r, c, src in zip(rad["training"], con["training"], source):
        assert Path(r["image"]).name == Path(c["image"]).name == Path(src["image"]).name
        rm, cm = load_png(Path(r["label"])) > 0, load_png(Path(c["label"])) > 0
        truth = load_png(phantom.parent / src["label"]) > 0
        assert rm.shape == truth.shape and np.all(rm[cm])  # conservative inside radical
        if truth.any():
            n_lesions += 1
            assert cm.sum() > 0 and (rm & truth).sum() > 0.5 * truth.sum()
        else:
            assert not rm.any()
    assert n_lesions >= 3
    part = json.loads(variant_datalist("labeled:0.5", phantom, "training", tmp_path, 0).read_text())
    assert sum("label" in it for it in part["training"]) == 3 and len(part["training"]) == 6
    with pytest.raises(ValueError, match="unknown training variant"):
        variant_datalist("masks:3", phantom, "training", tmp_path, 0)


@pytest.mark.slow
def test_smallest_budget_end_to_end_and_merge(phantom, tmp_path, monkeypatch):
    work, report = tmp_path / "work", tmp_path / "docs" / "results.md"
    kw = dict(test_key="test", budget="smoke", seed=0, device="cpu", threads=1, n_resamples=50, report=report)
    merged = run_suite(["calipers"], "PhantomA", phantom, phantom, work, **kw)
    methods = ["UNet, full masks", "UNet, radical labels", "UNet, conservative labels",
               "CRBNet (calipers only)", "CRBNet, radical branch", "CRBNet, conservative branch"]  # fmt: skip
    assert [r["method"] for r in merged["runs"]] == methods * 2
    assert [r["protocol"] for r in merged["runs"]] == [CAL_PROJECT] * 6 + [CAL_OFFICIAL] * 6
    on_disk = json.loads((work / "results.json").read_text())
    r0 = on_disk["runs"][0]
    own = json.loads((work / "PhantomA" / "unet_full-project" / "results.json").read_text())
    assert r0["metrics"]["dice"] == own["metrics"]["dice"]  # carried over exactly
    assert r0["budget"]["name"] == "smoke" and on_disk["suite"]["budget"] == "smoke"
    assert on_disk["datasets"]["PhantomA"]["test"]["n"] == 3
    # every row of a table trained with its recipe; the branch rows are the CRBNet run's extra test passes
    for title, opt in ((CAL_PROJECT, "AdamW"), (CAL_OFFICIAL, "SGD")):
        rows = [r for r in on_disk["runs"] if r["protocol"] == title]
        assert {r["training_recipe"]["optimizer"] for r in rows} == {opt}
        assert len({json.dumps(r["training_recipe"]["augmentation"]) for r in rows}) == 1
        crb = {r["method"]: r for r in rows if r["method"].startswith("CRBNet")}
        tag = title.split("recipe ")[1].rstrip(")")
        own = json.loads((work / "PhantomA" / f"crbnet-{tag}" / "results.json").read_text())
        assert crb["CRBNet, radical branch"]["cases"] == own["test_variants"]["radical"]["cases"]
        assert crb["CRBNet, conservative branch"]["test_overrides"] == {"inference_mode": "conservative"}
        assert crb["CRBNet, radical branch"]["predictions_dir"].endswith("predictions_radical")
        assert any(Path(crb["CRBNet, radical branch"]["predictions_dir"]).glob("*_seg.png"))
    runs = ("unet_full", "unet_radical", "unet_conservative", "crbnet")
    own_walls = [json.loads((work / "PhantomA" / f"{r}-{t}" / "results.json").read_text())["timing"]["total_wall_s"]
                 for r in runs for t in ("project", "crbnet_official")]  # fmt: skip
    assert on_disk["suite"]["wall_s"] == pytest.approx(sum(own_walls))
    assert on_disk["suite"]["protocol_budgets"]["calipers"]["max_epochs"] == 1
    md = report.read_text()
    assert f"## PhantomA: {CAL_OFFICIAL}" in md and "figures/dice_PhantomA_calipers--recipe-crbnet-official-.png" in md
    assert "**Recipe.** recipe `crbnet_official`: CRBNet's reference code" in md and "Every row: SGD lr 0.01" in md
    assert f"| PhantomA | {CAL_PROJECT} | CRBNet (calipers only) | UNet, conservative labels |" in md
    assert (report.parent / "figures" / "gallery_PhantomA_calipers--recipe-project-.png").is_file()
    # a second dataset merges in (the class-label protocol: SemiSeg-CAW and its baselines, 2 class-only images)
    stamp = (work / "PhantomA" / "unet_full-project" / "results.json").stat().st_mtime_ns
    merged = run_suite(["class_labels"], "PhantomB", phantom, phantom, work, **{**kw, "class_only": (2,)})
    assert {r["dataset"] for r in merged["runs"]} == {"PhantomA", "PhantomB"}
    assert merged["suite"]["datasets_run"] == ["PhantomA", "PhantomB"]
    b = [r for r in merged["runs"] if r["dataset"] == "PhantomB"]
    assert [r["method"] for r in b] == [
        "MALUNet, full masks", "MALUNet, reduced masks", "SemiSeg-CAW (MALUNet)",
        "UNeXt, full masks", "UNeXt, reduced masks", "SemiSeg-CAW (UNeXt)",
    ]  # fmt: skip
    assert [r["datalists"]["train"]["n_with_mask"] for r in b[:3]] == [6, 4, 4]
    # every row trains epochs over the whole training section (6 images, batch 2: 3 iterations), the reduced-mask
    # and SemiSeg-CAW rows too, whose loaders hold 4 masked images (2 batches)
    assert {r["timing"]["train_iterations"] for r in b} == {3} and {r["timing"]["epoch_length"] for r in b} == {3}
    assert all(r["section_epochs"] for r in b)
    assert "classification" in b[2] and "classification" not in b[0]  # only SemiSeg-CAW predicts classes
    assert "| SemiSeg-CAW (MALUNet) |" in report.read_text()
    # finished runs are reused, not retrained
    merged = run_suite(["calipers"], "PhantomA", phantom, phantom, work, **kw)
    assert (work / "PhantomA" / "unet_full-project" / "results.json").stat().st_mtime_ns == stamp
    assert len(merged["runs"]) == 18
    # another protocol of the same dataset adds its runs and keeps the others
    merged = run_suite(["few_masks"], "PhantomA", phantom, phantom, work, **{**kw, "fractions": (0.5,)})
    protocols = {(r["dataset"], r["protocol"]) for r in merged["runs"]}
    assert protocols == {
        ("PhantomA", CAL_PROJECT), ("PhantomA", CAL_OFFICIAL), ("PhantomB", "class_labels (2 class-only)"),
        ("PhantomA", "few_masks (50% masks)"),
    }  # fmt: skip
    assert len(merged["runs"]) == 24
    few_its = {r["method"]: r["timing"]["train_iterations"] for r in merged["runs"] if r["protocol"] == "few_masks (50% masks)"}
    assert set(few_its.values()) == {3}, few_its  # CRII-Net's loaders hold 3 unlabeled / 3 labeled images
    # the few-masks reference is the calipers table's project-recipe UNet, not trained again
    few = [r for r in merged["runs"] if r["protocol"] == "few_masks (50% masks)"]
    assert few[-1]["run_id"] == "unet_full-project"
    assert (work / "PhantomA" / "unet_full-project" / "results.json").stat().st_mtime_ns == stamp
    assert "## PhantomB: class_labels (2 class-only)" in report.read_text()
    # the runs travel in the results file alone (e.g. docs/results.json.gz from another machine): a new work folder
    # reuses them without training; another seed, or a file without the run, trains
    kept = atomic_write_json(tmp_path / "kept" / "results.json.gz", merged)

    def no_training(*args, **kwargs):
        raise AssertionError("trained a run the results file holds")

    monkeypatch.setattr("usseg_monai.evaluation.suite.run_benchmark", no_training)
    quiet = {**kw, "report": None}
    again = run_suite(["calipers"], "PhantomA", phantom, phantom, tmp_path / "w2", **quiet, reuse_runs=kept)
    before = {(r["protocol"], r["method"]): r for r in merged["runs"] if r["dataset"] == "PhantomA"}
    assert len(again["runs"]) == 12
    for r in again["runs"]:
        assert r["cases"] == before[(r["protocol"], r["method"])]["cases"]
        assert r["metrics"] == before[(r["protocol"], r["method"])]["metrics"]
        assert r["training_recipe"] == before[(r["protocol"], r["method"])]["training_recipe"]
    rec = json.loads((tmp_path / "w2" / "PhantomA" / "crbnet-project" / "results.json").read_text())
    assert rec["restored_from"] == str(kept) and rec["test_variants"]["radical"]["overrides"] == {"inference_mode": "radical"}
    assert len(rec["bundle_config_sha256"]) == 64
    with pytest.raises(AssertionError, match="trained a run"):
        run_suite(["calipers"], "PhantomA", phantom, phantom, tmp_path / "w3", **{**quiet, "seed": 1}, reuse_runs=kept)
    with pytest.raises(AssertionError, match="trained a run"):
        run_suite(["calipers"], "PhantomC", phantom, phantom, tmp_path / "w4", **quiet, reuse_runs=kept)


def test_reuse_mismatch_names_what_differs():
    from usseg_monai.evaluation.budgets import get_budget

    b = get_budget("cpu-quick")
    record = {"budget": {**dataclasses.asdict(b), "description": "old words", "image_size": [64, 64]},
              "bundle_overrides": {"optimizer_name": "sgd", "rotate_range": 0.26}, "seed": 0}  # fmt: skip
    assert reuse_mismatch(record, b, {"rotate_range": 0.26, "optimizer_name": "sgd"}, 0) is None
    assert "seed 0 differs from 1" in reuse_mismatch(record, b, record["bundle_overrides"], 1)
    assert "overrides" in reuse_mismatch(record, b, {"optimizer_name": "adamw", "rotate_range": 0.26}, 0)
    assert "budget" in reuse_mismatch(record, get_budget("cpu-quick", max_epochs=3), record["bundle_overrides"], 0)
    # the bundle's configs: a record without their digest (older files) is not refused for it, one with another is
    assert reuse_mismatch(record, b, record["bundle_overrides"], 0, "a" * 64) is None
    record["bundle_config_sha256"] = "b" * 64
    assert "configs changed since the run (digest bbbbbbbbbbbb now aaaaaaaaaaaa)" in reuse_mismatch(
        record, b, record["bundle_overrides"], 0, "a" * 64
    )
    assert reuse_mismatch(record, b, record["bundle_overrides"], 0, "b" * 64) is None
    # the epoch length: recorded, or (older records) the iterations over the budget's epochs
    record["timing"] = {"train_iterations": 600}  # cpu-quick: 12 epochs of 50
    assert record_epoch_length(record) == 50.0
    assert reuse_mismatch(record, b, record["bundle_overrides"], 0, None, 50) is None
    assert "epochs of 50 iterations, not 63" in reuse_mismatch(record, b, record["bundle_overrides"], 0, None, 63)
    record["timing"]["epoch_length"] = 63
    assert reuse_mismatch(record, b, record["bundle_overrides"], 0, None, 63) is None
    assert epoch_length_mismatch({"timing": {}}, 63) == "no epoch length recorded"
    assert epoch_length_mismatch({"timing": {}}, None) is None


def test_config_digest_follows_the_configs(tmp_path):
    import shutil

    from usseg_monai.bundle_paths import config_digest, resolve_bundle

    src = resolve_bundle("unet_us_2d_segmentation")
    copy = tmp_path / "b"
    shutil.copytree(src / "configs", copy / "configs")
    assert config_digest(copy) == config_digest(src)
    (copy / "configs" / "logging.conf").write_text("not a json config")  # only the JSON configs count
    assert config_digest(copy) == config_digest(src)
    train = copy / "configs" / "train.json"
    train.write_text(train.read_text().replace('"max_epochs": ', '"max_epochs":  ', 1))
    assert config_digest(copy) != config_digest(src)


def test_cli_rejects_bundle_with_suite(phantom, tmp_path, capsys):
    from usseg_monai.cli import main

    args = ["benchmark", "unet_us_2d_segmentation", "--suite", "calipers", "--train-datalist", str(phantom),
            "--test-datalist", str(phantom), "--output", str(tmp_path / "w")]
    assert main(args) == 2
    assert "either a bundle" in capsys.readouterr().err
    assert main(["benchmark", "--train-datalist", str(phantom), "--test-datalist", str(phantom), "--output", str(tmp_path / "w")]) == 2
    assert "give a bundle" in capsys.readouterr().err
    assert main(args[:1] + args[2:] + ["--section-epochs"]) == 2
    assert "--section-epochs applies to one bundle" in capsys.readouterr().err


def test_merge_keeps_every_invocation_and_replaces_a_repeated_one(tmp_path):
    from usseg_monai.evaluation.suite import _merge_results

    path = tmp_path / "results.json"

    def invocation(command, method, dice):
        run = {"dataset": "D", "protocol": "p", "method": method, "run_dir": f"/w/{method}",
               "timing": {"total_wall_s": 60.0}, "metrics": {"dice": {"mean": dice}}}
        return {"suite": {"dataset": "D", "protocols": ["p"], "command": command}, "datasets": {"D": {}}, "runs": [run]}

    merged = _merge_results(path, invocation("cmd --class-only 48", "a", 0.5))
    path.write_text(json.dumps(merged))
    merged = _merge_results(path, invocation("cmd --class-only 96", "b", 0.6))
    assert [s["command"] for s in merged["suites"]] == ["cmd --class-only 48", "cmd --class-only 96"]
    assert merged["suite"]["wall_s"] == 120.0
    path.write_text(json.dumps(merged))
    merged = _merge_results(path, invocation("cmd --class-only 48", "a", 0.7))  # the same command again
    assert [s["command"] for s in merged["suites"]] == ["cmd --class-only 96", "cmd --class-only 48"]
    assert {r["method"]: r["metrics"]["dice"]["mean"] for r in merged["runs"]} == {"a": 0.7, "b": 0.6}


class _Interrupted(Exception):
    """Stands for a suite killed in the middle of a training."""


def test_an_interrupted_suite_keeps_its_finished_runs_and_the_kept_file_its_others(phantom, tmp_path, monkeypatch):
    keep = tmp_path / "docs" / "it8.json.gz"
    other = {"dataset": "Other", "protocol": "p", "method": "m", "run_id": "x", "bundle": "b", "metrics": {}}
    atomic_write_json(keep, {"runs": [other]})  # a run of another step, kept by an earlier session
    trained: list[str] = []

    def fake_training(bundle, dl, test_dl, run_dir, *, budget, seed, bundle_overrides, test_variants, stop_after, **kw):
        if len(trained) == stop_after:
            raise _Interrupted
        trained.append(Path(run_dir).name)
        variants = {k: {"overrides": dict(v), "metrics": {"dice": {"mean": 0.4}}, "measurement_error": None, "cases": []}
                    for k, v in test_variants.items()}  # fmt: skip
        return {"bundle": bundle, "budget": dataclasses.asdict(budget), "seed": seed, "bundle_overrides": dict(bundle_overrides),
                "metrics": {"dice": {"mean": 0.5}}, "timing": {"train_iterations": 1}, "test_variants": variants}  # fmt: skip

    kw = dict(test_key="test", budget="smoke", seed=0, device="cpu", threads=1, report=None, recipes=["project"], keep=keep)
    monkeypatch.setattr("usseg_monai.evaluation.suite.run_benchmark", lambda *a, **k: fake_training(*a, **k, stop_after=2))
    with pytest.raises(_Interrupted):
        run_suite(["calipers"], "PhantomA", phantom, phantom, tmp_path / "w1", **kw)
    assert trained == ["unet_full-project", "unet_radical-project"]
    for path in (tmp_path / "w1" / "results.json", keep):
        results = read_json(path)
        assert results["suite"]["unfinished"] is True
        mine = [(r["method"], r["run_id"]) for r in results["runs"] if r["dataset"] == "PhantomA"]
        assert mine == [("UNet, full masks", "unet_full-project"), ("UNet, radical labels", "unet_radical-project")]
    assert read_json(keep)["runs"][0] == other  # the other step's run is kept
    # the next session (a new work folder) reuses the two from the kept file and trains on from the third
    trained.clear()
    monkeypatch.setattr("usseg_monai.evaluation.suite.run_benchmark", lambda *a, **k: fake_training(*a, **k, stop_after=99))
    merged = run_suite(["calipers"], "PhantomA", phantom, phantom, tmp_path / "w2", **{**kw, "reuse_runs": keep})
    assert trained == ["unet_conservative-project", "crbnet-project"]
    assert "unfinished" not in merged["suite"] and len(merged["runs"]) == 6
    final = read_json(keep)
    assert "unfinished" not in final["suite"] and final["runs"][0] == other and len(final["runs"]) == 7
    assert all(r["recipe_line"] for r in final["runs"] if r["dataset"] == "PhantomA")

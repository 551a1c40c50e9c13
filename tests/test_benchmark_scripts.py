"""The benchmark scripts' own logic (no training): the budget curve, the ablations' carved split and variants, the
official CRBNet peer's data layout."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _suite_results(path: Path, iterations: int, dice: dict[str, float]) -> Path:
    runs = [
        {"dataset": "D", "protocol": "calipers (recipe p)", "method": m, "timing": {"train_iterations": iterations},
         "budget": {"name": "cpu-decide", "image_size": [128, 128]},
         "metrics": {"dice": {"mean": v, "ci_low": v - 0.05, "ci_high": v + 0.05}}}
        for m, v in dice.items()
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs}))
    return path


def test_budget_curve_points_sorted_by_iterations(tmp_path):
    bc = _script("budget_curve")
    files = [
        _suite_results(tmp_path / "it1040" / "results.json", 1040, {"UNet": 0.74, "CRBNet": 0.72, "Other": 0.1}),
        _suite_results(tmp_path / "it260" / "results.json", 260, {"UNet": 0.65, "CRBNet": 0.66}),
    ]
    curves = bc.collect(files, ["UNet", "CRBNet"])
    table = curves[("D", "calipers (recipe p)")]
    assert set(table) == {"UNet", "CRBNet"}
    assert [(q["iterations"], q["dice"]) for q in table["UNet"]] == [(260, 0.65), (1040, 0.74)]
    md = bc.markdown(curves)
    assert "| CRBNet | 260 | 128x128 | 0.660 [0.610, 0.710] |" in md
    bc.figure(curves, tmp_path / "fig" / "curve.png")
    assert (tmp_path / "fig" / "curve.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="not found"):
        bc.main([str(tmp_path / "nope.json"), "--output", str(tmp_path / "x.png")])


def test_ablation_carves_validation_from_training_only(tmp_path):
    from usseg_monai.data.phantom import prepare_phantom

    ab = _script("ablation")
    prepare_phantom(tmp_path / "ds", n_images=20, image_size=(48, 40), seed=0, val_fraction=0.2, test_fraction=0.2)
    src = tmp_path / "ds" / "datalist.json"
    before = src.read_bytes()
    carved = ab.carve(src, seed=0, val_fraction=0.25)
    assert carved == tmp_path / "ds" / "datalist_carved_s0.json" and src.read_bytes() == before
    orig, new = json.loads(before), json.loads(carved.read_text())
    names = lambda items: {Path(it["image"]).name for it in items}  # noqa: E731
    assert names(new["training"]) | names(new["validation"]) == names(orig["training"])
    assert not names(new["training"]) & names(new["validation"]) and new["validation"]
    # the datalist's own validation and test sections are never part of the carved one
    assert not (names(new["training"]) | names(new["validation"])) & (names(orig["validation"]) | names(orig["test"]))
    assert "test" not in new and new["carved_from"]["seed"] == 0
    assert ab.carve(src, seed=0, val_fraction=0.25) == carved  # reused


def _has_id(config: dict, key: str) -> bool:
    """Whether the config defines the (possibly nested, ``a#b``) id ``key``."""
    node = config
    for part in key.split("#"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_ablation_variants_set_keys_their_bundle_has():
    """An override of a key the bundle does not define would be added silently and change nothing: every variant's
    keys (the method's recipe included) must exist in its bundle's train.json, and each method has a default."""
    ab = _script("ablation")
    assert set(ab.VARIANTS) == set(ab.METHOD_PROTOCOLS) == set(ab.METHOD_RECIPES)
    for method, variants in ab.VARIANTS.items():
        assert "default" in variants
        for name, v in variants.items():
            config = json.loads((ROOT / "bundles" / v.bundle / "configs" / "train.json").read_text())
            missing = sorted(k for k in ab.run_overrides(method, v, 3) if not _has_id(config, k))
            assert not missing, f"{method}/{name}: {v.bundle} has no {missing}"
            assert v.train_variant == "full" or v.train_variant.split(":")[0] in ("radical", "class_only", "labeled")


def test_ablation_overrides_recipe_and_classes():
    from usseg_monai.recipes import RECIPES

    ab = _script("ablation")
    crii = ab.run_overrides("crii_net", ab.VARIANTS["crii_net"]["patch_16px"])
    # the few-masks protocol's recipe under the variant's own terms, as in the results suite
    assert crii == {**RECIPES["project"].overrides(), "method": "crii_net", "patch_size": 16}
    caw = ab.run_overrides("semiseg_caw", ab.VARIANTS["semiseg_caw"]["weights_static"], 6)
    assert caw == {"backbone": "malunet", "loss_weighting": "static", "num_cls_classes": 6}
    assert ab.run_overrides("crbnet", ab.VARIANTS["crbnet"]["cap_off"], 3) == {"cap_weight": 0.0}
    imtl_l = ab.run_overrides("semiseg_caw", ab.VARIANTS["semiseg_caw"]["weights_imtl_l"], 3)
    assert imtl_l["loss#shared_modules"] is None and imtl_l["pretrain#loss#shared_modules"] is None
    assert not _has_id({"loss": {"stage": 1}}, "loss#shared_modules") and _has_id({"loss": {"stage": 1}}, "loss#stage")


def test_ablation_refuses_unknown_variant_and_missing_datalist(tmp_path, capsys):
    ab = _script("ablation")
    with pytest.raises(SystemExit):
        ab.main(["crii_net", str(tmp_path / "d.json"), "--output", str(tmp_path / "w"), "--only", "cap_off"])
    assert "unknown crii_net variant(s) ['cap_off']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ab.main(["crbnet", str(tmp_path / "d.json"), "--output", str(tmp_path / "w")])
    assert "datalist not found" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_ablation_summary_pairs_against_the_default():
    ab = _script("ablation")

    def res(bundle, dices, variants=None):
        cases = [{"image": f"i{k}", "dice": d} for k, d in enumerate(dices)]
        out = {"bundle": bundle, "metrics": {"dice": {"mean": sum(dices) / len(dices), "ci_low": 0.0, "ci_high": 1.0}},
               "cases": cases, "timing": {"train_iterations": 10, "seconds_per_iteration": 0.5}}
        if variants:
            out["test_variants"] = {
                k: {"cases": [{"image": f"i{j}", "dice": d} for j, d in enumerate(v)],
                    "metrics": {"dice": {"mean": sum(v) / len(v), "ci_low": 0.0, "ci_high": 1.0}}}
                for k, v in variants.items()
            }
        return out  # fmt: skip

    rows, table = ab.summarize("crbnet", {
        "default": res(ab.CRBNET, [0.5, 0.6, 0.7], {"radical": [0.4, 0.5, 0.6]}),
        "cap_off": res(ab.CRBNET, [0.6, 0.7, 0.8]),
    })  # fmt: skip
    by = {(r["variant"], r["inference"]): r for r in rows}
    assert by[("default", "radical")]["vs_default"]["mean"] == pytest.approx(-0.1)
    assert by[("cap_off", "mean")]["vs_default"]["mean"] == pytest.approx(0.1)
    assert "| default | mean | 0.600 [0.000, 1.000] | - |" in table
    assert "| cap_off | mean | 0.700 [0.000, 1.000] | +0.100 [+0.100, +0.100] | 10 | 0.500 | no CAP |" in table


def test_crbnet_peer_writes_the_official_layout(tmp_path):
    """benchmarks/crbnet_official_peer.py: the data the official loader reads (its folders, file lists and 0/255
    PNGs as PIL reads them: (row, col), image size kept), the conservative label inside the radical one."""
    import numpy as np
    from PIL import Image

    from bundle_utils import make_tiny_dataset

    peer = _script("crbnet_official_peer")
    data = make_tiny_dataset(tmp_path / "d", counts=(3, 2, 0))
    out = tmp_path / "official"
    counts = peer.write_official_layout(data / "datalist.json", out, "training", "validation")
    assert counts == {"training": 3, "validation": 2}
    train = (out / "train_fold1.txt").read_text().split()
    assert train == ["training_0000.png", "training_0001.png", "training_0002.png"]
    assert (out / "test_fold1.txt").read_text().split() == ["validation_0000.png", "validation_0001.png"]
    items = json.loads((data / "datalist.json").read_text())["training"]
    for name, item in zip(train, items):
        source = np.array(Image.open(data / item["image"]))
        image = np.array(Image.open(out / "imgs" / name))
        assert image.shape == source.shape and np.array_equal(image, source)  # same pixels, same orientation
        mask = np.array(Image.open(out / "masks" / name))
        assert set(np.unique(mask)) <= {0, 255} and np.array_equal(mask > 0, np.array(Image.open(data / item["label"])) > 0)
        rad, con, axis = (np.array(Image.open(out / f / name)) > 0 for f in
                          ("only_ellipse_all", "only_conservative_all", "only_axis_all"))
        assert con.any() and rad.any() and axis.any()
        assert not (con & ~rad).any()  # conservative inside radical
        assert (rad & (mask > 0)).sum() > 0.5 * (mask > 0).sum()  # the radical label covers most of the lesion


def test_crbnet_peer_refuses_a_folder_without_the_official_code(tmp_path, capsys):
    peer = _script("crbnet_official_peer")
    with pytest.raises(SystemExit):
        peer.main(["--official-code", str(tmp_path), "--datalist", "x.json", "--work", str(tmp_path / "w")])
    assert "code/train_IDAMP.py not found" in capsys.readouterr().err


def test_deciding_budget_refuses_an_unknown_step_before_anything_runs(tmp_path):
    import subprocess

    work = tmp_path / "work"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "deciding_budget.sh"), "busi", "ddti", str(work), "1", "busi-few", "curve-x"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "USSEG_DECIDING_KEEP": str(tmp_path / "keep")},
    )
    assert proc.returncode == 2 and "unknown step 'curve-x'" in proc.stderr
    assert not work.exists() and not (tmp_path / "keep").exists()


@pytest.mark.parametrize("fractions", ["0.04 1.5", "0", "0.04 ten"])
def test_deciding_budget_refuses_a_mask_fraction_outside_0_1_before_anything_runs(tmp_path, fractions):
    import subprocess

    work = tmp_path / "work"
    env = {"PATH": "/usr/bin:/bin", "USSEG_DECIDING_KEEP": str(tmp_path / "keep"), "USSEG_FEW_FRACTIONS": fractions}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "deciding_budget.sh"), "busi", "ddti", str(work), "1", "ddti-few"],
                          capture_output=True, text=True, env=env)  # fmt: skip
    bad = fractions.split()[-1]
    assert proc.returncode == 2 and f"USSEG_FEW_FRACTIONS: '{bad}' is not a fraction in (0, 1)" in proc.stderr
    assert not work.exists() and not (tmp_path / "keep").exists()


def test_the_deciding_budget_keeps_its_runs_where_git_commits_them():
    import shutil
    import subprocess

    script = (ROOT / "benchmarks" / "deciding_budget.sh").read_text()
    assert '${USSEG_DECIDING_KEEP:-$HERE/../docs/deciding/runs}' in script and '--keep "$kept"' in script
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing decides what is committed")
    # `git check-ignore` exits 1 when no ignore rule matches the path (a `runs/` rule once kept these records out)
    proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-v", "docs/deciding/runs/it1040.json.gz"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1, f"git ignores the kept benchmark records: {proc.stdout.strip()}"


def test_hidden_mask_dice_scores_the_masks_the_split_dropped(tmp_path, capsys):
    """A fresh mean teacher (teacher = copy of student) scores alike as both members, on exactly the training images
    whose masks the split dropped; batch norm re-estimated on the labeled images is a third row."""
    import torch
    from monai.bundle import ConfigParser

    from usseg_monai.bundle_paths import resolve_bundle
    from usseg_monai.data.io import DatasetError, load_datalist
    from usseg_monai.data.phantom import prepare_phantom
    from usseg_monai.data.resplit import split_datalist
    from usseg_monai.networks.crii_net import checkpoint_modules

    hm = _script("hidden_mask_dice")
    prepare_phantom(tmp_path / "ds", n_images=8, image_size=(64, 48), seed=0, val_fraction=0.25, test_fraction=0.0)
    split = tmp_path / "few" / "datalist_labeled.json"
    split_datalist(tmp_path / "ds" / "datalist.json", split, labeled=0.5, seed=0)
    hidden, labeled = hm.hidden_mask_items(split)
    training = load_datalist(split)["training"]
    assert len(hidden) == sum(it.get("supervision") == "none" for it in training) > 0
    assert len(labeled) == len(training) - len(hidden) > 0
    assert all(Path(it["label"]).is_file() and Path(it["label"]).parent.name == "labels" for it in hidden)

    bundle = resolve_bundle("crii_net_us_2d_segmentation")
    overrides = {"method": "mean_teacher"}
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    parser["method"], parser["image_size"] = "mean_teacher", [32, 32]
    net = parser.get_parsed_content("network_def")
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    torch.save({k: m.state_dict() for k, m in checkpoint_modules(net).items()}, run / "models" / "checkpoint.pt")
    record = {"bundle": "crii_net_us_2d_segmentation", "bundle_overrides": overrides,
              "budget": {"image_size": [32, 32]}, "datalists": {"train": {"path": str(split)}}}  # fmt: skip
    (run / "results.json").write_text(json.dumps(record))
    assert hm.main([str(run), "--bn-from-labeled"]) == 0
    out = capsys.readouterr().out
    assert f"Dice on {len(hidden)} training images whose masks were hidden" in out
    rows = json.loads(out.strip().splitlines()[-1])
    assert list(rows)[:2] == ["teacher (inference)", "student"] and len(rows) == 3
    assert rows["teacher (inference)"] == rows["student"] and all(0.0 <= v <= 1.0 for v in rows.values())
    with pytest.raises(DatasetError, match="derived_from"):
        hm.hidden_mask_items(tmp_path / "ds" / "datalist.json")


def test_reestimated_batch_norm_holds_the_statistics_of_the_given_images():
    import torch

    hm = _script("hidden_mask_dice")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
    images = torch.randn(5, 1, 8, 8) * 2.0 + 1.0
    fresh = hm.reestimate_batch_norm(net, images)
    feats = net[0](images).detach()
    assert torch.allclose(fresh[1].running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(fresh[1].running_var, feats.var(dim=(0, 2, 3), unbiased=True), atol=1e-4)
    assert not fresh.training and torch.equal(net[1].running_mean, torch.zeros(3))  # the original is untouched
    with pytest.raises(ValueError, match="no batch-norm layer"):
        hm.reestimate_batch_norm(torch.nn.Conv2d(1, 1, 1), images)

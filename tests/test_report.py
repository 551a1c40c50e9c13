"""The results report generator on a tiny hand-made suite results file: tables, figures, exact numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from usseg_monai.data.io import DatasetError, load_png, save_png
from usseg_monai.evaluation.figures import choose_gallery_cases
from usseg_monai.evaluation.report import bundle_results_markdown, load_suite_results, markdown_report, write_report


def _ci(mean, lo, hi, n=3):
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "n": n, "n_excluded": 0, "n_resamples": 100, "confidence": 0.95}


def _disk(shape, centre, r):
    xx, yy = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= r * r).astype(np.uint8) * 255


@pytest.fixture()
def suite(tmp_path) -> dict:
    """Two methods on three test images, with predictions on disk (as the benchmark runner leaves them)."""
    data = tmp_path / "data"
    items = []
    for k in range(3):
        name = f"img_{k}.png"
        save_png(data / "images" / name, (np.random.default_rng(k).random((40, 32)) * 255).astype(np.uint8))
        save_png(data / "labels" / name, _disk((40, 32), (20, 16), 6 + k))
        items.append({"image": f"images/{name}", "label": f"labels/{name}", "spacing": [0.5, 0.5]})
    (data / "datalist.json").write_text(json.dumps({"test": items}))
    runs = []
    for m, (method, dices, radius) in enumerate((("Reference", [0.9, 0.5, 0.7], 7), ("Method B", [0.8, 0.6, 0.65], 5))):
        run_dir = tmp_path / f"run_{m}"
        for k in range(3):
            save_png(run_dir / "predictions" / f"img_{k}_seg.png", _disk((40, 32), (19, 15), radius))
        cases = [{"image": f"images/img_{k}.png", "dice": d} for k, d in enumerate(dices)]
        runs.append(
            {
                "dataset": "Tiny",
                "protocol": "calipers",
                "method": method,
                "run_dir": str(run_dir),
                "datalists": {"test": {"path": str(data / "datalist.json"), "section": "test", "n": 3}},
                "metrics": {
                    "dice": _ci(float(np.mean(dices)), 0.123456, 0.987654),
                    "iou": _ci(0.5 + m / 10, 0.4, 0.6),
                    "hd95_mm": _ci(12.345, 10.0, 14.0),
                    "recall": _ci(0.7, 0.6, 0.8),
                    "precision": _ci(0.75, 0.6, 0.8),
                    "specificity": _ci(0.99, 0.98, 1.0),
                    "accuracy": _ci(0.97, 0.96, 0.98),
                },
                "measurement_error": {
                    "long_axis_mae_mm": _ci(1.25, 1.0, 1.5),
                    "short_axis_mae_mm": _ci(0.75, 0.5, 1.0),
                    "aspect_ratio_mae": _ci(0.0426, 0.01, 0.05),
                    "taller_than_wide_agreement": _ci(1.0, 1.0, 1.0),
                    "n_measured": 3,
                },
                "timing": {"seconds_per_iteration": 0.4321},
                "params": 1234567,
                "training_curve": [{"epoch": 1, "loss": 1.0 - m / 10}, {"epoch": 2, "loss": 0.5}],
                "cases": cases,
            }
        )
    runs[1]["classification"] = {"accuracy": 0.6667, "n": 3}
    return {"suite": {"budget": "smoke", "device": "CPU test", "wall_s": 90.0, "seed": 0}, "runs": runs}


def test_markdown_carries_numbers_over_exactly(suite):
    md = markdown_report(suite)
    assert "## Tiny: calipers" in md
    lines: dict[str, str] = {}
    for line in md.splitlines():
        if line.startswith("| "):
            lines.setdefault(line.split(" | ")[0].strip("| "), line)  # the first table's rows
    ref = lines["Reference"]
    assert "0.700 [0.123, 0.988]" in ref and "| 0.500 |" in ref and "| 12.3 |" in ref
    assert "| 1,234,567 |" in ref and "| 0.432 |" in ref and "| - |" in ref  # no classification
    assert "| 0.667 |" in lines["Method B"]  # classification accuracy
    # measurement rows (second table): long/short axis, aspect ratio, agreement, cases
    meas = [line for line in md.splitlines() if line.startswith("| Reference |")][1]
    assert "| 1.25 | 0.75 | 0.043 | 1.000 | 3 |" in meas
    assert "- budget: smoke" in md and "- wall time: 1.5 min" in md and "- device: CPU test" in md
    # Method B minus Reference per image: -0.1, +0.1, -0.05 -> mean -0.0167
    assert "Paired Dice difference vs Reference (per test image, 95% bootstrap CI): Method B -0.017 [" in md
    assert "(n 3)" in md


def test_write_report_figures_and_links(suite, tmp_path):
    out = write_report(suite, tmp_path / "docs" / "results.md")
    figs = sorted(Path(p).name for p in out["figures"])
    assert figs == ["cases_Tiny_calipers.png", "curves_Tiny_calipers.png", "dice_Tiny_calipers.png", "gallery_Tiny_calipers.png"]
    md = (tmp_path / "docs" / "results.md").read_text()
    for name in figs:
        assert f"(figures/{name})" in md
        img = load_png(tmp_path / "docs" / "figures" / name)
        assert img.shape[0] > 50 and img.shape[1] > 50
    assert not [p for p in (tmp_path / "docs").iterdir() if p.name.startswith(".")]  # atomic writes


def test_gallery_cases_are_quantiles_of_the_first_run(suite):
    assert choose_gallery_cases(suite["runs"], 2) == ["images/img_1.png", "images/img_0.png"]  # worst, best
    assert choose_gallery_cases(suite["runs"], 3) == ["images/img_1.png", "images/img_2.png", "images/img_0.png"]


def test_gallery_is_skipped_when_predictions_are_gone(suite, tmp_path):
    for r in suite["runs"]:
        r["run_dir"] = str(tmp_path / "moved")
    out = write_report(suite, tmp_path / "r2" / "results.md")
    assert not any(Path(p).name.startswith("gallery") for p in out["figures"])
    assert "gallery" not in (tmp_path / "r2" / "results.md").read_text().lower().split("## tiny")[1].split("![")[0]


def test_load_suite_results_errors(tmp_path, suite):
    with pytest.raises(DatasetError, match="suite results not found"):
        load_suite_results(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs": []}))
    with pytest.raises(DatasetError, match="no 'runs' list"):
        load_suite_results(bad)
    del suite["runs"][1]["method"]
    bad.write_text(json.dumps(suite))
    with pytest.raises(DatasetError, match=r"runs\[1\] has no 'method'"):
        load_suite_results(bad)


def test_bundle_readme_sections(suite, tmp_path):
    from usseg_monai.evaluation.report import README_BEGIN, README_END, bundle_results_markdown, update_bundle_readmes

    suite["runs"][0]["bundle"] = "unet_b"
    suite["runs"][1]["bundle"] = "method_b"
    section = bundle_results_markdown(suite, "unet_b")
    assert "**Tiny, calipers**" in section and "| Reference |" in section and "Method B" not in section
    suite["runs"][0]["budget"] = {"image_size": [64, 64], "max_epochs": 8, "max_iterations": 0, "batch_size": 8}
    assert "**Tiny, calipers** (64x64, 8 epochs, batch 8)\n" in bundle_results_markdown(suite, "unet_b")
    assert bundle_results_markdown(suite, "other") == ""
    for name, marked in (("unet_b", True), ("method_b", False)):
        (tmp_path / name / "docs").mkdir(parents=True)
        body = f"# {name}\n\n## Results\n" + (f"{README_BEGIN}\nold\n{README_END}\n" if marked else "") + "## After\n"
        (tmp_path / name / "docs" / "README.md").write_text(body)
    written = update_bundle_readmes(suite, tmp_path)
    assert written == [str(tmp_path / "unet_b" / "docs" / "README.md")]
    text = (tmp_path / "unet_b" / "docs" / "README.md").read_text()
    assert "old" not in text and "| Reference | 0.700 [0.123, 0.988] |" in text and text.endswith("## After\n")
    assert "Method B" not in (tmp_path / "method_b" / "docs" / "README.md").read_text()


def test_report_cli(suite, tmp_path, capsys):
    from usseg_monai.cli import main

    (tmp_path / "results.json").write_text(json.dumps(suite))
    (tmp_path / "pre.md").write_text("Data: prepared with `usseg prepare` (seed 0).")
    args = ["report", str(tmp_path / "results.json"), "--output", str(tmp_path / "out" / "results.md")]
    assert main(args + ["--preamble", str(tmp_path / "pre.md"), "--gallery-cases", "2"]) == 0
    assert (tmp_path / "out" / "figures" / "dice_Tiny_calipers.png").is_file()
    md = (tmp_path / "out" / "results.md").read_text()
    assert md.startswith("# Results\n\nData: prepared with `usseg prepare` (seed 0).\n")
    assert main(["report", str(tmp_path / "missing.json"), "--output", str(tmp_path / "o.md")]) == 2
    assert "suite results not found" in capsys.readouterr().err


def test_every_invocation_and_differing_budgets_are_listed(suite):
    suite["suites"] = [
        {"dataset": "Tiny", "budget": "smoke", "command": "usseg benchmark --suite calipers --class-only 48"},
        {"dataset": "Tiny", "budget": "cpu-quick", "command": "usseg benchmark --suite calipers --class-only 96"},
    ]
    md = markdown_report(suite)
    assert "- commands (2 invocations, in the order run):" in md
    assert md.index("`usseg benchmark --suite calipers --class-only 48`") < md.index("--class-only 96`")
    assert "**budgets differ between invocations**: cpu-quick, smoke" in md
    suite["suites"] = suite["suites"][:1]
    md = markdown_report(suite)
    assert "- commands (1 invocation, in the order run):" in md and "budgets differ" not in md


def test_time_per_protocol_counts_each_run_once(suite):
    for r, (t, setup, train) in zip(suite["runs"], ((90.0, 6.0, 60.0), (150.0, 12.0, 120.0))):
        r["timing"].update(total_wall_s=t, setup_s=setup, train_wall_s=train)
    shared = dict(suite["runs"][0], protocol="few_masks")  # the same run listed under a second protocol
    suite["runs"].append(shared)
    md = markdown_report(suite)
    assert "| dataset | protocol | runs | minutes | set-up | training | test |" in md
    assert "| Tiny | calipers | 2 | 4.0 | 0.3 | 3.0 | 0.7 |" in md  # set-up reported apart from training
    assert "| Tiny | few_masks | 1 | 1.5 | 0.1 | 1.0 | 0.4 |" in md
    del suite["runs"][0]["timing"]["setup_s"]  # an older results file: the total without its parts
    assert "| Tiny | calipers | 2 | 4.0 | - | - | - |" in markdown_report(suite)
    del suite["runs"][1]["timing"]["total_wall_s"]  # a run without a time: no row rather than a wrong sum
    assert "| Tiny | calipers |" not in markdown_report(suite)


def test_per_protocol_budgets_are_stated_when_they_differ(suite):
    base = {"name": "paper", "image_size": [256, 256], "max_epochs": 200, "max_iterations": 0, "batch_size": 8}
    suite["suite"]["budget_settings"] = base
    suite["suite"]["protocol_budgets"] = {"few_masks": dict(base)}
    assert "budget per protocol" not in markdown_report(suite)  # every protocol ran the budget as it is
    suite["suite"]["protocol_budgets"]["calipers"] = {**base, "max_iterations": 30000, "batch_size": 24}
    md = markdown_report(suite)
    assert "- budget per protocol: few_masks: 256x256, 200 epochs, batch 8; calipers: 256x256, 30000 iterations, batch 24\n" in md


def test_at_a_glance_tests_each_claim_pair_on_the_same_images():
    from usseg_monai.evaluation.report import claim_rows

    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.8, size=20)

    def run(protocol, method, dices, dataset="Tiny"):
        cases = [{"image": f"img_{k}.png", "dice": float(d)} for k, d in enumerate(dices)]
        return {"dataset": dataset, "protocol": protocol, "method": method, "cases": cases, "metrics": {}}

    runs = [
        run("few_masks (4% masks)", "labeled only", base),
        run("few_masks (4% masks)", "mean teacher", base + 0.1),
        run("few_masks (4% masks)", "CRII-Net", base + 0.1),
        run("calipers", "UNet, full masks", base),
        run("calipers", "CRBNet (calipers only)", base - 0.05),  # no pseudo-label rows: those pairs are left out
        run("calipers", "Other method", base),
    ]
    rows = claim_rows(runs)
    assert rows == [
        ["Tiny", "few_masks (4% masks)", "CRII-Net", "labeled only", "+0.100 [+0.100, +0.100]", "higher"],
        ["Tiny", "few_masks (4% masks)", "CRII-Net", "mean teacher", "+0.000 [+0.000, +0.000]", "no clear difference"],
        ["Tiny", "calipers", "CRBNet (calipers only)", "UNet, full masks", "-0.050 [-0.050, -0.050]", "lower"],
    ]
    md = markdown_report({"suite": {}, "runs": runs})
    assert "## At a glance: the papers' claims" in md and "- few_masks: CRII-Net beats" in md
    assert "| Tiny | calipers | CRBNet (calipers only) | UNet, full masks | -0.050 [-0.050, -0.050] | lower |" in md
    assert md.index("At a glance") < md.index("## Tiny: few_masks (4% masks)")


def test_targets_compare_with_the_best_baseline_and_state_the_verdict():
    from usseg_monai.evaluation.claims import target_verdict
    from usseg_monai.evaluation.report import target_rows

    assert target_verdict({"ci_low": 0.0, "ci_high": 0.1}, 0.0, strict=False) == "met"
    assert target_verdict({"ci_low": 0.0, "ci_high": 0.1}, 0.0, strict=True) == "not decided"
    assert target_verdict({"ci_low": -0.1, "ci_high": 0.0}, 0.0, strict=True) == "missed"
    assert target_verdict({"ci_low": 0.01, "ci_high": 0.09}, 0.07, strict=False) == "not decided"
    assert target_verdict({"ci_low": -0.05, "ci_high": 0.05}, 0.07, strict=False) == "missed"

    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.8, size=30)
    noise = rng.normal(0, 0.02, size=30)

    def run(protocol, method, dices):
        cases = [{"image": f"img_{k}.png", "dice": float(d)} for k, d in enumerate(dices)]
        return {"dataset": "T", "protocol": protocol, "method": method, "cases": cases,
                "metrics": {"dice": {"mean": float(np.mean(dices))}}}  # fmt: skip

    runs = [
        run("few_masks (4% masks)", "labeled only", base),
        run("few_masks (4% masks)", "mean teacher", base + 0.02),
        run("calipers (recipe project)", "UNet, full masks", base),
        run("calipers (recipe project)", "UNet, radical labels", base - 0.1),
        run("calipers (recipe project)", "CRBNet (calipers only)", base + 0.05 + noise),
        run("few_masks (4% masks)", "CRII-Net", base + 0.05 + noise),
    ]
    rows = {(r[1], r[3]): r for r in target_rows(runs)}
    few = rows[("few_masks (4% masks)", "mean teacher")]
    assert few[4] == ">= +0.07" and few[6] == "missed" and abs(float(few[5].split()[0]) - 0.03) < 0.01  # +0.05 - 0.02 < 0.07
    assert rows[("few_masks (4% masks)", "labeled only")][6] == "met"
    assert rows[("calipers (recipe project)", "UNet, full masks")][6] == "met"
    assert rows[("calipers (recipe project)", "UNet, radical labels")][4] == "> +0.00"
    md = markdown_report({"suite": {}, "runs": runs})
    assert "## Targets (#16)" in md and "| T | few_masks (4% masks) | CRII-Net | mean teacher | >= +0.07 |" in md


def test_several_suites_make_one_report_with_a_table_per_budget(suite, tmp_path, capsys):
    from usseg_monai.cli import main
    from usseg_monai.evaluation.report import combine_results

    suite["datasets"] = {"Tiny": {"train": {"path": "/w/quick/d.json"}}}
    suite["suite"]["command"] = "usseg benchmark --suite calipers --budget smoke"
    decide = json.loads(json.dumps(suite))
    decide["suite"].update(budget="cpu-decide", command="usseg benchmark --suite calipers --budget cpu-decide")
    decide["datasets"] = {"Tiny": {"train": {"path": "/w/decide/d.json"}}}
    for r in decide["runs"]:
        r["run_dir"] += "_decide"
        r["cases"] = [{**c, "dice": c["dice"] - 0.1} for c in r["cases"]]
    combined = combine_results([suite, decide])
    assert [r["protocol"] for r in combined["runs"]] == ["calipers", "calipers", "calipers at cpu-decide", "calipers at cpu-decide"]
    assert [r["cases"] for r in combined["runs"][2:]] == [r["cases"] for r in decide["runs"]]  # rows carried over
    assert suite["runs"][0]["protocol"] == "calipers" and decide["runs"][0]["protocol"] == "calipers"  # inputs kept
    assert combined["datasets"] == {"Tiny": suite["datasets"]["Tiny"], "Tiny (cpu-decide)": decide["datasets"]["Tiny"]}
    md = markdown_report(combined)
    assert "## Tiny: calipers\n" in md and "## Tiny: calipers at cpu-decide\n" in md
    assert "**budgets differ between invocations**: cpu-decide, smoke" in md
    with pytest.raises(ValueError, match="both have the row 'Reference' of Tiny: calipers"):
        combine_results([suite, suite])
    # the CLI: several files, one report
    for name, res in (("quick.json", suite), ("decide.json", decide)):
        (tmp_path / name).write_text(json.dumps(res))
    out = tmp_path / "out" / "results.md"
    assert main(["report", str(tmp_path / "quick.json"), str(tmp_path / "decide.json"), "--output", str(out)]) == 0
    assert "## Tiny: calipers at cpu-decide" in out.read_text()
    assert (out.parent / "figures" / "dice_Tiny_calipers-at-cpu-decide.png").is_file()
    assert main(["report", str(tmp_path / "quick.json"), str(tmp_path / "quick.json"), "--output", str(out)]) == 2
    assert "both have the row" in capsys.readouterr().err


def test_report_names_every_device_the_runs_trained_on(suite):
    """A report merging runs from two machines says so, in the facts and under a table that mixes them, instead of
    naming the first run's device for all (s/it are only comparable on one device)."""
    for r in suite["runs"]:
        r["device"] = "CPU A (2 logical cores)"
    suite["runs"][1]["device"] = "CPU B (2 logical cores)"
    md = markdown_report(suite)
    n = len(suite["runs"])
    facts = next(line for line in md.splitlines() if line.startswith("- device: "))
    assert facts == (
        f"- device: CPU A (2 logical cores) ({n - 1} row{'s' if n > 2 else ''}); CPU B (2 logical cores) (1 row); "
        "s/it compare only between runs on the same device"
    )
    assert md.count("Devices differ in this table: ") == 1
    del suite["runs"][0]["device"]  # a record without a device is not a second device
    assert "Devices differ" not in markdown_report(suite)
    suite["runs"][0]["device"] = "CPU A (2 logical cores)"
    suite["runs"][1]["bundle"] = "method_b"  # a bundle's README names the devices of its own rows
    assert "device: CPU B (2 logical cores); test:" in bundle_results_markdown(suite, "method_b")
    for r in suite["runs"]:
        r["device"] = "CPU A (2 logical cores)"
    md = markdown_report(suite)
    assert "- device: CPU A (2 logical cores)\n" in md and "Devices differ" not in md

"""usseg_monai.bundle_checks: the model-zoo's checks of a bundle folder, and each check failing for its reason.

The 1-epoch-trained copy of every bundle is checked in tests/test_bundles.py (test_zoo_checks_on_trained_copy);
here one bundle copy with untrained weights (what the zoo's CI produces with _produce_fake_weights) is enough.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from bundle_utils import BUNDLES_DIR

from usseg_monai.bundle_checks import README_SECTIONS, check_bundle, main

SCHEMA = Path(__file__).parent / "data" / "bundle_metadata_schema.json"


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    from monai.bundle import ConfigParser

    src = BUNDLES_DIR / "unet_us_2d_segmentation"
    dst = tmp_path / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("models", "eval"))
    parser = ConfigParser()
    parser.read_config(str(dst / "configs" / "inference.json"))
    (dst / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), dst / "models" / "model.pt")
    return dst


def _by_name(results):
    return {r.name: r for r in results}


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=4))


def test_min_mode_runs_the_premerge_checks(bundle_copy):
    results = check_bundle(bundle_copy, schema=SCHEMA, mode="min")
    assert [r.name for r in results] == ["layout", "version", "metadata"]
    assert all(r.passed for r in results), [r.line() for r in results]


def test_full_mode_exports_torchscript(bundle_copy):
    results = _by_name(check_bundle(bundle_copy, schema=SCHEMA, mode="full"))
    failed = [r.line() for r in results.values() if not r.passed and r.name != "readme"]
    assert not failed, failed
    ts = bundle_copy / "models" / "verify_model.ts"
    assert ts.is_file() and torch.jit.load(str(ts)) is not None


def test_missing_model_stops_at_layout(bundle_copy):
    (bundle_copy / "models" / "model.pt").unlink()
    results = check_bundle(bundle_copy, schema=SCHEMA)
    assert len(results) == 1 and not results[0].passed
    assert "models/model.pt" in results[0].message


def test_version_not_in_changelog(bundle_copy):
    _edit_json(bundle_copy / "configs" / "metadata.json", lambda m: m.update(version="9.9.9"))
    r = _by_name(check_bundle(bundle_copy, schema=SCHEMA, mode="min"))["version"]
    assert not r.passed and "'9.9.9' is not a key of changelog" in r.message


def test_placeholder_eval_metric_fails_schema_and_review(bundle_copy):
    _edit_json(bundle_copy / "configs" / "metadata.json", lambda m: m.update(eval_metrics={"mean_dice": "not measured yet"}))
    results = _by_name(check_bundle(bundle_copy, schema=SCHEMA))
    assert not results["metadata"].passed
    assert not results["metadata_values"].passed and "not measured yet" in results["metadata_values"].message


def test_missing_required_field_and_supported_apps(bundle_copy):
    def edit(m):
        del m["numpy_version"]
        del m["supported_apps"]

    _edit_json(bundle_copy / "configs" / "metadata.json", edit)
    results = _by_name(check_bundle(bundle_copy, schema=SCHEMA))
    assert not results["metadata"].passed and "numpy_version" in results["metadata"].message
    assert not results["metadata_values"].passed and "supported_apps" in results["metadata_values"].message


def test_handler_attached_in_initialize(bundle_copy):
    expr = "$@progress_bar_handler.attach(@train#trainer)"
    _edit_json(bundle_copy / "configs" / "train.json", lambda c: c["initialize"].append(expr))
    r = _by_name(check_bundle(bundle_copy, schema=SCHEMA))["handlers"]
    assert not r.passed and "train.json initialize attaches handlers" in r.message and expr in r.message


def test_dataset_dir_written_on_read(bundle_copy):
    expr = "$usseg_monai.data.phantom.ensure_phantom_dataset(spatial_dims=@spatial_dims, n_images=2, image_size=24)"
    _edit_json(bundle_copy / "configs" / "train.json", lambda c: c.update(dataset_dir=expr))
    r = _by_name(check_bundle(bundle_copy, schema=SCHEMA))["dataset_dir"]
    assert not r.passed and "reading dataset_dir wrote" in r.message


def test_readme_sections(bundle_copy):
    readme = bundle_copy / "docs" / "README.md"
    readme.write_text("# Title\n" + "".join(f"## **{s}** (Optional)\ntext\n" for s in README_SECTIONS))
    assert _by_name(check_bundle(bundle_copy, schema=SCHEMA))["readme"].passed
    readme.write_text("# Title\n```\n## **Authors**\n```\n" + "".join(f"## {s}\n" for s in README_SECTIONS[1:]))
    r = _by_name(check_bundle(bundle_copy, schema=SCHEMA))["readme"]
    assert not r.passed and "['Authors']" in r.message  # a heading inside a code block does not count
    readme.write_text("# Title\n" + "".join(f"## {s}\n" for s in reversed(README_SECTIONS)))
    r = _by_name(check_bundle(bundle_copy, schema=SCHEMA))["readme"]
    assert not r.passed and "not in the template's order" in r.message


def test_cli_exit_code_and_bad_folder(bundle_copy, tmp_path, capsys):
    assert main([str(bundle_copy), "--schema", str(SCHEMA), "--mode", "min"]) == 0
    assert "all checks passed" in capsys.readouterr().out
    (bundle_copy / "LICENSE").unlink()
    assert main([str(bundle_copy), "--schema", str(SCHEMA), "--mode", "min"]) == 1
    assert "FAIL unet_us_2d_segmentation: layout" in capsys.readouterr().out
    with pytest.raises(ValueError, match="is not a bundle folder"):
        check_bundle(tmp_path / "nothing")
    with pytest.raises(ValueError, match="schema file .* does not exist"):
        check_bundle(bundle_copy, schema=tmp_path / "none.json", mode="min")

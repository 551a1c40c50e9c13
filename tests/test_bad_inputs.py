"""Bad input to bundle runs (#19 items 5 and 6): each case is refused before the first iteration with an error
that names the setting or file and what is wrong, and the dataset's files are left exactly as they were.

The cases run through ``monai.bundle.ConfigWorkflow`` (what ``python -m monai.bundle run`` builds); one test runs
the real command line and checks the one-line ``ERROR: ...`` form of
:func:`usseg_monai.config_checks.install_error_hook`.
Converter, caliper-file and datalist-path cases live beside their modules (test_prepare_*.py, test_calipers.py,
test_path_rule.py); the kill-and-resume test is test_resume_kill.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_utils import BUNDLES_DIR, PYTHON, clean_env, make_tiny_dataset
from PIL import Image

from usseg_monai.config_checks import (
    SETTING_RULES,
    TRACEBACK_ENV,
    _input_error,
    check_checkpoint,
    check_data_items,
    check_settings,
    image_header,
)
from usseg_monai.data.io import DatasetError, save_volume
from usseg_monai.utils.errors import CheckpointError, CheckpointNotFoundError, ConfigError, InputError

UNET2D = BUNDLES_DIR / "unet_us_2d_segmentation"
UNET3D = BUNDLES_DIR / "unet_us_3d_segmentation"
CRBNET2D = BUNDLES_DIR / "crbnet_us_2d_segmentation"
TINY = {2: [32, 32], 3: [32, 32, 16]}


def _tree_hash(root: Path) -> dict[str, str]:
    files = (p for p in sorted(root.rglob("*")) if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _edit(data: Path, fn: Callable[[dict], None], name: str = "datalist.json") -> None:
    dl = json.loads((data / "datalist.json").read_text())
    fn(dl)
    (data / name).write_text(json.dumps(dl))


# each case: (id, bundle, workflow files, setup(data, work) -> overrides, expected message fragment)
def _override(**ov):
    return lambda data, work: ov


def _datalist(fn):
    def setup(data, work):
        _edit(data, fn, "bad.json")
        return {"data_list_file_path": str(data / "bad.json")}

    return setup


def _set(section, i, key, value):
    def fn(dl):
        dl[section][i][key] = value

    return fn


def _two_channel_label(data, work):
    dl = json.loads((data / "datalist.json").read_text())
    with Image.open(data / dl["training"][0]["label"]) as im:
        Image.merge("LA", (im, im)).save(data / "la_mask.png")
    _edit(data, _set("training", 0, "label", "la_mask.png"), "bad.json")
    return {"data_list_file_path": str(data / "bad.json")}


def _label_of_another_size(data, work):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(data / "small_mask.png")
    _edit(data, _set("training", 0, "label", "small_mask.png"), "bad.json")
    return {"data_list_file_path": str(data / "bad.json")}


def _not_an_image(data, work):
    (data / "notes.png").write_text("not a picture")
    _edit(data, _set("training", 0, "image", "notes.png"), "bad.json")
    return {"data_list_file_path": str(data / "bad.json")}


def _flat_volume(data, work):
    save_volume(data / "flat.nii.gz", np.zeros((30, 26), np.uint8), (0.5, 0.5))
    _edit(data, _set("training", 0, "image", "flat.nii.gz"), "bad.json")
    return {"data_list_file_path": str(data / "bad.json")}


def _bad_caliper_json(data, work):
    (data / "calipers" / "broken.json").write_text("{not json")
    _edit(data, _set("training", 0, "calipers", "calipers/broken.json"), "bad.json")
    return {"data_list_file_path": str(data / "bad.json")}


def _file_in_the_way(key):
    """``key`` (a folder the run writes into) set below a plain file: not creatable, even for root."""

    def setup(data, work):
        work.mkdir(parents=True, exist_ok=True)
        (work / "blocker").write_text("a file, not a folder")
        return {key: str(work / "blocker" / "sub")}

    return setup


def _damaged_model(data, work):
    (work / "models").mkdir(parents=True)
    (work / "models" / "model.pt").write_bytes(b"PK\x03\x04 truncated")
    return {}


CASES = [
    ("max_epochs-string", UNET2D, ["train.json"], _override(max_epochs="x"),
     "setting 'max_epochs' must be a positive integer (epochs), got 'x' (str); e.g. --max_epochs 10"),
    ("max_epochs-zero", UNET2D, ["train.json"], _override(max_epochs=0),
     "setting 'max_epochs' must be a positive integer"),
    ("batch_size-float", UNET2D, ["train.json"], _override(batch_size=2.5),
     "setting 'batch_size' must be a positive integer"),
    ("learning_rate-negative", UNET2D, ["train.json"], _override(learning_rate=-0.1),
     "setting 'learning_rate' must be a finite positive number, got -0.1"),
    ("learning_rate-nan", UNET2D, ["train.json"], _override(learning_rate=float("nan")), "setting 'learning_rate'"),
    ("cache_rate-above-1", UNET2D, ["train.json"], _override(cache_rate=2),
     "setting 'cache_rate' must be a number in [0, 1]"),
    ("image_size-one-entry", UNET2D, ["train.json"], _override(image_size=[64]), "setting 'image_size' must be a list"),
    ("image_size-2d-in-3d", UNET3D, ["train.json"], _override(image_size=[32, 32]),
     "setting 'image_size' [32, 32] has 2 entries for spatial_dims 3"),
    ("progress_bar-word", UNET2D, ["train.json"], _override(progress_bar="maybe"),
     "setting 'progress_bar' must be true or false"),
    ("checkpoint_interval-negative", UNET2D, ["train.json"], _override(checkpoint_interval=-1),
     "setting 'checkpoint_interval' must be an integer >= 0"),
    ("num_workers-string", UNET2D, ["train.json"], _override(num_workers="two"), "setting 'num_workers'"),
    ("optimizer-unknown", UNET2D, ["train.json"], _override(optimizer_name="adagrad"),
     "setting 'optimizer_name' must be one of sgd, adamw, adam, got 'adagrad'"),
    ("missing-image", UNET2D, ["train.json"], _datalist(_set("training", 1, "image", "images/gone.png")),
     "training[1] 'image' names a missing file"),
    ("folder-as-image", UNET2D, ["train.json"], _datalist(_set("training", 0, "image", "images")),
     "training[0] 'image' names a folder, not a file"),
    ("empty-section", UNET2D, ["train.json"], _datalist(lambda dl: dl.update(training=[])),
     "section 'training' is empty"),
    ("no-image-key", UNET2D, ["train.json"], _datalist(lambda dl: dl["validation"][0].pop("image")),
     "validation[0] has no 'image' key"),
    ("image-not-a-string", UNET2D, ["train.json"], _datalist(_set("training", 0, "image", 7)),
     "training[0] 'image' must be a non-empty file path"),
    ("path-escapes", UNET2D, ["train.json"], _datalist(_set("training", 0, "image", "../../etc/hosts")),
     "outside the dataset"),
    ("absolute-path-outside", UNET2D, ["train.json"], _datalist(_set("validation", 0, "label", "/etc/hosts")),
     "validation[0] 'label' = '/etc/hosts' resolves to /etc/hosts, outside the dataset"),
    ("not-an-image", UNET2D, ["train.json"], _not_an_image, "notes.png: not an image this 2D bundle can read"),
    ("two-channel-mask", UNET2D, ["train.json"], _two_channel_label, "la_mask.png: the mask has 2 channels"),
    ("mask-size-differs", UNET2D, ["train.json"], _label_of_another_size,
     "small_mask.png: the mask is 10x10 but its image"),
    ("2d-file-in-3d-bundle", UNET3D, ["train.json"], _flat_volume,
     "flat.nii.gz: a 2D image (30, 26), this bundle needs 3D"),
    ("broken-caliper-json", CRBNET2D, ["train.json"], _bad_caliper_json, "broken.json is not valid JSON"),
    ("output-folder-blocked", UNET2D, ["train.json"], _file_in_the_way("output_dir"),
     ("output folder (output_dir) ", "blocker/sub is not writable (Not a directory); choose another folder")),
    ("checkpoint-folder-blocked", UNET2D, ["train.json"], _file_in_the_way("ckpt_dir"),
     ("checkpoint folder (ckpt_dir) ", "blocker/sub is not writable (Not a directory); choose another folder")),
    ("inference-output-blocked", UNET2D, ["inference.json"], _file_in_the_way("output_dir"),
     ("output folder (output_dir) ", "blocker/sub is not writable (Not a directory); choose another folder")),
    ("resume-without-checkpoint", UNET2D, ["train.json"], _override(resume=True), "resume: no checkpoint"),
    ("inference-without-model", UNET2D, ["inference.json"], _override(), "no model checkpoint at"),
    ("evaluate-damaged-model", UNET2D, ["train.json", "evaluate.json"], _damaged_model,
     "model.pt is damaged or not a checkpoint"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bundle_refuses_bad_input_before_training(case, tmp_path):
    from monai.bundle import ConfigWorkflow

    _, bundle, files, setup, expected = case
    d = 3 if "3d" in bundle.name else 2
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=d, counts=(3, 1, 1))
    work = tmp_path / "work"
    overrides = {"bundle_root": str(work), "dataset_dir": str(data), "image_size": TINY[d], "max_epochs": 1,
                 "batch_size": 2, "progress_bar": False}
    overrides.update(setup(data, work))
    if "inference.json" in files:
        overrides = {k: v for k, v in overrides.items() if k not in ("max_epochs", "batch_size", "progress_bar")}
        overrides["data_list_file_path"] = str(data / "datalist.json")
    before = _tree_hash(data)
    cfg = [str(bundle / "configs" / f) for f in files]
    wf = ConfigWorkflow(config_file=cfg if len(cfg) > 1 else cfg[0],
                        meta_file=str(bundle / "configs" / "metadata.json"),
                        logging_file=False, workflow_type="train" if files == ["train.json"] else "infer", **overrides)
    started = []
    with pytest.raises(Exception) as info:
        wf.initialize()
        started.append(True)
        wf.run()
    found = _input_error(info.value)
    assert isinstance(found, InputError), info.value
    for fragment in expected if isinstance(expected, tuple) else (expected,):
        assert fragment in str(found), str(found)
    if not str(expected).startswith("resume"):
        assert not started, "the error must come from initialize, before the run starts"
    assert not (work / "models" / "checkpoint.pt").exists()
    assert _tree_hash(data) == before  # the source dataset is never modified


def test_command_line_prints_one_error_line(tmp_path):
    """``python -m monai.bundle run`` with a bad override: exit status 1, ``ERROR: <message>`` and no traceback;
    USSEG_TRACEBACK=1 brings the traceback back."""
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=2, counts=(2, 1, 0))
    cmd = [PYTHON, "-m", "monai.bundle", "run", "--config_file", str(UNET2D / "configs" / "train.json"),
           "--meta_file", str(UNET2D / "configs" / "metadata.json"), "--bundle_root", str(tmp_path / "work"),
           "--dataset_dir", str(data), "--max_epochs", '"x"']
    r = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert r.returncode == 1
    assert "ERROR: bundle config: setting 'max_epochs' must be a positive integer (epochs), got 'x' (str)" in r.stderr
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**clean_env(), TRACEBACK_ENV: "1"}, timeout=300)
    assert r.returncode == 1 and "Traceback" in r.stderr and "ConfigError" in r.stderr


@pytest.mark.parametrize("config", ["inference.json", "evaluate.json"])
def test_inference_and_evaluate_without_a_model_in_a_fresh_process(config, tmp_path):
    """A fresh interpreter (nothing of the project imported beforehand) gets through every check of ``initialize``
    up to the checkpoint check, which names the missing model; the output folder was created by its check."""
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=2, counts=(2, 1, 1))
    files = [str(UNET2D / "configs" / f) for f in (["train.json", config] if config == "evaluate.json" else [config])]
    cmd = [PYTHON, "-m", "monai.bundle", "run", "--config_file", json.dumps(files),
           "--meta_file", str(UNET2D / "configs" / "metadata.json"), "--bundle_root", str(tmp_path / "work"),
           "--dataset_dir", str(data)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    model = tmp_path / "work" / "models" / "model.pt"
    assert f"ERROR: no model checkpoint at {model}: train the bundle first" in r.stderr
    assert (tmp_path / "work" / "eval").is_dir()


# ------------------------------------------------------------------ the checks as functions


def test_check_settings_accepts_the_bundle_defaults_and_bool_strings():
    for bundle in sorted(BUNDLES_DIR.iterdir()):
        cfg = json.loads((bundle / "configs" / "train.json").read_text())
        plain = {
            k: v for k, v in cfg.items()
            if k in SETTING_RULES and not (isinstance(v, str) and v.startswith(("$", "@")))
        }
        assert check_settings(plain) == plain
        assert set(cfg["checked_settings"]) == {k for k in SETTING_RULES if k in cfg}, bundle.name
    assert check_settings({"amp": "False", "resume": True, "class_only": "rest", "labeled_fraction": None, "seed": 0})
    with pytest.raises(ConfigError, match=r"'seed' must be an integer >= 0, got True \(bool\)"):
        check_settings({"seed": True})
    with pytest.raises(ConfigError, match="'labeled_fraction' must be a count >= 0, a fraction in"):
        check_settings({"labeled_fraction": 1.5})
    assert check_settings({"unknown_key": object()})  # keys without a rule are not checked


def test_image_header_sizes_channels_and_errors(tmp_path):
    Image.fromarray(np.zeros((9, 13, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert image_header(tmp_path / "rgb.png", 2) == ((13, 9), 3)
    save_volume(tmp_path / "v.nii.gz", np.zeros((5, 6, 7), np.uint8), (1.0, 1.0, 2.0))
    assert image_header(tmp_path / "v.nii.gz", 3) == ((5, 6, 7), 1)
    save_volume(tmp_path / "v.nrrd", np.zeros((5, 6, 7), np.uint8), (1.0, 1.0, 2.0))
    assert image_header(tmp_path / "v.nrrd", 3) == ((5, 6, 7), 1)
    (tmp_path / "junk.nii.gz").write_bytes(b"\x1f\x8b junk")
    with pytest.raises(DatasetError, match=r"junk\.nii\.gz: not a volume this 3D bundle can read"):
        image_header(tmp_path / "junk.nii.gz", 3)
    import nibabel as nib

    zero = nib.Nifti1Image(np.zeros((5, 6, 7), np.uint8), np.eye(4))
    zero.header["pixdim"] = [1, 1, 0, 2, 1, 1, 1, 1]  # y spacing 0 mm
    nib.save(zero, tmp_path / "zero.nii.gz")
    with pytest.raises(DatasetError, match=r"zero\.nii\.gz: its header declares voxel spacing \[1\.0, 0\.0, 2\.0\]"):
        image_header(tmp_path / "zero.nii.gz", 3)
    items = [{"image": str(tmp_path / "rgb.png"), "label": str(tmp_path / "rgb.png")}]
    assert check_data_items([items, {"labeled": items, "unlabeled": []}], spatial_dims=2) == 1  # each file once


def test_check_checkpoint(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no model checkpoint at .*train the bundle first"):
        check_checkpoint(tmp_path / "model.pt")
    (tmp_path / "model.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"model\.pt is damaged or not a checkpoint"):
        check_checkpoint(tmp_path / "model.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "ok.pt")
    assert check_checkpoint(tmp_path / "ok.pt") == tmp_path / "ok.pt"

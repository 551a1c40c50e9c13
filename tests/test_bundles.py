"""Model-zoo style tests, run on every bundle folder under ``bundles/`` (later method bundles included).

Each bundle is trained for one epoch on a tiny dataset (``tests/bundle_utils.make_tiny_dataset``: odd image
sizes, spacing in the datalist, an empty mask in the test section), then evaluated and run for inference
with ``monai.bundle.ConfigWorkflow``; it is also run by ``python -m monai.bundle`` from another working
directory without PYTHONPATH, exported to TorchScript, and trained by ``torchrun`` with two CPU processes.
The data-loading pieces the bundles use (``load_datalist_section``, ``EnsureGrayscaled``,
``CaseMetricHandler``) get unit tests here too.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_utils import PYTHON, bundle_dirs, bundle_spatial_dims, clean_env, make_tiny_dataset

from usseg_monai.data.io import DatasetError, cache_dir, load_png, load_volume, save_png

BUNDLES = bundle_dirs()
IDS = [b.name for b in BUNDLES]
TINY_SIZE = {2: [32, 32], 3: [32, 32, 16]}
CASE_METRICS = ("dice", "iou", "hd95_mm", "asd_mm", "recall", "precision", "specificity", "accuracy")


def _semi_supervised(bundle: Path) -> bool:
    """Bundles with a second stream of images without masks (train.json ``semi_supervised``: SemiSeg-CAW, CRII-Net)."""
    return bool(json.loads((bundle / "configs" / "train.json").read_text()).get("semi_supervised", False))


def train_label_key(bundle: Path) -> str:
    """The datalist key a bundle trains from: ``label`` (masks) or e.g. ``calipers`` (CRBNet)."""
    return json.loads((bundle / "configs" / "train.json").read_text())["train_label_key"]


def _tiny_overrides(bundle: Path, work: Path, dataset: Path) -> dict:
    d = bundle_spatial_dims(bundle)
    return {
        "bundle_root": str(work),
        "dataset_dir": str(dataset),
        "image_size": TINY_SIZE[d],
        "max_epochs": 1,
        "batch_size": 2,
        "progress_bar": False,
        "cache_rate": 1.0,
    }


def _cli(overrides: dict) -> list[str]:
    args = []
    for k, v in overrides.items():
        args += [f"--{k}", json.dumps(v) if isinstance(v, (list, bool)) else str(v)]
    return args


def _workflow(bundle: Path, files: list[str], workflow_type: str, **override):
    from monai.bundle import ConfigWorkflow

    cfg = [str(bundle / "configs" / f) for f in files]
    return ConfigWorkflow(
        config_file=cfg if len(cfg) > 1 else cfg[0],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        **override,
    )


def _errors_in_chain(exc: BaseException) -> str:
    """Messages of an exception and of every exception it was raised from (MONAI wraps config errors)."""
    msgs = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        msgs.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(msgs)


def _read_case_csv(path: Path) -> dict[str, float]:
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "filename"
    return {Path(r[0]).name: float(r[1]) for r in rows[1:]}


@pytest.fixture(scope="module", params=BUNDLES, ids=IDS)
def trained(request, tmp_path_factory):
    """A bundle trained for one epoch on a tiny dataset with ConfigWorkflow: (bundle, work dir, dataset, overrides)."""
    torch.set_num_threads(1)
    bundle: Path = request.param
    d = bundle_spatial_dims(bundle)
    root = tmp_path_factory.mktemp(bundle.name)
    dataset = make_tiny_dataset(root / "data", spatial_dims=d, counts=(4, 2, 2))
    work = root / "work"
    overrides = _tiny_overrides(bundle, work, dataset)
    wf = _workflow(bundle, ["train.json"], "train", **overrides)
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    assert wf.trainer.state.epoch == 1
    return bundle, work, dataset, overrides


# ----------------------------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_layout_and_metadata(bundle: Path):
    for rel in (
        "LICENSE",
        "configs/metadata.json",
        "configs/train.json",
        "configs/evaluate.json",
        "configs/inference.json",
        "configs/multi_gpu_train.json",
        "configs/logging.conf",
        "docs/README.md",
        "docs/data_license.txt",
    ):
        assert (bundle / rel).is_file(), f"{bundle.name}: {rel} missing"
    assert "Apache License" in (bundle / "LICENSE").read_text() and "Version 2.0" in (bundle / "LICENSE").read_text()
    assert not (bundle / "scripts").exists(), "bundles must not carry a scripts/ package"
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    required = (
        "schema version changelog monai_version pytorch_version numpy_version required_packages_version task "
        "description authors copyright data_source data_type image_classes label_classes pred_classes "
        "eval_metrics intended_use references network_data_format"
    ).split()
    missing = [k for k in required if k not in meta]
    assert not missing, f"{bundle.name}: metadata lacks {missing}"
    assert meta["schema"].startswith("https://") and meta["schema"].endswith(".json")
    assert meta["version"] in meta["changelog"]
    assert "usseg-monai" in meta["required_packages_version"]
    fmt = meta["network_data_format"]
    assert set(fmt["inputs"]) == {"image"} and set(fmt["outputs"]) == {"pred"}
    d = len(fmt["inputs"]["image"]["spatial_shape"])
    train = json.loads((bundle / "configs" / "train.json").read_text())
    assert d == train["spatial_dims"] == len(train["image_size"]) == len(fmt["outputs"]["pred"]["spatial_shape"])
    assert fmt["inputs"]["image"]["modality"] == "US"
    assert fmt["inputs"]["image"]["num_channels"] == 1 and fmt["outputs"]["pred"]["num_channels"] == 2
    for name in ("README.md", "data_license.txt"):
        assert len((bundle / "docs" / name).read_text().strip()) > 200


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_config_keys_of_the_convention(bundle: Path):
    """The keys docs/bundles.md promises to the benchmark runner exist at the top level."""
    train = json.loads((bundle / "configs" / "train.json").read_text())
    infer = json.loads((bundle / "configs" / "inference.json").read_text())
    for key in (
        "bundle_root ckpt_dir ckpt_path resume resume_ckpt_path output_dir dataset_dir data_list_file_path "
        "train_data_list_key val_data_list_key eval_data_list_key spatial_dims image_size max_epochs val_interval "
        "batch_size learning_rate num_workers cache_rate device amp seed network_def"
    ).split():
        assert key in train, f"train.json lacks {key}"
    for key in (
        "bundle_root ckpt_path load_pretrain output_dir dataset_dir data_list_file_path infer_data_list_key "
        "image_size device amp network_def preprocessing postprocessing inferer output_ext output_dtype"
    ).split():
        assert key in infer, f"inference.json lacks {key}"
    assert train["eval_data_list_key"] == "validation"
    assert train["device"] == infer["device"] == "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"
    # #18: a pure path (nothing written on read); the phantom is made by the explicit initialize step
    for cfg in (train, infer):
        assert cfg["dataset_dir"] == "$usseg_monai.data.phantom.default_phantom_dir(spatial_dims=@spatial_dims)"
        assert "default_phantom_dir" in cfg["create_phantom"]
        assert any("ensure_phantom_dataset" in s and "@create_phantom" in s for s in cfg["initialize"])


def _cache_listing() -> set[str]:
    root = cache_dir()
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_default_dataset_is_the_generated_phantom(bundle: Path, tmp_path, monkeypatch):
    """Reading the config writes nothing; the workflow's initialize generates the phantom in the user cache."""
    from monai.bundle import ConfigParser

    monkeypatch.setenv("USSEG_MONAI_CACHE", str(tmp_path / "cache"))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    dataset_dir = Path(parser.get_parsed_content("dataset_dir"))
    assert cache_dir() in dataset_dir.parents and not str(dataset_dir).startswith(str(bundle))
    assert parser.get_parsed_content("create_phantom") is True
    datalist = Path(parser.get_parsed_content("data_list_file_path"))
    assert datalist == dataset_dir / "datalist.json"
    assert not dataset_dir.exists() and _cache_listing() == set()  # read only: nothing generated
    wf = _workflow(bundle, ["train.json"], "train")
    wf.initialize()  # the explicit step: warning filters, the phantom, determinism; no dataset or trainer built
    assert datalist.is_file() and _cache_listing() == {dataset_dir.name}
    items = parser.get_parsed_content("train_datalist")
    assert len(items) > 0 and all(Path(i["image"]).is_absolute() and Path(i["label"]).is_file() for i in items)
    assert len(items[0]["spacing"]) == bundle_spatial_dims(bundle)


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_user_dataset_dir_gets_no_phantom(bundle: Path, tmp_path, monkeypatch):
    """A dataset_dir that does not exist (a typo) is an error naming the datalist, never a silent phantom."""
    monkeypatch.setenv("USSEG_MONAI_CACHE", str(tmp_path / "cache"))
    missing = tmp_path / "no_such_dataset"
    wf = _workflow(bundle, ["train.json"], "train", dataset_dir=str(missing), max_epochs=1, progress_bar=False)
    assert wf.parser.get_parsed_content("create_phantom") is False
    with pytest.raises(Exception) as info:
        wf.initialize()
        wf.run()
    assert str(missing / "datalist.json") in _errors_in_chain(info.value)
    assert not missing.exists() and _cache_listing() == set()


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_initial_weights_depend_only_on_the_seed(bundle: Path, tmp_path):
    """initialize seeds and then builds network_def first: the initial weights are those of the network built right
    after set_determinism(seed), whatever building the datasets, loaders and transforms consumes afterwards."""
    from monai.bundle import ConfigParser
    from monai.utils import set_determinism

    d = bundle_spatial_dims(bundle)
    data = make_tiny_dataset(tmp_path / "d", spatial_dims=d, counts=(4, 2, 0))
    wf = _workflow(bundle, ["train.json"], "train", dataset_dir=str(data), image_size=TINY_SIZE[d], max_epochs=1)
    wf.initialize()
    # built by initialize right after seeding, before any dataset, loader or transform exists
    assert "network_def" in wf.parser.ref_resolver.resolved_content
    built = {n: t.clone() for n, t in wf.parser.get_parsed_content("network_def").state_dict().items()}
    wf.parser.get_parsed_content("train#trainer")  # the datasets, loaders and transforms
    ref_parser = ConfigParser()
    ref_parser.read_config(str(bundle / "configs" / "train.json"))
    set_determinism(seed=ref_parser["seed"])
    ref = ref_parser.get_parsed_content("network_def").state_dict()
    set_determinism(seed=None)
    assert built.keys() == ref.keys()
    assert all(torch.equal(built[n], ref[n]) for n in ref)


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_labeled_only_switch(bundle: Path, tmp_path):
    """A partitioned training list (items without 'label'): an error by default, the labelled ones with the switch."""
    from monai.bundle import ConfigParser

    data = make_tiny_dataset(tmp_path / "d", spatial_dims=bundle_spatial_dims(bundle), counts=(3, 1, 0))
    key = train_label_key(bundle)
    dl = json.loads((data / "datalist.json").read_text())
    del dl["training"][0][key]
    dl["training"][0]["supervision"] = "class"
    (data / "datalist.json").write_text(json.dumps(dl))
    if _semi_supervised(bundle):
        # no switch: an item without a mask is the second stream's (class-only / unlabeled), never an error
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "train.json"))
        parser.update({"dataset_dir": str(data)})
        labeled = parser.get_parsed_content("train_datalist")
        unlabeled = parser.get_parsed_content("unlabeled_datalist")
        ext = ".png" if bundle_spatial_dims(bundle) == 2 else ".nii.gz"
        assert [Path(i["image"]).name for i in labeled] == [f"case_001{ext}", f"case_002{ext}"]
        assert [Path(i["image"]).name for i in unlabeled] == [f"case_000{ext}"] and key not in unlabeled[0]
        return
    for value, expected in ((True, 2), ("true", 2), ("False", None)):
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "train.json"))
        parser.update({"dataset_dir": str(data), "labeled_only": value})
        if expected is None:
            with pytest.raises(Exception) as info:
                parser.get_parsed_content("train_datalist")
            assert "training[0] (images/case_000" in _errors_in_chain(info.value)
        else:
            items = parser.get_parsed_content("train_datalist")
            ext = ".png" if bundle_spatial_dims(bundle) == 2 else ".nii.gz"
            assert [Path(i["image"]).name for i in items] == [f"case_001{ext}", f"case_002{ext}"]
            assert len(items) == expected and all(key in i for i in items)


# ---------------------------------------------------------------------------- train -> evaluate -> infer


def test_train_writes_checkpoints_and_resumes(trained):
    bundle, work, dataset, overrides = trained
    model = work / "models" / "model.pt"
    final = work / "models" / "checkpoint.pt"
    assert model.is_file() and final.is_file()
    ckpt = torch.load(model, map_location="cpu", weights_only=True)
    # a single-object CheckpointSaver writes the bare state_dict (what CheckpointLoader and ckpt_export read)
    assert not any(k.startswith("module.") for k in ckpt)
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.get_parsed_content("network_def").load_state_dict(ckpt)  # strict: every key matches the network
    full = torch.load(final, map_location="cpu", weights_only=False)
    assert {"model", "optimizer", "trainer", "lr_scheduler"} <= set(full)
    first = full["trainer"]["iteration"]
    assert first == full["trainer"]["epoch_length"] >= 1
    assert list((work / "eval").glob("events.out.tfevents.*")), "no TensorBoard log"
    # resume: continue the 1-epoch run to 2 epochs (one more epoch is trained, not two)
    wf = _workflow(bundle, ["train.json"], "train", **{**overrides, "max_epochs": 2, "resume": True})
    wf.initialize()
    wf.run()
    wf.finalize()
    assert wf.trainer.state.epoch == 2
    if not _semi_supervised(bundle):  # all 4 training images are labeled: ceil(4 / batch) iterations per epoch
        assert first == math.ceil(4 / overrides["batch_size"])
    assert wf.trainer.state.iteration == 2 * first
    full2 = torch.load(final, map_location="cpu", weights_only=False)
    assert full2["trainer"]["iteration"] == 2 * first and full2["trainer"]["max_epochs"] == 2


def _evaluate(bundle, work, dataset, overrides, key="test", out="eval_test"):
    ov = {**overrides, "eval_data_list_key": key, "output_dir": str(work / out)}
    wf = _workflow(bundle, ["train.json", "evaluate.json"], "eval", **ov)
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return work / out


def _infer(bundle, work, dataset, overrides, key="test", out="infer_test"):
    ov = {k: v for k, v in overrides.items() if k not in ("max_epochs", "batch_size", "progress_bar", "cache_rate")}
    ov.update({"infer_data_list_key": key, "output_dir": str(work / out)})
    wf = _workflow(bundle, ["inference.json"], "infer", **ov)
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return work / out


def test_evaluate_metrics_at_original_resolution(trained):
    from usseg_monai.metrics.segmentation import case_metrics

    bundle, work, dataset, overrides = trained
    d = bundle_spatial_dims(bundle)
    out = _evaluate(bundle, work, dataset, overrides)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == 2 and summary["cases_with_empty_label"] == 1
    assert summary["data_list_key"] == "test"
    assert set(summary["metrics"]) == set(CASE_METRICS)
    for name in CASE_METRICS:
        assert (out / f"{name}_raw.csv").is_file() and (out / f"{name}_summary.csv").is_file()
        # the lesion column is named after the bundle's label (channel_def "1"), not MONAI's "class0"
        assert (out / f"{name}_raw.csv").read_text().splitlines()[0] == "filename,lesion,mean"
        summary_rows = [r.split(",")[0] for r in (out / f"{name}_summary.csv").read_text().splitlines()]
        assert summary_rows == ["class", "lesion", "mean"]
    datalist = json.loads((dataset / "datalist.json").read_text())
    names = [Path(i["image"]).name for i in datalist["test"]]
    per_case = {m: _read_case_csv(out / f"{m}_raw.csv") for m in CASE_METRICS}
    empty, full = names[1], names[0]
    # empty ground truth: undefined metrics are NaN (left out of means), specificity/accuracy defined
    for m in ("dice", "iou", "hd95_mm", "asd_mm", "recall"):
        assert math.isnan(per_case[m][empty]), m
    for m in ("specificity", "accuracy"):
        assert 0.0 <= per_case[m][empty] <= 1.0
    for m in ("dice", "iou", "recall", "specificity", "accuracy"):
        assert 0.0 <= per_case[m][full] <= 1.0
        assert summary["metrics"][m] == pytest.approx(np.nanmean([per_case[m][n] for n in names]), abs=1e-5)

    # the same numbers from the inference masks (written at the input's size) and the library's metrics:
    # checks the inversion of the resize and the spacing (mm) of the distances
    pred_dir = _infer(bundle, work, dataset, overrides)
    item = datalist["test"][0]
    suffix = ".png" if d == 2 else ".nii.gz"
    stem = Path(item["image"]).name[: -len(suffix)]
    pred_file = pred_dir / f"{stem}_seg{suffix}"
    if d == 2:
        pred, label = load_png(pred_file), load_png(dataset / item["label"])
    else:
        pred, geom = load_volume(pred_file)
        label, _ = load_volume(dataset / item["label"])
        np.testing.assert_allclose(geom["spacing"], item["spacing"], rtol=1e-5)
    assert pred.shape == label.shape
    ref = case_metrics(pred > 0, label > 0, spacing=item["spacing"])
    assert per_case["dice"][full] == pytest.approx(ref["dice"], abs=1e-4)
    assert per_case["accuracy"][full] == pytest.approx(ref["accuracy"], abs=1e-4)
    if not math.isnan(ref["hd95_mm"]):
        assert per_case["hd95_mm"][full] == pytest.approx(ref["hd95_mm"], rel=1e-3, abs=1e-3)


def test_inference_writes_masks_in_the_input_format(trained):
    bundle, work, dataset, overrides = trained
    d = bundle_spatial_dims(bundle)
    out = _infer(bundle, work, dataset, overrides, key="validation", out="infer_val")
    datalist = json.loads((dataset / "datalist.json").read_text())
    for item in datalist["validation"]:
        name = Path(item["image"]).name
        if d == 2:
            f = out / name.replace(".png", "_seg.png")
            from PIL import Image

            with Image.open(f) as im:
                assert im.mode == "L"
                arr = np.asarray(im)
            assert arr.dtype == np.uint8 and set(np.unique(arr)) <= {0, 255}
            assert load_png(f).shape == load_png(dataset / item["image"]).shape
        else:
            f = out / name.replace(".nii.gz", "_seg.nii.gz")
            arr, geom = load_volume(f)
            img, igeom = load_volume(dataset / item["image"])
            assert arr.shape == img.shape and arr.dtype == np.uint8 and set(np.unique(arr)) <= {0, 1}
            np.testing.assert_allclose(geom["spacing"], igeom["spacing"], rtol=1e-5)
    # D2's inference outputs: one overlay PNG per image and a measurements CSV naming every image
    from PIL import Image

    stems = [Path(i["image"]).name.split(".")[0] for i in datalist["validation"]]
    for stem in stems:
        with Image.open(out / f"{stem}_overlay.png") as im:
            assert im.mode == "RGB"
    with open(out / "measurements.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["image"].split(".")[0] for r in rows} == set(stems)


def test_inference_pred_is_uint8_without_channel(trained):
    """What MONAI Label consumes: `pred` a uint8 label map in the input's geometry, no channel dimension."""
    from monai.bundle import ConfigParser

    bundle, work, dataset, overrides = trained
    d = bundle_spatial_dims(bundle)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({k: v for k, v in overrides.items() if k in ("bundle_root", "dataset_dir", "image_size")})
    parser["output_dir"] = str(work / "infer_mlabel")
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(work / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    pre = parser.get_parsed_content("preprocessing")
    post = parser.get_parsed_content("postprocessing")
    item = parser.get_parsed_content("datalist")[0]
    data = pre(item)
    with torch.no_grad():
        data["pred"] = net(data["image"][None])[0]
    data = post(data)
    pred = data["pred"]
    original = load_png(item["image"]).shape if d == 2 else load_volume(item["image"])[0].shape
    assert tuple(pred.shape) == original and pred.dtype == torch.uint8
    assert set(torch.unique(pred).tolist()) <= {0, 1}


@pytest.mark.slow
def test_bundle_run_from_another_directory(trained, tmp_path):
    """`python -m monai.bundle run` with the bundle elsewhere, cwd=tmp_path, no PYTHONPATH."""
    bundle, work, dataset, overrides = trained
    ov = {**overrides, "bundle_root": str(tmp_path / "b")}
    cmd = [PYTHON, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "train.json")] + _cli(ov)
    r = subprocess.run(cmd, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "b" / "models" / "model.pt").is_file()
    assert not (tmp_path / "models").exists() and not (tmp_path / "eval").exists()  # nothing in the cwd


def test_verify_net_in_out(trained):
    from monai.bundle import verify_net_in_out

    bundle, work, dataset, overrides = trained
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        n=2,
        any=1,
        device="cpu",
        bundle_root=str(work),
        dataset_dir=str(dataset),
    )


@pytest.mark.slow
def test_ckpt_export_torchscript_matches_eager(trained, tmp_path):
    from monai.bundle import ConfigParser

    bundle, work, dataset, overrides = trained
    ts = tmp_path / "model.ts"
    cmd = [
        PYTHON, "-m", "monai.bundle", "ckpt_export", "network_def",
        "--filepath", str(ts),
        "--ckpt_file", str(work / "models" / "model.pt"),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--config_file", str(bundle / "configs" / "inference.json"),
        "--bundle_root", str(work),
        "--dataset_dir", str(dataset),
    ]  # fmt: skip
    # scripting (MONAI's default and the model-zoo's check), for every bundle: no --use_trace
    r = subprocess.run(cmd, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # MONAI embeds metadata.json as is (ckpt_export adds no version values) and each config file, as JSON
    extra = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(ts), map_location="cpu", _extra_files=extra).eval()
    assert json.loads(extra["metadata.json"]) == json.loads((bundle / "configs" / "metadata.json").read_text())
    assert json.loads(extra["inference.json"]) == json.loads((bundle / "configs" / "inference.json").read_text())
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(work / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    shape = (1, 1) + tuple(TINY_SIZE[bundle_spatial_dims(bundle)])
    x = torch.rand(shape)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_zoo_checks_on_trained_copy(trained, tmp_path):
    """The model-zoo's checks (ci/verify_bundle.py's, through MONAI's functions) pass on the trained bundle."""
    import shutil

    from usseg_monai.bundle_checks import check_bundle

    bundle, work, dataset, overrides = trained
    copy = tmp_path / bundle.name
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("models", "eval"))
    (copy / "models").mkdir()
    shutil.copy(work / "models" / "model.pt", copy / "models" / "model.pt")
    schema = Path(__file__).parent / "data" / "bundle_metadata_schema.json"
    results = check_bundle(copy, schema=schema, mode="full")
    assert [r.name for r in results] == [
        "layout", "version", "metadata", "shapes", "torchscript", "metadata_values", "handlers", "dataset_dir", "readme"
    ]  # fmt: skip
    failed = [r.line() for r in results if not r.passed]
    assert not failed, failed
    assert (copy / "models" / "verify_model.ts").is_file()


@pytest.mark.slow
def test_torchrun_two_processes_gloo(trained, tmp_path):
    bundle, work, dataset, overrides = trained
    ov = {**overrides, "bundle_root": str(tmp_path / "b")}
    cfg = json.dumps([str(bundle / "configs" / "train.json"), str(bundle / "configs" / "multi_gpu_train.json")])
    cmd = [
        PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "--config_file", cfg,
    ] + _cli(ov)  # fmt: skip
    env = clean_env()
    env["CUDA_VISIBLE_DEVICES"] = ""
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    # finalize freed the process group (gloo threads joined before exit), on both ranks
    assert "still referenced after destroy_process_group" not in r.stdout + r.stderr
    assert (tmp_path / "b" / "models" / "model.pt").is_file()
    ckpt = torch.load(tmp_path / "b" / "models" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("module.") for k in ckpt["model"])  # saved unwrapped, loadable by evaluate/infer
    best = torch.load(tmp_path / "b" / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in best)
    # each rank trained on half of the 4 training images: one iteration of batch 2
    assert ckpt["trainer"]["iteration"] == 1 and ckpt["trainer"]["epoch_length"] == 1


# ----------------------------------------------------------------------------------------------- bad input


def _expect_error(bundle, overrides, match: str, files=("train.json",), wtype="train"):
    wf = _workflow(bundle, list(files), wtype, **overrides)
    with pytest.raises(Exception) as info:
        wf.initialize()
        wf.run()
    chain = _errors_in_chain(info.value)
    assert match in chain, chain[-3000:]


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_missing_file_is_named(bundle: Path, tmp_path):
    d = bundle_spatial_dims(bundle)
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=d, counts=(2, 1, 0))
    victim = sorted((data / "images").iterdir())[1]
    victim.unlink()
    ov = _tiny_overrides(bundle, tmp_path / "work", data)
    _expect_error(bundle, ov, f"'image' names a missing file: {victim}")


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_empty_section_is_named(bundle: Path, tmp_path):
    d = bundle_spatial_dims(bundle)
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=d, counts=(2, 1, 0))
    ov = _tiny_overrides(bundle, tmp_path / "work", data)
    ov_eval = {**ov, "eval_data_list_key": "test"}
    _expect_error(bundle, ov_eval, "section 'test' is empty", files=("train.json", "evaluate.json"), wtype="eval")
    dl = json.loads((data / "datalist.json").read_text())
    dl["training"] = []
    (data / "datalist.json").write_text(json.dumps(dl))
    _expect_error(bundle, ov, "section 'training' is empty")


@pytest.mark.parametrize("bundle", [b for b in BUNDLES if bundle_spatial_dims(b) == 2], ids=lambda b: b.name)
def test_wrong_channel_count_is_named(bundle: Path, tmp_path):
    """A two-channel (gray + alpha) PNG cannot be made grayscale: the error, raised by the input check in
    ``initialize`` before the first iteration, names the file and the count."""
    from PIL import Image

    data = make_tiny_dataset(tmp_path / "data", spatial_dims=2, counts=(2, 1, 0))
    victim = data / "images" / "case_000.png"
    with Image.open(victim) as im:
        la = Image.merge("LA", (im, im))
    la.save(victim)
    ov = _tiny_overrides(bundle, tmp_path / "work", data)
    _expect_error(bundle, ov, f"{victim}: the image has 2 channels; this 2D bundle reads 1 or 3 or 4")


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_missing_label_is_named(bundle: Path, tmp_path):
    d = bundle_spatial_dims(bundle)
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=d, counts=(2, 1, 0))
    key = train_label_key(bundle)
    dl = json.loads((data / "datalist.json").read_text())
    del dl["training"][1][key]
    ov = _tiny_overrides(bundle, tmp_path / "work", data)
    ext = ".png" if d == 2 else ".nii.gz"
    if _semi_supervised(bundle):
        # an item without a mask is an unlabeled one; a section without any mask is the error
        for item in dl["training"]:
            item.pop(key, None)
        (data / "datalist.json").write_text(json.dumps(dl))
        _expect_error(bundle, ov, "section 'training' has no item with a 'label'")
        return
    (data / "datalist.json").write_text(json.dumps(dl))
    _expect_error(bundle, ov, f"training[1] (images/case_001{ext}) has no '{key}'")


# ------------------------------------------------------------------------- load_datalist_section (unit)


def test_load_datalist_section_absolute_paths_and_extra_keys(tmp_path):
    data = make_tiny_dataset(tmp_path / "d", spatial_dims=2, counts=(2, 1, 1), empty_in_test=False)
    from usseg_monai.data.datalist import load_datalist_section

    items = load_datalist_section(data / "datalist.json", "training")
    assert len(items) == 2
    assert items[0]["image"] == str(data / "images" / "case_000.png")
    assert items[0]["label"] == str(data / "labels" / "case_000.png")
    assert items[0]["spacing"] == [0.2, 0.2] and items[0]["case_id"] == "case_000"
    # the datalist on disk is unchanged (relative paths)
    assert json.loads((data / "datalist.json").read_text())["training"][0]["image"] == "images/case_000.png"
    # a held-back datalist elsewhere: relative paths resolve against its own folder, absolute ones are kept when
    # the datalist lists their folder under allowed_roots (the path rule; refused without it)
    other = tmp_path / "elsewhere"
    other.mkdir()
    dl = {"test": [{"image": str(data / "images" / "case_003.png")}]}
    (other / "heldback.json").write_text(json.dumps(dl))
    with pytest.raises(DatasetError, match="outside the dataset"):
        load_datalist_section(other / "heldback.json", "test", require_label=False)
    (other / "heldback.json").write_text(json.dumps({**dl, "allowed_roots": [str(data)]}))
    items = load_datalist_section(other / "heldback.json", "test", require_label=False)
    assert items == [{"image": str(data / "images" / "case_003.png")}]


def test_load_datalist_section_keep_keys_makes_items_uniform(tmp_path):
    """Inference loads only image + spacing: items whose extra fields differ (as DDTI's do) collate in a batch."""
    from monai.data import list_data_collate

    from usseg_monai.data.datalist import load_datalist_section

    data = make_tiny_dataset(tmp_path / "d", spatial_dims=2, counts=(2, 1, 0))
    dl = json.loads((data / "datalist.json").read_text())
    dl["training"][0].update({"tirads": "4a", "age": 37})  # report fields on one item only
    (data / "datalist.json").write_text(json.dumps(dl))
    full = load_datalist_section(data / "datalist.json", "training")
    assert set(full[0]) != set(full[1])
    kept = load_datalist_section(data / "datalist.json", "training", keep_keys=("image", "spacing"))
    assert [set(i) for i in kept] == [{"image", "spacing"}] * 2
    assert kept[0]["image"] == str(data / "images" / "case_000.png")  # paths still made absolute
    assert list_data_collate(kept)["image"] == [i["image"] for i in kept]
    for bundle in BUNDLES:
        conf = json.loads((bundle / "configs" / "inference.json").read_text())
        assert "keep_keys=['image', 'spacing']" in conf["datalist"], bundle.name


def test_load_datalist_section_errors(tmp_path):
    from usseg_monai.data.datalist import load_datalist_section

    data = make_tiny_dataset(tmp_path / "d", spatial_dims=2, counts=(3, 1, 0))
    path = data / "datalist.json"
    with pytest.raises(DatasetError, match="datalist not found"):
        load_datalist_section(tmp_path / "nope.json", "training")
    sections = r"\(sections with items: \['training', 'validation', 'test'\]\)"
    with pytest.raises(DatasetError, match=r"no section 'fold0' " + sections):
        load_datalist_section(path, "fold0")
    with pytest.raises(DatasetError, match="section 'test' is empty"):
        load_datalist_section(path, "test")
    dl = json.loads(path.read_text())
    del dl["training"][2]["label"]
    dl["training"][1]["label"] = "labels/gone.png"
    path.write_text(json.dumps(dl))
    with pytest.raises(DatasetError, match=r"training\[1\] 'label' names a missing file: .*labels/gone.png"):
        load_datalist_section(path, "training")
    dl["training"][1]["label"] = "labels/case_001.png"
    path.write_text(json.dumps(dl))
    with pytest.raises(DatasetError, match=r"training\[2\] \(images/case_002.png\) has no 'label'"):
        load_datalist_section(path, "training")
    assert len(load_datalist_section(path, "training", labeled_only=True)) == 2
    assert len(load_datalist_section(path, "training", require_label=False)) == 3
    dl["training"] = [{"image": "images/case_000.png"}]
    path.write_text(json.dumps(dl))
    with pytest.raises(DatasetError, match="section 'training' has no item with a 'label' \\(1 without\\)"):
        load_datalist_section(path, "training", labeled_only=True)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="is not valid JSON"):
        load_datalist_section(path, "training")


# ----------------------------------------------------------------------------------- EnsureGrayscaled (unit)


def test_ensure_grayscale_luminance_and_passthrough(tmp_path):
    from monai.transforms import EnsureChannelFirstd, LoadImaged
    from PIL import Image

    from usseg_monai.transforms.channels import EnsureGrayscale, EnsureGrayscaled

    rgb = np.zeros((6, 4, 3), dtype=np.uint8)  # file layout (rows, cols, RGB)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    rgb[0, 0] = (10, 20, 30)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full((6, 4, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    load = LoadImaged("image", reader="PILReader", image_only=True)
    first = EnsureChannelFirstd("image")
    gray = EnsureGrayscaled("image")
    for name in ("rgb.png", "rgba.png"):
        d = gray(first(load({"image": str(tmp_path / name)})))
        img = d["image"]
        assert img.shape == (1, 4, 6)  # (C, x, y)
        assert float(img[0, 1, 1]) == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, abs=1e-3)
        assert float(img[0, 0, 0]) == pytest.approx(0.299 * 10 + 0.587 * 20 + 0.114 * 30, abs=1e-3)
        assert img.meta["filename_or_obj"].endswith(name)  # metadata kept
    save_png(tmp_path / "g.png", np.arange(24, dtype=np.uint8).reshape(4, 6))
    one = first(load({"image": str(tmp_path / "g.png")}))["image"]
    assert gray({"image": one})["image"] is one  # one channel passes unchanged
    vol = torch.rand(3, 4, 5, 6)  # 3D RGB works the same way
    np.testing.assert_allclose(
        EnsureGrayscale()(vol)[0].numpy(), (0.299 * vol[0] + 0.587 * vol[1] + 0.114 * vol[2]).numpy(), rtol=1e-6
    )


def test_ensure_grayscale_errors():
    from monai.data import MetaTensor

    from usseg_monai.transforms.channels import EnsureGrayscale

    img = MetaTensor(torch.zeros(5, 8, 8), meta={"filename_or_obj": "/data/weird.png"})
    with pytest.raises(ValueError, match=r"/data/weird.png: cannot convert an image with 5 channels"):
        EnsureGrayscale()(img)
    with pytest.raises(ValueError, match="expected a channel-first image"):
        EnsureGrayscale()(torch.zeros(8))


# ------------------------------------------------------------------------------- CaseMetricHandler (unit)


def test_case_metric_handler_mm_and_nan_policy():
    from ignite.engine import Engine
    from monai.data import MetaTensor
    from monai.handlers import from_engine
    from monai.metrics import ConfusionMatrixMetric, HausdorffDistanceMetric, SurfaceDistanceMetric

    from usseg_monai.handlers import CaseMetricHandler

    def onehot(mask, spacing):
        t = torch.as_tensor(mask, dtype=torch.float32)
        affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
        return MetaTensor(torch.stack([1 - t, t]), affine=affine)

    y = np.zeros((20, 20))
    y[5:10, 5:10] = 1
    p = np.zeros((20, 20))
    p[5:10, 8:13] = 1  # shifted by 3 pixels along y
    empty = np.zeros((20, 20))
    batches = [
        {"pred": [onehot(p, (0.5, 2.0))], "label": [onehot(y, (0.5, 2.0))]},
        {"pred": [onehot(p, (0.5, 2.0))], "label": [onehot(empty, (0.5, 2.0))]},  # empty ground truth
    ]
    engine = Engine(lambda e, b: b)
    pl = from_engine(["pred", "label"])
    handlers = {
        "hd": CaseMetricHandler(HausdorffDistanceMetric(include_background=False), pl, use_spacing=True),
        "hd_px": CaseMetricHandler(HausdorffDistanceMetric(include_background=False), pl),
        "asd": CaseMetricHandler(SurfaceDistanceMetric(include_background=False, symmetric=True), pl, use_spacing=True),
        "recall": CaseMetricHandler(ConfusionMatrixMetric(include_background=False, metric_name="sensitivity"), pl),
        "spec": CaseMetricHandler(ConfusionMatrixMetric(include_background=False, metric_name="specificity"), pl),
    }
    for name, h in handlers.items():
        h.attach(engine, name)
    engine.run(batches, max_epochs=1)
    m, details = engine.state.metrics, engine.state.metric_details
    assert m["hd"] == pytest.approx(3 * 2.0)  # 3 pixels along y at 2 mm
    assert m["hd_px"] == pytest.approx(3.0)
    assert m["recall"] == pytest.approx(10 / 25)
    assert details["recall"].shape == (2, 1) and math.isnan(float(details["recall"][1, 0]))
    for name in ("hd", "asd"):
        assert math.isnan(float(details[name][1, 0]))  # inf/nan distance to an empty mask stored as NaN
    assert math.isfinite(m["asd"]) and 0 < m["asd"] < 6.0
    spec = details["spec"][:, 0]
    assert float(spec[0]) == pytest.approx(1 - 15 / 375) and float(spec[1]) == pytest.approx(1 - 25 / 400)
    assert m["spec"] == pytest.approx(float(spec.mean()))


# ------------------------------------------------------------------------------------------ real files


def _real_datalist(d: int, folder: Path) -> list[dict]:
    """A few real files referenced by absolute path (the shared data is read, never copied or written)."""
    from conftest import require_shared

    if d == 2:
        busi = require_shared("BUSI", "Dataset_BUSI_with_GT")
        items = []
        for cls in ("benign", "malignant", "normal"):
            image = next(p for p in sorted((busi / cls).glob(f"{cls} (*).png")) if "_mask" not in p.name)
            # the first mask only (a pipeline test; the converter takes the union of _mask_k files)
            items.append({"image": str(image), "label": str(image.with_name(image.stem + "_mask.png")), "class": cls})
        return items
    vol = require_shared("volumes")
    return [{"image": str(vol / "breast1_image.nrrd"), "label": str(vol / "breast1_label.nrrd")}]


@pytest.mark.realdata
def test_real_files_evaluate_and_infer(trained, tmp_path):
    """BUSI PNGs (RGB images, 1-bit masks, a normal image with an empty mask) for 2D bundles; an anisotropic
    NRRD volume (0.66 x 0.66 x 2.1 mm) for 3D ones: outputs at the original size and geometry."""
    bundle, work, dataset, overrides = trained
    d = bundle_spatial_dims(bundle)
    items = _real_datalist(d, tmp_path)
    # the files stay where the user downloaded them: the datalist lists their folders (the path rule)
    roots = sorted({str(Path(item["image"]).parent) for item in items})
    (tmp_path / "real.json").write_text(json.dumps({"validation": items, "test": items, "allowed_roots": roots}))
    ov = {**overrides, "dataset_dir": str(tmp_path), "data_list_file_path": str(tmp_path / "real.json")}
    out = _evaluate(bundle, work, dataset, ov, key="test", out="eval_real")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == len(items)
    assert summary["cases_with_empty_label"] == (1 if d == 2 else 0)
    pred_dir = _infer(bundle, work, dataset, ov, key="test", out="infer_real")
    for item in items:
        name = Path(item["image"]).name
        if d == 2:
            pred = load_png(pred_dir / name.replace(".png", "_seg.png"))
            assert pred.shape == load_png(item["image"]).shape
        else:
            pred, geom = load_volume(pred_dir / name.replace(".nrrd", "_seg.nii.gz"))
            img, igeom = load_volume(item["image"])
            assert pred.shape == img.shape == (45, 120, 21)
            np.testing.assert_allclose(geom["spacing"], igeom["spacing"], rtol=1e-4)
            np.testing.assert_allclose(np.abs(geom["direction"]), np.abs(igeom["direction"]), atol=1e-6)
    # sources untouched: nothing was written beside them
    src = Path(items[0]["image"]).parent
    assert not list(src.glob("*_seg*")) and not list(src.glob("*_overlay*"))

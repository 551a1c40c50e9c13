"""``usseg infer``: a bundle's inference.json on the user's own files, with no datalist.

Real files from ``../shared/data`` (BUSI PNGs, DDTI JPEGs, the three ultrasound DICOM files, an NRRD volume) and a
synthetic multi-frame DICOM. The networks are untrained (seeded) with their output layer set so that the mask is
known: ``lesion=+1`` every voxel is lesion, ``-1`` none, ``None`` the seeded random network decides (a mixed mask,
for comparing model formats). Small ``image_size`` keeps each run to a second or two on one thread.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from bundle_utils import BUNDLES_DIR
from conftest import require_shared
from test_prepare_dicom import _region, _write
from usseg_monai.calipers import calipers_from_mask, save_calipers
from usseg_monai.calipers.rasterize import rasterize_calipers
from usseg_monai.cli import main
from usseg_monai.data.io import DatasetError, load_png
from usseg_monai.export import export_program, save_program
from usseg_monai.infer import collect_inputs, input_kind, model_overrides, run_infer
from usseg_monai.infer_inputs import unique_names

SIZE = {2: [32, 32], 3: [32, 32, 16]}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _network(bundle: str, lesion: float | None):
    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / bundle / "configs" / "inference.json"))
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    if lesion is not None:
        with torch.no_grad():
            net.out_conv.conv.weight.zero_()
            net.out_conv.conv.bias.copy_(torch.tensor([-50.0 * lesion, 50.0 * lesion]))
    return net.eval()


def _checkpoint(bundle: str, path: Path, lesion: float | None) -> Path:
    torch.save(_network(bundle, lesion).state_dict(), path)
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "measurements.csv", newline="") as f:
        return list(csv.DictReader(f))


def _busi(n: int = 2) -> list[Path]:
    root = require_shared("BUSI", "Dataset_BUSI_with_GT", "benign")
    return [root / f"benign ({i}).png" for i in range(1, n + 1)]


# ------------------------------------------------------------------ unit


def test_collect_inputs_folders_kinds_and_failures(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("x.png", "y.JPG", "z.nii.gz", "v.nrrd", "notes.txt", "x_mask.png"):
        (tmp_path / "a" / name).write_bytes(b"0")
    dcm = _write(tmp_path / "a" / "noext", np.zeros((4, 5), np.uint8), "MONOCHROME2")
    files, failures, skipped = collect_inputs(
        [tmp_path / "a", tmp_path / "a" / "x.png", tmp_path / "nope.png", tmp_path / "a" / "notes.txt"],
        exclude=["*_mask*"],
    )
    kinds = {f.name: k for f, k in files}
    assert kinds == {"x.png": "image", "y.JPG": "image", "z.nii.gz": "volume", "v.nrrd": "volume", dcm.name: "dicom"}
    assert [f.name for f, _ in files].count("x.png") == 1  # named twice, runs once
    assert skipped == [str(tmp_path / "a" / "notes.txt")]
    assert {Path(f.source).name: f.reason for f in failures}.keys() == {"nope.png", "notes.txt"}
    assert "no such file" in failures[0].reason and "not an image, volume or DICOM" in failures[1].reason
    assert input_kind("scan.DCM") == "dicom" and input_kind("a.mha") == "volume" and input_kind("a.csv") is None


def testunique_names():
    names = unique_names([Path("/d/benign/x.png"), Path("/d/malignant/x.png"), Path("/d/y.png"), Path("/e/v.nii.gz")])
    assert names == ["benign__x", "malignant__x", "y", "v"]
    assert len(set(unique_names([Path("/d/x.png"), Path("/d/x.jpg")]))) == 2


def test_model_overrides(tmp_path):
    for suffix in (".pt", ".ts", ".pt2"):
        (tmp_path / f"m{suffix}").write_bytes(b"0")
    assert model_overrides(tmp_path / "m.pt") == {"ckpt_path": str(tmp_path / "m.pt"), "load_pretrain": True}
    assert "torch.jit.load" in model_overrides(tmp_path / "m.ts")["network"]
    assert model_overrides(tmp_path / "m.pt2")["load_pretrain"] is False
    with pytest.raises(DatasetError, match="model file not found"):
        model_overrides(tmp_path / "none.pt")
    (tmp_path / "m.onnx").write_bytes(b"0")
    with pytest.raises(DatasetError, match=r"unknown suffix '.onnx'; use .pt \(checkpoint\)"):
        model_overrides(tmp_path / "m.onnx")


def test_usage_errors(tmp_path, capsys):
    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(png)
    bundle = BUNDLES_DIR / "unet_us_2d_segmentation"
    with pytest.raises(DatasetError, match=r"no trained model at .*models/model.pt: train it.*--model"):
        run_infer(bundle, [png], tmp_path / "out")
    ckpt = _checkpoint("unet_us_2d_segmentation", tmp_path / "m.pt", 1.0)
    with pytest.raises(DatasetError, match="inside the source folder"):
        run_infer(bundle, [tmp_path], tmp_path / "out", model=ckpt)
    with pytest.raises(DatasetError, match="bundle 'no_such_bundle' not found.*unet_us_2d_segmentation"):
        run_infer("no_such_bundle", [png], tmp_path / "o")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "y.png")
    with pytest.raises(DatasetError, match="--calipers .* is one file but 2 images"):
        run_infer(bundle, [png, tmp_path / "y.png"], tmp_path / "o", model=ckpt, calipers=png)
    # a caliper file that is not JSON fails its image, named
    s = run_infer(bundle, [png], tmp_path / "o3", model=ckpt, calipers=png, overrides={"image_size": SIZE[2]})
    assert not s.ok and s.failures[0].source == str(png) and "is not a JSON text file" in s.failures[0].reason
    # the command line: exit code 2 and a one-line message
    assert main(["infer", "unet_us_2d_segmentation", str(png), "--output", str(tmp_path / "o2"),
                 "--model", str(tmp_path / "missing.pt")]) == 2
    assert "usseg infer: error: model file not found" in capsys.readouterr().err


# ------------------------------------------------------------------ real files, 2D


def test_infer_2d_real_images_dicom_and_failures(tmp_path, capsys):
    """BUSI PNGs, DDTI JPEGs, the three DICOM files, a multi-frame DICOM, a broken PNG and a volume in one run:
    masks of the inputs' sizes, measurements in px or mm as the spacing is known, the failures named, exit 1."""
    ddti = require_shared("DDTI")
    dicom = require_shared("dicom")
    jpgs = [ddti / "100_1.jpg", ddti / "103_1.jpg"]
    multi = _write(tmp_path / "cine.dcm", np.tile(np.linspace(0, 255, 40 * 30).reshape(1, 30, 40), (3, 1, 1)).astype(np.uint8),
                   "MONOCHROME2", NumberOfFrames=3, SequenceOfUltrasoundRegions=[_region(0.02, 0.03, box=(0, 0, 39, 29))])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    volume = require_shared("volumes", "breast1_image.nrrd")
    ckpt = _checkpoint("unet_us_2d_segmentation", tmp_path / "model.pt", 1.0)
    out = tmp_path / "out"
    argv = ["infer", "unet_us_2d_segmentation", *map(str, _busi(2) + jpgs), str(dicom), str(multi), str(broken),
            str(volume), "--output", str(out), "--model", str(ckpt), "--set", f"image_size={json.dumps(SIZE[2])}",
            "--batch-size", "3"]
    assert main(argv) == 1
    printed = capsys.readouterr()
    assert "usseg infer: 10 images from 10 inputs" in printed.out and "2 failed" in printed.out
    assert f"failed: {broken}" in printed.err and f"failed: {volume}: a volume; bundle unet_us_2d_segmentation is 2D" in printed.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 10 and summary["n_failed"] == 2 and summary["n_images_with_lesion"] == 10
    by_name = {o["name"]: o for o in summary["outputs"]}
    assert sorted(by_name) == sorted(["benign (1)", "benign (2)", "100_1", "103_1", "US1_UNCR", "US1_J2KR",
                                      "gdcm-US-ALOKA-16", "cine_f0000", "cine_f0001", "cine_f0002"])
    assert by_name["cine_f0001"]["frame"] == 1 and by_name["cine_f0001"]["source"] == str(multi)
    # masks in the inputs' own sizes: an all-lesion network gives an all-255 mask of the input's shape
    for src in _busi(2) + jpgs:
        mask = Image.open(out / f"{src.stem}_seg.png")
        assert mask.size == Image.open(src).size and mask.mode == "L"
        assert np.all(np.asarray(mask) == 255)
        assert (out / f"{src.stem}_overlay.png").is_file()
    aloka = Image.open(out / "gdcm-US-ALOKA-16_seg.png")
    assert aloka.size == (640, 480)
    assert aloka.info["dpi"] == pytest.approx((25.4 / 0.382653, 25.4 / 0.382653), rel=1e-3)  # spacing kept (pHYs)
    assert Image.open(out / "cine_f0002_seg.png").size == (40, 30)
    rows = {r["image"]: r for r in _rows(out)}
    assert rows["benign (1).png"]["unit"] == "px" and rows["benign (1).png"]["spacing_mm"] == "none (pixel units)"
    assert rows["100_1.jpg"]["unit"] == "px"
    aloka_row = rows["gdcm-US-ALOKA-16.png"]
    assert aloka_row["unit"] == "mm" and aloka_row["spacing_mm"] == "0.382653x0.382653"
    # the whole 640x480 image is lesion: its width is 640 px = 244.9 mm at 0.3827 mm per pixel
    assert float(aloka_row["width_mm"]) == pytest.approx(640 * 0.382653, rel=0.01)
    assert rows["cine_f0000.png"]["spacing_mm"] == "0.2x0.3" and float(rows["cine_f0000.png"]["width_mm"]) == pytest.approx(8.0, rel=0.05)
    assert not any(p.name.startswith(".usseg-infer-") for p in out.iterdir())  # staging removed


def test_infer_spacing_option_and_empty_masks(tmp_path, monkeypatch):
    """``--spacing`` gives plain images millimetres; a network that finds nothing writes empty masks and one
    ``lesion_found`` false row per image, exit 0. Inference on one's own files makes no phantom (#18)."""
    monkeypatch.setenv("USSEG_MONAI_CACHE", str(tmp_path / "cache"))
    ckpt = _checkpoint("unet_us_2d_segmentation", tmp_path / "model.pt", -1.0)
    out = tmp_path / "out"
    s = run_infer("unet_us_2d_segmentation", _busi(2), out, model=ckpt, spacing=(0.1, 0.2),
                  overrides={"image_size": SIZE[2]})
    assert s.ok and len(s.items) == 2 and s.n_lesions == 0
    rows = _rows(out)
    assert [r["lesion_found"] for r in rows] == ["False", "False"] and {r["spacing_mm"] for r in rows} == {"0.1x0.2"}
    assert np.all(load_png(out / "benign (1)_seg.png") == 0)
    assert not (tmp_path / "cache").exists()  # inference.json's create_phantom step is off for usseg infer


def test_infer_model_formats_write_the_same_masks(tmp_path):
    """The checkpoint, TorchScript and torch.export forms of one network give the same masks."""
    bundle = "unet_us_2d_segmentation"
    net = _network(bundle, None)
    # shift the lesion bias so that about half of the first image is lesion (a random network's margin is one-sided)
    x = torch.as_tensor(load_png(_busi(1)[0]), dtype=torch.float32)[None, None] / 255.0
    x = torch.nn.functional.interpolate(x, size=SIZE[2], mode="bilinear")
    with torch.no_grad():
        logits = net(x)[0]
        net.out_conv.conv.bias[1] -= float((logits[1] - logits[0]).median())
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)
    torch.jit.script(net).save(str(tmp_path / "model.ts"))
    save_program(export_program(net, torch.zeros(1, 1, *SIZE[2])), tmp_path / "model.pt2")
    masks = {}
    for model in ("model.pt", "model.ts", "model.pt2"):
        out = tmp_path / model.replace(".", "_")
        s = run_infer(bundle, _busi(2), out, model=tmp_path / model, overrides={"image_size": SIZE[2]})
        assert s.ok
        masks[model] = [load_png(out / f"benign ({i})_seg.png") for i in (1, 2)]
    ref = masks["model.pt"]
    assert 0 < np.mean(ref[0] > 0) < 1  # a mixed mask, so the comparison means something
    for model in ("model.ts", "model.pt2"):
        assert all(np.array_equal(a, b) for a, b in zip(ref, masks[model])), model


def test_infer_calipers_constrain_the_mask(tmp_path):
    """With calipers, an all-lesion network's mask is the radical label, an all-background one's the conservative
    label (the caliper-guided rule); images without a caliper file run unconstrained; a caliper file made for
    another image size fails that image only."""
    src = _busi(3)
    label = load_png(str(src[0]).replace(".png", "_mask.png")) > 0
    ann = calipers_from_mask(label, (1.0, 1.0))
    cal = tmp_path / "calipers"
    save_calipers(cal / "benign (1).json", ann)
    xs, ys = np.nonzero(label)
    small = calipers_from_mask(label[xs.min() - 2: xs.max() + 3, ys.min() - 2: ys.max() + 3], (1.0, 1.0))
    save_calipers(cal / "benign (3).json", small)
    labels = rasterize_calipers(ann, label.shape, (1.0, 1.0))
    for lesion, expected in ((1.0, "radical_label"), (-1.0, "conservative_label")):
        ckpt = _checkpoint("unet_us_2d_segmentation", tmp_path / f"m{lesion}.pt", lesion)
        out = tmp_path / f"out{lesion}"
        s = run_infer("unet_us_2d_segmentation", src, out, model=ckpt, calipers=cal, overrides={"image_size": SIZE[2]})
        assert [f.source for f in s.failures] == [str(src[2])] and "were made for an image of shape" in s.failures[0].reason
        np.testing.assert_array_equal(load_png(out / "benign (1)_seg.png") > 0, labels[expected])
        other = load_png(out / "benign (2)_seg.png") > 0
        assert other.all() if lesion > 0 else not other.any()
        assert s.outputs()[0]["calipers"] == str(cal / "benign (1).json") and s.outputs()[1]["calipers"] is None


# ------------------------------------------------------------------ real volume, 3D


def test_infer_3d_nrrd_volume(tmp_path):
    """An NRRD volume through the 3D bundle: a NIfTI mask with the input's shape and affine, measured in mm."""
    import itk

    volume = require_shared("volumes", "breast1_image.nrrd")
    ckpt = _checkpoint("unet_us_3d_segmentation", tmp_path / "model.pt", 1.0)
    out = tmp_path / "out"
    png = _busi(1)[0]
    s = run_infer("unet_us_3d_segmentation", [volume, png], out, model=ckpt, overrides={"image_size": SIZE[3]})
    assert [f.source for f in s.failures] == [str(png)] and "bundle unet_us_3d_segmentation is 3D" in s.failures[0].reason
    mask = nib.load(out / "breast1_image_seg.nii.gz")
    img = itk.imread(str(volume))
    shape_xyz = tuple(int(s) for s in itk.size(img))
    assert mask.shape == shape_xyz == (45, 120, 21)
    assert np.all(np.asarray(mask.dataobj) == 1)
    spacing = [float(v) for v in itk.spacing(img)]
    np.testing.assert_allclose(mask.header.get_zooms()[:3], spacing, rtol=1e-4)
    row = _rows(out)[0]
    assert row["unit"] == "mm" and row["image"] == "breast1_image.nrrd"
    # the whole volume is lesion: every voxel, 45 x 0.66 mm wide, 120 x 0.66 mm deep
    assert int(row["voxels"]) == 45 * 120 * 21
    assert float(row["volume_mm3"]) == pytest.approx(45 * 120 * 21 * float(np.prod(spacing)), rel=1e-4)
    assert float(row["width_mm"]) == pytest.approx(45 * spacing[0], rel=1e-4)
    assert float(row["depth_mm"]) == pytest.approx(120 * spacing[1], rel=1e-4)
    assert (out / "breast1_image_overlay.png").is_file()


def test_inference_json_constrain_switch_reads_the_datalist_calipers(tmp_path):
    """``python -m monai.bundle run ... inference.json --constrain_to_calipers True`` (a string, as from the command
    line): the validation items' own caliper files constrain the masks; off by default."""
    from monai.bundle import ConfigWorkflow

    from bundle_utils import make_tiny_dataset
    from usseg_monai.calipers import load_calipers

    bundle = BUNDLES_DIR / "unet_us_2d_segmentation"
    data = make_tiny_dataset(tmp_path / "data", spatial_dims=2, counts=(2, 2, 0), empty_in_test=False)
    items = json.loads((data / "datalist.json").read_text())["validation"]
    assert all("calipers" in it for it in items)
    ckpt = _checkpoint("unet_us_2d_segmentation", tmp_path / "model.pt", 1.0)
    for switch in ("True", "False"):
        out = tmp_path / f"eval_{switch}"
        wf = ConfigWorkflow(config_file=str(bundle / "configs" / "inference.json"), workflow_type="infer",
                            logging_file=str(bundle / "configs" / "logging.conf"), dataset_dir=str(data),
                            ckpt_path=str(ckpt), output_dir=str(out), image_size=SIZE[2], constrain_to_calipers=switch)
        wf.initialize()
        wf.run()
        wf.finalize()
        for it in items:
            mask = load_png(out / f"{Path(it['image']).stem}_seg.png") > 0
            if switch == "True":
                ann = load_calipers(data / it["calipers"])
                np.testing.assert_array_equal(mask, rasterize_calipers(ann, mask.shape, ann.spacing)["radical_label"])
                assert mask.any() and not mask.all()
            else:
                assert mask.all()

"""torch.export of every bundle (``usseg_monai.export``) and the inference config that runs the ``.pt2`` file.

The bundles come from the ``trained`` fixture of ``test_bundles.py`` (one epoch on a tiny dataset). The network
is exported with a dynamic batch and dynamic spatial sizes (multiples of 16, at least 32), reloaded and compared
with the eager network at two batch sizes and two spatial sizes (atol 1e-5); ``inference_export.json`` merged
over ``inference.json`` must write the same masks as ``inference.json``. The TorchScript export (``monai.bundle
ckpt_export``) is tested in ``test_bundles.py::test_ckpt_export_torchscript_matches_eager``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_utils import bundle_spatial_dims
from test_bundles import _workflow, trained  # noqa: F401  (the module-scoped trained-bundle fixture)

from usseg_monai.data.io import load_png, load_volume
from usseg_monai.export import (
    ExportedNetwork,
    export_program,
    load_exported_network,
    load_program,
    save_program,
)
from usseg_monai.cli import main as usseg_main
from usseg_monai.networks import PyMICUNet

def _divisor(bundle: Path) -> int:
    """Every spatial size of the bundle's network must be a multiple of this (``network_def.divisor``, default 16)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    return int(getattr(parser.get_parsed_content("network_def"), "divisor", 16))


def export_size(bundle: Path) -> list[int]:
    """Network input size of the export tests: multiples of the divisor, >= 32 (torch.export's lower bound);
    [32, 48] / [32, 32, 32] for the 16-divisible UNets."""
    k = _divisor(bundle)
    return [2 * k, 3 * k] if bundle_spatial_dims(bundle) == 2 else [2 * k] * 3


def other_size(bundle: Path) -> list[int]:
    """A second spatial size the exported program must accept ([64, 32] / [48, 32, 32] for the UNets)."""
    k = _divisor(bundle)
    return [4 * k, 2 * k] if bundle_spatial_dims(bundle) == 2 else [3 * k, 2 * k, 2 * k]


def _eager(bundle: Path, ckpt: Path) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return net.eval()


def _balanced_checkpoint(bundle: Path, work: Path, dataset: Path, size: list[int], out: Path) -> Path:
    """The trained weights with the lesion logit's bias shifted so that about half of a validation image is lesion.

    A network trained for one epoch predicts (almost) no lesion, so comparing its masks would compare empty
    masks; with the shift, masks of the eager and the exported network agree only if their decisions do.
    """
    d = bundle_spatial_dims(bundle)
    state = torch.load(work / "models" / "model.pt", map_location="cpu", weights_only=True)
    net = _eager(bundle, work / "models" / "model.pt")
    item = json.loads((dataset / "datalist.json").read_text())["validation"][0]
    image = load_png(dataset / item["image"]) if d == 2 else load_volume(dataset / item["image"])[0]
    x = torch.as_tensor(np.asarray(image), dtype=torch.float32)[None, None]
    x = (x - x.min()) / (x.max() - x.min())
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear" if d == 2 else "trilinear")
    # shift every output layer's lesion bias (one per branch of a two-branch network) until the median lesion
    # margin of the network's output is ~0; a single network needs one step, averaged branches a few
    # the layer whose logits the eval-mode network returns: CRII-Net's refinement head, a UNet's out_conv (one
    # per branch of a two-branch network), or MALUNet / UNeXt's final convolution
    keys: list[str] = []
    for suffix in ("refine_conv.conv.bias", "out_conv.conv.bias", "final.bias"):
        keys = [k for k, v in state.items() if k.endswith(suffix) and tuple(v.shape) == (2,)]
        if keys:
            break
    assert keys, "no output layer bias found"
    state = {k: v.clone() for k, v in state.items()}
    for _ in range(8):
        net.load_state_dict(state)
        with torch.no_grad():
            logits = net(x)[0]
        margin = float((logits[1] - logits[0]).median())
        if abs(margin) < 1e-3:
            break
        for key in keys:
            state[key][1] -= margin
    torch.save(state, out)
    return out


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):  # noqa: F811
    """The trained bundle (lesion bias balanced) exported by ``usseg export`` in process.

    Returns ``(bundle, work, dataset, checkpoint, .pt2 path)``.
    """
    bundle, work, dataset, overrides = trained
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("pt2")
    out = folder / "model.pt2"
    size = export_size(bundle)
    ckpt = _balanced_checkpoint(bundle, work, dataset, size, folder / "balanced.pt")
    rc = usseg_main(
        [
            "export", "-q",
            "--bundle_root", str(work),
            "--config_file", str(bundle / "configs" / "inference.json"),
            "--meta_file", str(bundle / "configs" / "metadata.json"),
            "--ckpt_file", str(ckpt),
            "--output", str(out),
            "--override", "dataset_dir", str(dataset),
            "--override", "image_size", json.dumps(size),
        ]
    )  # fmt: skip
    assert rc == 0 and out.is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["balanced.pt", "model.pt2"]  # no temporary file left
    return bundle, work, dataset, ckpt, out


def test_exported_program_matches_eager_dynamic_batch_and_size(exported):
    bundle, work, dataset, ckpt, pt2 = exported
    d = bundle_spatial_dims(bundle)
    net = _eager(bundle, ckpt)
    program, files = load_program(pt2, extra_files=("metadata.json", "inference.json"))
    # the bundle's metadata and inference config are embedded, as MONAI embeds them in a TorchScript file
    assert json.loads(files["metadata.json"]) == json.loads((bundle / "configs" / "metadata.json").read_text())
    assert json.loads(files["inference.json"]) == json.loads((bundle / "configs" / "inference.json").read_text())
    module = program.module()
    torch.manual_seed(0)
    for batch in (1, 3):
        for size in (export_size(bundle), other_size(bundle)):
            x = torch.rand(batch, 1, *size)
            with torch.no_grad():
                y = module(x)
                assert y.shape == (batch, 2, *size)
                torch.testing.assert_close(y, net(x), atol=1e-5, rtol=0)
    # a size that is not a multiple of the divisor is refused by the program's shape guards
    k = _divisor(bundle)
    with pytest.raises(Exception, match=str(k)):
        module(torch.rand(1, 1, *[s + k // 2 for s in export_size(bundle)]))


def test_inference_from_exported_program_writes_the_same_masks(exported, tmp_path):
    bundle, work, dataset, ckpt, pt2 = exported
    d = bundle_spatial_dims(bundle)
    common = {"bundle_root": str(work), "dataset_dir": str(dataset), "image_size": export_size(bundle)}
    common["ckpt_path"] = str(ckpt)
    out_eager, out_pt2 = tmp_path / "eager", tmp_path / "pt2"
    wf = _workflow(bundle, ["inference.json"], "infer", **common, output_dir=str(out_eager))
    wf.initialize()
    wf.run()
    wf.finalize()
    wf = _workflow(
        bundle,
        ["inference.json", "inference_export.json"],
        "infer",
        **common,
        output_dir=str(out_pt2),
        export_path=str(pt2),
    )
    wf.initialize()
    assert wf.check_properties() == []
    assert isinstance(wf.evaluator.network, ExportedNetwork)
    assert json.loads(json.dumps(wf.evaluator.network.metadata))["version"] == json.loads(
        (bundle / "configs" / "metadata.json").read_text()
    )["version"]
    wf.run()
    wf.finalize()
    ext = ".png" if d == 2 else ".nii.gz"
    masks = sorted(p.name for p in out_eager.glob(f"*_seg{ext}"))
    assert len(masks) == 2  # the two validation cases of the tiny dataset
    assert sorted(p.name for p in out_pt2.glob(f"*_seg{ext}")) == masks
    lesion_fraction = []
    for name in masks:
        a = load_png(out_eager / name) if d == 2 else load_volume(out_eager / name)[0]
        b = load_png(out_pt2 / name) if d == 2 else load_volume(out_pt2 / name)[0]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
        lesion_fraction.append(float((np.asarray(a) > 0).mean()))
    # the balanced checkpoint makes both classes common, so equal masks mean equal decisions, not empty masks
    assert 0.1 < np.mean(lesion_fraction) < 0.9, lesion_fraction
    assert (out_eager / "measurements.csv").read_text() == (out_pt2 / "measurements.csv").read_text()


def test_export_program_static_and_errors(tmp_path):
    torch.manual_seed(0)
    net = PyMICUNet(spatial_dims=2, channels=(4, 8), dropout=(0.0, 0.1)).eval()  # divisor 2
    x = torch.rand(1, 1, 8, 6)
    # static shapes: the program accepts only the example's shape
    static = export_program(net, x, dynamic_batch=False, dynamic_spatial=False)
    torch.testing.assert_close(static.module()(x), net(x), atol=1e-5, rtol=0)
    with pytest.raises(Exception):
        static.module()(torch.rand(2, 1, 8, 6))
    # dynamic: a batch of 1 in the example still gives a dynamic batch; multiples of the network's divisor (2)
    program = export_program(net, x)
    for shape in ((3, 1, 8, 6), (1, 1, 4, 10)):
        y = torch.rand(*shape)
        torch.testing.assert_close(program.module()(y), net(y), atol=1e-5, rtol=0)
    assert net.training is False
    net.train()
    export_program(net, x)
    assert net.training is True  # the mode is restored
    with pytest.raises(ValueError, match=r"multiple of 2 and at least 4.*\[1, 1, 7, 6\]"):
        export_program(net, torch.rand(1, 1, 7, 6))
    with pytest.raises(ValueError, match=r"multiple of 16"):
        export_program(net, torch.rand(1, 1, 16, 16), spatial_multiple=16)
    with pytest.raises(ValueError, match=r"\[B, C, \*spatial\]"):
        export_program(net, torch.rand(8, 6))
    # save / load with extra files, atomically; missing file named
    path = save_program(program, tmp_path / "net.pt2", {"metadata.json": {"version": "0.1"}, "note.txt": "hi"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt2"]
    _, files = load_program(path, extra_files=("metadata.json", "note.txt", "absent.json"))
    assert files == {"metadata.json": '{"version": "0.1"}', "note.txt": "hi", "absent.json": ""}
    loaded = load_exported_network(path, device="cpu").eval()
    assert loaded.metadata == {"version": "0.1"} and loaded.training is False
    torch.testing.assert_close(loaded(x), net.eval()(x), atol=1e-5, rtol=0)
    with pytest.raises(FileNotFoundError, match="nowhere.pt2"):
        load_program(tmp_path / "nowhere.pt2")


def test_export_cli_errors_name_the_file(tmp_path, capsys):
    bundle = sorted((Path(__file__).resolve().parents[1] / "bundles").glob("*/configs/inference.json"))[0].parents[1]
    args = ["--config_file", str(bundle / "configs" / "inference.json"), "--output", str(tmp_path / "m.pt2")]
    assert usseg_main(["export", "-q"] + args + ["--ckpt_file", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "missing.pt" in err and err.startswith("usseg export: error:") and len(err.strip().splitlines()) == 1
    torch.save({"weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    assert usseg_main(["export", "-q"] + args + ["--ckpt_file", str(tmp_path / "wrong.pt")]) == 2
    err = capsys.readouterr().err
    assert "wrong.pt" in err and "does not fit" in err
    assert not (tmp_path / "m.pt2").exists()

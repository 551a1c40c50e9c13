"""The benchmark scripts' own logic (no training): the budget curve and the CRBNet ablation's carved split."""

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

    ab = _script("crbnet_ablation")
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

"""DDTI converter: XML parsing, polygon rasterisation in (x, y), grouping, skips, errors, real data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from usseg_monai.data.ddti import parse_ddti_xml, prepare_ddti, rasterize_polygons
from usseg_monai.data.io import DatasetError, load_datalist


def tree_hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _xml(number: str, tirads: str, marks: dict[str, list | None]) -> str:
    parts = [f"<case>\n<number>{number}</number>\n<age>51</age>\n<sex>F</sex>\n<composition>solid</composition>"]
    parts.append("<echogenicity></echogenicity>\n<margins></margins>\n<calcifications></calcifications>")
    parts.append(f"<tirads>{tirads}</tirads>")
    for img, polys in marks.items():
        svg = "" if polys is None else json.dumps(
            [{"points": [{"x": x, "y": y} for x, y in p], "annotation": {}, "regionType": "freehand"} for p in polys]
        )
        parts.append(f"<mark>\n<image>{img}</image>\n<svg>{svg}</svg>\n</mark>")
    parts.append("</case>")
    return "\n".join(parts)


W, H = 40, 24
TRI = [(28, 3), (36, 3), (36, 9)]  # right-angle triangle near the top right: x large, y small


def make_ddti(root: Path) -> Path:
    root.mkdir(parents=True)
    gray = np.random.default_rng(0).integers(0, 256, size=(H, W), dtype=np.uint8)
    cases = {
        "1": ("4a", {"1": [TRI], "2": [[(2, 15), (8, 15), (8, 20), (2, 20)], [(20, 5), (24, 5), (24, 8)]]}),
        "2": ("2", {"1": [], "3": [TRI]}),  # image 3 is missing on disk
        "3": ("", {"1": None}),  # no TI-RADS, no polygon
        "4": ("5", {"1": [TRI]}),
        "5": ("4a", {"1": [TRI], "2": [TRI]}),
    }
    for case, (tirads, marks) in cases.items():
        (root / f"{case}.xml").write_text(_xml(case, tirads, marks))
        for img in marks:
            if (case, img) != ("2", "3"):
                Image.fromarray(np.stack([gray] * 3, -1)).save(root / f"{case}_{img}.jpg", quality=95)
    return root


def test_rasterize_polygon_lands_at_x_y():
    m = rasterize_polygons([np.array(TRI, float)], (W, H))
    assert m.shape == (W, H)
    for x, y in TRI:  # boundary included, at mask[x, y]
        assert m[x, y]
    assert m[34, 5] and not m[29, 8] and not m[5, 34 % H]
    assert not rasterize_polygons([], (W, H)).any()
    two = rasterize_polygons([np.array(TRI, float), np.array([(0, 0), (2, 0), (2, 2), (0, 2)], float)], (W, H))
    assert two[1, 1] and two[34, 5] and two.sum() == m.sum() + 9


def test_synthetic_ddti(tmp_path):
    src = make_ddti(tmp_path / "src")
    before = tree_hashes(src)
    out = tmp_path / "out"
    summary = prepare_ddti(src, out, val_fraction=0.3, seed=0)
    assert tree_hashes(src) == before
    assert summary["n_items"] == 7 and summary["n_cases"] == 5
    assert summary["marks_without_image"] == ["2_3.jpg"] and summary["skipped"] == 1
    assert summary["images_without_polygon"] == 2 and sorted(summary["images_without_polygon_items"]) == ["2_1", "3_1"]
    assert summary["cases_without_tirads"] == 1
    assert summary["per_class"] == {"2": 1, "4a": 4, "5": 1}

    dl = load_datalist(out / "datalist.json")
    assert dl["classes"] == ["2", "4a", "5"]
    side = {}
    items = {}
    for s in ("training", "validation", "test"):
        for it in dl[s]:
            assert side.setdefault(it["case_id"], s) == s  # no case on two sides
            items[Path(it["image"]).stem] = it
    assert items["1_2"]["tirads"] == "4a" and items["1_2"]["age"] == 51 and items["1_2"]["sex"] == "F"
    assert items["1_2"]["class_index"] == 1 and items["1_2"]["case_id"] == "1" and items["1_2"]["n_polygons"] == 2
    assert "class" not in items["3_1"] and "echogenicity" not in items["3_1"]

    from monai.transforms import LoadImage

    loader = LoadImage(image_only=True)
    mask = np.asarray(loader(str(out / "labels" / "1_1.png")))
    img = np.asarray(loader(str(out / "images" / "1_1.png")))
    assert mask.shape == img.shape == (W, H)
    assert mask[34, 5] == 255 and mask[28, 3] == 255 and mask[5, 20] == 0
    assert np.array_equal(mask > 0, rasterize_polygons([np.array(TRI, float)], (W, H)))
    src_gray = np.asarray(Image.open(src / "1_1.jpg").convert("L")).T
    assert np.array_equal(img, src_gray)
    assert not np.asarray(loader(str(out / "labels" / "3_1.png"))).any()


def test_ddti_bad_input(tmp_path):
    src = make_ddti(tmp_path / "a")
    (src / "4.xml").write_text("<case><number>4</number><mark><image>1</image>")
    with pytest.raises(DatasetError, match=r"4\.xml is not valid XML"):
        prepare_ddti(src, tmp_path / "o1")
    with pytest.raises(DatasetError, match=r"4\.xml is not valid XML"):
        parse_ddti_xml(src / "4.xml")

    src = make_ddti(tmp_path / "b")
    (src / "4.xml").write_text(_xml("4", "5", {"1": [TRI]}).replace('"points"', '"pts"'))
    with pytest.raises(DatasetError, match=r"4\.xml: polygon 0 of image 1 lacks 'points'"):
        prepare_ddti(src, tmp_path / "o2")

    src = make_ddti(tmp_path / "c")
    (src / "5_2.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(DatasetError, match=r"cannot read image .*5_2\.jpg"):
        prepare_ddti(src, tmp_path / "o3")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no DDTI case files"):
        prepare_ddti(empty, tmp_path / "o4")
    with pytest.raises(DatasetError, match="not found"):
        prepare_ddti(tmp_path / "missing", tmp_path / "o5")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        prepare_ddti(make_ddti(tmp_path / "d"), busy)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_ddti_non_finite_vertex_is_an_error(tmp_path, bad):
    src = make_ddti(tmp_path / "src")
    (src / "4.xml").write_text(_xml("4", "5", {"1": [[(28, 3), (bad, 3), (36, 9)]]}))
    before = tree_hashes(src)
    with pytest.raises(DatasetError, match=r"4\.xml: polygon 0 of image 1 has a non-finite vertex 1 \(x=(nan|inf|-inf)"):
        prepare_ddti(src, tmp_path / "out")
    assert tree_hashes(src) == before


def test_ddti_polygons_outside_the_image_are_clipped_or_skipped_never_silently(tmp_path, caplog):
    src = make_ddti(tmp_path / "src")
    # case 4: one vertex at 1e300 (partly outside: kept, clipped, warned); case 5 image 2: wholly outside (skipped)
    (src / "4.xml").write_text(_xml("4", "5", {"1": [[(28, 3), (1e300, 3), (36, 9)]]}))
    (src / "5.xml").write_text(_xml("5", "4a", {"1": [TRI], "2": [[(100, 100), (120, 100), (120, 130)]]}))
    before = tree_hashes(src)
    with caplog.at_level("WARNING"):
        summary = prepare_ddti(src, tmp_path / "out", val_fraction=0.3, seed=0)
    assert tree_hashes(src) == before
    assert summary["polygons_clipped_items"] == ["4_1"]
    assert summary["polygon_outside_image_items"] == ["5_2"]
    assert summary["n_items"] == 6 and summary["skipped"] == 2  # 2_3.jpg missing + 5_2 outside
    assert "4_1.jpg: polygon(s) [0] of 4.xml reach outside the 40x24 image; the mask is clipped" in caplog.text
    assert "polygon(s) [0] of 5.xml lie wholly outside the 40x24 image" in caplog.text
    dl = load_datalist(tmp_path / "out" / "datalist.json")
    stems = {Path(it["image"]).stem for s in ("training", "validation", "test") for it in dl[s]}
    assert "5_2" not in stems and "4_1" in stems


def test_polygons_outside():
    from usseg_monai.data.ddti import polygons_outside

    inside = np.array(TRI, float)
    edge = np.array([(-0.4, 0), (39.4, 0), (39.4, 23.4)])  # rounds onto the border pixels: inside
    partly = np.array([(30, 5), (45, 5), (30, 20)])
    around = np.array([(-10, -10), (60, -10), (60, 40), (-10, 40)])  # no vertex inside but covers the image
    wholly = np.array([(50, 30), (60, 30), (60, 40)])
    assert polygons_outside([inside, edge, partly, around, wholly], (W, H)) == ([2, 3], [4])


@pytest.mark.realdata
def test_real_ddti(tmp_path):
    from conftest import require_shared

    src = require_shared("DDTI")
    before = tree_hashes(src)
    out = tmp_path / "ddti"
    summary = prepare_ddti(src, out, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert tree_hashes(src) == before

    # every image file named by a mark becomes an item; marks without a file are skipped
    marked = set()
    for x in src.glob("*.xml"):
        for img in parse_ddti_xml(x)["marks"]:
            marked.add(f"{x.stem}_{img}.jpg")
    on_disk = {p.name for p in src.glob("*.jpg")}
    assert summary["n_items"] == len(marked & on_disk) == len(on_disk)
    assert sorted(summary["marks_without_image"]) == sorted(marked - on_disk)
    assert summary["n_cases"] == len({n.split("_")[0] for n in marked & on_disk})

    dl = load_datalist(out / "datalist.json")
    sides = {}
    for s in ("training", "validation", "test"):
        for it in dl[s]:
            assert sides.setdefault(it["case_id"], s) == s
    assert len(dl["test"]) > 0.1 * summary["n_items"] and len(dl["validation"]) > 0.1 * summary["n_items"]

    # a real polygon vertex lands at mask[x, y]
    case = parse_ddti_xml(src / "10.xml")
    poly = case["marks"]["1"][0]
    from monai.transforms import LoadImage

    mask = np.asarray(LoadImage(image_only=True)(str(out / "labels" / "10_1.png")))
    w, h = Image.open(src / "10_1.jpg").size
    assert mask.shape == (w, h)
    for x, y in poly.astype(int)[:10]:
        assert mask[x, y] > 0
    cx, cy = poly.mean(axis=0).astype(int)
    assert mask[cx, cy] > 0 and mask.sum() / 255 < 0.25 * w * h

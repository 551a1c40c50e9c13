"""DDTI (Digital Database of Thyroid Ultrasound Images) to a prepared dataset.

Source: Pedraza L, Vargas C, Narváez F, Durán O, Muñoz E, Romero E. "An open access thyroid ultrasound
image database." Proc. SPIE 9287, 10th International Symposium on Medical Information Processing and
Analysis (2015) 92870W. https://doi.org/10.1117/12.2073532

Layout of the public download, one flat folder::

    <case>.xml          patient data, TI-RADS, one <mark> per image
    <case>_<img>.jpg    the images of the case (RGB-stored grayscale frames)

Each ``<mark>`` has ``<image>`` (the ``<img>`` number) and ``<svg>``: JSON
``[{"points": [{"x": .., "y": ..}, ...], ...}, ...]``, polygons in pixel coordinates (x = column,
y = row), possibly empty or absent. The mask of an image is the union of its polygons, boundary
included. The output has one item per image file: id ``<case>_<img>``, ``case_id`` ``<case>`` (a case's
images never straddle splits), class = the TI-RADS grade (``"2"``, ``"3"``, ``"4a"``, ``"4b"``, ``"4c"``,
``"5"``; absent where the XML leaves it empty unless ``missing_class`` is given), and the XML's patient
fields (``tirads``, ``age``, ``sex``, ``composition``, ``echogenicity``, ``margins``,
``calcifications``) where filled in. No pixel spacing is known.
"""

from __future__ import annotations

import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from usseg_monai.data.io import DatasetError, load_png
from usseg_monai.data.prepared import PreparedDatasetWriter
from usseg_monai.data.splits import SplitOptions

__all__ = ["DDTI_FIELDS", "TIRADS_ORDER", "parse_ddti_xml", "polygons_outside", "rasterize_polygons", "prepare_ddti"]

logger = logging.getLogger(__name__)

DDTI_FIELDS = ("tirads", "age", "sex", "composition", "echogenicity", "margins", "calcifications")
TIRADS_ORDER = ("1", "2", "3", "4", "4a", "4b", "4c", "5")
_IMAGE_RE = re.compile(r"^(?P<case>.+)_(?P<img>\d+)\.jpe?g$", re.IGNORECASE)


def parse_ddti_xml(path: str | os.PathLike) -> dict[str, Any]:
    """Read one DDTI case file.

    Returns:
        ``{"case": <file stem>, "fields": {field: str}, "marks": {image_number: [polygon, ...]}}`` where a
        polygon is an ``(n, 2)`` float array of ``(x, y)`` pixel coordinates; marks without polygons map
        to ``[]``; fields are the non-empty ones of :data:`DDTI_FIELDS`.

    Raises:
        DatasetError: malformed XML, a mark without ``<image>``, or an ``<svg>`` that is not the
            expected JSON (the message names the file and the mark).
    """
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (ET.ParseError, OSError) as e:
        raise DatasetError(f"DDTI case file {p} is not valid XML: {e}") from e
    if root.tag != "case":
        raise DatasetError(f"DDTI case file {p}: root element is <{root.tag}>, expected <case>")
    fields = {}
    for name in DDTI_FIELDS:
        text = (root.findtext(name) or "").strip()
        if text:
            fields[name] = int(text) if name == "age" and text.isdigit() else text
    number = (root.findtext("number") or "").strip()
    marks: dict[str, list[np.ndarray]] = {}
    for k, mark in enumerate(root.findall("mark")):
        img = (mark.findtext("image") or "").strip()
        if not img:
            raise DatasetError(f"DDTI case file {p}: <mark> number {k + 1} has no <image>")
        svg = (mark.findtext("svg") or "").strip()
        polys: list[np.ndarray] = []
        if svg:
            try:
                shapes = json.loads(svg)
            except json.JSONDecodeError as e:
                raise DatasetError(f"DDTI case file {p}: <svg> of image {img} is not valid JSON: {e}") from e
            if not isinstance(shapes, list):
                raise DatasetError(f"DDTI case file {p}: <svg> of image {img} is not a JSON list of polygons")
            for j, shape in enumerate(shapes):
                try:
                    pts = np.array([[float(q["x"]), float(q["y"])] for q in shape["points"]], dtype=np.float64)
                except (KeyError, TypeError, ValueError) as e:
                    raise DatasetError(
                        f"DDTI case file {p}: polygon {j} of image {img} lacks 'points' with 'x'/'y' numbers ({e!r})"
                    ) from e
                if len(pts) and not np.isfinite(pts).all():
                    k = int(np.flatnonzero(~np.isfinite(pts).all(axis=1))[0])
                    raise DatasetError(
                        f"DDTI case file {p}: polygon {j} of image {img} has a non-finite vertex {k} "
                        f"(x={pts[k, 0]}, y={pts[k, 1]}); fix the file"
                    )
                if len(pts):
                    polys.append(pts)
        marks.setdefault(img, []).extend(polys)
    return {"case": p.stem, "number": number, "fields": fields, "marks": marks}


def rasterize_polygons(polygons: list[np.ndarray], shape_xy: tuple[int, int]) -> np.ndarray:
    """Union of filled polygons (boundary included) as a boolean ``(x, y)`` mask.

    Vertices are pixel coordinates ``(x, y)`` of pixel centres, rounded to the nearest pixel; a vertex
    ``(x, y)`` sets ``mask[x, y]``. Polygons of one or two points become a point or a line. Parts
    outside the image are clipped.
    """
    from PIL import Image, ImageDraw

    w, h = int(shape_xy[0]), int(shape_xy[1])
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        pts = [(float(x), float(y)) for x, y in np.round(np.asarray(poly, dtype=np.float64))]
        if len(pts) >= 3:
            draw.polygon(pts, fill=1, outline=1)
        elif len(pts) == 2:
            draw.line(pts, fill=1, width=1)
        elif len(pts) == 1:
            draw.point(pts, fill=1)
    return np.asarray(canvas, dtype=np.uint8).T > 0


def polygons_outside(polygons: list[np.ndarray], shape_xy: tuple[int, int]) -> tuple[list[int], list[int]]:
    """Indices of the polygons lying partly and wholly outside an image of ``shape_xy`` pixels.

    A vertex is inside when it rounds to a pixel of the image (``-0.5 <= x < w - 0.5``, same for y): the
    rasteriser then draws it where it is. ``partly``: some vertices outside (the mask is clipped to the image);
    ``wholly``: no vertex inside and no pixel of the image covered.
    """
    w, h = int(shape_xy[0]), int(shape_xy[1])
    partly, wholly = [], []
    for j, poly in enumerate(polygons):
        pts = np.asarray(poly, dtype=np.float64)
        inside = (pts[:, 0] >= -0.5) & (pts[:, 0] < w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] < h - 0.5)
        if inside.all():
            continue
        if not inside.any() and not rasterize_polygons([pts], (w, h)).any():
            wholly.append(j)
        else:
            partly.append(j)
    return partly, wholly


def _tirads_sort_key(grade: str) -> tuple[int, str]:
    return (TIRADS_ORDER.index(grade), grade) if grade in TIRADS_ORDER else (len(TIRADS_ORDER), grade)


def prepare_ddti(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    missing_class: str | None = None,
    split: SplitOptions | None = None,
    **split_kwargs: Any,
) -> dict[str, Any]:
    """Convert DDTI to ``output_dir`` (grayscale PNG images, polygon masks 0/255, datalist, summary).

    Args:
        source: the folder of ``<case>.xml`` and ``<case>_<img>.jpg`` files. Never written to.
        output_dir: output folder (empty unless ``overwrite``).
        overwrite: allow a non-empty output folder.
        missing_class: class given to images whose case has no TI-RADS grade (default: no class).
        split, **split_kwargs: split (stratified by TI-RADS, grouped by case) and optional partition of
            the training set, see :class:`usseg_monai.data.splits.SplitOptions`.

    Returns:
        The summary written to ``summary.json``, with ``images_without_polygon`` (kept, empty masks),
        ``marks_without_image`` and ``images_without_mark`` (both skipped) and ``cases_without_tirads``.

    Raises:
        DatasetError: missing source, no XML files, malformed XML, or an unreadable image (named).
    """
    opts = SplitOptions.resolve(split, **split_kwargs)
    src = Path(source)
    if not src.is_dir():
        raise DatasetError(f"DDTI source folder not found: {src}")
    xml_files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() == ".xml")
    if not xml_files:
        raise DatasetError(f"no DDTI case files (<case>.xml) found in {src}")
    images: dict[tuple[str, str], Path] = {}
    for p in src.iterdir():
        m = _IMAGE_RE.match(p.name)
        if m and p.is_file():
            images[(m["case"], str(int(m["img"])))] = p
    cases = [parse_ddti_xml(p) for p in xml_files]
    cases.sort(key=lambda c: (int(c["case"]) if c["case"].isdigit() else float("inf"), c["case"]))
    logger.info("DDTI: %d case files, %d images in %s", len(cases), len(images), src)

    grades = sorted({c["fields"]["tirads"] for c in cases if "tirads" in c["fields"]}, key=_tirads_sort_key)
    classes = grades + ([missing_class] if missing_class is not None and missing_class not in grades else [])
    with PreparedDatasetWriter(
        output_dir,
        source=src,
        overwrite=overwrite,
        spatial_dims=2,
        name="DDTI",
        description="Digital Database of Thyroid Ultrasound Images (Pedraza et al., SPIE 2015): grayscale, "
        "nodule masks from the XML polygons, class = TI-RADS",
        classes=classes,
    ) as writer:
        used: set[tuple[str, str]] = set()
        without_polygon: list[str] = []
        clipped: list[str] = []  # kept, the mask clipped to the image (a warning each)
        outside: list[str] = []  # skipped: a polygon wholly outside the image
        marks_without_image: list[str] = []
        no_tirads = 0
        for case in cases:
            cid, fields = case["case"], case["fields"]
            no_tirads += "tirads" not in fields
            for img_no in sorted(case["marks"], key=lambda s: (int(s) if s.isdigit() else 10**9, s)):
                key = (cid, str(int(img_no)) if img_no.isdigit() else img_no)
                path = images.get(key)
                if path is None:
                    name = f"{cid}_{img_no}.jpg"
                    marks_without_image.append(name)
                    writer.skip(src / name, f"named by a <mark> in {cid}.xml but the image file is missing")
                    continue
                used.add(key)
                image = load_png(path, grayscale=True)
                polys = case["marks"][img_no]
                item_id = f"{cid}_{key[1]}"
                partly, wholly = polygons_outside(polys, image.shape)
                if wholly:
                    # a nodule drawn off the image: its mask would be empty ("no lesion"), which is wrong, not unknown
                    writer.skip(
                        path,
                        f"polygon(s) {wholly} of {cid}.xml lie wholly outside the "
                        f"{image.shape[0]}x{image.shape[1]} image",
                    )
                    outside.append(item_id)
                    continue
                if partly:
                    logger.warning(
                        "DDTI: %s: polygon(s) %s of %s.xml reach outside the %dx%d image; the mask is clipped to it",
                        path.name, partly, cid, image.shape[0], image.shape[1],
                    )
                    clipped.append(item_id)
                mask = rasterize_polygons(polys, image.shape)
                if not polys:
                    without_polygon.append(item_id)
                cls = fields.get("tirads", missing_class)
                writer.add(
                    item_id,
                    image,
                    mask,
                    class_name=cls,
                    case_id=cid,
                    source_files=[path, src / f"{cid}.xml"],
                    source_image=path.name,
                    n_polygons=len(polys),
                    **fields,
                )
        images_without_mark = sorted(p.name for k, p in images.items() if k not in used)
        for name in images_without_mark:
            writer.skip(src / name, "no <mark> for this image in any case file (mask unknown)")
        if without_polygon:
            logger.info("DDTI: %d images have no polygon and get empty masks", len(without_polygon))
        return writer.finalize(
            split=opts,
            summary_extra={
                "images_without_polygon": len(without_polygon),
                "images_without_polygon_items": without_polygon,
                "polygons_clipped_items": clipped,
                "polygon_outside_image_items": outside,
                "marks_without_image": marks_without_image,
                "images_without_mark": images_without_mark,
                "cases_without_tirads": no_tirads,
                "n_case_files": len(cases),
            },
        )

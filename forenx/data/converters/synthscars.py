"""SynthScars (LEGION, opendatalab/LEGION) artifact annotations.

On disk: a JSON list of one-key objects ``{id: {caption, img_file_name, refs: [{sentence,
explanation, bbox, segmentation: [[x1, y1, x2, y2, ...], ...]}]}}``; polygons in float pixels of
the original image. Every image is generated (no label field). ``img_file_name`` is an absolute
cluster path in pre-release files and a bare file name in released ones: either way the image
becomes ``<split>/images/<file name>``, as the released layout has it.

Each ref becomes a quadruple: ``sentence`` is the name (the artifact's place), ``explanation`` the
phenomenon, the polygon's bounding box the quadruple's box. The union of a record's polygons is its
artifact mask: :func:`polygon_mask` renders it, and :func:`convert` writes it when given
``mask_dir`` and the image (for its size) under ``root``.

>>> polygon_box([[0, 0, 4, 0, 4, 2]])
[0.0, 0.0, 4.0, 2.0]
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from forenx.data.converters.base import UNRATED_SEVERITY, ConversionResult, join_image_path, load_json
from forenx.data.records import Record
from forenx.schema import Quadruple

__all__ = ["NAME", "convert", "polygon_box", "polygon_mask", "split_from_filename"]

NAME = "synthscars"
_REASONING = "SynthScars annotators marked this region as a generation artifact."


def split_from_filename(path: str | os.PathLike) -> str | None:
    """``legion_batch1&batch2_val.json`` -> ``val``; None when the name says no split."""
    match = re.search(r"(?:^|[_\-.])(train|val|test)(?:[_\-.]|$)", Path(path).stem.lower())
    return match.group(1) if match else None


def _polygons(segmentation: Any) -> list[list[float]]:
    if not isinstance(segmentation, list):
        return []
    return [
        [float(v) for v in polygon]
        for polygon in segmentation
        if isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
    ]


def polygon_box(polygons: list[list[float]]) -> list[float]:
    """The [x0, y0, x1, y1] box around flat polygons ``[[x1, y1, x2, y2, ...], ...]``."""
    xs = [v for polygon in polygons for v in polygon[0::2]]
    ys = [v for polygon in polygons for v in polygon[1::2]]
    return [float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))]


def polygon_mask(polygons: list[list[float]], size: tuple[int, int]):
    """The union of the polygons as a mode-"L" mask of ``size`` (width, height), 255 inside."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for polygon in polygons:
        draw.polygon(list(zip(polygon[0::2], polygon[1::2])), fill=255)
    return mask


def _file_name(path: str) -> str:
    return (PureWindowsPath(path) if "\\" in path else PurePosixPath(path)).name


def convert(
    src: str | os.PathLike,
    *,
    image_prefix: str = "",
    split: str | None = None,
    root: str | os.PathLike | None = None,
    mask_dir: str | None = None,
) -> ConversionResult:
    """Convert a SynthScars/LEGION annotation file. ``split`` defaults to the one in the file name.

    With ``root`` and ``mask_dir`` (relative to ``root``), each record whose image is found gets its
    polygon mask written to ``<root>/<mask_dir>/<id>.png``.
    """
    from forenx.images import ImageLoadError, load_image

    data = load_json(src)
    split = split or split_from_filename(src)
    result = ConversionResult()
    if not isinstance(data, list):
        result.skip(
            str(src), f"expected a JSON list of {{id: annotation}} objects, got {type(data).__name__}"
        )
        return result
    folder = f"{split}/images" if split else "images"
    for index, item in enumerate(data):
        if not isinstance(item, Mapping) or len(item) != 1:
            result.skip(f"entry {index}", "expected an object with exactly one key (the sample id)")
            continue
        ((sample_id, annotation),) = item.items()
        where = f"entry {index} (id {sample_id})"
        if not isinstance(annotation, Mapping) or not annotation.get("img_file_name"):
            result.skip(where, "no img_file_name")
            continue
        quadruples, boxes, all_polygons = [], [], []
        for ref_index, ref in enumerate(annotation.get("refs") or []):
            polygons = _polygons(ref.get("segmentation")) if isinstance(ref, Mapping) else []
            name = str(ref.get("sentence") or "").strip().rstrip(".") if isinstance(ref, Mapping) else ""
            explanation = str(ref.get("explanation") or "").strip() if isinstance(ref, Mapping) else ""
            if not name or not explanation:
                result.skip(f"{where} ref {ref_index}", "empty sentence or explanation; anomaly left out")
                continue
            box = (
                polygon_box(polygons)
                if polygons
                else (
                    [float(v) for v in ref["bbox"]]
                    if isinstance(ref.get("bbox"), list) and len(ref["bbox"]) == 4
                    else None
                )
            )
            if box is None:
                result.skip(f"{where} ref {ref_index}", "no polygon or box; anomaly kept without a region")
            else:
                boxes.append(box)
            all_polygons += polygons
            quadruples.append(
                Quadruple(name, explanation, _REASONING, UNRATED_SEVERITY, source="annotation", box=box)
            )
        image = join_image_path(image_prefix, f"{folder}/{_file_name(str(annotation['img_file_name']))}")
        record = Record(
            id=str(sample_id),
            image=image,
            label="fake",
            source=NAME,
            quadruples=quadruples,
            summary=str(annotation.get("caption") or "").strip(),
            boxes=boxes,
            split=split,
            meta={
                "img_file_name": annotation["img_file_name"],
                "polygons": all_polygons,
                "severity_rated": False,
            },
        )
        if root is not None and mask_dir and all_polygons:
            try:
                size = load_image(Path(root) / image).size
            except ImageLoadError as exc:
                result.skip(f"{where} mask", f"image not readable ({exc.reason}); record kept without a mask")
            else:
                record.mask = f"{mask_dir.strip('/')}/{sample_id}.png"
                (Path(root) / record.mask).parent.mkdir(parents=True, exist_ok=True)
                polygon_mask(all_polygons, size).save(Path(root) / record.mask)
        result.records.append(record)
    return result

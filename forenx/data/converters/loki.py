"""LOKI, image part (opendatalab/LOKI ``data_json/image/*.json``).

Three files, told apart by their ``question_type``:

- true/false (``image_tf_image_{real,fake}_ask_{fake,real}_<category>``): each image appears
  twice (asked "fake?" and "real?"); the truth is in the question type, not in ``answer``;
- multiple choice (``image_mc_{fake_from_real,real_from_fake}_<category>``): two images and
  ``answer`` "A"/"B" pointing at the fake (``fake_from_real``) or the real one (``real_from_fake``);
- open-ended (``image_open_ended_vqa``, the file is UTF-16 LE with a BOM): fake images with
  ``problems.regional[] = {region: [x, y, w, h], desc}`` and ``problems.global[] = {desc}``.

Each image becomes one record (paths stay relative to the LOKI root, ``media_data/image/...``); an
image labelled differently by two questions is skipped. Regional and global descriptions become
quadruples (the description is the phenomenon; LOKI gives no separate reasoning, name or
severity, see data_cards/loki.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forenx.data.converters.base import UNRATED_SEVERITY, ConversionResult, join_image_path, load_json
from forenx.data.records import Record
from forenx.schema import Quadruple

__all__ = ["NAME", "convert"]

NAME = "loki"
_TF = re.compile(r"^image_tf_image_(real|fake)_ask_(?:real|fake)_(.+)$")
_MC = re.compile(r"^image_mc_(fake_from_real|real_from_fake)_(.+)$")
_REASONING = "LOKI's annotators marked this as evidence that the image is AI-generated."


def _source_files(src: Path) -> list[Path]:
    if src.is_dir():
        candidates = sorted(src.glob("*.json")) or sorted((src / "data_json" / "image").glob("*.json"))
        if not candidates:
            raise FileNotFoundError(f"no LOKI *.json under {src} (expected data_json/image/*.json)")
        return candidates
    return [src]


class _Images:
    """Collects one label per image; a conflicting label marks the image for skipping."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.conflicts: dict[str, str] = {}

    def add(self, image: str, label: str, category: str | None, where: str) -> dict[str, Any]:
        entry = self.entries.setdefault(
            image, {"label": label, "category": category, "quadruples": [], "boxes": [], "question_ids": []}
        )
        if entry["label"] != label and image not in self.conflicts:
            self.conflicts[image] = f"{where} says {label} but an earlier question says {entry['label']}"
        if category and not entry["category"]:
            entry["category"] = category
        return entry


def _open_ended(entry: dict[str, Any], item: Mapping[str, Any], where: str, result: ConversionResult) -> None:
    problems = item.get("problems") or {}
    for i, region in enumerate(problems.get("regional") or []):
        desc = str(region.get("desc") or "").strip()
        box = region.get("region")
        if not desc:
            result.skip(f"{where} regional {i}", "empty description; anomaly left out")
            continue
        xyxy = None
        if isinstance(box, list) and len(box) == 4:
            x, y, w, h = (float(v) for v in box)
            xyxy = [x, y, x + w, y + h]
            entry["boxes"].append(xyxy)
        entry["quadruples"].append(
            Quadruple(
                f"Regional anomaly {i + 1}", desc, _REASONING, UNRATED_SEVERITY, source="annotation", box=xyxy
            )
        )
    for i, region in enumerate(problems.get("global") or []):
        desc = str(region.get("desc") or "").strip()
        if not desc:
            result.skip(f"{where} global {i}", "empty description; anomaly left out")
            continue
        entry["quadruples"].append(
            Quadruple("Global anomaly", desc, _REASONING, UNRATED_SEVERITY, source="annotation")
        )


def convert(src: str | os.PathLike, *, image_prefix: str = "", split: str | None = None) -> ConversionResult:
    """Convert one LOKI image JSON file, or a folder of them, into one record per image."""
    result = ConversionResult()
    images = _Images()
    for path in _source_files(Path(src)):
        data = load_json(path)
        if not isinstance(data, list):
            result.skip(path.name, f"expected a JSON array of questions, got {type(data).__name__}")
            continue
        for index, item in enumerate(data):
            where = f"{path.name}[{index}]"
            if not isinstance(item, Mapping):
                result.skip(where, "not an object")
                continue
            kind = str(item.get("question_type") or "")
            paths = item.get("image_path")
            if (match := _TF.match(kind)) and isinstance(paths, str):
                images.add(paths, match.group(1), match.group(2), where)["question_ids"].append(
                    item.get("id")
                )
            elif (match := _MC.match(kind)) and isinstance(paths, list) and len(paths) == 2:
                answer = str(item.get("answer") or "").strip().upper()
                if answer not in ("A", "B"):
                    result.skip(where, f"multiple-choice answer {item.get('answer')!r} is not A or B")
                    continue
                picked, other = (0, 1) if answer == "A" else (1, 0)
                picked_label, other_label = (
                    ("fake", "real") if match.group(1) == "fake_from_real" else ("real", "fake")
                )
                images.add(paths[picked], picked_label, match.group(2), where)["question_ids"].append(
                    item.get("id")
                )
                images.add(paths[other], other_label, match.group(2), where)["question_ids"].append(
                    item.get("id")
                )
            elif kind == "image_open_ended_vqa" and isinstance(paths, str):
                entry = images.add(paths, "fake", None, where)
                entry["question_ids"].append(item.get("id"))
                _open_ended(entry, item, where, result)
            else:
                result.skip(
                    where, f"question type {kind!r} with image_path {paths!r} is not a LOKI image question"
                )
    for image, entry in images.entries.items():
        if image in images.conflicts:
            result.skip(image, f"conflicting labels: {images.conflicts[image]}")
            continue
        result.records.append(
            Record(
                id=Path(image).stem,
                image=join_image_path(image_prefix, image),
                label=entry["label"],
                source=NAME,
                quadruples=entry["quadruples"],
                boxes=entry["boxes"],
                split=split,
                meta={
                    "category": entry["category"],
                    "question_ids": entry["question_ids"],
                    **({"severity_rated": False} if entry["quadruples"] else {}),
                },
            )
        )
    return result

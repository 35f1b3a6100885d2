"""SID-Set (SIDA, saberzl/SID_Set and SID_Set_description).

Folder layout (from the authors' loader; the fixture is written to it, see data_cards/sid_set.md)::

    <split>/real/<file>              label 0 = real
    <split>/full_synthetic/<file>    label 1 = full_synthetic  -> fake
    <split>/tampered/<file>          label 2 = tampered        -> fake, with a mask
    <split>/masks/<stem>_mask.png    0/255 mask of a tampered image
    <split>/description/{real,full_synthetic,tampered}_GT.json   {image basename: text}

The Hub parquet (``img_id, image, mask, width, height, label``; label names read from the file's
ClassLabel metadata) is read too: its images and masks are extracted byte for byte under
``<root>/<image_prefix or "sid_set">/<split>/<class>/`` (``root`` is then required).

A description reads ``Type: ... Consistency: <lighting>text <edges>text ... Authenticity:
<natural imperfections>text ... Final Assessment: ...``; for a fake image each ``<aspect>text``
becomes a quadruple (aspect = name, text = phenomenon), the final assessment the summary.

>>> aspects = parse_description("Type: synthetic Consistency: <lighting>Flat light. <edges>Too smooth. "
...                             "Final Assessment: The given image is {synthetic}.")
>>> aspects
([('lighting', 'Flat light.'), ('edges', 'Too smooth.')], 'The given image is synthetic.')
>>> generator_from_filename("04280_flux_part2_tampered.png")
'flux'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forenx.data.converters.base import UNRATED_SEVERITY, ConversionResult, join_image_path, load_json
from forenx.data.converters.hub_parquet import convert_parquet
from forenx.data.records import Record
from forenx.images import IMAGE_EXTENSIONS
from forenx.schema import Quadruple

__all__ = ["CLASSES", "NAME", "convert", "generator_from_filename", "parse_description"]

NAME = "sid_set"
#: SID-Set's class names in label-id order (0 = real, 1 = full_synthetic, 2 = tampered) -> ForenX label.
CLASSES = {"real": "real", "full_synthetic": "fake", "tampered": "fake"}

_ASPECT = re.compile(
    r"<([^<>]+)>\s*(.*?)(?=\s*<[^<>]+>|\s*\b(?:Authenticity|Final Assessment):|\Z)", re.DOTALL
)
_FINAL = re.compile(r"Final Assessment:\s*(.*)\Z", re.DOTALL)
_TAMPERED_NAME = re.compile(r"^\d+_([A-Za-z][A-Za-z0-9]*?)(?:_part\d+)?_tampered$")


def parse_description(text: str) -> tuple[list[tuple[str, str]], str]:
    """([(aspect, text), ...], final assessment) of a SID-Set description."""
    aspects = [(name.strip(), body.strip()) for name, body in _ASPECT.findall(text) if body.strip()]
    final = _FINAL.search(text)
    # "The given image is {synthetic} ..." -> "... is synthetic ...": the braces are a template relic.
    return aspects, re.sub(r"\{(\w+)\}", r"\1", final.group(1).strip()) if final else ""


def generator_from_filename(file_name: str) -> str | None:
    """The generator in a tampered image's name (``00759_sd_tampered.png`` -> ``sd``), else None."""
    match = _TAMPERED_NAME.match(Path(file_name).stem)
    return match.group(1).lower() if match else None


def _descriptions(split_dir: Path, class_name: str, result: ConversionResult) -> Mapping[str, Any]:
    path = split_dir / "description" / f"{class_name}_GT.json"
    if not path.is_file():
        return {}
    data = load_json(path)
    if not isinstance(data, Mapping):
        result.skip(str(path), "expected an object {image basename: description}; descriptions ignored")
        return {}
    return data


def _is_parquet(src: Path) -> bool:
    if src.is_file():
        return src.suffix == ".parquet"
    has_class_folders = any((p / n).is_dir() for p in (src, *src.iterdir()) if p.is_dir() for n in CLASSES)
    return not has_class_folders and any(src.rglob("*.parquet"))


def convert(
    src: str | os.PathLike,
    *,
    image_prefix: str = "",
    split: str | None = None,
    root: str | os.PathLike | None = None,
) -> ConversionResult:
    """Convert SID-Set: the folder layout (dataset root or one split folder), or the Hub parquet."""
    src = Path(src)
    if _is_parquet(src):
        if root is None:
            raise ValueError(
                "SID-Set parquet stores the images inside: pass --root DIR to extract them there"
            )
        return convert_parquet(
            src,
            source=NAME,
            classes=CLASSES,
            root=Path(root),
            folder=image_prefix.strip("/") or NAME,
            split=split,
            default_split="train",
        )
    if not src.is_dir():
        raise NotADirectoryError(f"SID-Set source {str(src)!r} must be a folder laid out as <split>/real/...")
    result = ConversionResult()
    if any((src / name).is_dir() for name in CLASSES):
        split_dirs = [src]
        base = src.parent
    else:
        split_dirs = sorted(p for p in src.iterdir() if p.is_dir() and any((p / n).is_dir() for n in CLASSES))
        base = src
    if split is not None:
        available = [d.name for d in split_dirs]
        split_dirs = [d for d in split_dirs if d.name == split]
        if not split_dirs:
            raise FileNotFoundError(f"no split {split!r} under {src}; found {available}")
    if not split_dirs:
        raise FileNotFoundError(f"no <split>/{{real,full_synthetic,tampered}}/ folders under {src}")
    for split_dir in split_dirs:
        for class_name, label in CLASSES.items():
            folder = split_dir / class_name
            if not folder.is_dir():
                continue
            descriptions = _descriptions(split_dir, class_name, result)
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    result.skip(str(path.relative_to(base)), "not an image file")
                    continue
                relative = path.relative_to(base).as_posix()
                description = str(descriptions.get(path.name) or "")
                aspects, final = parse_description(description) if description else ([], "")
                quadruples = (
                    [
                        Quadruple(
                            name,
                            body,
                            f"SID-Set's description flags the {name} as not camera-like.",
                            UNRATED_SEVERITY,
                            source="annotation",
                        )
                        for name, body in aspects
                    ]
                    if label == "fake"
                    else []
                )
                mask = None
                if class_name == "tampered":
                    mask_path = split_dir / "masks" / f"{path.stem}_mask.png"
                    if mask_path.is_file():
                        mask = join_image_path(image_prefix, mask_path.relative_to(base).as_posix())
                    else:
                        result.skip(
                            f"{relative} mask",
                            f"{mask_path.relative_to(base).as_posix()} not found; record kept without a mask",
                        )
                result.records.append(
                    Record(
                        id=f"{split_dir.name}__{class_name}__{path.stem}",
                        image=join_image_path(image_prefix, relative),
                        label=label,
                        generator=generator_from_filename(path.name) if class_name == "tampered" else None,
                        source=NAME,
                        quadruples=quadruples,
                        summary=final or description,
                        mask=mask,
                        split=split_dir.name,
                        meta={
                            "sid_class": class_name,
                            **({"description": description} if description else {}),
                            **({"severity_rated": False} if quadruples else {}),
                        },
                    )
                )
    return result

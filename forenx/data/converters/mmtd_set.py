"""MMTD-Set (FakeShield, zhipeixu/FakeShield).

On disk: LLaVA-format JSON, a list of ``{id, image, conversations}``. ``image`` is relative with a
domain folder (``ps/CASIA2/...`` tampered, ``ps/CASIA2_Au/...`` authentic, ``df/dffd/...`` DeepFake).
There is no label field: the answer says "has been tampered" or "has not been tampered"; the
domain is named in the question's first sentence ("... tampered with by Photoshop.").

The answer (tampered-area description + judgment basis) is free text and becomes the summary.
Masks are separate ``mask/*.png`` files paired with images only by sorted order, which a converter
cannot check, so they are not linked (see data_cards/mmtd_set.md).

>>> label_from_answer("1. ... The picture has not been tampered with. It is a picture taken directly")
'real'
>>> domain_from_question("This is a picture that is suspected to have been tampered with by DeepFake. Are...")
'DeepFake'
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath

from forenx.data.converters.base import (
    ConversionResult,
    join_image_path,
    llava_entries,
    llava_turn,
    load_json,
)
from forenx.data.records import Record

__all__ = ["NAME", "convert", "domain_from_question", "label_from_answer"]

NAME = "mmtd_set"
_NOT_TAMPERED = re.compile(r"\bhas not been (?:tampered|manipulated|edited)", re.IGNORECASE)
_TAMPERED = re.compile(r"\bhas been (?:tampered|manipulated|edited)", re.IGNORECASE)
_DOMAIN = re.compile(r"tampered with by ([A-Za-z][\w\- ]*?)\s*[.?!]")


def label_from_answer(answer: str) -> str | None:
    """``real`` for "has not been tampered", ``fake`` for "has been tampered", else None."""
    if _NOT_TAMPERED.search(answer):
        return "real"
    if _TAMPERED.search(answer):
        return "fake"
    return None


def domain_from_question(question: str) -> str | None:
    """The manipulation domain the question names (Photoshop, DeepFake, AIGC-Editing, ...)."""
    match = _DOMAIN.search(question)
    return match.group(1) if match else None




def convert(src: str | os.PathLike, *, image_prefix: str = "", split: str | None = None) -> ConversionResult:
    """Convert an MMTD-Set JSON file into records."""
    data = load_json(src)
    result = ConversionResult()
    if not isinstance(data, list):
        result.skip(str(src), f"expected a JSON array of LLaVA records, got {type(data).__name__}")
        return result
    seen: set[str] = set()
    for where, item, answer in llava_entries(data, result):
        label = label_from_answer(answer)
        if label is None:
            result.skip(where, "the answer says neither 'has been tampered' nor 'has not been tampered'")
            continue
        image = str(item["image"])
        parts = PurePosixPath(image).parts
        record_id = str(item.get("id") or PurePosixPath(image).stem)
        if record_id in seen:
            result.skip(where, f"id {record_id!r} appears earlier in the file")
            continue
        seen.add(record_id)
        result.records.append(
            Record(
                id=record_id,
                image=join_image_path(image_prefix, image),
                label=label,
                source=NAME,
                summary=answer,
                split=split,
                meta={
                    "domain": domain_from_question(llava_turn(item.get("conversations"), "human")),
                    "domain_folder": parts[0] if len(parts) > 1 else None,
                    "subset": parts[1] if len(parts) > 2 else None,
                },
            )
        )
    return result

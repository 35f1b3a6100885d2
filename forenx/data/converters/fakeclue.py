"""FakeClue (FakeVLM, opendatalab/FakeVLM).

On disk (from the authors' ``datasets.py`` and ``scripts/eval.py``; no record was published): a
JSON array of ``{image, label, cate, width, height, conversations: [{from: human, value:
"<image>..."}, {from: gpt, value: explanation}]}`` with ``image`` relative to the split's image
folder. **``label`` is an int with 1 = real and 0 = fake**, the opposite of most datasets. The
answer's first sentence states the verdict; a record whose text contradicts its label is skipped.

The explanation is free text, so it becomes the record's ``summary`` (no quadruples).

>>> verdict_in_text("This is a fake image. The hands are wrong.")
'fake'
>>> verdict_in_text("The image is not real, because...")
'fake'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from forenx.data.converters.base import (
    ConversionResult,
    join_image_path,
    llava_entries,
    load_json,
)
from forenx.data.records import Record

__all__ = ["LABELS", "NAME", "convert", "verdict_in_text"]

NAME = "fakeclue"
#: FakeClue's integer labels (1 = real, 0 = fake).
LABELS = {1: "real", 0: "fake"}

_VERDICT_WORD = re.compile(
    r"\b(not\s+)?(real|authentic|genuine|fake|synthetic|ai-generated|generated|manipulated|forged)\b",
    re.IGNORECASE,
)


def verdict_in_text(text: str) -> str | None:
    """The verdict stated in the first sentence ("real"/"fake"), or None when it states none."""
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    match = _VERDICT_WORD.search(first)
    if not match:
        return None
    verdict = "real" if match.group(2).lower() in ("real", "authentic", "genuine") else "fake"
    if match.group(1):
        verdict = "fake" if verdict == "real" else "real"
    return verdict


def convert(src: str | os.PathLike, *, image_prefix: str = "", split: str | None = None) -> ConversionResult:
    """Convert a FakeClue JSON file into records."""
    data = load_json(src)
    result = ConversionResult()
    if not isinstance(data, list):
        result.skip(str(src), f"expected a JSON array of samples, got {type(data).__name__}")
        return result
    seen: set[str] = set()
    for where, item, answer in llava_entries(data, result):
        raw_label = item.get("label")
        if isinstance(raw_label, bool) or raw_label not in LABELS:
            result.skip(where, f"label {raw_label!r} is not 0 (fake) or 1 (real)")
            continue
        label = LABELS[raw_label]
        if not answer:
            result.skip(where, "no gpt answer in 'conversations'")
            continue
        stated = verdict_in_text(answer)
        if stated is not None and stated != label:
            result.skip(where, f"label {raw_label} means {label} but the answer says {stated}")
            continue
        record_id = Path(str(item["image"])).with_suffix("").as_posix().replace("/", "__")
        if record_id in seen:
            result.skip(where, "the same image appears earlier in the file")
            continue
        seen.add(record_id)
        result.records.append(
            Record(
                id=record_id,
                image=join_image_path(image_prefix, str(item["image"])),
                label=label,
                source=NAME,
                summary=answer,
                split=split,
                meta={
                    "cate": item.get("cate"),
                    "width": item.get("width"),
                    "height": item.get("height"),
                    "fakeclue_label": raw_label,
                },
            )
        )
    return result

"""MMFR (FakeReasoning, PRIS-CV/FakeReasoning).

Two on-disk formats (from the authors' training and evaluation code; no record was published):

- training file ``forgery_reasoning_cot.json``: LLaVA records ``{image, conversations}`` whose
  answer holds ``<REASONING>...</REASONING>`` and ``<CONCLUSION>This image is fake.</CONCLUSION>``;
  the label is read from the conclusion.
- evaluation files ``evaluation_sets/<generator>/<generator>_reasoning.json``: an object keyed by
  ``<generator>/{0_real,1_fake}/<file>``, each value ``{attribute name: text or null}``.

Fake attributes of the evaluation files become quadruples (attribute name = anomaly name, text =
phenomenon). The reference text MMFR's metrics use (non-null values joined in sorted key order)
becomes the summary. Reasoning text is the summary for training records.

>>> label_from_conclusion("<REASONING>x</REASONING><CONCLUSION>This image is fake.</CONCLUSION>")
'fake'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from forenx.data.converters.base import (
    UNRATED_SEVERITY,
    ConversionResult,
    join_image_path,
    llava_entries,
    load_json,
)
from forenx.data.records import Record
from forenx.schema import Quadruple, Verdict

__all__ = ["FAKE_ATTRIBUTES", "NAME", "convert", "label_from_conclusion", "reference_text"]

NAME = "mmfr"
#: The forgery attributes of MMFR's evaluation files, with why each betrays a generated image.
FAKE_ATTRIBUTES = {
    "Inconsistent Lighting and Shadows": "Light and shadows in a photograph follow consistent light sources.",
    "Irregular Image Edges": "Object boundaries in a photograph are continuous and physically plausible.",
    "Anomalous Image Texture": "Photographs have natural, varied textures; generators smear or repeat them.",
    "Low Image Quality": "Generators leave blur, noise or distortion that a camera does not make.",
    "Semantic Irrationality": "The scene contradicts common sense or physical laws, which real scenes obey.",
}
_TAG = re.compile(r"<(REASONING|CONCLUSION)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)
_LABEL_FOLDER = {"0_real": "real", "1_fake": "fake"}


def label_from_conclusion(answer: str) -> str | None:
    """The label stated in ``<CONCLUSION>`` ("real"/"fake"), or None."""
    for tag, text in _TAG.findall(answer):
        if tag.upper() == "CONCLUSION":
            match = re.search(r"\b(real|fake)\b", text, re.IGNORECASE)
            return match.group(1).lower() if match else None
    return None


def reference_text(attributes: Mapping[str, Any]) -> str:
    """MMFR's metric reference: the non-null values joined in sorted key order."""
    return " ".join(str(attributes[k]).strip() for k in sorted(attributes) if attributes[k] is not None)


def _reasoning(answer: str) -> str:
    for tag, text in _TAG.findall(answer):
        if tag.upper() == "REASONING":
            return text.strip()
    return ""


def _training(data: list, image_prefix: str, split: str | None, result: ConversionResult) -> None:
    for where, item, answer in llava_entries(data, result):
        label = label_from_conclusion(answer)
        if label is None:
            result.skip(where, "no <CONCLUSION> stating real or fake in the answer")
            continue
        image = str(item["image"])
        result.records.append(
            Record(
                id=str(item.get("id") or PurePosixPath(image).with_suffix("").as_posix().replace("/", "__")),
                image=join_image_path(image_prefix, image),
                label=label,
                source=NAME,
                summary=_reasoning(answer),
                split=split,
                meta={"format": "training"},
            )
        )


def _evaluation(data: Mapping, image_prefix: str, split: str | None, result: ConversionResult) -> None:
    for key, attributes in data.items():
        parts = PurePosixPath(str(key)).parts
        if len(parts) < 3 or parts[-2] not in _LABEL_FOLDER:
            result.skip(key, "key is not <generator>/{0_real,1_fake}/<file>")
            continue
        if not isinstance(attributes, Mapping):
            result.skip(key, f"expected an object of attributes, got {type(attributes).__name__}")
            continue
        label = _LABEL_FOLDER[parts[-2]]
        quadruples = []
        if label == "fake":
            for name in sorted(attributes):
                text = attributes[name]
                if text is None or not str(text).strip():
                    continue
                if name not in FAKE_ATTRIBUTES:
                    result.skip(
                        f"{key} {name!r}", "not one of MMFR's forgery attributes; kept in the summary only"
                    )
                    continue
                quadruples.append(
                    Quadruple(
                        name, str(text).strip(), FAKE_ATTRIBUTES[name], UNRATED_SEVERITY, source="annotation"
                    )
                )
        result.records.append(
            Record(
                id=str(key).rsplit(".", 1)[0].replace("/", "__"),
                image=join_image_path(image_prefix, str(key)),
                label=label,
                generator=parts[0],
                source=NAME,
                quadruples=quadruples,
                summary=reference_text(attributes),
                split=split,
                meta={
                    "format": "evaluation",
                    "attributes": dict(attributes),
                    **({"severity_rated": False} if quadruples else {}),
                },
            )
        )


def convert(src: str | os.PathLike, *, image_prefix: str = "", split: str | None = None) -> ConversionResult:
    """Convert an MMFR training file (a JSON array) or evaluation file (a JSON object)."""
    data = load_json(src)
    result = ConversionResult()
    if isinstance(data, list):
        _training(data, image_prefix, split, result)
    elif isinstance(data, Mapping):
        _evaluation(data, image_prefix, split or "test", result)
    else:
        result.skip(
            str(src), f"expected a JSON array (training) or object (evaluation), got {type(data).__name__}"
        )
    assert all(Verdict.coerce(r.label) for r in result.records)
    return result

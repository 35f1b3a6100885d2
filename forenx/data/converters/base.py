"""What every converter returns, and the few conventions they share.

A converter reads one public dataset in its own on-disk format and returns a
:class:`ConversionResult`: the records it could convert and, for everything it left out, a
:class:`Skipped` entry saying what and why. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forenx.data.records import Record

__all__ = ["UNRATED_SEVERITY", "ConversionResult", "Skipped", "join_image_path", "load_json"]

#: Severity given to anomalies of datasets that annotate none; such records carry
#: ``meta["severity_rated"] = False`` so a user can tell them from rated ones.
UNRATED_SEVERITY = 50


@dataclass
class Skipped:
    """One entry of the source left out (a whole sample, or one anomaly of a kept sample)."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class ConversionResult:
    records: list[Record] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append(Skipped(str(where), reason))


def load_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file whatever its Unicode encoding (LOKI ships UTF-16 LE with a BOM)."""
    raw = Path(path).read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = raw.decode("utf-16")
    elif raw.startswith(b"\xef\xbb\xbf"):
        text = raw.decode("utf-8-sig")
    else:
        text = raw.decode("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from exc


def join_image_path(prefix: str, relative: str) -> str:
    """``prefix`` + a dataset's own relative image path, POSIX style, without a leading ``./``.

    >>> join_image_path("loki", "./media_data/image/a.jpg")
    'loki/media_data/image/a.jpg'
    >>> join_image_path("", "a.jpg")
    'a.jpg'
    """
    relative = relative.replace("\\", "/")
    while relative.startswith("./"):
        relative = relative[2:]
    prefix = prefix.replace("\\", "/").strip("/")
    return f"{prefix}/{relative}" if prefix else relative


def llava_turn(conversations: Any, speaker: str = "gpt") -> str:
    """Text of the first non-empty turn of ``speaker`` in LLaVA-format ``conversations`` ("" if none).

    >>> llava_turn([{"from": "human", "value": "<image>Real?"}, {"from": "gpt", "value": " Fake. "}])
    'Fake.'
    >>> llava_turn("not a list")
    ''
    """
    if not isinstance(conversations, list):
        return ""
    for turn in conversations:
        if isinstance(turn, Mapping) and turn.get("from") == speaker:
            text = str(turn.get("value") or "").strip()
            if text:
                return text
    return ""


def llava_entries(data: list, result: ConversionResult) -> Iterator[tuple[str, Mapping[str, Any], str]]:
    """``(where, item, answer)`` for each LLaVA-format entry with an image; any other entry is
    recorded in ``result`` as skipped. ``answer`` is the first gpt turn ("" when none).

    >>> result = ConversionResult()
    >>> [(w, a) for w, _, a in llava_entries([{"image": "a.png", "conversations": [
    ...     {"from": "gpt", "value": "Fake."}]}, "junk"], result)]
    [('entry 0 (a.png)', 'Fake.')]
    >>> [s.reason for s in result.skipped]
    ["not an object with an 'image'"]
    """
    for index, item in enumerate(data):
        if not isinstance(item, Mapping) or not item.get("image"):
            result.skip(f"entry {index}", "not an object with an 'image'")
            continue
        yield f"entry {index} ({item['image']})", item, llava_turn(item.get("conversations"))

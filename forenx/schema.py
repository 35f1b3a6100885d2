"""The answer format: the ONE place where model text is rendered and parsed.

An answer is a JSON object with the verdict first, so the probability mapper reads P(fake) at a
fixed slot (right after :data:`ANSWER_PREFIX`)::

    {"verdict": "fake", "anomalies": [{"name": "...", "phenomenon": "...", "reasoning": "...",
     "severity": 70}], "summary": "..."}

``severity`` runs from 0 (negligible) to 100 (physically impossible). AnomReason's "Severity Score"
is a *realism* score (5/100 = extremely unnatural); :func:`severity_from_realism` and
:func:`realism_from_severity` convert between the two scales and are the only place that does.

Training (labels), GRPO (rewards), evaluation and ``forenx explain`` all call :func:`render_answer`
and :func:`parse_answer`; nothing else parses model text.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Iterable, Mapping

__all__ = [
    "ANSWER_PREFIX",
    "VERDICT_WORDS",
    "Verdict",
    "Quadruple",
    "ForensicReport",
    "render_answer",
    "parse_answer",
    "answer_dict",
    "severity_from_realism",
    "realism_from_severity",
    "parse_severity",
]


class Verdict(str, Enum):
    REAL = "real"
    FAKE = "fake"

    @classmethod
    def coerce(cls, value: Any) -> "Verdict | None":
        """Map a label/verdict written any common way to a Verdict; None when it is not one."""
        if isinstance(value, Verdict):
            return value
        if isinstance(value, bool):
            return cls.FAKE if value else cls.REAL
        if not isinstance(value, str):
            return None
        word = value.strip().strip(".").lower()
        if word in {"fake", "ai-generated", "ai generated", "generated", "synthetic", "manipulated",
                    "tampered", "forged", "forgery"}:
            return cls.FAKE
        if word in {"real", "authentic", "genuine", "original", "pristine"}:
            return cls.REAL
        return None


#: The verdict words, in the order the probability mapper uses (index 1 = fake).
VERDICT_WORDS: tuple[str, str] = (Verdict.REAL.value, Verdict.FAKE.value)

#: Every answer starts with exactly this text; the next token is the verdict slot.
ANSWER_PREFIX = '{"verdict": "'

SEVERITY_MIN, SEVERITY_MAX = 0, 100


def severity_from_realism(realism: float) -> int:
    """AnomReason realism score (100 = natural, 5 = extremely unnatural) -> ForenX severity."""
    return int(round(min(max(SEVERITY_MAX - float(realism), SEVERITY_MIN), SEVERITY_MAX)))


def realism_from_severity(severity: float) -> int:
    """ForenX severity -> AnomReason realism score (the inverse of :func:`severity_from_realism`)."""
    return int(round(min(max(SEVERITY_MAX - float(severity), SEVERITY_MIN), SEVERITY_MAX)))


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_severity(value: Any, *, realism: bool = False) -> int | None:
    """Read a severity written as a number or text ("70", "70/100", "25/100 (noticeable)").

    ``realism=True`` reads AnomReason's realism scale and converts it. Returns None when no number
    is present. Values outside 0..100 are returned as they are (callers decide: the parser clamps,
    ``forenx data validate`` reports them).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _NUMBER.search(str(value))
        if not match:
            return None
        number = float(match.group())
    if realism:
        return severity_from_realism(number)
    return int(round(number))


# Lenient key lookup: ForenX keys, AnomReason's capitalised keys, and common spellings.
_KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "anomaly", "title"),
    "phenomenon": ("phenomenon", "observed phenomenon", "observed_phenomenon", "observation"),
    "reasoning": ("reasoning", "reason", "explanation"),
    "severity": ("severity", "severity score", "severity_score"),
}


def _lookup(record: Mapping[str, Any], field_name: str) -> tuple[str | None, Any]:
    lowered = {str(k).strip().lower(): k for k in record}
    for alias in _KEY_ALIASES[field_name]:
        if alias in lowered:
            key = lowered[alias]
            return str(key), record[key]
    return None, None


@dataclass
class Quadruple:
    """One anomaly: what it is, what is seen, why it betrays a forgery, and how bad it is."""

    name: str
    phenomenon: str
    reasoning: str
    severity: int = 50
    #: Where the anomaly comes from: "model", "annotation", "synth", or "evidence:<tool>".
    source: str = "model"
    #: Optional region [x0, y0, x1, y1] in pixels of the original image.
    box: list[float] | None = None

    def to_answer(self) -> dict[str, Any]:
        """The fields the model writes (source and box are not part of the answer)."""
        return {"name": self.name, "phenomenon": self.phenomenon, "reasoning": self.reasoning,
                "severity": int(self.severity)}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["box"] is None:
            del out["box"]
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], *, source: str | None = None) -> "Quadruple":
        """Build from ForenX keys or AnomReason keys. Raises ValueError naming a missing field.

        An AnomReason "Severity Score" is a realism score and is converted; a ForenX "severity" is
        taken as it is.
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"an anomaly must be an object, got {type(record).__name__}")
        values: dict[str, Any] = {}
        for name in ("name", "phenomenon", "reasoning"):
            _, value = _lookup(record, name)
            values[name] = "" if value is None else str(value).strip()
        key, raw = _lookup(record, "severity")
        severity = parse_severity(raw, realism=(key is not None and key.lower() == "severity score"))
        box = record.get("box")
        return cls(
            name=values["name"], phenomenon=values["phenomenon"], reasoning=values["reasoning"],
            severity=50 if severity is None else severity,
            source=source or str(record.get("source") or "model"),
            box=[float(v) for v in box] if isinstance(box, (list, tuple)) and len(box) == 4 else None,
        )


def answer_dict(verdict: Verdict | str, anomalies: Iterable[Quadruple], summary: str = "") -> dict[str, Any]:
    """The answer as a plain dict, verdict first."""
    v = Verdict.coerce(verdict)
    if v is None:
        raise ValueError(f"verdict must be 'real' or 'fake', got {verdict!r}")
    return {"verdict": v.value, "anomalies": [q.to_answer() for q in anomalies], "summary": summary}


def render_answer(verdict: Verdict | str, anomalies: Iterable[Quadruple], summary: str = "") -> str:
    """The exact text the model learns to write (and that :func:`parse_answer` reads back).

    >>> render_answer("fake", [Quadruple("Seam", "A hard edge", "Splices leave edges", 70)], "Spliced.")
    '{"verdict": "fake", "anomalies": [{"name": "Seam", "phenomenon": "A hard edge", "reasoning": "Splices leave edges", "severity": 70}], "summary": "Spliced."}'
    """
    text = json.dumps(answer_dict(verdict, anomalies, summary), ensure_ascii=False)
    assert text.startswith(ANSWER_PREFIX)
    return text


@dataclass
class ForensicReport:
    """What ForenX says about one image."""

    verdict: Verdict | None
    anomalies: list[Quadruple] = field(default_factory=list)
    summary: str = ""
    #: P(fake) from the probability mapper (None when the model gave none).
    prob_fake: float | None = None
    #: Quadruples from the evidence tools (metadata, C2PA, ELA, spectrum), each with its source.
    evidence: list[Quadruple] = field(default_factory=list)
    #: Why the model text could not be read; None when it parsed.
    parse_error: str | None = None
    raw_text: str | None = None
    image: str | None = None
    timing: dict[str, float] = field(default_factory=dict)
    #: A per-image failure (unreadable file, ...) in a batch; the batch goes on.
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.parse_error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "verdict": self.verdict.value if self.verdict else None,
            "prob_fake": self.prob_fake,
            "anomalies": [q.to_dict() for q in self.anomalies],
            "evidence": [q.to_dict() for q in self.evidence],
            "summary": self.summary,
            "parse_error": self.parse_error,
            "error": self.error,
            "raw_text": self.raw_text,
            "timing": dict(self.timing),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "ForensicReport":
        return cls(
            verdict=Verdict.coerce(record.get("verdict")),
            anomalies=[Quadruple.from_dict(a) for a in record.get("anomalies") or []],
            summary=str(record.get("summary") or ""),
            prob_fake=record.get("prob_fake"),
            evidence=[Quadruple.from_dict(a, source=a.get("source")) for a in record.get("evidence") or []],
            parse_error=record.get("parse_error"),
            raw_text=record.get("raw_text"),
            image=record.get("image"),
            timing=dict(record.get("timing") or {}),
            error=record.get("error"),
        )


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _candidate_objects(text: str) -> Iterable[str]:
    """Balanced {...} spans of the text, outermost first, in order of appearance."""
    for fenced in _FENCE.findall(text):
        yield from _candidate_objects(fenced)
    start = text.find("{")
    while start != -1:
        depth, in_string, escape, quote = 0, False, False, ""
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == quote:
                    in_string = False
            elif ch in "\"'":
                in_string, quote = True, ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    yield text[start : i + 1]
                    break
        start = text.find("{", start + 1)


def _load_object(span: str) -> Any:
    try:
        return json.loads(span)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:  # single quotes, Python literals (True/None), trailing commas
        return ast.literal_eval(re.sub(r",\s*([}\]])", r"\1", span))
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        pass
    try:
        return json.loads(re.sub(r",\s*([}\]])", r"\1", span))
    except (json.JSONDecodeError, RecursionError):
        return None


def _find(obj: Mapping[str, Any], *names: str) -> Any:
    lowered = {str(k).strip().lower(): k for k in obj}
    for name in names:
        if name in lowered:
            return obj[lowered[name]]
    return None


def parse_answer(text: Any) -> ForensicReport:
    """Read model text into a ForensicReport. Never raises.

    Lenient about code fences, text before or after the object, single quotes, trailing commas
    and AnomReason's capitalised keys. When no verdict can be read the report has
    ``verdict=None`` and ``parse_error`` says why; evaluation counts that as wrong.

    >>> parse_answer('```json\\n{"verdict": "real", "anomalies": [], "summary": "ok"}\\n```').verdict
    <Verdict.REAL: 'real'>
    >>> parse_answer("no idea").parse_error
    'no JSON object in the answer'
    """
    raw = text if isinstance(text, str) else ("" if text is None else str(text))
    report = ForensicReport(verdict=None, raw_text=raw)
    best: Mapping[str, Any] | None = None
    for span in _candidate_objects(raw):
        obj = _load_object(span)
        if isinstance(obj, Mapping) and (
            _find(obj, "verdict", "label", "answer") is not None or _find(obj, "anomalies") is not None
        ):
            best = obj
            break
    if best is None:
        # A bare list of anomalies (AnomReason's own output) is an answer without a verdict.
        start = raw.find("[")
        bare = _load_object(raw[start : raw.rfind("]") + 1]) if start != -1 else None
        if isinstance(bare, list) and bare and all(isinstance(a, Mapping) for a in bare):
            report.anomalies = [Quadruple.from_dict(a) for a in bare]
            report.parse_error = "no verdict in the answer"
        else:
            report.parse_error = "no JSON object in the answer" if "{" not in raw else "unparseable JSON in the answer"
        return report

    verdict_value = _find(best, "verdict", "label", "answer")
    report.verdict = Verdict.coerce(verdict_value)
    anomalies = _find(best, "anomalies", "anomaly", "evidence")
    problems: list[str] = []
    if isinstance(anomalies, list):
        for i, item in enumerate(anomalies):
            if isinstance(item, Mapping):
                q = Quadruple.from_dict(item)
                q.severity = min(max(q.severity, SEVERITY_MIN), SEVERITY_MAX)
                report.anomalies.append(q)
            else:
                problems.append(f"anomaly {i} is not an object")
    elif anomalies is not None:
        problems.append("'anomalies' is not a list")
    summary = _find(best, "summary", "conclusion")
    report.summary = "" if summary is None else str(summary).strip()
    if report.verdict is None:
        problems.insert(0, f"verdict {verdict_value!r} is not 'real' or 'fake'")
    report.parse_error = "; ".join(problems) or None
    return report

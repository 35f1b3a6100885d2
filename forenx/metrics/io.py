"""Read predictions and ground truth for the explanation metrics, and refuse bad files loudly.

Two formats:

- ``anomreason``: the AnomReason evaluator's JSON, an object mapping an image file name to a list
  of anomalies ``{"Name", "Observed Phenomenon", "Reasoning", "Severity Score"}`` (keys are
  case-sensitive, as in the original tool; ``null`` for an image means no anomaly).
- ``forenx``: JSONL (or a JSON list) of ForenX records or reports, one image per line, with
  ``id`` or ``image``; ``verdict`` (or ``label``); and ``anomalies`` or ``quadruples``, whose items
  have ``phenomenon`` and ``reasoning`` (``name``, ``severity`` optional). A prediction may carry
  the model's raw ``answer`` text instead of ``anomalies``: it is read by
  :func:`forenx.schema.parse_answer`, the one parser of model text.

Every problem (missing field, wrong key case, duplicate image, non-list value, a prediction for an
image that is not in the ground truth) raises :class:`MetricsInputError` naming the file, the image
and the key, with the fix. Nothing is silently scored 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forenx.metrics.semantic import image_key
from forenx.schema import Quadruple, Verdict, parse_answer, parse_severity

__all__ = [
    "FORMATS",
    "ExplanationSet",
    "MetricsInputError",
    "check_image_sets",
    "detect_format",
    "load_explanations",
]

FORMATS = ("forenx", "anomreason")

_ANOMREASON_TEXT_KEYS = ("Observed Phenomenon", "Reasoning")
_ANOMREASON_KEYS = ("Name", "Observed Phenomenon", "Reasoning", "Severity Score")
_FORENX_TEXT_KEYS = ("phenomenon", "reasoning")
_FORENX_RECORD_KEYS = ("id", "image", "verdict", "label", "anomalies", "quadruples", "answer", "raw_text",
                       "prob_fake", "generator")


class MetricsInputError(ValueError):
    """A predictions / ground-truth file the metrics cannot read as it is."""


@dataclass
class ExplanationSet:
    """Anomalies per image (keyed by basename), plus verdicts / labels where the format has them."""

    path: str
    format: str
    role: str
    anomalies: dict[str, list[Quadruple]] = field(default_factory=dict)
    #: Predicted verdict (predictions) or label (ground truth) per image; None = unparseable.
    verdicts: dict[str, Verdict | None] = field(default_factory=dict)
    prob_fake: dict[str, float | None] = field(default_factory=dict)
    generators: dict[str, str | None] = field(default_factory=dict)

    @property
    def has_verdicts(self) -> bool:
        return bool(self.verdicts)


def _fail(path: str | Path, where: str, problem: str) -> MetricsInputError:
    return MetricsInputError(f"{path}: {where}: {problem}")


def _reject_duplicate_keys(path: str | Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise _fail(path, f"key {key!r}", "appears twice in one JSON object; each image (and each "
                                                  "field) must appear once")
            seen[key] = value
        return seen
    return hook


def detect_format(path: str | Path) -> str:
    """``anomreason`` for a JSON object keyed by image, else ``forenx``."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if head.startswith("{") and path.suffix.lower() == ".json":
        return "anomreason"
    return "forenx"


def _case_problem(record: Mapping[str, Any], expected: tuple[str, ...], path: str | Path, where: str) -> None:
    present = {str(k) for k in record}
    for key in expected:
        if key in present:
            continue
        wrong = [k for k in present if k.strip().lower() == key.lower()]
        if wrong:
            raise _fail(path, where, f"key {wrong[0]!r} must be written {key!r} (keys are case-sensitive)")
        raise _fail(path, where, f"missing key {key!r} (keys present: {sorted(present)})")


def _text(value: Any, path: str | Path, where: str, key: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(path, where, f"{key!r} must be a string, got {type(value).__name__}")
    return value.strip()


def _load_anomreason(path: Path, role: str) -> ExplanationSet:
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_reject_duplicate_keys(path))
    except json.JSONDecodeError as exc:
        raise _fail(path, f"line {exc.lineno}", f"not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise _fail(path, "top level", f"an AnomReason file is a JSON object mapping image names to lists of "
                                       f"anomalies, got a {type(data).__name__}; for JSONL use --format forenx")
    out = ExplanationSet(path=str(path), format="anomreason", role=role)
    origin: dict[str, str] = {}
    for raw_key, value in data.items():
        key = image_key(raw_key)
        if key in origin:
            raise _fail(path, f"image {raw_key!r}", f"same basename {key!r} as image {origin[key]!r}; "
                                                    "images are matched by basename, so each must be unique")
        origin[key] = raw_key
        if value is None:  # the original tool reads null as "no anomaly"
            value = []
        if not isinstance(value, list):
            raise _fail(path, f"image {raw_key!r}", f"must map to a list of anomalies, got {type(value).__name__}")
        anomalies = []
        for i, item in enumerate(value):
            where = f"image {raw_key!r}, anomaly {i}"
            if not isinstance(item, dict):
                raise _fail(path, where, f"an anomaly must be an object, got {type(item).__name__}")
            _case_problem(item, _ANOMREASON_TEXT_KEYS, path, where)
            for key_name in ("Name", "Severity Score"):
                if key_name not in item:
                    wrong = [k for k in item if k.strip().lower() == key_name.lower()]
                    if wrong:
                        raise _fail(path, where, f"key {wrong[0]!r} must be written {key_name!r} "
                                                 "(keys are case-sensitive)")
            severity = parse_severity(item.get("Severity Score"), realism=True)
            anomalies.append(Quadruple(
                name=_text(item.get("Name"), path, where, "Name"),
                phenomenon=_text(item["Observed Phenomenon"], path, where, "Observed Phenomenon"),
                reasoning=_text(item["Reasoning"], path, where, "Reasoning"),
                severity=50 if severity is None else severity, source="annotation" if role == "ground truth"
                else "model"))
        out.anomalies[key] = anomalies
    return out


def _load_forenx(path: Path, role: str) -> ExplanationSet:
    text = path.read_text(encoding="utf-8")
    hook = _reject_duplicate_keys(path)
    rows: list[tuple[str, Any]] = []
    if text.lstrip().startswith("["):
        try:
            rows = [(f"item {i}", r) for i, r in enumerate(json.loads(text, object_pairs_hook=hook))]
        except json.JSONDecodeError as exc:
            raise _fail(path, f"line {exc.lineno}", f"not valid JSON ({exc.msg})") from None
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"line {number}", json.loads(line, object_pairs_hook=hook)))
            except json.JSONDecodeError as exc:
                raise _fail(path, f"line {number}", f"not valid JSON ({exc.msg})") from None
    out = ExplanationSet(path=str(path), format="forenx", role=role)
    first_seen: dict[str, str] = {}
    for where, record in rows:
        if not isinstance(record, dict):
            raise _fail(path, where, f"a record must be a JSON object, got {type(record).__name__}")
        for key in record:
            lowered = str(key).lower()
            if key not in _FORENX_RECORD_KEYS and lowered in _FORENX_RECORD_KEYS:
                raise _fail(path, where, f"key {key!r} must be written {lowered!r} (keys are case-sensitive)")
        raw_id = record.get("image") or record.get("id")
        if raw_id in (None, ""):
            raise _fail(path, where, "missing key 'image' (or 'id'): which image is this record about?")
        key = image_key(raw_id)
        where = f"{where} (image {str(raw_id)!r})"
        if key in first_seen:
            raise _fail(path, where, f"image {key!r} already appears at {first_seen[key]}; one record per image")
        first_seen[key] = where
        out.anomalies[key] = _forenx_anomalies(record, path, where, role)
        out.verdicts[key] = _forenx_verdict(record, path, where, role, out)
        prob = record.get("prob_fake")
        if prob is not None and not isinstance(prob, (int, float)):
            raise _fail(path, where, f"'prob_fake' must be a number, got {type(prob).__name__}")
        out.prob_fake[key] = None if prob is None else float(prob)
        out.generators[key] = record.get("generator")
    return out


def _forenx_anomalies(record: Mapping[str, Any], path: Path, where: str, role: str) -> list[Quadruple]:
    present = [k for k in ("anomalies", "quadruples") if k in record]
    if len(present) == 2:
        raise _fail(path, where, "has both 'anomalies' and 'quadruples'; keep one")
    if not present:
        answer = record.get("answer", record.get("raw_text"))
        if role == "predictions" and isinstance(answer, str):
            return parse_answer(answer).anomalies
        raise _fail(path, where, "missing key 'anomalies' (or 'quadruples'); write [] for an image without anomaly")
    items = record[present[0]]
    if items is None:
        items = []
    if not isinstance(items, list):
        raise _fail(path, where, f"{present[0]!r} must be a list, got {type(items).__name__}")
    anomalies = []
    for i, item in enumerate(items):
        item_where = f"{where}, {present[0]}[{i}]"
        if not isinstance(item, dict):
            raise _fail(path, item_where, f"an anomaly must be an object, got {type(item).__name__}")
        _case_problem(item, _FORENX_TEXT_KEYS, path, item_where)
        for k in ("phenomenon", "reasoning", "name"):
            _text(item.get(k), path, item_where, k)
        anomalies.append(Quadruple.from_dict(item, source=item.get("source") or
                                             ("annotation" if role == "ground truth" else "model")))
    return anomalies


def _forenx_verdict(record: Mapping[str, Any], path: Path, where: str, role: str,
                    out: ExplanationSet) -> Verdict | None:
    keys = ("label", "verdict") if role == "ground truth" else ("verdict", "label")
    for key in keys:
        if key in record:
            value = record[key]
            verdict = Verdict.coerce(value)
            if verdict is None and value not in (None, "", "unknown") and role == "ground truth":
                raise _fail(path, where, f"{key!r} is {value!r}; use 'real', 'fake' or 'unknown'")
            return verdict
    if role == "predictions" and isinstance(record.get("answer", record.get("raw_text")), str):
        return parse_answer(record.get("answer", record.get("raw_text"))).verdict
    return None


def load_explanations(path: str | Path, *, format: str | None = None, role: str = "predictions") -> ExplanationSet:
    """Read one predictions or ground-truth file. ``format`` None detects it from the content."""
    path = Path(path)
    if role not in ("predictions", "ground truth"):
        raise ValueError(f"role must be 'predictions' or 'ground truth', got {role!r}")
    if not path.is_file():
        raise MetricsInputError(f"{path}: {role} file not found")
    fmt = format or detect_format(path)
    if fmt == "anomreason":
        return _load_anomreason(path, role)
    if fmt == "forenx":
        return _load_forenx(path, role)
    raise ValueError(f"unknown format {fmt!r}: use one of {FORMATS}")


def check_image_sets(predictions: ExplanationSet, ground_truth: ExplanationSet, *,
                     official_image_set: bool = False) -> None:
    """In the strict (default) rule, every prediction must be for a ground-truth image."""
    if official_image_set:
        if not set(predictions.anomalies) & set(ground_truth.anomalies):
            raise MetricsInputError(f"{predictions.path}: no image in common with {ground_truth.path} "
                                    "(images are matched by file basename)")
        return
    unknown = sorted(set(predictions.anomalies) - set(ground_truth.anomalies))
    if unknown:
        raise MetricsInputError(
            f"{predictions.path}: prediction for image {unknown[0]!r} which is not in {ground_truth.path}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + "; fix the image ids (matched by basename) or pass --official-image-set to score only the "
              "images present in both files")

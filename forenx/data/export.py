"""Writing records or model predictions back in AnomReason's own format, for its official evaluator.

The format is one JSON object ``{image file name: [{"Name", "Observed Phenomenon", "Reasoning",
"Severity Score"}]}`` with "Severity Score" a realism string ``"NN/100 (words)."``. When a record
came from AnomReason and kept its original severity string (``meta["anomreason"]``), the string is
written back unchanged as long as the severity still matches it; otherwise it is rendered from
the ForenX severity through :func:`forenx.schema.realism_from_severity`.

>>> from forenx.schema import Quadruple, ForensicReport, Verdict
>>> report = ForensicReport(Verdict.FAKE, [Quadruple("Hand", "six fingers", "hands have five", 90)],
...                         image="imgs/x_flux.jpg")
>>> reports_to_anomreason([report])["x_flux.jpg"][0]["Severity Score"]
'10/100 (extremely unrealistic).'
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from forenx.data.converters.anomreason import FIELDS
from forenx.data.records import Record
from forenx.schema import (
    ForensicReport,
    Quadruple,
    parse_severity,
    realism_from_severity,
    severity_from_realism,
)

__all__ = [
    "export_file",
    "records_to_anomreason",
    "reports_to_anomreason",
    "severity_score_text",
    "write_anomreason",
]

# Realism bands and the words AnomReason's annotations use most for them.
_REALISM_WORDS = (
    (10, "extremely unrealistic"),
    (20, "highly unrealistic"),
    (35, "moderately unrealistic"),
    (50, "noticeable but not highly disruptive"),
    (75, "subtle"),
    (100, "negligible"),
)


def severity_score_text(severity: int) -> str:
    """A ForenX severity as an AnomReason "Severity Score" string.

    >>> severity_score_text(75)
    '25/100 (moderately unrealistic).'
    """
    realism = realism_from_severity(severity)
    words = next(text for upper, text in _REALISM_WORDS if realism <= upper)
    return f"{realism}/100 ({words})."


def _anomaly(quadruple: Quadruple, original_score: str | None) -> dict[str, str]:
    score = None
    if original_score is not None:
        realism = parse_severity(original_score)
        if realism is not None and severity_from_realism(realism) == int(quadruple.severity):
            score = original_score
    values = (
        quadruple.name,
        quadruple.phenomenon,
        quadruple.reasoning,
        score if score is not None else severity_score_text(quadruple.severity),
    )
    return dict(zip(FIELDS, values))


def _image_key(image: str | None, fallback: str) -> str:
    return PurePosixPath(str(image).replace("\\", "/")).name if image else fallback


def records_to_anomreason(records: Iterable[Record]) -> dict[str, list[dict[str, str]]]:
    """Records -> AnomReason object, keyed by the original file name (or the image's file name)."""
    out: dict[str, list[dict[str, str]]] = {}
    for record in records:
        original = record.meta.get("anomreason") if isinstance(record.meta.get("anomreason"), Mapping) else {}
        key = original.get("file_name") or _image_key(record.image, record.id)
        if key in out:
            raise ValueError(
                f"two records export to the same AnomReason image key {key!r} (record {record.id!r})"
            )
        scores = list(original.get("severity_scores") or [])
        out[key] = [
            _anomaly(q, scores[i] if i < len(scores) else None) for i, q in enumerate(record.quadruples)
        ]
    return out


def reports_to_anomreason(
    reports: Iterable[ForensicReport] | Mapping[str, ForensicReport],
) -> dict[str, list[dict[str, str]]]:
    """Model predictions -> AnomReason object, keyed by each report's image file name.

    A mapping is keyed by its own keys; a report whose answer did not parse is exported with the
    anomalies it has (possibly none), as the evaluator expects every image to be present.
    """
    items = (
        reports.items()
        if isinstance(reports, Mapping)
        else ((_image_key(r.image, f"image_{i}"), r) for i, r in enumerate(reports))
    )
    out: dict[str, list[dict[str, str]]] = {}
    for key, report in items:
        if key in out:
            raise ValueError(f"two predictions for the same AnomReason image key {key!r}")
        out[key] = [_anomaly(q, None) for q in report.anomalies]
    return out


def write_anomreason(data: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write the AnomReason object as the authors do (indent 4, non-ASCII kept)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")


def export_file(src: str | os.PathLike, out: str | os.PathLike) -> int:
    """Export a JSONL of records (``quadruples``) or of ForensicReports (``anomalies``); returns the
    number of images written. The kind is read from each line's keys."""
    from forenx.data.io import iter_json_lines

    records: list[Record] = []
    reports: list[ForensicReport] = []
    for item in iter_json_lines(src):
        if item.error is not None or not isinstance(item.value, Mapping):
            raise ValueError(f"{src}:{item.line_no}: {item.error or 'not a JSON object'}")
        try:
            if "anomalies" in item.value and "quadruples" not in item.value:
                reports.append(ForensicReport.from_dict(item.value))
            else:
                records.append(Record.from_dict(item.value))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{src}:{item.line_no}: {exc}") from exc
    if records and reports:
        raise ValueError(f"{src} mixes records and predictions; export them from separate files")
    data = records_to_anomreason(records) if records else reports_to_anomreason(reports)
    write_anomreason(data, out)
    return len(data)

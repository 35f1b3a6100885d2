"""AnomReason (Semantic Visual Anomaly Detection and Reasoning, arXiv 2510.10231).

On disk: one JSON object ``{image file name: [{"Name", "Observed Phenomenon", "Reasoning",
"Severity Score"}]}``, the same for the ground truth (``gt_data_test_case.json``) and for a model's
predictions (``pre_data_test_case.json``). Every image is AI-generated; the generator is the file
name's last ``_``-separated token when it is a word (``..._sdv35.jpg`` -> ``sdv35``, ``..._flux.jpg``
-> ``flux``); names ending in digits carry no generator.

"Severity Score" is a *realism* score written as text, e.g. ``"25/100 (noticeable but not highly
disruptive)."`` (lower = more unnatural). It becomes a ForenX severity through
:func:`forenx.schema.severity_from_realism` (25 -> 75), and the original string is kept in
``record.meta["anomreason"]["severity_scores"]`` (one per quadruple, in order) so
:mod:`forenx.data.export` writes it back exactly.

>>> generator_from_filename("2025_04_24_02_41_23_1353128135096406128_sdv35.jpg")
'sdv35'
>>> generator_from_filename("2025_04_18_02_29_58_1260626514005725187_1_1.jpg") is None
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forenx.data.converters.base import ConversionResult, join_image_path, load_json
from forenx.data.records import Record
from forenx.schema import ForensicReport, Quadruple, parse_severity

__all__ = [
    "FIELDS",
    "NAME",
    "convert",
    "generator_from_filename",
    "is_predictions_file",
    "parse_anomaly",
    "read_reports",
]

NAME = "anomreason"
#: AnomReason's keys, in its own order.
FIELDS = ("Name", "Observed Phenomenon", "Reasoning", "Severity Score")

_GENERATOR = re.compile(r"_([A-Za-z][A-Za-z0-9.-]*)$")


def generator_from_filename(file_name: str) -> str | None:
    """The generator named by the file name's suffix, or None when the suffix is not a word."""
    match = _GENERATOR.search(Path(file_name).stem)
    return match.group(1).lower() if match else None


def parse_anomaly(anomaly: Any) -> tuple[Quadruple, str]:
    """One AnomReason anomaly -> (Quadruple, original "Severity Score" string).

    Raises ValueError naming what is missing (an empty field, no number in the severity).
    """
    if not isinstance(anomaly, Mapping):
        # ValueError, not TypeError: convert() reports every kind of bad anomaly the same way.
        raise ValueError(f"an anomaly must be an object, got {type(anomaly).__name__}")  # noqa: TRY004
    missing = [key for key in FIELDS if key not in anomaly]
    if missing:
        raise ValueError(f"missing {', '.join(repr(k) for k in missing)}")
    empty = [key for key in FIELDS[:3] if not str(anomaly[key] or "").strip()]
    if empty:
        raise ValueError(f"empty {', '.join(repr(k) for k in empty)}")
    raw = anomaly["Severity Score"]
    realism = parse_severity(raw)
    if realism is None:
        raise ValueError(f"no number in 'Severity Score' {raw!r}")
    if not 0 <= realism <= 100:
        raise ValueError(f"'Severity Score' {raw!r} is outside 0..100")
    quadruple = Quadruple(
        name=str(anomaly["Name"]),
        phenomenon=str(anomaly["Observed Phenomenon"]),
        reasoning=str(anomaly["Reasoning"]),
        severity=parse_severity(raw, realism=True),
        source="annotation",
    )
    return quadruple, raw if isinstance(raw, str) else str(raw)


def is_predictions_file(path: str | os.PathLike) -> bool:
    """The authors name predictions ``pre_*.json`` and ground truth ``gt_*.json``.

    >>> is_predictions_file("pre_data_test_case.json"), is_predictions_file("gt_data_test_case.json")
    (True, False)
    """
    name = Path(path).name.lower()
    return name.startswith(("pre_", "pred")) or "prediction" in name


def convert(
    src: str | os.PathLike,
    *,
    image_prefix: str = "",
    split: str | None = None,
    label: str = "fake",
    predictions: bool | None = None,
) -> ConversionResult:
    """Convert an AnomReason file (ground truth or predictions) into records.

    ``image_prefix`` is prepended to the file names (the images live in one folder); ``label`` is
    "fake" because every AnomReason image is generated. Quadruples of a predictions file
    (``predictions``; by default told from the file name, see :func:`is_predictions_file`) get
    ``source="model"``, ground-truth ones ``source="annotation"``.
    """
    data = load_json(src)
    if predictions is None:
        predictions = is_predictions_file(src)
    result = ConversionResult()
    if not isinstance(data, Mapping):
        result.skip(
            str(src), f"expected an object {{image file name: [anomalies]}}, got {type(data).__name__}"
        )
        return result
    for file_name, anomalies in data.items():
        if not isinstance(anomalies, list):
            result.skip(file_name, f"expected a list of anomalies, got {type(anomalies).__name__}")
            continue
        quadruples, severity_scores = [], []
        for index, anomaly in enumerate(anomalies):
            try:
                quadruple, severity_score = parse_anomaly(anomaly)
            except ValueError as exc:
                result.skip(f"{file_name} anomaly {index}", f"{exc}; anomaly left out")
                continue
            if predictions:
                quadruple.source = "model"
            quadruples.append(quadruple)
            severity_scores.append(severity_score)
        result.records.append(
            Record(
                id=Path(file_name).stem,
                image=join_image_path(image_prefix, file_name),
                label=label,
                generator=generator_from_filename(file_name),
                source=NAME,
                quadruples=quadruples,
                split=split,
                meta={
                    "anomreason": {
                        "file_name": file_name,
                        "kind": "predictions" if predictions else "ground_truth",
                        "severity_scores": severity_scores,
                    }
                },
            )
        )
    return result


def read_reports(src: str | os.PathLike) -> dict[str, ForensicReport]:
    """An AnomReason file as ``{image file name: ForensicReport}`` (what metrics compare).

    AnomReason answers carry no verdict, so ``verdict`` is None; anomalies that cannot be read are
    left out as in :func:`convert`.
    """
    reports = {}
    for record in convert(src, predictions=True).records:
        reports[record.meta["anomreason"]["file_name"]] = ForensicReport(
            verdict=None, anomalies=record.quadruples, image=record.image
        )
    return reports

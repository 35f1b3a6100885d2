"""Checking a record file before anything trains or evaluates on it.

:func:`validate_records` reads every line and reports every bad record with its line number and the
reason; :func:`require_valid` is what training and evaluation call to refuse invalid data up front.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "data.jsonl").write_text('{"id": "a", "image": "../a.png", "label": "maybe"}\\n')
>>> report = validate_records(folder / "data.jsonl")
>>> [(p.line_no, p.kind) for p in report.problems]
[(1, 'unknown_label'), (1, 'image_outside_root')]
>>> report.ok
False
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forenx.data.io import PathOutsideRootError, default_root, iter_json_lines, resolve_in_root
from forenx.data.records import LABELS
from forenx.images import ImageLoadError, load_image
from forenx.schema import SEVERITY_MAX, SEVERITY_MIN

__all__ = [
    "PROBLEM_KINDS",
    "InvalidDataError",
    "Problem",
    "ValidationReport",
    "require_valid",
    "validate_records",
]

#: Every kind of problem, with what it means (the summary table lists them in this order).
PROBLEM_KINDS: dict[str, str] = {
    "invalid_json": "the line is not valid JSON",
    "not_an_object": "the line is JSON but not an object",
    "missing_field": "id, image or label is missing or empty",
    "bad_field_type": "a field has the wrong type",
    "duplicate_id": "the id was already used on an earlier line",
    "unknown_label": f"label is not one of {', '.join(LABELS)}",
    "image_outside_root": "the image or mask path is absolute or resolves outside the data root",
    "image_missing": "the image or mask file does not exist",
    "image_unreadable": "the image or mask file cannot be decoded",
    "empty_anomaly_field": "an anomaly's name, phenomenon or reasoning is empty",
    "severity_out_of_range": f"an anomaly's severity is not an integer in {SEVERITY_MIN}..{SEVERITY_MAX}",
    "bad_box": "a box is not [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1",
}


@dataclass
class Problem:
    """One thing wrong with one line."""

    line_no: int
    kind: str
    reason: str
    record_id: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line_no}" + (f" (id {self.record_id!r})" if self.record_id else "")
        return f"{where}: {self.reason}"


@dataclass
class ValidationReport:
    """What :func:`validate_records` found."""

    path: str
    root: str
    n_records: int = 0
    n_valid: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def n_invalid(self) -> int:
        return self.n_records - self.n_valid

    def counts(self) -> dict[str, int]:
        """Problems per kind, in :data:`PROBLEM_KINDS` order, kinds with none left out."""
        found = Counter(p.kind for p in self.problems)
        return {kind: found[kind] for kind in PROBLEM_KINDS if found[kind]}

    def message(self, limit: int = 20) -> str:
        """A readable account: where, how many, the first ``limit`` problems and how to see all."""
        lines = [
            f"{self.path}: {self.n_invalid} of {self.n_records} records are invalid (data root {self.root})"
        ]
        lines += [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more problems")
        lines.append(f"Run `forenx data validate {self.path} --root {self.root}` for the full list.")
        return "\n".join(lines)


class InvalidDataError(ValueError):
    """Raised by :func:`require_valid`; carries the :class:`ValidationReport`."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.message())


def _check_path(value: Any, what: str, root: Path, check_images: bool) -> tuple[str, str] | None:
    try:
        path = resolve_in_root(root, value)
    except PathOutsideRootError as exc:
        return "image_outside_root", f"{what} {exc}"
    if not check_images:
        return None
    if not path.exists():
        return "image_missing", f"{what} {value!r} not found under the data root ({path})"
    try:
        load_image(path)
    except ImageLoadError as exc:
        return "image_unreadable", f"{what} {value!r}: {exc.reason}"
    return None


def _check_quadruples(quadruples: Any) -> list[tuple[str, str]]:
    if quadruples is None:
        return []
    if not isinstance(quadruples, list):
        return [("bad_field_type", f"'quadruples' must be a list, got {type(quadruples).__name__}")]
    found: list[tuple[str, str]] = []
    for i, quadruple in enumerate(quadruples):
        if not isinstance(quadruple, Mapping):
            found.append(("bad_field_type", f"anomaly {i} must be an object, got {type(quadruple).__name__}"))
            continue
        for name in ("name", "phenomenon", "reasoning"):
            value = quadruple.get(name)
            if not isinstance(value, str) or not value.strip():
                found.append(("empty_anomaly_field", f"anomaly {i}: {name!r} is missing or empty"))
        severity = quadruple.get("severity")
        if (
            isinstance(severity, bool)
            or not isinstance(severity, (int, float))
            or not math.isfinite(severity)
            or severity != int(severity)
        ):
            found.append(
                (
                    "severity_out_of_range",
                    (
                        f"anomaly {i}: severity {severity!r} is not an integer (write {SEVERITY_MIN}.."
                        f"{SEVERITY_MAX}; AnomReason realism scores must be converted)"
                    ),
                )
            )
        elif not SEVERITY_MIN <= severity <= SEVERITY_MAX:
            found.append(
                (
                    "severity_out_of_range",
                    f"anomaly {i}: severity {severity} is outside {SEVERITY_MIN}..{SEVERITY_MAX}",
                )
            )
        if quadruple.get("box") is not None and not _is_box(quadruple["box"]):
            found.append(("bad_box", f"anomaly {i}: box {quadruple['box']!r} is not [x0, y0, x1, y1]"))
    return found


def _is_box(box: Any) -> bool:
    if not isinstance(box, list) or len(box) != 4:
        return False
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        return False
    return box[0] <= box[2] and box[1] <= box[3]


def _check_record(value: Any, root: Path, check_images: bool) -> tuple[str | None, list[tuple[str, str]]]:
    if not isinstance(value, Mapping):
        return None, [("not_an_object", f"a record must be a JSON object, got {type(value).__name__}")]
    record_id = value.get("id")
    record_id = None if record_id in (None, "") else str(record_id)
    found: list[tuple[str, str]] = []
    for key in ("id", "image", "label"):
        if value.get(key) in (None, ""):
            found.append(("missing_field", f"field {key!r} is missing or empty"))
    label = value.get("label")
    if label not in (None, "") and label not in LABELS:
        found.append(("unknown_label", f"label {label!r} is not one of {', '.join(LABELS)}"))
    image = value.get("image")
    if image not in (None, ""):
        if not isinstance(image, str):
            found.append(("bad_field_type", f"'image' must be a string path, got {type(image).__name__}"))
        elif (problem := _check_path(image, "image", root, check_images)) is not None:
            found.append(problem)
    mask = value.get("mask")
    if mask is not None:
        if not isinstance(mask, str) or not mask:
            found.append(("bad_field_type", f"'mask' must be a path or null, got {mask!r}"))
        elif (problem := _check_path(mask, "mask", root, check_images)) is not None:
            found.append(problem)
    found += _check_quadruples(value.get("quadruples"))
    boxes = value.get("boxes")
    if boxes is not None:
        if not isinstance(boxes, list):
            found.append(("bad_field_type", f"'boxes' must be a list, got {type(boxes).__name__}"))
        else:
            found += [
                ("bad_box", f"box {i} {b!r} is not [x0, y0, x1, y1]")
                for i, b in enumerate(boxes)
                if not _is_box(b)
            ]
    for key in ("generator", "source", "split", "summary"):
        if value.get(key) is not None and not isinstance(value[key], str):
            found.append(
                ("bad_field_type", f"{key!r} must be a string or null, got {type(value[key]).__name__}")
            )
    if value.get("meta") is not None and not isinstance(value["meta"], Mapping):
        found.append(("bad_field_type", f"'meta' must be an object, got {type(value['meta']).__name__}"))
    return record_id, found


def validate_records(
    path: str | os.PathLike, root: str | os.PathLike | None = None, *, check_images: bool = True
) -> ValidationReport:
    """Check every line of a record file; never raises for bad content (a missing file does).

    ``root`` defaults to the folder holding the file. ``check_images=False`` skips opening the
    images (path-in-root checks still run), for a quick look at a large file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"record file {str(path)!r} not found")
    root_path = Path(root).resolve() if root is not None else default_root(path)
    if not root_path.is_dir():
        raise FileNotFoundError(f"data root {str(root_path)!r} is not a folder; pass --root DIR")
    report = ValidationReport(path=str(path), root=str(root_path))
    first_line_of: dict[str, int] = {}
    for item in iter_json_lines(path):
        report.n_records += 1
        if item.error is not None:
            report.problems.append(Problem(item.line_no, "invalid_json", item.error))
            continue
        record_id, found = _check_record(item.value, root_path, check_images)
        if record_id is not None:
            if record_id in first_line_of:
                found.insert(
                    0, ("duplicate_id", f"id {record_id!r} already used on line {first_line_of[record_id]}")
                )
            else:
                first_line_of[record_id] = item.line_no
        report.problems += [Problem(item.line_no, kind, reason, record_id) for kind, reason in found]
        if not found:
            report.n_valid += 1
    return report


def require_valid(
    path: str | os.PathLike, root: str | os.PathLike | None = None, *, check_images: bool = True
) -> ValidationReport:
    """Validate and raise :class:`InvalidDataError` (listing the problems) unless every record is good.

    Training and evaluation call this before they load a model, so bad data fails in seconds.
    """
    report = validate_records(path, root, check_images=check_images)
    if not report.ok:
        raise InvalidDataError(report)
    return report

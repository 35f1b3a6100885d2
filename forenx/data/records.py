"""The unified sample: one record for every data source.

On disk a data set is a JSONL file of records whose ``image`` paths are relative to a data root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from forenx.schema import Quadruple, Verdict, render_answer

__all__ = ["LABELS", "Record"]

#: Allowed labels. "unknown" is for unlabelled data (explain / pseudo-labelling), never trained on.
LABELS = ("real", "fake", "unknown")


@dataclass
class Record:
    """One image with its label and its ground-truth anomalies."""

    id: str
    #: Path relative to the data root (POSIX separators).
    image: str
    label: str
    generator: str | None = None
    source: str | None = None
    quadruples: list[Quadruple] = field(default_factory=list)
    summary: str = ""
    #: Optional artifact mask, a path relative to the root (white = manipulated).
    mask: str | None = None
    #: Optional boxes [x0, y0, x1, y1] in pixels.
    boxes: list[list[float]] = field(default_factory=list)
    split: str | None = None
    #: Source-specific extras kept for round trips (e.g. the original severity strings).
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict | None:
        return Verdict.coerce(self.label)

    def answer(self) -> str:
        """The training target: the answer text the model learns to write."""
        verdict = self.verdict
        if verdict is None:
            raise ValueError(f"record {self.id!r}: label {self.label!r} has no answer (need real or fake)")
        return render_answer(verdict, self.quadruples, self.summary)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "image": self.image, "label": self.label, "generator": self.generator,
            "source": self.source, "quadruples": [q.to_dict() for q in self.quadruples],
            "summary": self.summary, "split": self.split,
        }
        if self.mask is not None:
            out["mask"] = self.mask
        if self.boxes:
            out["boxes"] = self.boxes
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Record":
        """Build from a JSON object. Raises ValueError naming the field that is wrong."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a record must be a JSON object, got {type(d).__name__}")
        for key in ("id", "image", "label"):
            if key not in d or d[key] in (None, ""):
                raise ValueError(f"missing field {key!r}")
        quadruples = d.get("quadruples") or []
        if not isinstance(quadruples, list):
            raise ValueError("field 'quadruples' must be a list")
        return cls(
            id=str(d["id"]), image=str(d["image"]), label=str(d["label"]),
            generator=d.get("generator"), source=d.get("source"),
            quadruples=[Quadruple.from_dict(q, source=(q.get("source") if isinstance(q, Mapping) else None)
                                            or "annotation") for q in quadruples],
            summary=str(d.get("summary") or ""), mask=d.get("mask"),
            boxes=[list(map(float, b)) for b in d.get("boxes") or []],
            split=d.get("split"), meta=dict(d.get("meta") or {}),
        )

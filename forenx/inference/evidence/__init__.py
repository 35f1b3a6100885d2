"""Evidence tools: what pixels cannot say, turned into quadruples beside the model's.

Each tool reads the file (metadata, C2PA) or the decoded pixels (ELA, spectrum) and returns
quadruples whose ``source`` is ``"evidence:<tool>"``. :func:`run_evidence` runs a selection, keeps
the maps the HTML report shows (error-level map, residual spectrum) and turns every failure into a
message, so one odd file never stops a batch.

>>> import io
>>> from PIL import Image
>>> buf = io.BytesIO(); Image.new("RGB", (32, 32), "gray").save(buf, "PNG")
>>> result = run_evidence(buf.getvalue(), tools=["metadata", "ela"])
>>> [q.name for q in result.quadruples], result.errors, sorted(result.maps)
(['No camera metadata'], [], ['ela'])
>>> run_evidence(b"").errors
['<image>: empty file (0 bytes)']
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from forenx.images import ImageLoadError, ImageSource, load_image
from forenx.inference.evidence.c2pa import c2pa_evidence
from forenx.inference.evidence.ela import ela_evidence
from forenx.inference.evidence.metadata import metadata_evidence
from forenx.inference.evidence.spectrum import spectrum_evidence
from forenx.schema import Quadruple

__all__ = [
    "EVIDENCE_TOOLS",
    "FILE_TOOLS",
    "EvidenceResult",
    "c2pa_evidence",
    "ela_evidence",
    "metadata_evidence",
    "run_evidence",
    "spectrum_evidence",
]


def _ela(source: Any, image: Image.Image) -> tuple[list[Quadruple], dict[str, Any]]:
    quadruples, result = ela_evidence(source, image)
    return quadruples, {"ela": result.error_map}


def _spectrum(source: Any, image: Image.Image) -> tuple[list[Quadruple], dict[str, Any]]:
    quadruples, result = spectrum_evidence(source, image)
    return quadruples, {"spectrum": result.spectrum}


#: Tool name -> ``(source, image) -> (quadruples, maps)``, in the order they run.
EVIDENCE_TOOLS: dict[str, Callable[[Any, Image.Image], tuple[list[Quadruple], dict[str, Any]]]] = {
    "metadata": lambda source, image: (metadata_evidence(source, image), {}),
    "c2pa": lambda source, image: (c2pa_evidence(source, image), {}),
    "ela": _ela,
    "spectrum": _spectrum,
}

#: Tools that read the file itself; they are skipped for in-memory PIL images.
FILE_TOOLS = frozenset({"metadata", "c2pa"})


@dataclass
class EvidenceResult:
    """What the evidence tools found for one image."""

    quadruples: list[Quadruple] = field(default_factory=list)
    #: Pictures for the HTML report: "ela" (RGB uint8 error map), "spectrum" (2D float 0..1).
    maps: dict[str, Any] = field(default_factory=dict)
    #: One message per failure: the file could not be decoded, or a tool raised.
    errors: list[str] = field(default_factory=list)
    #: Seconds per tool.
    timing: dict[str, float] = field(default_factory=dict)


def _source_name(source: ImageSource | None) -> str:
    if source is None or isinstance(source, (bytes, bytearray, Image.Image)):
        return "<image>"
    return os.fspath(source)


def run_evidence(source: ImageSource | None, image: Image.Image | None = None,
                 tools: Iterable[str] | None = None) -> EvidenceResult:
    """Run evidence ``tools`` (default: all of :data:`EVIDENCE_TOOLS`) on one image. Never raises
    for a bad file: failures are in ``errors``.

    ``source`` is the path or bytes the image came from (metadata and C2PA need the file); ``image``
    is the decoded image when the caller already has it (so nothing is decoded twice).
    """
    selected: Sequence[str] = list(EVIDENCE_TOOLS) if tools is None else list(tools)
    unknown = [t for t in selected if t not in EVIDENCE_TOOLS]
    if unknown:
        raise ValueError(f"unknown evidence tool(s) {unknown}; choose from {sorted(EVIDENCE_TOOLS)}")
    result = EvidenceResult()
    name = _source_name(source)
    if isinstance(source, Image.Image):
        image, source = (source if image is None else image), None
    if image is None:
        if source is None:
            raise ValueError("run_evidence needs a source (path or bytes) or a decoded image")
        try:
            image = load_image(source)
        except ImageLoadError as exc:
            result.errors.append(str(exc))
            return result
    for tool in selected:
        if tool in FILE_TOOLS and source is None:
            continue
        started = time.perf_counter()
        try:
            quadruples, maps = EVIDENCE_TOOLS[tool](source, image)
        except Exception as exc:  # noqa: BLE001 -- one tool failing must not lose the others' findings
            reason = str(exc) or exc.__class__.__name__
            result.errors.append(f"{name}: evidence tool '{tool}' failed: {reason}")
        else:
            result.quadruples.extend(quadruples)
            result.maps.update(maps)
        result.timing[f"evidence_{tool}_s"] = time.perf_counter() - started
    return result

"""Reports people want to read: terminal text (rich), JSON (with a published schema), Markdown and
one self-contained HTML page.

Every renderer takes :class:`~forenx.schema.ForensicReport` objects, or :class:`ReportView` objects
when pictures go with them (the image, the model's fusion-attention heatmap, the error-level map).
All report text comes from a model or from a file's metadata, so it is treated as hostile: rich
markup is never interpreted, Markdown cells are escaped, and HTML is escaped and served under a
Content-Security-Policy that allows no script at all.

>>> from forenx.schema import ForensicReport, Quadruple, Verdict
>>> report = ForensicReport(Verdict.FAKE, [Quadruple("Seam | edge", "hard edge", "splice", 70)],
...                         prob_fake=0.91, image="a.jpg")
>>> print(render_markdown([report]).splitlines()[-1])
| 70 | Seam \\| edge | model | hard edge | splice |
>>> validate_report_json(report_to_dict(report))
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from forenx.schema import ForensicReport, Quadruple, Verdict

__all__ = [
    "REPORT_FORMATS",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "ReportView",
    "heatmap_overlay",
    "load_report_schema",
    "print_reports",
    "ranked_findings",
    "render_html",
    "render_json",
    "render_markdown",
    "render_text",
    "report_to_dict",
    "severity_label",
    "validate_report_json",
    "write_report",
]

#: Version of the JSON layout described by :data:`SCHEMA_PATH` (bumped when fields change).
SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).with_name("report_schema.json")
REPORT_FORMATS = ("text", "json", "md", "html")
#: Longest side of the pictures embedded in HTML (display only; analysis always uses full pixels).
DISPLAY_SIDE = 640


@dataclass
class ReportView:
    """A report with the pictures that go with it (all optional)."""

    report: ForensicReport
    #: The image as decoded (PIL, RGB).
    image: Image.Image | None = None
    #: The model's fusion attention: a 2D float array of any grid size, upsampled over the image.
    heatmap: Any = None
    #: Error-level map (RGB uint8 array or PIL image) from the ELA evidence tool.
    ela_map: Any = None
    #: Residual spectrum (2D float array, 0..1) from the spectrum evidence tool.
    spectrum: Any = None
    #: Problems that did not stop the report, e.g. an evidence tool that failed.
    notes: list[str] = field(default_factory=list)


ReportLike = ForensicReport | ReportView


def _views(items: ReportLike | Iterable[ReportLike]) -> list[ReportView]:
    if isinstance(items, (ForensicReport, ReportView)):
        items = [items]
    views = []
    for item in items:
        if isinstance(item, ForensicReport):
            views.append(ReportView(item))
        elif isinstance(item, ReportView):
            views.append(item)
        else:
            raise TypeError(f"a report must be a ForensicReport or a ReportView, got {type(item).__name__}")
    return views


def severity_label(severity: int) -> str:
    """A word for a 0..100 severity.

    >>> severity_label(5), severity_label(45), severity_label(95)
    ('negligible', 'noticeable', 'severe')
    """
    for limit, word in ((20, "negligible"), (40, "minor"), (60, "noticeable"), (80, "strong")):
        if severity < limit:
            return word
    return "severe"


def ranked_findings(report: ForensicReport) -> list[Quadruple]:
    """The model's anomalies and the evidence together, most severe first (ties keep their order)."""
    return sorted([*report.anomalies, *report.evidence], key=lambda q: -int(q.severity))


def _name(report: ForensicReport, index: int) -> str:
    return report.image or f"image {index + 1}"


def _verdict_word(report: ForensicReport) -> str:
    if report.error:
        return "error"
    return report.verdict.value if report.verdict else "no verdict"


# ---------------------------------------------------------------------------------------- text
_SEVERITY_STYLE = {"negligible": "dim", "minor": "green", "noticeable": "yellow", "strong": "dark_orange",
                   "severe": "bold red"}


def _text_block(view: ReportView, index: int):
    """One rich Panel per image. Every string goes in as Text, so "[bold]" in a model's answer stays text."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    report = view.report
    title = Text(_name(report, index))
    if report.error:
        return Panel(Text.assemble(("ERROR ", "bold red"), report.error), title=title, border_style="red")
    parts: list[Any] = []
    headline = Text()
    if report.verdict is Verdict.FAKE:
        headline.append("FAKE", "bold white on red")
    elif report.verdict is Verdict.REAL:
        headline.append("REAL", "bold white on green")
    else:
        headline.append("NO VERDICT", "bold black on yellow")
    if report.prob_fake is not None:
        headline.append(f"  P(fake) = {report.prob_fake:.2f}", "bold")
    parts.append(headline)
    if report.summary:
        parts.append(Text(report.summary))
    if report.parse_error:
        parts.append(Text.assemble(("answer not understood: ", "yellow"), report.parse_error))
    findings = ranked_findings(report)
    if findings:
        table = Table(show_header=True, header_style="bold", expand=True, show_lines=False)
        table.add_column("Sev", justify="right", no_wrap=True, width=4)
        table.add_column("Anomaly", ratio=2, overflow="fold")
        table.add_column("Source", no_wrap=True)
        table.add_column("What is seen / why it matters", ratio=5, overflow="fold")
        for q in findings:
            style = _SEVERITY_STYLE[severity_label(q.severity)]
            detail = Text(q.phenomenon)
            if q.reasoning:
                detail.append("\n")
                detail.append(q.reasoning, "dim")
            table.add_row(Text(str(int(q.severity)), style), Text(q.name, style), Text(q.source, "cyan"), detail)
        parts.append(table)
    else:
        parts.append(Text("no anomalies reported", "dim"))
    for note in view.notes:
        parts.append(Text.assemble(("note: ", "yellow"), note))
    return Panel(Group(*parts), title=title, border_style="red" if report.verdict is Verdict.FAKE else "green")


def print_reports(items: ReportLike | Iterable[ReportLike], console: Any = None) -> None:
    """Print one block per image on a rich console (stdout by default)."""
    from rich.console import Console

    console = console or Console()
    for index, view in enumerate(_views(items)):
        console.print(_text_block(view, index))


def render_text(items: ReportLike | Iterable[ReportLike], *, width: int = 100) -> str:
    """The terminal blocks as plain text (no colour codes), for files and logs."""
    from rich.console import Console

    buffer = io.StringIO()
    print_reports(items, Console(file=buffer, width=width, color_system=None, force_terminal=False,
                                 highlight=False, emoji=False))
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- JSON
def report_to_dict(item: ReportLike) -> dict[str, Any]:
    """``ForensicReport.to_dict()`` plus ``schema_version`` (and ``notes`` when there are some)."""
    view = _views(item)[0]
    out = {"schema_version": SCHEMA_VERSION, **view.report.to_dict()}
    # A probability or a timing straight from torch/numpy (float32, 0-d tensor) becomes a JSON number.
    if out["prob_fake"] is not None:
        out["prob_fake"] = float(out["prob_fake"])
    out["timing"] = {str(k): float(v) for k, v in out["timing"].items()}
    if view.notes:
        out["notes"] = list(view.notes)
    return out


def render_json(items: ReportLike | Iterable[ReportLike], *, indent: int | None = 2) -> str:
    """One report object for one report; ``{"schema_version", "reports": [...]}`` for a list."""
    if isinstance(items, (ForensicReport, ReportView)):
        document: dict[str, Any] = report_to_dict(items)
    else:
        document = {"schema_version": SCHEMA_VERSION, "reports": [report_to_dict(v) for v in _views(items)]}
    validate_report_json(document)
    return json.dumps(document, indent=indent, ensure_ascii=False)


@lru_cache(maxsize=1)
def load_report_schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of a report."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_report_json(document: Any) -> None:
    """Raise ValueError naming every place where ``document`` breaks the report schema."""
    from jsonschema import Draft202012Validator

    schema = load_report_schema()
    # Check against the matching branch of the top-level anyOf, so errors point into the document
    # ("reports/0/evidence/1/severity") instead of "matches none of the alternatives".
    branch = schema["anyOf"][1] if isinstance(document, dict) and "reports" in document else schema["anyOf"][0]
    validator = Draft202012Validator({"$schema": schema["$schema"], "$defs": schema["$defs"], **branch})
    problems = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if problems:
        lines = []
        for problem in problems[:10]:
            where = "/".join(str(p) for p in problem.absolute_path) or "(top level)"
            lines.append(f"{where}: {problem.message}")
        raise ValueError(f"report does not match {SCHEMA_PATH.name}: " + "; ".join(lines))


# ------------------------------------------------------------------------------------ Markdown
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#<>])")


def _md(text: Any) -> str:
    """Text safe inside a Markdown paragraph or table cell: specials escaped, newlines as <br>."""
    escaped = _MD_SPECIAL.sub(r"\\\1", str(text))
    return re.sub(r"\r\n|\r|\n", "<br>", escaped)


def render_markdown(items: ReportLike | Iterable[ReportLike], *, title: str = "ForenX report") -> str:
    """A Markdown document: one section per image, findings in a table, most severe first."""
    lines = [f"# {_md(title)}", ""]
    for index, view in enumerate(_views(items)):
        report = view.report
        lines += [f"## {_md(_name(report, index))}", ""]
        if report.error:
            lines += [f"**Error:** {_md(report.error)}", ""]
            continue
        verdict = f"**Verdict:** {_verdict_word(report)}"
        if report.prob_fake is not None:
            verdict += f" · **P(fake):** {report.prob_fake:.2f}"
        lines += [verdict, ""]
        if report.summary:
            lines += [_md(report.summary), ""]
        if report.parse_error:
            lines += [f"**Answer not understood:** {_md(report.parse_error)}", ""]
        for note in view.notes:
            lines += [f"*Note:* {_md(note)}", ""]
        findings = ranked_findings(report)
        if findings:
            lines += ["| Severity | Anomaly | Source | Phenomenon | Reasoning |", "|---:|---|---|---|---|"]
            lines += [f"| {int(q.severity)} | {_md(q.name)} | {_md(q.source)} | {_md(q.phenomenon)} | "
                      f"{_md(q.reasoning)} |" for q in findings]
        else:
            lines.append("No anomalies reported.")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


# ---------------------------------------------------------------------------------------- HTML
# An inferno-like ramp: dark for low attention, bright yellow for high.
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)


def _colorize(values: np.ndarray) -> np.ndarray:
    """0..1 floats -> RGB uint8 along the ramp."""
    position = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    weight = (position - low)[..., None]
    return (_RAMP[low] * (1 - weight) + _RAMP[low + 1] * weight).astype(np.uint8)


def _normalise(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor (possibly on GPU, possibly bfloat16)
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"a heatmap must be a 2D grid, got shape {array.shape}")
    array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def heatmap_overlay(image: Image.Image, heatmap: Any, *, alpha: float = 0.5) -> Image.Image:
    """The heatmap (any grid size) upsampled bilinearly over ``image`` and blended onto it.

    >>> overlay = heatmap_overlay(Image.new("RGB", (64, 48)), np.eye(4))
    >>> overlay.size
    (64, 48)
    """
    grid = Image.fromarray(_normalise(heatmap).astype(np.float32), mode="F")
    upsampled = np.asarray(grid.resize(image.size, Image.BILINEAR), dtype=np.float64)
    colour = _colorize(upsampled).astype(np.float64)
    # Opacity follows attention, so low-attention areas show the image as it is.
    weight = alpha * np.clip(upsampled, 0, 1)[..., None] + 0.15
    blended = np.asarray(image.convert("RGB"), dtype=np.float64) * (1 - weight) + colour * weight
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))


def _display(image: Image.Image) -> tuple[Image.Image, float]:
    scale = min(1.0, DISPLAY_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.LANCZOS)
    return image, scale


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _as_picture(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    array = np.asarray(value)
    if array.ndim == 2:
        if array.dtype != np.uint8:
            return Image.fromarray(_colorize(_normalise(array)))
        return Image.fromarray(array).convert("RGB")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if array.dtype != np.uint8:
            array = (np.clip(array, 0, 1) * 255).astype(np.uint8) if array.max() <= 1.0 else array.clip(0, 255).astype(np.uint8)
        return Image.fromarray(array[..., :3])
    raise ValueError(f"a map must be a 2D array, an RGB array or a PIL image, got shape {array.shape}")


def _with_boxes(image: Image.Image, findings: Sequence[Quadruple], scale: float) -> Image.Image:
    boxed = [q for q in findings if q.box]
    if not boxed:
        return image
    image = image.copy()
    draw = ImageDraw.Draw(image)
    for q in boxed:
        x0, y0, x1, y1 = (v * scale for v in q.box)
        draw.rectangle([x0, y0, x1, y1], outline=(255, 40, 40) if q.severity >= 60 else (255, 200, 0), width=3)
    return image


def _severity_colour(severity: int) -> str:
    return {"negligible": "#9aa5b1", "minor": "#3fa34d", "noticeable": "#e0b000", "strong": "#f07800",
            "severe": "#d7263d"}[severity_label(severity)]


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       background: #f4f5f7; color: #1d2430; line-height: 1.45; }
header { background: #1d2430; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; }
header p { margin: 4px 0 0; color: #c6cbd3; font-size: 14px; }
main { padding: 16px 32px 40px; max-width: 1400px; }
nav table, table.index { border-collapse: collapse; width: 100%; background: #fff; margin-bottom: 20px; }
table.index td, table.index th { border-bottom: 1px solid #e3e6ea; padding: 6px 10px; text-align: left; font-size: 14px; }
section.report { background: #fff; border-radius: 10px; box-shadow: 0 1px 3px rgba(0,0,0,.12);
                 padding: 18px 22px; margin: 18px 0; }
section.report h2 { margin: 0 0 8px; font-size: 18px; word-break: break-all; }
.verdict { display: inline-block; padding: 3px 12px; border-radius: 6px; font-weight: 700; color: #fff;
           letter-spacing: .05em; }
.verdict.fake { background: #d7263d; } .verdict.real { background: #2e8540; }
.verdict.none, .verdict.error { background: #8a6d00; }
.prob { display: inline-flex; align-items: center; gap: 8px; margin-left: 14px; font-weight: 600; }
.prob .track { width: 160px; height: 10px; background: #e3e6ea; border-radius: 5px; overflow: hidden; }
.prob .fill { height: 100%; background: linear-gradient(90deg, #2e8540, #e0b000, #d7263d); background-size: 160px 100%; }
.summary { margin: 10px 0; }
.error-box { background: #fdecee; border-left: 5px solid #d7263d; padding: 10px 14px; font-weight: 600; }
.warning { background: #fff6db; border-left: 5px solid #e0b000; padding: 8px 14px; margin: 8px 0; }
.figures { display: flex; flex-wrap: wrap; gap: 14px; margin: 14px 0; }
figure { margin: 0; background: #f4f5f7; padding: 8px; border-radius: 8px; }
figure img { display: block; max-width: 250px; max-height: 250px; width: auto; height: auto; }
figcaption { font-size: 12px; color: #4b5563; margin-top: 4px; text-align: center; }
ol.anomalies { list-style: none; padding: 0; margin: 0; }
li.anomaly { display: grid; grid-template-columns: 130px 1fr; gap: 4px 16px; padding: 10px 0;
             border-top: 1px solid #e3e6ea; }
.sev { font-weight: 700; font-size: 13px; }
.bar { height: 8px; background: #e3e6ea; border-radius: 4px; overflow: hidden; margin-top: 4px; }
.bar > span { display: block; height: 100%; }
.name { font-weight: 700; }
.source { font-family: ui-monospace, monospace; font-size: 12px; background: #e8eefc; color: #1b4fb8;
          padding: 1px 6px; border-radius: 4px; margin-left: 8px; }
.source.model { background: #f3e8fc; color: #6b21a8; }
.phenomenon { margin: 2px 0; } .reasoning { color: #4b5563; margin: 2px 0; font-size: 14px; }
details pre { white-space: pre-wrap; word-break: break-word; background: #f4f5f7; padding: 8px; }
"""


def _html_findings(findings: Sequence[Quadruple]) -> str:
    if not findings:
        return '<p class="none">No anomalies reported.</p>'
    items = []
    for q in findings:
        severity = int(q.severity)
        source_class = "source model" if q.source == "model" else "source"
        box = f'<p class="reasoning">Region: {_e(", ".join(f"{v:.0f}" for v in q.box))}</p>' if q.box else ""
        items.append(
            f'<li class="anomaly" data-source="{_e(q.source)}" data-severity="{severity}">'
            f'<div><div class="sev" style="color:{_severity_colour(severity)}">{severity} · '
            f'{_e(severity_label(severity))}</div><div class="bar" role="meter" aria-valuemin="0" '
            f'aria-valuemax="100" aria-valuenow="{severity}"><span style="width:{severity}%;'
            f'background:{_severity_colour(severity)}"></span></div></div>'
            f'<div><span class="name">{_e(q.name)}</span><span class="{source_class}">{_e(q.source)}</span>'
            f'<p class="phenomenon">{_e(q.phenomenon)}</p><p class="reasoning">{_e(q.reasoning)}</p>{box}</div>'
            "</li>")
    return '<ol class="anomalies">' + "".join(items) + "</ol>"


def _html_figures(view: ReportView, findings: Sequence[Quadruple]) -> str:
    figures = []
    if view.image is not None:
        shown, scale = _display(view.image.convert("RGB"))
        caption = "Image" + (" with marked regions" if any(q.box for q in findings) else "")
        figures.append((_with_boxes(shown, findings, scale), caption, "image"))
        if view.heatmap is not None:
            figures.append((heatmap_overlay(shown, view.heatmap), "Fusion attention over the image", "heatmap"))
    if view.ela_map is not None:
        figures.append((_display(_as_picture(view.ela_map))[0], "Error-level map (JPEG re-save)", "ela"))
    if view.spectrum is not None:
        figures.append((_display(_as_picture(view.spectrum))[0], "Noise-residual spectrum", "spectrum"))
    if not figures:
        return ""
    return '<div class="figures">' + "".join(
        f'<figure class="{kind}"><img src="{_data_uri(picture)}" alt="{_e(caption)}" '
        f'width="{picture.width}" height="{picture.height}"><figcaption>{_e(caption)}</figcaption></figure>'
        for picture, caption, kind in figures) + "</div>"


def _html_section(view: ReportView, index: int) -> str:
    report = view.report
    word = _verdict_word(report)
    verdict_class = {"no verdict": "none"}.get(word, word)
    head = f'<h2>{_e(_name(report, index))}</h2>'
    if report.error:
        return (f'<section class="report" id="image-{index + 1}" data-verdict="error">{head}'
                f'<span class="verdict error">ERROR</span><p class="error-box">{_e(report.error)}</p></section>')
    parts = [head, f'<span class="verdict {verdict_class}">{_e(word.upper())}</span>']
    if report.prob_fake is not None:
        percent = max(0.0, min(100.0, 100 * float(report.prob_fake)))
        parts.append(f'<span class="prob">P(fake) {float(report.prob_fake):.2f}<span class="track">'
                     f'<span class="fill" style="display:block;width:{percent:.0f}%"></span></span></span>')
    if report.summary:
        parts.append(f'<p class="summary">{_e(report.summary)}</p>')
    if report.parse_error:
        parts.append(f'<p class="warning">The answer was not understood: {_e(report.parse_error)}</p>')
    for note in view.notes:
        parts.append(f'<p class="warning">{_e(note)}</p>')
    findings = ranked_findings(report)
    parts.append(_html_figures(view, findings))
    parts.append(_html_findings(findings))
    if report.parse_error and report.raw_text:
        parts.append(f"<details><summary>Raw model answer</summary><pre>{_e(report.raw_text)}</pre></details>")
    return (f'<section class="report" id="image-{index + 1}" data-verdict="{_e(word)}">' + "".join(parts)
            + "</section>")


def _html_index(views: Sequence[ReportView]) -> str:
    rows = []
    for index, view in enumerate(views):
        report = view.report
        top = ranked_findings(report)
        rows.append(
            f'<tr><td><a href="#image-{index + 1}">{_e(_name(report, index))}</a></td>'
            f"<td>{_e(_verdict_word(report))}</td>"
            f"<td>{'' if report.prob_fake is None else f'{float(report.prob_fake):.2f}'}</td>"
            f"<td>{_e(report.error or (top[0].name if top else ''))}</td></tr>")
    return ('<nav><table class="index"><thead><tr><th>Image</th><th>Verdict</th><th>P(fake)</th>'
            "<th>Most severe finding</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></nav>")


def render_html(items: ReportLike | Iterable[ReportLike], *, title: str = "ForenX report") -> str:
    """ONE self-contained HTML page (pictures as data URIs, no script, no external request).

    Several images get an index at the top and one section each.
    """
    views = _views(items)
    counts = {word: sum(_verdict_word(v.report) == word for v in views) for word in ("fake", "real", "error")}
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (f"{len(views)} image{'s' if len(views) != 1 else ''} · {counts['fake']} fake · "
                f"{counts['real']} real" + (f" · {counts['error']} failed" if counts["error"] else "") + f" · {stamp}")
    body = (_html_index(views) if len(views) > 1 else "") + "".join(
        _html_section(view, index) for index, view in enumerate(views))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></header><main>{body}</main></body></html>\n")


# --------------------------------------------------------------------------------------- files
def write_report(items: ReportLike | Iterable[ReportLike], path: str | Path, format: str) -> Path:
    """Write the reports in ``format`` (text, json, md, html) to ``path``; the file is replaced
    atomically, so an interrupted run never leaves half a report."""
    renderers = {"text": render_text, "json": render_json, "md": render_markdown, "html": render_html}
    if format not in renderers:
        raise ValueError(f"unknown report format {format!r}; choose from {', '.join(REPORT_FORMATS)}")
    path = Path(path)
    text = renderers[format](items)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    partial.replace(path)
    return path

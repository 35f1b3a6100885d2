"""Report renderers: terminal text, JSON against the published schema, Markdown, self-contained HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from forenx.inference.evidence import run_evidence
from forenx.inference.report import (
    SCHEMA_VERSION,
    ReportView,
    heatmap_overlay,
    load_report_schema,
    ranked_findings,
    render_html,
    render_json,
    render_markdown,
    render_text,
    report_to_dict,
    validate_report_json,
    write_report,
)
from forenx.schema import ForensicReport, Quadruple, Verdict

HOSTILE = "<script>alert(\"pwned\")</script> 'quoted' [bold red]markup[/] a|b\nnext line & more"


@pytest.fixture
def fake_report():
    return ForensicReport(
        verdict=Verdict.FAKE, prob_fake=0.91, image="shots/portrait.jpg", summary="A spliced face.",
        anomalies=[Quadruple("Texture repetition", "the hair repeats in tiles", "generators tile textures", 45),
                   Quadruple(HOSTILE, HOSTILE, "why: " + HOSTILE, 85)],
        evidence=[Quadruple("Generator parameters in the file", "Steps: 20, Sampler: Euler", "A1111 writes them",
                            95, source="evidence:metadata"),
                  Quadruple("Inconsistent error level", "a region re-compresses 4x more", "a hint", 55,
                            source="evidence:ela", box=[10, 20, 40, 50])],
        timing={"generate_s": 1.25})


@pytest.fixture
def other_reports():
    return [ForensicReport(None, image="broken.jpg", error="broken.jpg: corrupt or truncated image"),
            ForensicReport(None, image="odd.png", parse_error="no JSON object in the answer", raw_text="I think it is <b>fake</b>"),
            ForensicReport(Verdict.REAL, prob_fake=0.04, image="real.png", summary="Nothing unusual.")]


def test_findings_are_ranked_by_severity_across_sources(fake_report):
    assert [q.severity for q in ranked_findings(fake_report)] == [95, 85, 55, 45]


def test_text_block_verdict_first_then_anomalies_by_severity(fake_report, other_reports):
    text = render_text([fake_report, *other_reports], width=120)
    block = text.split("broken.jpg")[0]
    assert block.index("FAKE") < block.index("P(fake) = 0.91") < block.index("Generator parameters")
    positions = [block.index(name) for name in ("Generator parameters", "<script>", "Inconsistent error", "Texture repetition")]
    assert positions == sorted(positions)
    for source in ("evidence:metadata", "evidence:ela", "model"):
        assert source in block
    # Rich markup in model text is shown, never interpreted.
    assert "[bold red]markup[/]" in render_text(fake_report, width=400)
    assert "ERROR broken.jpg: corrupt or truncated image" in text
    assert "NO VERDICT" in text and "answer not understood: no JSON object in the answer" in text
    assert "REAL" in text and "no anomalies reported" in text
    assert "\x1b[" not in text  # plain text for files and logs


def test_published_schema_is_valid_draft_2020_12():
    schema = load_report_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_json_single_and_many_validate_and_round_trip(fake_report, other_reports):
    single = json.loads(render_json(fake_report))
    assert single["schema_version"] == SCHEMA_VERSION
    assert {k: v for k, v in single.items() if k != "schema_version"} == fake_report.to_dict()
    Draft202012Validator(load_report_schema()).validate(single)
    back = ForensicReport.from_dict(single)
    assert back.anomalies == fake_report.anomalies and back.evidence == fake_report.evidence

    many = json.loads(render_json([fake_report, *other_reports]))
    assert [r["image"] for r in many["reports"]] == ["shots/portrait.jpg", "broken.jpg", "odd.png", "real.png"]
    validate_report_json(many)


def test_json_accepts_numpy_and_torch_numbers(fake_report):
    import torch

    fake_report.prob_fake = np.float32(0.75)
    fake_report.timing = {"generate_s": torch.tensor(0.5)}
    document = json.loads(render_json(fake_report))
    assert document["prob_fake"] == 0.75 and document["timing"] == {"generate_s": 0.5}


def test_json_notes_and_schema_violations_are_named(fake_report):
    with_notes = report_to_dict(ReportView(fake_report, notes=["evidence tool 'c2pa' failed: boom"]))
    validate_report_json(with_notes)
    broken = json.loads(json.dumps(with_notes))
    broken["evidence"][0]["severity"] = 150
    broken["evidence"][1]["source"] = "somewhere"
    with pytest.raises(ValueError, match=r"evidence/0/severity: 150 is greater than the maximum of 100") as raised:
        validate_report_json(broken)
    assert "evidence/1/source" in str(raised.value)
    with pytest.raises(ValueError, match="prob_fake"):
        validate_report_json({**with_notes, "prob_fake": 1.5})


def test_markdown_escapes_table_cells(fake_report, other_reports):
    markdown = render_markdown([fake_report, *other_reports])
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and line[2:4].strip().isdigit()]
    assert len(rows) == 4 and all(re.sub(r"\\\|", "", row).count("|") == 6 for row in rows)  # 5 cells each
    hostile_row = rows[1]
    assert "a\\|b<br>next line" in hostile_row and "<script>" not in markdown
    assert "**Error:** broken.jpg: corrupt or truncated image" in markdown
    assert markdown.index("## shots/portrait.jpg") < markdown.index("## broken.jpg")


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def test_html_is_self_contained_and_escaped(fake_report, other_reports, natural_image):
    image = natural_image(120, 160, 1)
    evidence = run_evidence(image)
    heatmap = np.zeros((12, 12))
    heatmap[2:5, 7:10] = 1.0
    view = ReportView(fake_report, image=image, heatmap=heatmap, ela_map=evidence.maps["ela"],
                      spectrum=evidence.maps["spectrum"], notes=["evidence tool 'c2pa' failed: boom"])
    page = render_html([view, *other_reports])
    parsed = _parse(page)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags and "<script>" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    csp = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]
    images = [a for t, a in parsed.tags if t == "img"]
    assert len(images) == 4 and all(a["src"].startswith("data:image/png;base64,") for a in images)
    assert [a["alt"] for a in images] == ["Image with marked regions", "Fusion attention over the image",
                                         "Error-level map (JPEG re-save)", "Noise-residual spectrum"]
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from outside
    anomalies = [a for t, a in parsed.tags if t == "li" and "anomaly" in a.get("class", "")]
    assert [a["data-severity"] for a in anomalies] == ["95", "85", "55", "45"]
    assert [a["data-source"] for a in anomalies] == ["evidence:metadata", "model", "evidence:ela", "model"]
    text = "".join(parsed.text)
    assert HOSTILE.split("\n")[0] in text  # shown as text, exactly as the model wrote it
    # Several images: an index linking to one section each.
    links = [a["href"] for t, a in parsed.tags if t == "a"]
    assert links == ["#image-1", "#image-2", "#image-3", "#image-4"]
    sections = [a for t, a in parsed.tags if t == "section"]
    assert [s["data-verdict"] for s in sections] == ["fake", "error", "no verdict", "real"]
    assert "broken.jpg: corrupt or truncated image" in text and "Raw model answer" in text
    assert "&lt;b&gt;fake&lt;/b&gt;" in page


def test_single_report_page_has_no_index(fake_report):
    page = render_html(fake_report)
    assert "<nav>" not in page and page.count('<section class="report"') == 1


def test_heatmap_is_upsampled_over_the_image():
    image = Image.new("RGB", (200, 100), (100, 100, 100))
    heatmap = np.zeros((4, 8))
    heatmap[0, 0] = 1.0  # the top-left cell only
    overlay = np.asarray(heatmap_overlay(image, heatmap), dtype=int)
    assert overlay.shape == (100, 200, 3)
    hot, cold = overlay[5, 5], overlay[90, 190]
    assert abs(hot - np.array([100, 100, 100])).sum() > 3 * abs(cold - np.array([100, 100, 100])).sum()
    assert heatmap_overlay(image, np.ones((3, 3))).size == (200, 100)  # a constant map is fine
    with pytest.raises(ValueError, match="2D grid"):
        heatmap_overlay(image, np.ones((2, 3, 4)))


def test_heatmap_accepts_torch_tensors():
    import torch

    grid = torch.rand(6, 6, dtype=torch.bfloat16, requires_grad=True)
    assert heatmap_overlay(Image.new("RGB", (30, 30)), grid).size == (30, 30)


@pytest.mark.parametrize("fmt, marker", [("text", "FAKE"), ("json", '"schema_version"'), ("md", "# ForenX report"),
                                         ("html", "<!DOCTYPE html>")])
def test_write_report(tmp_path, fake_report, fmt, marker):
    path = write_report([fake_report], tmp_path / "out" / f"report.{fmt}", fmt)
    assert marker in path.read_text(encoding="utf-8")
    assert not list(path.parent.glob("*.partial"))


def test_write_report_unknown_format(tmp_path, fake_report):
    with pytest.raises(ValueError, match="unknown report format 'pdf'; choose from text, json, md, html"):
        write_report([fake_report], tmp_path / "r.pdf", "pdf")

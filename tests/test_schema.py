"""The answer format: render and parse are inverse, and the parser never raises on model text."""

from __future__ import annotations

import json

import pytest

from forenx.schema import (
    ANSWER_PREFIX,
    ForensicReport,
    Quadruple,
    Verdict,
    parse_answer,
    parse_severity,
    realism_from_severity,
    render_answer,
    severity_from_realism,
)

QUADS = [
    Quadruple("Hard seam", "A straight edge crosses the sky.", "Splicing leaves edges.", 80),
    Quadruple("Noise mismatch", 'Smoother "patch" at lower left.', "Sensor noise is uniform.", 35),
]


def test_render_starts_with_prefix_and_round_trips():
    text = render_answer("fake", QUADS, "Spliced region.")
    assert text.startswith(ANSWER_PREFIX + "fake")
    report = parse_answer(text)
    assert report.parse_error is None
    assert report.verdict is Verdict.FAKE
    assert [q.to_answer() for q in report.anomalies] == [q.to_answer() for q in QUADS]
    assert report.summary == "Spliced region."
    assert json.loads(text)["anomalies"][1]["phenomenon"] == 'Smoother "patch" at lower left.'


def test_render_rejects_unknown_verdict():
    with pytest.raises(ValueError, match="verdict"):
        render_answer("maybe", [])


@pytest.mark.parametrize("text", [
    '```json\n{"verdict": "real", "anomalies": [], "summary": ""}\n```',
    'Here is my answer: {"verdict": "real", "anomalies": []} Hope it helps {',
    "{'verdict': 'Real', 'anomalies': [],}",
    '{"Verdict": "authentic", "Anomalies": []}',
])
def test_parser_is_lenient(text):
    report = parse_answer(text)
    assert report.verdict is Verdict.REAL
    assert report.parse_error is None


@pytest.mark.parametrize("text,error", [
    ("", "no JSON object in the answer"),
    ("I think it is fake.", "no JSON object in the answer"),
    ('{"verdict": "fake", "anomalies": [{"name": "x"', "unparseable JSON in the answer"),
    ('{"verdict": "probably", "anomalies": []}', "verdict 'probably' is not 'real' or 'fake'"),
])
def test_parser_flags_unreadable_answers(text, error):
    report = parse_answer(text)
    assert report.verdict is None
    assert report.parse_error == error


@pytest.mark.parametrize("value", [None, 42, b"bytes", ["list"], "{" * 5000, '{"verdict": ' * 2000])
def test_parser_never_raises(value):
    report = parse_answer(value)
    assert isinstance(report, ForensicReport)


def test_parser_reads_anomreason_keys_and_realism_scale():
    text = ('[{"Name": "Floating cap", "Observed Phenomenon": "A gap", "Reasoning": "Caps fit",'
            ' "Severity Score": "25/100 (noticeable but not highly disruptive)."}]')
    report = parse_answer(text)
    assert report.verdict is None and report.parse_error == "no verdict in the answer"
    (q,) = report.anomalies
    assert (q.name, q.phenomenon, q.reasoning, q.severity) == ("Floating cap", "A gap", "Caps fit", 75)


def test_parser_clamps_severity_and_reports_bad_items():
    report = parse_answer('{"verdict": "fake", "anomalies": [{"name": "a", "severity": 250}, "junk"]}')
    assert report.verdict is Verdict.FAKE
    assert report.anomalies[0].severity == 100
    assert report.parse_error == "anomaly 1 is not an object"


def test_severity_scales_are_inverse():
    for s in range(0, 101, 5):
        assert severity_from_realism(realism_from_severity(s)) == s
    assert parse_severity("5/100 (extremely unnatural)", realism=True) == 95
    assert parse_severity("70") == 70 and parse_severity("n/a") is None and parse_severity(True) is None


def test_report_dict_round_trip():
    report = ForensicReport(verdict=Verdict.FAKE, anomalies=QUADS, summary="s", prob_fake=0.9,
                            evidence=[Quadruple("EXIF", "Software: GIMP", "Edited", 30, source="evidence:metadata")],
                            image="a.png", timing={"total_s": 1.0})
    again = ForensicReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.to_dict() == report.to_dict()

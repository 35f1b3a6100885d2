"""AnomReason exporter: ground truth -> records -> AnomReason gives the evaluator's fields back exactly."""

from __future__ import annotations

import json

import pytest

from forenx.data.converters import convert
from forenx.data.export import (
    export_file,
    records_to_anomreason,
    reports_to_anomreason,
    severity_score_text,
    write_anomreason,
)
from forenx.data.io import write_records
from forenx.schema import ForensicReport, Quadruple, Verdict, parse_severity, severity_from_realism

FIELDS = ("Name", "Observed Phenomenon", "Reasoning")


@pytest.mark.parametrize("name", ["gt_data_test_case.json", "pre_data_test_case.json"])
def test_round_trip_is_identical(fixtures, tmp_path, name):
    path = fixtures / "anomreason" / name
    original = json.loads(path.read_text(encoding="utf-8"))
    write_records(convert("anomreason", path).records, tmp_path / "records.jsonl")
    assert export_file(tmp_path / "records.jsonl", tmp_path / "back.json") == 100
    back = json.loads((tmp_path / "back.json").read_text(encoding="utf-8"))
    assert list(back) == list(original)  # image keys, in order
    for key in original:
        assert [[a[f] for f in FIELDS] for a in back[key]] == [[a[f] for f in FIELDS] for a in original[key]]
        # the original severity strings were kept in the records, so they come back verbatim
        assert [a["Severity Score"] for a in back[key]] == [a["Severity Score"] for a in original[key]]
    assert back == original


def test_changed_severity_is_rendered_not_copied(fixtures):
    record = convert("anomreason", fixtures / "anomreason" / "gt_data_test_case.json").records[0]
    record.quadruples[0].severity = 90
    exported = records_to_anomreason([record])[record.meta["anomreason"]["file_name"]]
    assert exported[0]["Severity Score"] == "10/100 (extremely unrealistic)."
    assert exported[1]["Severity Score"] == record.meta["anomreason"]["severity_scores"][1]


def test_severity_text_reads_back_to_the_same_severity():
    for severity in range(101):
        text = severity_score_text(severity)
        assert text.split("/")[0].isdigit() and text.endswith(").")
        assert severity_from_realism(parse_severity(text)) == severity


def test_forensic_reports_export(tmp_path):
    reports = [
        ForensicReport(
            Verdict.FAKE,
            [Quadruple("Fused fingers", "Two fingers merge", "Hands have separate fingers", 80)],
            image="/data/imgs/a_flux.jpg",
        ),
        ForensicReport(None, [], image="b_sdv35.jpg", parse_error="no JSON object in the answer"),
    ]
    data = reports_to_anomreason(reports)
    assert data == {
        "a_flux.jpg": [
            {
                "Name": "Fused fingers",
                "Observed Phenomenon": "Two fingers merge",
                "Reasoning": "Hands have separate fingers",
                "Severity Score": "20/100 (highly unrealistic).",
            }
        ],
        "b_sdv35.jpg": [],
    }
    # the same through a predictions JSONL (ForensicReport.to_dict per line)
    (tmp_path / "pred.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in reports))
    assert export_file(tmp_path / "pred.jsonl", tmp_path / "pred.json") == 2
    assert json.loads((tmp_path / "pred.json").read_text()) == data
    write_anomreason(data, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == (tmp_path / "pred.json").read_text()


def test_duplicate_keys_are_refused():
    reports = [ForensicReport(Verdict.REAL, image="x/a.jpg"), ForensicReport(Verdict.REAL, image="y/a.jpg")]
    with pytest.raises(ValueError, match="'a.jpg'"):
        reports_to_anomreason(reports)

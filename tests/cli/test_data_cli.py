"""`forenx data validate | stats | convert | export` end to end on the fixtures."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from forenx.cli.data import app

runner = CliRunner()


def test_validate_reports_every_bad_line_and_fails(fixtures):
    path = fixtures / "bad_records" / "records.jsonl"
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    expected = json.loads((fixtures / "bad_records" / "expected_problems.json").read_text())
    for line, kind in expected.items():
        assert f"records.jsonl:{line}: [{kind}]" in result.output
    assert "records.jsonl:1:" not in result.output and "records.jsonl:2:" not in result.output
    assert "image_outside_root" in result.output and "│    15 │" in result.output  # the summary table


def test_validate_passes_a_good_file_with_root(fixtures, tmp_path):
    out = tmp_path / "sid.jsonl"
    root = fixtures / "formats" / "sid_set" / "SID_Set"
    converted = runner.invoke(app, ["convert", str(root), "--from", "sid_set", "--out", str(out)])
    assert converted.exit_code == 0, converted.output
    assert "wrote 4 records" in converted.output and "skipped validation/tampered/04280" in converted.output
    result = runner.invoke(app, ["validate", str(out), "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "invalid" in result.output and "image_missing" not in result.output
    missing = runner.invoke(app, ["validate", str(out)])  # default root: the file's folder, no images there
    assert missing.exit_code == 1 and missing.output.count("[image_missing]") == 5  # 4 images + 1 mask


def test_convert_export_round_trip_and_stats(fixtures, tmp_path):
    gt = fixtures / "anomreason" / "gt_data_test_case.json"
    records = tmp_path / "gt.jsonl"
    result = runner.invoke(
        app,
        ["convert", str(gt), "--from", "anomreason", "--out", str(records), "--image-prefix", "anomreason"],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 100 records" in result.output and "0 entries skipped" in result.output
    stats = runner.invoke(app, ["stats", str(records), "--json"])
    assert stats.exit_code == 0, stats.output
    counts = json.loads(stats.output)
    assert counts["records"] == 100 and counts["anomalies"] == 610 and counts["labels"] == {"fake": 100}
    tables = runner.invoke(app, ["stats", str(records)])
    assert tables.exit_code == 0 and "Severity histogram (610 anomalies)" in tables.output
    back = tmp_path / "back.json"
    exported = runner.invoke(app, ["export", str(records), "--out", str(back)])
    assert exported.exit_code == 0, exported.output
    assert json.loads(back.read_text(encoding="utf-8")) == json.loads(gt.read_text(encoding="utf-8"))


def test_convert_prints_what_it_skipped(fixtures, tmp_path):
    result = runner.invoke(
        app,
        [
            "convert",
            str(fixtures / "formats" / "loki"),
            "--from",
            "loki",
            "--out",
            str(tmp_path / "loki.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "skipped open_ended_vqa.json[0] global 0: empty description" in result.output
    assert len((tmp_path / "loki.jsonl").read_text().splitlines()) == 10


def test_user_errors_are_clear(fixtures, tmp_path):
    unknown = runner.invoke(
        app, ["convert", str(tmp_path), "--from", "nope", "--out", str(tmp_path / "x.jsonl")]
    )
    assert unknown.exit_code == 2 and "unknown dataset 'nope'" in unknown.output
    missing = runner.invoke(app, ["validate", str(tmp_path / "none[old].jsonl")])
    assert missing.exit_code == 2 and "none[old].jsonl' not found" in missing.output  # brackets are not markup
    mask_without_root = runner.invoke(
        app,
        [
            "convert",
            str(tmp_path),
            "--from",
            "synthscars",
            "--out",
            str(tmp_path / "x.jsonl"),
            "--mask-dir",
            "m",
        ],
    )
    assert mask_without_root.exit_code == 2 and "needs --root" in mask_without_root.output
    (tmp_path / "broken.jsonl").write_text("{oops\n")
    stats = runner.invoke(app, ["stats", str(tmp_path / "broken.jsonl")])
    assert stats.exit_code == 2 and "broken.jsonl:1: invalid JSON" in stats.output

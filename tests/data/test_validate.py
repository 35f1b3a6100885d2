"""`validate_records` catches each kind of bad record (one per kind in the fixture) and passes good ones."""

from __future__ import annotations

import json
import shutil

import pytest

from forenx.data.converters import convert
from forenx.data.io import write_records
from forenx.data.validate import PROBLEM_KINDS, InvalidDataError, require_valid, validate_records


def test_each_bad_record_is_reported_with_its_line_and_kind(fixtures):
    folder = fixtures / "bad_records"
    expected = {
        int(line): kind for line, kind in json.loads((folder / "expected_problems.json").read_text()).items()
    }
    report = validate_records(folder / "records.jsonl")
    found = {}
    for problem in report.problems:
        assert problem.line_no not in found, f"line {problem.line_no} reported twice: {report.problems}"
        found[problem.line_no] = problem.kind
    assert found == expected
    assert report.n_records == 18 and report.n_valid == 3 and not report.ok
    # every kind of problem this fixture is meant to show is shown
    assert set(expected.values()) == set(PROBLEM_KINDS)
    by_line = {p.line_no: p for p in report.problems}
    assert "already used on line 1" in by_line[8].reason
    assert by_line[11].record_id == "symlink-escape"


def test_good_records_pass(fixtures, tmp_path):
    lines = (fixtures / "bad_records" / "records.jsonl").read_text().splitlines()
    (tmp_path / "images").mkdir()
    for name in ("good_real.png", "good_fake.png", "good_fake_mask.png"):
        shutil.copy(fixtures / "bad_records" / "images" / name, tmp_path / "images" / name)
    (tmp_path / "good.jsonl").write_text("\n".join(lines[:3]) + "\n")
    report = require_valid(tmp_path / "good.jsonl")
    assert report.ok and report.n_valid == 3


def test_require_valid_raises_a_readable_error(fixtures):
    with pytest.raises(InvalidDataError) as error:
        require_valid(fixtures / "bad_records" / "records.jsonl")
    message = str(error.value)
    assert "15 of 18 records are invalid" in message
    assert "line 12 (id 'missing-image')" in message
    assert "forenx data validate" in message
    assert error.value.report.counts()["image_outside_root"] == 3


def test_root_option_and_path_only_mode(fixtures, tmp_path):
    # The SID-Set fixture converted: valid against its own root, every image missing against another.
    result = convert("sid_set", fixtures / "formats" / "sid_set" / "SID_Set")
    write_records(result.records, tmp_path / "sid.jsonl")
    assert validate_records(tmp_path / "sid.jsonl", fixtures / "formats" / "sid_set" / "SID_Set").ok
    elsewhere = validate_records(tmp_path / "sid.jsonl", tmp_path)
    assert {p.kind for p in elsewhere.problems} == {"image_missing"} and elsewhere.n_valid == 0
    assert validate_records(tmp_path / "sid.jsonl", tmp_path, check_images=False).ok


def test_missing_file_or_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        validate_records(tmp_path / "nope.jsonl")
    (tmp_path / "a.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match="--root"):
        validate_records(tmp_path / "a.jsonl", tmp_path / "no-such-root")

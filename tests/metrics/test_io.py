"""Reading predictions / ground truth, and the clear messages for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forenx.metrics.io import MetricsInputError, check_image_sets, detect_format, load_explanations
from forenx.schema import Quadruple, Verdict, render_answer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anomreason"


def write_json(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def anomaly(**extra):
    return {"Name": "n", "Observed Phenomenon": "p", "Reasoning": "r", "Severity Score": "25/100 (noticeable)",
            **extra}


def test_reads_the_anomreason_fixture():
    gt = load_explanations(FIXTURES / "gt_data_test_case.json", role="ground truth")
    pred = load_explanations(FIXTURES / "pre_data_test_case.json")
    assert gt.format == "anomreason" and len(gt.anomalies) == 100
    assert sum(len(v) for v in gt.anomalies.values()) == 610
    first = gt.anomalies["2025_04_24_02_41_23_1353128135096406128_sdv35.jpg"][0]
    assert first.name == "Skullcap floating effect" and first.severity == 75  # realism 25 -> severity 75
    assert not gt.has_verdicts
    check_image_sets(pred, gt)


@pytest.mark.parametrize("content,message", [
    ('{"a.jpg": [{"observed phenomenon": "p", "Reasoning": "r"}]}',
     "image 'a.jpg', anomaly 0: key 'observed phenomenon' must be written 'Observed Phenomenon'"),
    ('{"a.jpg": [{"Observed Phenomenon": "p"}]}', "image 'a.jpg', anomaly 0: missing key 'Reasoning'"),
    ('{"a.jpg": [], "a.jpg": []}', "key 'a.jpg': appears twice"),
    ('{"x/a.jpg": [], "y/a.jpg": []}', "same basename 'a.jpg'"),
    ('{"a.jpg": "six fingers"}', "image 'a.jpg': must map to a list of anomalies, got str"),
    ('{"a.jpg": ["six fingers"]}', "an anomaly must be an object, got str"),
    ('{"a.jpg": [{"Observed Phenomenon": ["p"], "Reasoning": "r"}]}', "'Observed Phenomenon' must be a string"),
    ('{"a.jpg": [{"Observed Phenomenon": "p", "Reasoning": "r", "severity score": "5"}]}',
     "key 'severity score' must be written 'Severity Score'"),
    ('{"a.jpg": [', "not valid JSON"),
])
def test_bad_anomreason_files_name_the_file_and_the_key(tmp_path, content, message):
    path = write_json(tmp_path / "preds.json", content)
    with pytest.raises(MetricsInputError) as info:
        load_explanations(path, format="anomreason")
    assert str(path) in str(info.value) and message in str(info.value)


def test_null_is_an_empty_list_and_a_prediction_for_an_unknown_image_is_refused(tmp_path):
    gt = load_explanations(write_json(tmp_path / "gt.json", json.dumps({"a.jpg": [anomaly()], "b.jpg": None})),
                           role="ground truth")
    assert gt.anomalies["b.jpg"] == []
    pred_path = write_json(tmp_path / "pred.json", json.dumps({"a.jpg": [anomaly()], "c.jpg": []}))
    pred = load_explanations(pred_path)
    with pytest.raises(MetricsInputError, match=r"pred.json: prediction for image 'c.jpg' which is not in .*gt.json"):
        check_image_sets(pred, gt)
    check_image_sets(pred, gt, official_image_set=True)  # the official rule drops it


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_reads_forenx_records_and_reports(tmp_path):
    gt_path = write_jsonl(tmp_path / "gt.jsonl", [
        {"id": "r1", "image": "imgs/a.png", "label": "fake", "generator": "sdxl",
         "quadruples": [{"name": "n", "phenomenon": "p", "reasoning": "r", "severity": 70}]},
        {"id": "r2", "image": "imgs/b.png", "label": "real", "quadruples": []},
    ])
    pred_path = write_jsonl(tmp_path / "pred.jsonl", [
        {"image": "/abs/a.png", "verdict": "fake", "prob_fake": 0.8,
         "anomalies": [{"name": "n", "phenomenon": "p", "reasoning": "r", "severity": 60}]},
        {"image": "b.png", "answer": render_answer("real", [Quadruple("x", "y", "z", 10)])},
    ])
    assert detect_format(gt_path) == "forenx"
    gt = load_explanations(gt_path, role="ground truth")
    pred = load_explanations(pred_path)
    assert gt.verdicts == {"a.png": Verdict.FAKE, "b.png": Verdict.REAL} and gt.generators["a.png"] == "sdxl"
    assert pred.verdicts == {"a.png": Verdict.FAKE, "b.png": Verdict.REAL}
    assert pred.prob_fake == {"a.png": 0.8, "b.png": None}
    assert [a.phenomenon for a in pred.anomalies["b.png"]] == ["y"]  # read from the model's answer text
    check_image_sets(pred, gt)


@pytest.mark.parametrize("row,message", [
    ({"image": "a.png", "Verdict": "fake", "anomalies": []}, "key 'Verdict' must be written 'verdict'"),
    ({"image": "a.png", "verdict": "fake"}, "missing key 'anomalies'"),
    ({"image": "a.png", "verdict": "fake", "anomalies": {"phenomenon": "p"}}, "'anomalies' must be a list, got dict"),
    ({"image": "a.png", "verdict": "fake", "anomalies": [{"Phenomenon": "p", "reasoning": "r"}]},
     "anomalies[0]: key 'Phenomenon' must be written 'phenomenon'"),
    ({"image": "a.png", "verdict": "fake", "anomalies": [{"reasoning": "r"}]}, "missing key 'phenomenon'"),
    ({"verdict": "fake", "anomalies": []}, "missing key 'image' (or 'id')"),
    ({"image": "a.png", "verdict": "fake", "anomalies": [], "prob_fake": "high"}, "'prob_fake' must be a number"),
])
def test_bad_forenx_files_name_the_file_line_and_key(tmp_path, row, message):
    path = write_jsonl(tmp_path / "pred.jsonl", [row])
    with pytest.raises(MetricsInputError) as info:
        load_explanations(path)
    assert str(path) in str(info.value) and "line 1" in str(info.value) and message in str(info.value)


def test_forenx_duplicate_images_and_bad_labels(tmp_path):
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"image": "x/a.png", "verdict": "fake", "anomalies": []},
                                               {"image": "y/a.png", "verdict": "real", "anomalies": []}])
    with pytest.raises(MetricsInputError, match=r"line 2 .*already appears at line 1"):
        load_explanations(dup)
    bad = write_jsonl(tmp_path / "gt.jsonl", [{"image": "a.png", "label": "maybe", "quadruples": []}])
    with pytest.raises(MetricsInputError, match="'label' is 'maybe'; use 'real', 'fake' or 'unknown'"):
        load_explanations(bad, role="ground truth")
    with pytest.raises(MetricsInputError, match="not found"):
        load_explanations(tmp_path / "missing.jsonl")
    # An unparseable verdict in a prediction is kept as None (scored wrong later), not refused.
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"image": "a.png", "verdict": "maybe", "anomalies": []}])
    assert load_explanations(odd).verdicts == {"a.png": None}

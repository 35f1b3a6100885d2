"""`forenx eval score` end to end on small real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from forenx.cli import app

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anomreason"
runner = CliRunner()


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """The first 6 images of the AnomReason fixture; the ground truth gets one image with no prediction."""
    folder = tmp_path_factory.mktemp("subset")
    pred = json.loads((FIXTURES / "pre_data_test_case.json").read_text())
    gt = json.loads((FIXTURES / "gt_data_test_case.json").read_text())
    keys = sorted(k for k in gt if pred[k])[:6]
    (folder / "pred.json").write_text(json.dumps({f"outputs/{k}": pred[k] for k in keys[:5]}))
    (folder / "gt.json").write_text(json.dumps({k: gt[k] for k in keys}))
    return folder


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from forenx.metrics.scorers import default_sentence_model_path

    folder = tmp_path_factory.mktemp("tiny-distilbert")
    tokenizer = AutoTokenizer.from_pretrained(default_sentence_model_path())
    torch.manual_seed(1)
    DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=3, n_heads=2, hidden_dim=64)
                    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_score_with_bertscore_writes_metrics_and_table(subset, tiny_encoder, tmp_path):
    out = tmp_path / "out"
    args = ["eval", "score", "--pred", str(subset / "pred.json"), "--gt", str(subset / "gt.json"),
            "--encoder", str(tiny_encoder), "--layer", "2", "--thresholds", "0.5,0.55,0.6", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scorer"] == "bertscore" and metrics["encoder"] == str(tiny_encoder) and metrics["layer"] == 2
    assert metrics["image_set"] == "strict" and metrics["num_images"] == 6 and metrics["missing_predictions"] == 1
    assert metrics["thresholds"] == [0.5, 0.55, 0.6]
    assert set(metrics["views"]) == {"Phe", "Rea", "Full"}
    assert metrics["headline"]["view"] == "Full" and metrics["headline"]["SemAP"] == metrics["views"]["Full"]["SemAP"]
    assert set(metrics["views"]["Full"]["micro"]) == {"0.5", "0.55", "0.6"}
    assert len(metrics["per_image"]) == 6
    missing = [k for k, v in metrics["per_image"].items() if v["prediction_missing"]]
    assert len(missing) == 1 and metrics["per_image"][missing[0]]["Full"]["SemAP"] == 0.0
    table = (out / "metrics.md").read_text()
    assert "| Full | 0.5 |" in table and "image set: strict (6 images)" in table
    assert table.splitlines()[0] in result.output

    official = runner.invoke(app, args[:-1] + [str(tmp_path / "official"), "--official-image-set", "--alpha", "0.25"])
    assert official.exit_code == 0, official.output
    om = json.loads((tmp_path / "official" / "metrics.json").read_text())
    assert om["image_set"] == "official" and om["num_images"] == 5
    assert om["headline"]["view"] == "alpha=0.25" and set(om["views"]) == {"Phe", "Rea", "Full", "alpha=0.25"}
    # Dropping the image without prediction raises the macro mean by exactly 6/5.
    assert om["views"]["Full"]["SemAP"] == pytest.approx(metrics["views"]["Full"]["SemAP"] * 6 / 5, abs=2e-4)


def test_score_forenx_jsonl_with_the_sentence_scorer_reports_csem(tmp_path):
    quad = {"name": "n", "phenomenon": "The left hand has six fingers.", "reasoning": "Hands have five fingers."}
    gt = [{"id": "1", "image": "a.png", "label": "fake", "quadruples": [quad]},
          {"id": "2", "image": "b.png", "label": "fake", "quadruples": [quad]}]
    pred = [{"image": "a.png", "verdict": "fake", "anomalies": [quad]},
            {"image": "b.png", "verdict": "real", "anomalies": [quad]}]
    for name, rows in (("gt.jsonl", gt), ("pred.jsonl", pred)):
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows))
    result = runner.invoke(app, ["eval", "score", "--pred", str(tmp_path / "pred.jsonl"), "--gt",
                                 str(tmp_path / "gt.jsonl"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["scorer"] == "sentence" and metrics["format"] == "forenx"
    full = metrics["views"]["Full"]
    assert (full["SemAP"], full["SemF1"], full["CSemAP"], full["CSemF1"]) == (1.0, 1.0, 0.5, 0.5)
    assert "CSemAP" in (tmp_path / "out" / "metrics.md").read_text()


def test_bad_input_gives_a_clear_error(tmp_path, subset):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a.jpg": [{"observed phenomenon": "x", "Reasoning": "y"}]}))
    result = runner.invoke(app, ["eval", "score", "--pred", str(bad), "--gt", str(subset / "gt.json"),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "must be written 'Observed Phenomenon'" in result.output and str(bad) in result.output
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"zzz.jpg": []}))
    result = runner.invoke(app, ["eval", "score", "--pred", str(unknown), "--gt", str(subset / "gt.json"),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "prediction for image 'zzz.jpg'" in result.output
    result = runner.invoke(app, ["eval", "score", "--pred", str(subset / "pred.json"), "--gt", str(subset / "gt.json"),
                                 "--scorer", "bertscore", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "needs an encoder" in result.output
    assert not (tmp_path / "o" / "metrics.json").exists()

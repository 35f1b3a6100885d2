"""Model cards: metadata and evaluation results that huggingface_hub reads back."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from forenx.hub.card import eval_results_from_metrics, load_eval_results, model_card, usage_code
from forenx.hub.errors import ReleaseError

SIMPLE_METRICS = {
    "dataset": {"id": "my-lab/forgery-test", "name": "Forgery test", "split": "test"},
    "semantic": {"full": {"semap": 0.52345, "semf1": 0.5}, "phenomenon": {"semap": 0.54, "semf1": 0.51},
                 "reasoning": {"semap": 0.53, "semf1": 0.49}},
    "detection": {"accuracy": 0.91, "auc": 0.965, "ece": 0.04},
}


def test_simple_metrics_become_eval_results():
    results = eval_results_from_metrics(SIMPLE_METRICS)
    by_type = {r.metric_type: r for r in results}
    assert set(by_type) == {"semap_full", "semf1_full", "semap_phe", "semf1_phe", "semap_rea", "semf1_rea",
                            "accuracy", "roc_auc", "ece"}
    assert by_type["semap_full"].metric_value == 0.5234  # 4 decimals, as the metrics are reported
    assert by_type["semap_full"].metric_name == "SemAP (Full)"
    assert by_type["semap_full"].task_type == "image-text-to-text"
    assert by_type["roc_auc"].task_type == "image-classification" and by_type["roc_auc"].metric_value == 0.965
    assert {r.dataset_type for r in results} == {"my-lab/forgery-test"}
    assert {r.dataset_split for r in results} == {"test"}


def test_forenx_eval_score_result_is_read():
    """The shape forenx.metrics.semantic.semantic_scores returns (views Full / Phe / Rea, CSem when aware)."""
    metrics = {"semantic": {"metric": "SemAP / SemF1", "scorer": "sentence", "encoder": "all-MiniLM-L6-v2",
                            "image_set": "strict", "classification_aware": True,
                            "views": {"Phe": {"alpha": 1.0, "SemAP": 0.5368, "SemF1": 0.5079, "CSemAP": 0.4,
                                              "CSemF1": 0.39, "micro": {}},
                                      "Rea": {"alpha": 0.0, "SemAP": 0.5267, "SemF1": 0.4985, "micro": {}},
                                      "Full": {"alpha": 0.5, "SemAP": 0.5291, "SemF1": 0.5013, "micro": {}}}},
               "detection": {"overall": {"Accuracy": 0.875, "AUC": 0.93, "accuracy_real": 0.9}}}
    results = {r.metric_type: r for r in eval_results_from_metrics(metrics)}
    assert results["semap_full"].metric_value == 0.5291
    assert results["csemap_phe"].metric_name == "CSemAP (Phe)" and results["csemap_phe"].metric_value == 0.4
    assert results["semf1_rea"].metric_value == 0.4985
    assert results["semap_full"].metric_config == "sentence:all-MiniLM-L6-v2"
    assert results["accuracy"].metric_value == 0.875 and results["roc_auc"].metric_value == 0.93
    assert results["accuracy_real"].metric_name == "Accuracy (real)"


def test_card_parses_and_eval_results_read_back(tmp_path):
    results = eval_results_from_metrics(SIMPLE_METRICS)
    card = model_card("my-lab/forenx-tiny", adapter_only=False, with_code=False,
                      base_models=["openai/clip-vit-large-patch14-336", "lmsys/vicuna-7b-v1.5"],
                      datasets=["my-lab/forgerysynth-v1"], eval_results=results, license="apache-2.0",
                      with_run_config=True)
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data
    assert data.license == "apache-2.0"
    assert data.pipeline_tag == "image-text-to-text"
    assert data.base_model == ["openai/clip-vit-large-patch14-336", "lmsys/vicuna-7b-v1.5"]
    assert data.datasets == ["my-lab/forgerysynth-v1"]
    assert {"forenx", "image-forensics"} <= set(data.tags)
    assert data.library_name == "transformers"
    read_back = {(r.metric_type, r.metric_value, r.dataset_type) for r in data.eval_results}
    assert read_back == {(r.metric_type, r.metric_value, r.dataset_type) for r in results}
    assert data.model_name == "forenx-tiny"
    raw = (tmp_path / "README.md").read_text()
    assert "model-index:" in raw and "| Explainable image forensics | Forgery test | test | SemAP (Full) | 0.5234 |" in raw
    assert "the resolved training configuration (`forenx_run.yaml`)" in raw
    assert usage_code("my-lab/forenx-tiny", adapter_only=False, with_code=False) in loaded.content


def test_adapter_card_is_a_peft_card():
    card = model_card("my-lab/forenx-tiny-lora", adapter_only=True, with_code=False)
    assert card.data.library_name == "peft"
    assert {"peft", "lora"} <= set(card.data.tags)
    assert card.data.eval_results is None
    assert "model-index" not in card.content


def test_with_code_usage_needs_no_forenx():
    code = usage_code("my-lab/forenx-tiny", adapter_only=False, with_code=True)
    assert "trust_remote_code=True" in code
    imports = [line for line in code.splitlines() if line.startswith(("import ", "from "))]
    assert imports and not any("forenx" in line for line in imports), imports


def test_missing_metrics_file_is_a_clear_error(tmp_path):
    with pytest.raises(ReleaseError, match=r"--eval-results .*nope\.json: no such file"):
        load_eval_results(tmp_path / "nope.json")


def test_bad_metrics_files_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ReleaseError, match="not valid JSON"):
        load_eval_results(broken)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"semantic": {"full": {}}, "other": 1}))
    with pytest.raises(ReleaseError, match="no SemAP / SemF1 / detection metrics found"):
        load_eval_results(empty)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ReleaseError, match="expected a JSON object"):
        load_eval_results(listed)


def test_base_model_relation_is_explicit(tmp_path):
    parts = ["openai/clip-vit-large-patch14-336", "facebook/dinov2-large", "lmsys/vicuna-7b-v1.5"]
    card = model_card("my-lab/forenx-7b", adapter_only=False, with_code=False, base_models=parts)
    card.save(tmp_path / "README.md")
    assert ModelCard.load(tmp_path / "README.md").data.base_model_relation == "finetune"
    adapter = model_card("my-lab/forenx-7b-lora", adapter_only=True, with_code=False, base_models=["my-lab/base"])
    assert adapter.data.base_model == "my-lab/base" and adapter.data.base_model_relation == "adapter"


def test_eval_score_metrics_json_feeds_the_card(tmp_path):
    """The metrics.json `forenx eval score` writes (the real command, sentence scorer) becomes the model-index."""
    from typer.testing import CliRunner

    from forenx.cli import app

    gt = [{"id": "a.png", "label": "fake", "quadruples": [
              {"name": "Hand", "phenomenon": "six fingers on the left hand", "reasoning": "hands have five fingers",
               "severity": 90}]},
          {"id": "b.png", "label": "real", "quadruples": []}]
    pred = [{"id": "a.png", "verdict": "fake", "anomalies": [
                {"name": "Hand", "phenomenon": "the left hand has six fingers",
                 "reasoning": "a human hand has five fingers", "severity": 80}]},
            {"id": "b.png", "verdict": "real", "anomalies": []}]
    for name, rows in (("gt.jsonl", gt), ("pred.jsonl", pred)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["eval", "score", "--pred", str(tmp_path / "pred.jsonl"), "--gt",
                                      str(tmp_path / "gt.jsonl"), "--out", str(tmp_path / "scores")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    results = {r.metric_type: r for r in load_eval_results(tmp_path / "scores" / "metrics.json",
                                                            dataset="my-lab/forgery-test")}
    assert {"semap_full", "semf1_full", "semap_phe", "semap_rea", "csemap_full"} <= set(results)
    assert results["semap_full"].metric_value == metrics["views"]["Full"]["SemAP"]
    assert results["semf1_rea"].metric_value == metrics["views"]["Rea"]["SemF1"]
    assert results["semap_full"].dataset_type == "my-lab/forgery-test"
    assert results["semap_full"].metric_config == "sentence"  # the local encoder path stays private

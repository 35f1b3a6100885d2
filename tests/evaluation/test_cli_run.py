"""`forenx eval run` is the one-process form of eval/run_eval.py."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from forenx.cli import app


def test_forenx_eval_run_writes_metrics(tiny_model_dir, synth_records, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "eval", "run", "--model", str(tiny_model_dir), "--data_file", str(synth_records),
        "--output_dir", str(out), "--max_new_tokens", "8", "--batch_size", "4", "--limit", "4",
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["output_dir"] == str(out)
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4
    assert (out / "report.md").read_text().strip()


def test_forenx_eval_run_reports_bad_config(tmp_path):
    result = CliRunner().invoke(app, ["eval", "run", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "missing.yaml" in result.output

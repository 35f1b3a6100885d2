"""forenx.evaluation in one process: outputs, sharding, merging, resume, scoring, bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forenx.data.records import Record
from forenx.data.validate import InvalidDataError
from forenx.evaluation import (
    EvalConfig,
    EvalConfigError,
    EvalRunError,
    finished_ids,
    merge_predictions,
    parse_eval_args,
    read_prediction_lines,
    run_evaluation,
    score_predictions,
    select_records,
    shard,
)


def _config(model: Path, records: Path, out: Path, **overrides) -> EvalConfig:
    values = {"model": str(model), "data_file": str(records), "output_dir": str(out), "batch_size": 4,
              "max_new_tokens": 12}
    values.update(overrides)
    return EvalConfig(**values)


def _without_timing(lines: list[dict]) -> list[dict]:
    """Lines comparable across runs: timing left out, P(fake) to 1e-5 (a float32 batch of another
    size may differ in the last bits; the text, read greedily, is the same)."""
    return [{k: (pytest.approx(v, abs=1e-5) if k == "prob_fake" else v) for k, v in line.items() if k != "timing"}
            for line in lines]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def full_run(tiny_model_dir, synth_records, tmp_path_factory):
    """One complete single-process run; its outputs are the reference of the other tests."""
    out = tmp_path_factory.mktemp("eval-full")
    metrics = run_evaluation(_config(tiny_model_dir, synth_records, out))
    return out, metrics


# ------------------------------------------------------------------------------ sharding
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_shards_cover_every_id_once(world_size):
    ids = [f"id-{i}" for i in range(11)]
    shards = [shard(ids, rank, world_size) for rank in range(world_size)]
    assert sorted(i for s in shards for i in s) == sorted(ids)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced, no padding


def test_select_records_filters_split_and_limit(synth_records, tmp_path):
    config = EvalConfig(model="m", data_file=str(synth_records), split="train", limit=3, output_dir=str(tmp_path))
    selected = select_records(config)
    assert len(selected) == 3 and {r.split for r in selected} == {"train"}


# ----------------------------------------------------------------------------- full run
def test_single_process_run_writes_every_output(full_run, synth_records):
    out, metrics = full_run
    records = select_records(EvalConfig(model="m", data_file=str(synth_records)))
    merged = _jsonl(out / "predictions.jsonl")
    assert [line["id"] for line in merged] == [r.id for r in records]
    first = merged[0]
    assert {"id", "image", "label", "generator", "verdict", "prob_fake", "anomalies", "raw_text"} <= set(first)
    assert first["image"] == records[0].image and 0.0 <= first["prob_fake"] <= 1.0
    assert len(_jsonl(out / "predictions.rank0.jsonl")) == len(records)

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["run"]["generated_this_run"] == len(records) and saved["run"]["resumed"] == 0
    n_fake = sum(r.label == "fake" for r in records)
    assert saved["semantic"]["num_images"] == n_fake and saved["semantic"]["scorer"] == "sentence"
    assert set(saved["semantic"]["views"]) == {"Phe", "Rea", "Full"}
    assert "CSemAP" in saved["semantic"]["views"]["Full"]  # labels present: classification-aware too
    assert saved["detection"]["n"] == len(records) and "per_generator" in saved["detection"]
    assert metrics["detection"] == saved["detection"]

    anomreason = json.loads((out / "predictions_anomreason.json").read_text())
    assert sorted(anomreason) == sorted(Path(r.image).name for r in records)
    report = (out / "report.md").read_text()
    assert "Image-set rule: strict" in report and "scorer: sentence" in report and "| all |" in report
    fake_groups = [g for g, v in saved["detection"]["per_generator"].items() if v["n_fake"]]
    assert fake_groups and all("auc_vs_real" in saved["detection"]["per_generator"][g] for g in fake_groups)
    assert "| auc_vs_real |" in report


def test_rerun_of_a_finished_run_generates_nothing(full_run, tiny_model_dir, synth_records, tmp_path):
    out, _ = full_run
    copy = tmp_path / "again"
    shutil.copytree(out, copy)
    metrics = run_evaluation(_config(tiny_model_dir, synth_records, copy))
    assert metrics["run"]["generated_this_run"] == 0 and metrics["run"]["resumed"] == 12
    assert _without_timing(_jsonl(copy / "predictions.jsonl")) == _without_timing(_jsonl(out / "predictions.jsonl"))


def test_resume_after_a_kill_mid_write(full_run, tiny_model_dir, synth_records, tmp_path):
    """5 samples finished, the 6th cut mid-line: the restart keeps the 5, drops the cut line, does 7."""
    out, _ = full_run
    lines = (out / "predictions.rank0.jsonl").read_bytes().splitlines(keepends=True)
    run_dir = tmp_path / "resumed"
    run_dir.mkdir()
    shutil.copy(out / "eval_config.json", run_dir)
    (run_dir / "predictions.rank0.jsonl").write_bytes(b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    kept, _ = read_prediction_lines(run_dir / "predictions.rank0.jsonl")
    assert len(kept) == 5 and len(finished_ids(run_dir)) == 5

    metrics = run_evaluation(_config(tiny_model_dir, synth_records, run_dir))
    assert metrics["run"]["resumed"] == 5 and metrics["run"]["generated_this_run"] == 7
    rank_lines = _jsonl(run_dir / "predictions.rank0.jsonl")  # every line parses: the cut one is gone
    assert len(rank_lines) == 12 and len({line["id"] for line in rank_lines}) == 12
    assert _without_timing(_jsonl(run_dir / "predictions.jsonl")) == _without_timing(_jsonl(out / "predictions.jsonl"))


def test_resume_from_files_of_another_world_size(full_run, tiny_model_dir, synth_records, tmp_path):
    """Lines left by a 3-process run (rank 2's last line cut) are all used by a 1-process restart."""
    out, _ = full_run
    lines = (out / "predictions.rank0.jsonl").read_bytes().splitlines(keepends=True)
    run_dir = tmp_path / "from-three"
    run_dir.mkdir()
    (run_dir / "predictions.rank0.jsonl").write_bytes(b"".join(lines[0:6:3]))
    (run_dir / "predictions.rank1.jsonl").write_bytes(b"".join(lines[1:6:3]))
    (run_dir / "predictions.rank2.jsonl").write_bytes(lines[2] + lines[5][:40])
    metrics = run_evaluation(_config(tiny_model_dir, synth_records, run_dir))
    assert metrics["run"]["resumed"] == 5 and metrics["run"]["generated_this_run"] == 7
    assert _without_timing(_jsonl(run_dir / "predictions.jsonl")) == _without_timing(_jsonl(out / "predictions.jsonl"))


def test_evidence_and_text_metrics_on(tiny_model_dir, synth_records, tmp_path):
    metrics = run_evaluation(_config(tiny_model_dir, synth_records, tmp_path / "o", limit=2, evidence=True,
                                     text_metrics=True))
    lines = _jsonl(tmp_path / "o" / "predictions.jsonl")
    assert len(lines) == 2 and all(isinstance(line["evidence"], list) for line in lines)
    assert any(line["evidence"] for line in lines)  # the tools found something in ForgerySynth PNGs
    assert metrics["text"]["n"] == 2 and 0.0 <= metrics["text"]["rouge_l"] <= 1.0
    assert "Summary text" in (tmp_path / "o" / "report.md").read_text()


def test_resume_with_other_generation_settings_is_refused(full_run, tiny_model_dir, synth_records, tmp_path):
    out, _ = full_run
    copy = tmp_path / "changed"
    shutil.copytree(out, copy)
    with pytest.raises(EvalConfigError, match="max_new_tokens was 12, now 20"):
        run_evaluation(_config(tiny_model_dir, synth_records, copy, max_new_tokens=20))


# -------------------------------------------------------------------------------- merging
def _line(id_: str, error: str | None = None, verdict: str = "fake") -> str:
    return json.dumps({"id": id_, "image": f"{id_}.png", "verdict": verdict, "anomalies": [], "error": error}) + "\n"


def test_merge_dedupes_prefers_lines_without_error_and_names_missing(tmp_path):
    (tmp_path / "predictions.rank0.jsonl").write_text(_line("a") + _line("b", error="model failed") + _line("z"))
    (tmp_path / "predictions.rank1.jsonl").write_text(_line("b") + _line("a", verdict="real"))
    merged = merge_predictions(tmp_path, ["a", "b", "c"])
    assert list(merged.lines) == ["a", "b"] and merged.missing == ["c"]
    assert merged.lines["b"]["error"] is None  # the retried sample replaces its failed line
    assert merged.lines["a"]["verdict"] == "real"  # newest line without error wins
    assert merged.duplicates == 2 and merged.outside_selection == 1
    assert finished_ids(tmp_path) == {"a", "b", "z"}


def test_damaged_line_in_the_middle_is_reported(tmp_path):
    path = tmp_path / "predictions.rank0.jsonl"
    path.write_text(_line("a") + "{not json\n" + _line("b"))
    with pytest.raises(EvalRunError, match=r"predictions.rank0.jsonl:2: not a JSON line"):
        read_prediction_lines(path)


# -------------------------------------------------------------------------------- scoring
def test_perfect_predictions_score_one(tmp_path):
    """The scoring wiring: predictions equal to the ground truth give SemAP = CSemAP = accuracy = 1."""
    from forenx.schema import Quadruple

    quads = [Quadruple("Seam", "a hard edge around the cup", "pasted objects leave edges", 70),
             Quadruple("Light", "the shadow points left", "the sun is on the left", 60)]
    records = [Record(id="f1", image="f1.png", label="fake", generator="sd", quadruples=quads),
               Record(id="f2", image="f2.png", label="fake", generator="flux", quadruples=quads[:1]),
               Record(id="r1", image="r1.png", label="real", generator="camera")]
    lines = {r.id: {"id": r.id, "verdict": r.label, "prob_fake": 0.9 if r.label == "fake" else 0.1,
                    "anomalies": [q.to_dict() for q in r.quadruples]} for r in records}
    config = EvalConfig(model="m", data_file="unused.jsonl")
    metrics = score_predictions(records, lines, config)
    full = metrics["semantic"]["views"]["Full"]
    assert (full["SemAP"], full["SemF1"], full["CSemAP"], full["CSemF1"]) == (1.0, 1.0, 1.0, 1.0)
    assert metrics["semantic"]["num_images"] == 2  # real images are left to the detection metrics
    assert metrics["detection"]["accuracy"] == 1.0 and metrics["detection"]["auc"] == 1.0

    lines["f2"]["verdict"] = "real"  # a wrongly judged fake: CSem zeroes it, Sem does not
    full = score_predictions(records, lines, config)["semantic"]["views"]["Full"]
    assert full["SemAP"] == 1.0 and full["CSemAP"] == 0.5


# ----------------------------------------------------------------------------- bad inputs
def test_invalid_records_are_refused_before_the_model_loads(fixtures, tmp_path):
    bad = fixtures / "bad_records" / "records.jsonl"
    config = EvalConfig(model=str(tmp_path / "no-model-needed"), data_file=str(bad), output_dir=str(tmp_path / "o"))
    with pytest.raises(InvalidDataError, match="records.jsonl") as info:
        run_evaluation(config)
    assert "line 6" in str(info.value) or ":6" in str(info.value)
    assert not (tmp_path / "o" / "predictions.rank0.jsonl").exists()


def test_unknown_model_path_is_reported(synth_records, tmp_path):
    missing = tmp_path / "no" / "such-model"
    config = EvalConfig(model=str(missing), data_file=str(synth_records), output_dir=str(tmp_path / "o"))
    with pytest.raises(EvalRunError, match="loading the model failed on process 0") as info:
        run_evaluation(config)
    assert "such-model" in str(info.value)


def test_split_without_records_names_the_splits_present(synth_records, tmp_path):
    config = EvalConfig(model="m", data_file=str(synth_records), split="tset", output_dir=str(tmp_path))
    with pytest.raises(EvalConfigError, match=r"split='tset'.*present: test, train, val"):
        select_records(config)


@pytest.mark.parametrize("args, message", [
    (["--batch_size", "0"], "batch_size=0"),
    (["--max_new_tokens", "0"], "max_new_tokens=0"),
    (["--limit", "0"], "limit=0"),
    (["--scorer", "rouge"], "scorer='rouge'"),
    (["--scorer", "bertscore"], "needs encoder"),
    (["--layer", "5"], "layer applies to scorer=bertscore only"),
    (["--thresholds", "0.7", "1.5"], "thresholds="),
    (["--dtype", "float8"], "dtype='float8'"),
    (["--semantic_images", "some"], "semantic_images='some'"),
])
def test_bad_config_values(args, message):
    base = ["--model", "m", "--data_file", "d.jsonl"]
    with pytest.raises(EvalConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_eval_args(base + args)


def test_missing_model_or_data_file_in_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data_file: d.jsonl\n")
    with pytest.raises(EvalConfigError, match="model is not set"):
        parse_eval_args(["--config", str(config)])
    with pytest.raises(EvalConfigError, match="data_file is not set"):
        parse_eval_args(["--model", "m"])


def test_shipped_configs_parse():
    root = Path(__file__).resolve().parents[2] / "eval" / "configs"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert {"tiny_synth.yaml", "anomreason.yaml", "mmfr.yaml", "fakeclue.yaml"} <= set(names)
    for name in names:
        config = parse_eval_args(["--config", str(root / name)])
        assert config.model and config.data_file
    official = parse_eval_args(["--config", str(root / "anomreason.yaml")])
    assert (official.scorer, official.encoder, official.layer, official.official_image_set) == (
        "bertscore", "distilbert-base-uncased", 5, True)

"""`forenx release`: merged, adapter-only and with-code folders load back and give the checkpoint's outputs."""

from __future__ import annotations

import json
import re
import runpy

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForImageTextToText, AutoProcessor
from typer.testing import CliRunner

from forenx.cli import app
from forenx.hub.release import release

METRICS = {"semantic": {"full": {"semap": 0.5, "semf1": 0.25}}, "detection": {"accuracy": 0.75, "auc": 0.8}}


@pytest.fixture(scope="module")
def metrics_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "metrics.json"
    path.write_text(json.dumps(METRICS))
    return path


@pytest.fixture(scope="module")
def releases(tmp_path_factory, adapter_checkpoint, full_checkpoint, metrics_file):
    """One release per mode (the with-code one sharded into small files)."""
    root = tmp_path_factory.mktemp("releases")
    return {
        "merged": release(adapter_checkpoint, "my-lab/forenx-tiny", out=root / "merged", eval_results=metrics_file),
        "adapter": release(adapter_checkpoint, "my-lab/forenx-tiny-lora", out=root / "adapter", adapter_only=True),
        "with_code": release(adapter_checkpoint, "my-lab/forenx-tiny-code", out=root / "with_code", with_code=True,
                             max_shard_size="200KB"),
        "full": release(full_checkpoint, "my-lab/forenx-tiny-full", out=root / "full"),
    }


def _load_released(result):
    if result.mode == "adapter":  # transformers reads adapter_config.json and loads the base under it
        return AutoModelForImageTextToText.from_pretrained(result.folder).eval()
    return AutoModelForImageTextToText.from_pretrained(result.folder, trust_remote_code=True).eval()


@pytest.mark.parametrize("mode", ["merged", "adapter", "with_code", "full"])
def test_release_round_trip_gives_the_checkpoints_outputs(mode, releases, adapter_checkpoint, full_checkpoint,
                                                          checkpoint_model, images):
    result = releases[mode]
    checkpoint = full_checkpoint if mode == "full" else adapter_checkpoint
    reference = checkpoint_model(checkpoint)
    processor = AutoProcessor.from_pretrained(checkpoint)
    released_processor = AutoProcessor.from_pretrained(result.folder, trust_remote_code=True)
    inputs = processor.verdict_inputs(images)
    released_inputs = released_processor.verdict_inputs(images)
    assert all(torch.equal(inputs[k], released_inputs[k]) for k in inputs)

    released = _load_released(result)  # (with forenx installed, its registered classes load the folder)
    with torch.no_grad():
        expected, got = reference(**inputs).logits, released(**released_inputs).logits
    # Merging LoRA reorders float32 sums: rounding only. Nothing merged: bit-identical.
    tolerance = 1e-5 if result.mode == "merged" else 0.0
    assert torch.allclose(got, expected, atol=tolerance, rtol=0), (got - expected).abs().max()
    assert (expected - checkpoint_model(full_checkpoint if mode != "full" else adapter_checkpoint)(
        **inputs).logits).abs().max() > 1e-3  # the checkpoints differ, so the comparison can fail

    seq_expected, p_expected = reference.generate_with_proba(**inputs, max_new_tokens=8, do_sample=False)
    seq_got, p_got = released.generate_with_proba(**released_inputs, max_new_tokens=8, do_sample=False)
    assert torch.equal(seq_got, seq_expected)
    assert torch.allclose(p_got, p_expected, atol=1e-6)
    assert result.reload_max_abs_diff == 0.0
    if result.mode == "merged":
        assert 0.0 <= result.merge_max_abs_diff < 1e-4


def test_release_folders_hold_the_whole_model(releases):
    merged = set(releases["merged"].files)
    assert {"config.json", "model.safetensors", "generation_config.json", "processor_config.json",
            "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "README.md",
            "forenx_run.yaml"} <= merged
    config = json.loads((releases["merged"].folder / "config.json").read_text())
    assert {"vision_config", "dino_config", "text_config"} <= set(config)  # the full tree of sub-configs
    assert config["model_type"] == "forenx" and "auto_map" not in config

    adapter = set(releases["adapter"].files)
    assert {"adapter_config.json", "adapter_model.safetensors", "processor_config.json", "tokenizer.json",
            "chat_template.jinja", "README.md"} <= adapter
    assert not any(name.startswith("model") for name in adapter)
    from safetensors import safe_open

    with safe_open(releases["adapter"].folder / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any(".fusion." in k for k in keys) and any("multi_modal_projector" in k for k in keys)
    assert any("lora_A" in k for k in keys)

    shards = sorted(name for name in releases["with_code"].files if re.fullmatch(r"model-\d+-of-\d+\.safetensors", name))
    assert len(shards) > 1 and "model.safetensors.index.json" in releases["with_code"].files


def test_no_secret_from_the_run_config_is_released(releases, run_config_token):
    for result in releases.values():
        for name in result.files:
            assert run_config_token.encode() not in (result.folder / name).read_bytes(), name
    released_run = (releases["merged"].folder / "forenx_run.yaml").read_text()
    assert "hub_token" not in released_run and "learning_rate" in released_run


def test_release_card_metadata(releases):
    card = ModelCard.load(releases["merged"].folder / "README.md")
    assert card.data.base_model == ["openai/clip-vit-large-patch14-336", "facebook/dinov2-large",
                                    "lmsys/vicuna-7b-v1.5"]  # Hub ids from the run config; local paths dropped
    assert card.data.datasets == ["my-lab/forgerysynth-v1"]
    assert card.data.pipeline_tag == "image-text-to-text" and card.data.license == "apache-2.0"
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"semap_full": 0.5, "semf1_full": 0.25, "accuracy": 0.75, "roc_auc": 0.8}
    adapter_card = ModelCard.load(releases["adapter"].folder / "README.md")
    assert adapter_card.data.library_name == "peft" and not adapter_card.data.eval_results
    # The adapter's base is a local folder here: the release says so instead of pretending it is on the Hub.
    assert any("not a Hub model" in w for w in releases["adapter"].warnings)


def _usage_snippet(folder, repo_id: str) -> str:
    content = (folder / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", content, re.DOTALL).group(1)
    assert f'"{repo_id}"' in code
    return code.replace(f'"{repo_id}"', repr(str(folder)))


@pytest.mark.parametrize("mode,repo_id", [("merged", "my-lab/forenx-tiny"), ("adapter", "my-lab/forenx-tiny-lora")])
def test_card_usage_code_runs(mode, repo_id, releases, photo, monkeypatch, tmp_path, capsys):
    script = tmp_path / "usage.py"
    script.write_text(_usage_snippet(releases[mode].folder, repo_id))
    monkeypatch.chdir(photo.parent)
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert re.search(r"P\(fake\) = 0\.\d{3}", printed), printed


def test_cli_release_writes_a_folder(adapter_checkpoint, metrics_file, tmp_path):
    out = tmp_path / "cli_release"
    result = CliRunner().invoke(app, ["release", str(adapter_checkpoint), "--repo-id", "my-lab/forenx-cli",
                                      "--eval-results", str(metrics_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Released my-lab/forenx-cli (merged)" in result.output
    assert "Reload check: largest logit difference 0.00e+00" in result.output
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()


@pytest.mark.parametrize("args,message", [
    (["{missing}", "--repo-id", "a/b"], "does not exist"),
    (["{not_checkpoint}", "--repo-id", "a/b"], "is not a ForenX checkpoint"),
    (["{adapter}", "--repo-id", "a/b", "--merge", "--adapter-only"], "--merge and --adapter-only exclude each other"),
    (["{adapter}", "--repo-id", "a/b", "--eval-results", "{missing}/metrics.json"], "no such file"),
    (["{adapter}", "--repo-id", "forenx-tiny"], "must be 'namespace/name'"),
    (["{adapter}", "--repo-id", "a/b", "--adapter-only", "--with-code"], "--with-code ships the modeling code"),
    (["{full}", "--repo-id", "a/b", "--adapter-only"], "is a full model, not a PEFT adapter"),
    (["{adapter}", "--repo-id", "a/b", "--out", "{not_checkpoint}"], "already exists and is not empty"),
    (["{adapter}", "--repo-id", "a/b", "--eval-dataset", "x/y"], "--eval-dataset names the data set"),
])
def test_cli_errors_are_clear(args, message, adapter_checkpoint, full_checkpoint, tmp_path):
    not_checkpoint = tmp_path / "not_checkpoint"
    not_checkpoint.mkdir()
    (not_checkpoint / "notes.txt").write_text("not a model")
    paths = {"missing": tmp_path / "missing", "not_checkpoint": not_checkpoint, "adapter": adapter_checkpoint,
             "full": full_checkpoint}
    result = CliRunner().invoke(app, ["release", *[a.format(**paths) for a in args]])
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_release_in_bfloat16_reloads_identically(full_checkpoint, tmp_path):
    result = release(full_checkpoint, "my-lab/forenx-tiny-bf16", out=tmp_path / "bf16", dtype="bfloat16")
    config = json.loads((result.folder / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    model = AutoModelForImageTextToText.from_pretrained(result.folder, dtype="auto")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert result.reload_max_abs_diff == 0.0
    # half the bytes of the float32 checkpoint's weights
    size = (result.folder / "model.safetensors").stat().st_size
    assert size < 0.6 * (full_checkpoint / "model.safetensors").stat().st_size


def test_bad_dtype_fails_before_loading(full_checkpoint, tmp_path):
    from forenx.hub.errors import ReleaseError

    with pytest.raises(ReleaseError, match="--dtype 'fp7' is not a torch dtype"):
        release(full_checkpoint, "my-lab/x", out=tmp_path / "x", dtype="fp7")


def test_failed_release_leaves_no_folder(adapter_checkpoint, tmp_path, monkeypatch):
    import forenx.hub.release as release_module

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(release_module, "model_card", broken_card)
    with pytest.raises(RuntimeError, match="disk full"):
        release(adapter_checkpoint, "my-lab/x", out=tmp_path / "x")
    assert list(tmp_path.iterdir()) == []  # neither x nor its staging folder


@pytest.mark.slow
def test_release_of_a_real_sft_run(tmp_path, images):
    """The SFT recipe's own output (final folder and checkpoint-N) releases, and the release gives the
    outputs forenx.training.checkpoint.load_checkpoint gives for the run."""
    import subprocess
    import sys
    from pathlib import Path

    from forenx.training.checkpoint import load_checkpoint

    recipe = Path(__file__).parents[2] / "recipes" / "sft.py"
    run = tmp_path / "sft"
    completed = subprocess.run(
        [sys.executable, str(recipe), "--config", str(recipe.parent / "configs" / "sft_tiny.yaml"),
         "--max_steps", "2", "--save_steps", "2", "--output_dir", str(run), "--eval_strategy", "no",
         "--report_to", "none", "--per_device_train_batch_size", "4", "--synth_n", "24",
         "--train_file", str(tmp_path / "data" / "records.jsonl")],
        capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    for source in (run, run / "checkpoint-2"):
        result = release(source, "my-lab/tiny-sft", out=tmp_path / f"release-{source.name}")
        assert result.mode == "merged" and result.reload_max_abs_diff == 0.0
        trained, processor = load_checkpoint(source, merge=False)
        inputs = processor.verdict_inputs(images)
        released = AutoModelForImageTextToText.from_pretrained(result.folder)
        with torch.no_grad():
            expected, got = trained(**inputs).logits, released(**inputs).logits
        assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


def test_card_describes_the_forensic_streams_inputs():
    """The card's architecture names the stream's optional inputs only when the model has them."""
    from forenx.hub.release import _architecture
    from forenx.modeling import tiny_model

    plain = _architecture(tiny_model(seed=0, forensic_width=8)[0].config)
    assert "Forensic stream" in plain and "residual branch" not in plain and "JPEG quantization" not in plain
    full = _architecture(tiny_model(seed=0, forensic_width=8, forensic_residual=8, forensic_jpeg=True)[0].config)
    assert "residual branch of width 8" in full and "4 JPEG quantization maps" in full
    assert "resampling maps" not in full
    maps = _architecture(tiny_model(seed=0, forensic_width=8, forensic_histogram=True, forensic_resampling=True)[0].config)
    assert "2 histogram-comb maps" in maps and "2 resampling maps (how much better 32 x 32 windows fit" in maps


def test_card_writes_the_probability_mapper_with_the_unsharp_mask_trace():
    """The mapper line names the weighted trace and `--sharpening` only when the calibration fitted a weight."""
    from forenx.hub.release import _architecture
    from forenx.modeling import tiny_model

    config = tiny_model(seed=0)[0].config
    assert "Probability mapper" not in _architecture(config)
    config.mapper_temperature, config.mapper_bias = 1.9, -5.2
    calibrated = _architecture(config)
    assert "sigmoid((logit difference - 5.200) / 1.900), temperature and bias from post-hoc calibration" in calibrated
    assert "unsharp" not in calibrated
    config.sharpening_evidence_weight = 8.1
    traced = _architecture(config)
    assert "sigmoid((logit difference - 5.200 + 8.100 x unsharp-mask trace) / 1.900)" in traced
    assert "temperature, bias and weight from post-hoc calibration (forenx model calibrate --sharpening)" in traced
    assert "forenx.modeling.sharpening" in traced

"""GRPO in one process on the tiny model: settings checks, the prompt (same tokens as SFT and
explain, ending in the answer prefix), a short run from a tiny SFT checkpoint that logs every
reward, trains the new adapters, saves and reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from forenx.data.collate import render_record
from forenx.data.records import Record
from forenx.data.synth import synthesize
from forenx.modeling.builder import tiny_model
from forenx.schema import ANSWER_PREFIX
from forenx.training.checkpoint import is_adapter_checkpoint, load_checkpoint
from forenx.training.config import parse_sft_args
from forenx.training.grpo import GroupHealthCallback, build_grpo_trainer, grpo_prompt, run_grpo
from forenx.training.grpo_config import GRPOConfigError, parse_grpo_args
from forenx.training.rewards import completion_text
from forenx.training.sft import run_sft

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "recipes" / "configs" / "grpo_tiny.yaml"
SFT_YAML = REPO / "recipes" / "configs" / "sft_tiny.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("synth") / "fs"
    synthesize(folder, n=24, seed=0, size=64, workers=1)
    return folder / "records.jsonl"


@pytest.fixture(scope="module")
def sft_checkpoint(synth, tmp_path_factory) -> Path:
    """A tiny SFT LoRA checkpoint, two steps of the SFT recipe's library."""
    out = tmp_path_factory.mktemp("sft") / "run"
    run_sft(*parse_sft_args([
        "--config", str(SFT_YAML), "--train_file", str(synth), "--output_dir", str(out), "--report_to", "none",
        "--per_device_train_batch_size", "4", "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no",
        "--warmup_steps", "0", "--validate_images", "false"]))
    assert is_adapter_checkpoint(out)
    return out


def text_length_reward(completions, **kwargs):
    """A reward that differs between random completions (the forensic ones are all 0 for a barely
    trained model), so a two-step test run has a learning signal; passed by import path."""
    return [len(completion_text(c)) / 100 for c in completions]


LENGTH_REWARD = f"{__name__}.text_length_reward"


def grpo_args(synth: Path, model: Path | str, output_dir: Path, *extra: str):
    return parse_grpo_args([
        "--config", str(TINY_YAML), "--model_name_or_path", str(model), "--train_file", str(synth),
        "--output_dir", str(output_dir), "--report_to", "none", "--logging_steps", "1", "--save_strategy", "no",
        "--max_completion_length", "24", "--validate_images", "false", *extra])


def test_batch_arithmetic_is_checked_with_a_readable_message(synth, tmp_path):
    with pytest.raises(GRPOConfigError, match=r"per_device_train_batch_size 3 x 1 process x steps_per_generation 1 = 3 "
                                              r"completions is not a multiple of num_generations 4.*Fix: "):
        grpo_args(synth, "tiny", tmp_path, "--per_device_train_batch_size", "3")
    with pytest.raises(GRPOConfigError, match="at least 2"):
        grpo_args(synth, "tiny", tmp_path, "--num_generations", "1")
    with pytest.raises(GRPOConfigError, match="reward_weights has 2 values for 4 reward_funcs"):
        grpo_args(synth, "tiny", tmp_path, "--reward_weights", "1", "1")
    with pytest.raises(GRPOConfigError, match="reward_funcs"):
        grpo_args(synth, "tiny", tmp_path, "--reward_funcs", "format", "style")


def test_kl_penalty_with_full_weights_is_refused_with_the_way_out(synth, tmp_path):
    # TRL would fail deep inside its reference-model loader (ForenXConfig has no auto_map) after the data and
    # the model were loaded; the settings check says it at once. LoRA's reference is the adapter switched off.
    with pytest.raises(GRPOConfigError, match=r"beta=0.04 with finetuning=full: .* use finetuning lora or qlora"):
        grpo_args(synth, "tiny", tmp_path / "kl", "--finetuning", "full", "--beta", "0.04")
    trainer = build_grpo_trainer(*grpo_args(synth, "tiny", tmp_path / "kl-lora", "--beta", "0.04"))
    assert trainer.beta == 0.04 and trainer.ref_model is None  # peft: adapters disabled give the reference


def test_prompt_is_the_sft_and_explain_prompt_plus_the_answer_prefix():
    _, processor = tiny_model()
    image = Image.new("RGB", (64, 64))
    prompt = grpo_prompt(processor)
    sft_prompt = render_record(Record(id="r", image="a.png", label="fake"), processor, prompt_only=True).prompt
    assert prompt == sft_prompt + ANSWER_PREFIX
    ids = processor(text=[prompt], images=[image], add_special_tokens=False)["input_ids"][0]
    assert ids == processor.verdict_inputs([image])["input_ids"][0].tolist()  # what forenx explain feeds
    training = render_record(Record(id="r", image="a.png", label="fake"), processor)
    train_ids = processor(text=[training.text], images=[image], add_special_tokens=False)["input_ids"][0]
    assert train_ids[:len(ids)] == ids  # the SFT row continues these exact tokens with the verdict


def test_run_from_sft_checkpoint_logs_every_reward_trains_saves_and_reloads(synth, sft_checkpoint, tmp_path):
    out = tmp_path / "grpo"
    args = grpo_args(synth, sft_checkpoint, out, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
                     "--reward_funcs", "format", "verdict", "explanation", "severity", "calibration", LENGTH_REWARD,
                     "--reward_weights", "0.5", "1", "1", "0.5", "0", "1", "--learning_rate", "0.05")
    trainer = build_grpo_trainer(*args)
    health = next(c for c in trainer.callback_handler.callbacks if isinstance(c, GroupHealthCallback))
    # The prompt the trainer generates from ends with the answer prefix, then the verdict comes.
    row = trainer.train_dataset[0]
    prompt_ids, _, fields = trainer._tokenize_prompts([[{**m, "content": [
        {**part, "image": row["image"]} if part["type"] == "image" else part for part in m["content"]]}
        for m in row["prompt"]]])
    assert prompt_ids[0][-len(trainer.model.config.answer_prefix_ids):] == list(trainer.model.config.answer_prefix_ids)
    assert fields["pixel_values"].shape[0] == 1

    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n and ".language_model." in n for n in lora)
    trainer.train()
    trainer.save_model(str(out))

    logs = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logs) == 2
    for name in ("format_reward", "verdict_reward", "explanation_reward", "calibration_reward", "text_length_reward"):
        assert all(entry[f"rewards/{name}/mean"] is not None for entry in logs), name
    assert all("rewards/severity_reward/mean" in entry for entry in logs)
    assert all("frac_reward_zero_std" in entry and "completions/clipped_ratio" in entry for entry in logs)
    assert 0.0 <= logs[0]["rewards/calibration_reward/mean"] <= 1.0
    # With 24 tokens, almost every completion is cut: the callback says so.
    assert any("max_completion_length" in warning for warning in health.warnings)
    changed = [n for n, p in trainer.model.named_parameters() if n in lora and not torch.equal(p, lora[n])]
    assert any("lora_B" in n for n in changed)

    for folder in (out, out / "checkpoint-2"):
        assert is_adapter_checkpoint(folder) and (folder / "processor_config.json").is_file()
        run = yaml.safe_load((folder / "forenx_run.yaml").read_text())
        assert run["stage"] == "grpo" and Path(run["model"]["model_name_or_path"]) == sft_checkpoint.resolve()
    model, processor = load_checkpoint(out)
    merged = trainer.model.merge_and_unload() if hasattr(trainer.model, "merge_and_unload") else trainer.model
    image = Image.new("RGB", (64, 64), (120, 60, 30))
    inputs = processor.verdict_inputs([image])
    torch.testing.assert_close(model.predict_proba(**inputs), merged.eval().predict_proba(**inputs))


def test_calibration_prob_fake_is_one_value_per_prompt(synth, tmp_path):
    trainer = build_grpo_trainer(*grpo_args(synth, "tiny", tmp_path / "cal", "--reward_funcs", "verdict", "calibration", "--reward_weights", "1", "0"))
    rows = [trainer.train_dataset[i] for i in (0, 0, 1, 1)]
    trainer._add_prob_fake(rows)
    probs = [row["prob_fake"] for row in rows]
    assert probs[0] == probs[1] and probs[2] == probs[3] and all(0.0 <= p <= 1.0 for p in probs)
    inputs = trainer.processing_class.verdict_inputs([rows[2]["image"]])
    assert probs[2] == pytest.approx(float(trainer.model.get_base_model().predict_proba(**inputs)[0]), abs=1e-5)


def test_zero_variance_groups_warn():
    callback = GroupHealthCallback(zero_std_warning=0.5, clipped_warning=0.2)

    class State:
        is_world_process_zero, global_step = True, 7

    class Args:
        num_generations, max_completion_length = 4, 64

    callback.on_log(Args(), State(), None, logs={"frac_reward_zero_std": 0.75, "completions/clipped_ratio": 0.0})
    assert len(callback.warnings) == 1 and "75% of prompt groups" in callback.warnings[0]
    callback.on_log(Args(), State(), None, logs={"frac_reward_zero_std": 0.25, "completions/clipped_ratio": 0.1})
    assert len(callback.warnings) == 1


def test_run_grpo_from_the_random_tiny_model(synth, tmp_path):
    trainer = run_grpo(*grpo_args(synth, "tiny", tmp_path / "tiny", "--max_steps", "1",
                                  "--reward_funcs", "format", "verdict", "--reward_weights", "1", "1"))
    assert trainer.state.global_step == 1
    assert (tmp_path / "tiny" / "adapter_model.safetensors").is_file()


def test_gpu_config_parses_and_its_batch_arithmetic_holds_on_eight_gpus(synth, tmp_path, monkeypatch):
    gpu_yaml = str(REPO / "recipes" / "configs" / "grpo.yaml")
    common = ["--config", gpu_yaml, "--train_file", str(synth), "--output_dir", str(tmp_path), "--bf16", "false",
              "--report_to", "none"]
    _, _, args = parse_grpo_args(common)
    assert args.generation_batch_size == 8 * 1 * 4 and args.num_generations == 8
    assert args.reward_funcs == ["format", "verdict", "explanation", "severity"] and len(args.reward_weights) == 4
    monkeypatch.setenv("WORLD_SIZE", "3")  # 8 x 3 x 4 = 96: whole groups of 8 still
    with pytest.raises(GRPOConfigError, match="= 18 completions is not a multiple of num_generations 8"):
        parse_grpo_args(common + ["--per_device_train_batch_size", "6", "--steps_per_generation", "1"])


def test_qlora_trains_adapters_on_a_4bit_language_model(synth, tmp_path):
    trainer = build_grpo_trainer(*grpo_args(synth, "tiny", tmp_path / "qlora", "--finetuning", "qlora", "--max_steps",
                                            "1", "--reward_funcs", "format", LENGTH_REWARD, "--reward_weights", "1", "1"))
    quantized = [n for n, m in trainer.model.named_modules() if type(m).__name__ == "Linear4bit"]
    assert quantized and all(".language_model." in n for n in quantized)
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert any(not torch.equal(p, lora[n]) for n, p in trainer.model.named_parameters() if n in lora)


def test_nano_config_trains_every_part_of_the_shipped_nano_and_saves_full_weights(synth, tmp_path):
    # Stage 2 of `make nano`: full-weight GRPO from a released (merged) model, not from an adapter.
    nano_yaml = REPO / "recipes" / "configs" / "nano_grpo.yaml"
    out = tmp_path / "nano-grpo"
    _, _, args = parse_grpo_args(["--config", str(nano_yaml), "--train_file", str(synth), "--output_dir", str(out),
                                  "--report_to", "none"])
    assert args.finetuning == "full" and args.generation_batch_size % args.num_generations == 0
    trainer = run_grpo(*parse_grpo_args([
        "--config", str(nano_yaml), "--model_name_or_path", str(REPO / "forenx" / "assets" / "nano"),
        "--train_file", str(synth), "--output_dir", str(out), "--report_to", "none", "--max_steps", "1",
        "--per_device_train_batch_size", "32", "--num_generations", "4", "--max_completion_length", "32",
        "--save_strategy", "no", "--forensic_map_cache", "64", "--temperature", "1.5"]))
    assert trainer.state.global_step == 1
    # Generation and the loss read the same 8 images (4 completions each): their maps are computed once.
    cache = next(m.map_cache for m in trainer.model.modules() if getattr(m, "map_cache", None) is not None)
    assert cache.misses == len(cache) == 8 and cache.hits > 0
    logged = trainer.state.log_history[0]
    # A group whose 4 completions earn the same reward has no advantage and moves nothing: the trained nano
    # writes almost the same answer 4 times at temperature 1 (every group alike, measured), hence 1.5 here.
    assert logged["frac_reward_zero_std"] < 1.0, logged
    assert {f"rewards/{name}_reward/mean" for name in args.reward_funcs} <= set(logged)
    assert (out / "model.safetensors").is_file() and not (out / "adapter_model.safetensors").exists()
    before = load_checkpoint(REPO / "forenx" / "assets" / "nano")[0].state_dict()
    after = load_checkpoint(out)[0].state_dict()
    changed = {name.split(".")[1] for name in before if not torch.equal(before[name], after[name])}
    assert {"vision_tower", "dino_tower", "language_model"} <= changed, changed


def test_full_weight_checkpoint_reloads_with_its_towers(synth, tmp_path):
    """Resuming a full-weight GRPO run reads the checkpoint with from_pretrained (FullWeightsReload):
    the Trainer's own name-for-name reload would skip DINOv2's weights, saved under legacy names."""
    trainer = build_grpo_trainer(*grpo_args(synth, "tiny", tmp_path / "full", "--finetuning", "full",
                                            "--freeze_vision", "false"))
    saved = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.save_model(str(tmp_path / "ckpt"))
    with torch.no_grad():
        for name, param in trainer.model.named_parameters():
            param.add_(0.5)
    trainer._load_from_checkpoint(str(tmp_path / "ckpt"))
    now = trainer.model.state_dict()
    assert any("dino_tower" in k and "q_proj" in k for k in now)
    assert all(torch.equal(now[k], saved[k]) for k in saved)


def test_seed_fixes_the_new_adapters_whatever_ran_before(synth, tmp_path):
    first = build_grpo_trainer(*grpo_args(synth, "tiny", tmp_path / "a", "--seed", "3"))
    torch.rand(10)
    second = build_grpo_trainer(*grpo_args(synth, "tiny", tmp_path / "b", "--seed", "3"))
    lora = {name: p for name, p in first.model.named_parameters() if "lora_A" in name}
    assert lora
    assert all(torch.equal(p, lora[name]) for name, p in second.model.named_parameters() if name in lora)

"""The GRPO recipe under ``accelerate launch --multi_gpu --num_processes 2`` on the CPU (gloo), from
a tiny SFT checkpoint: it trains, logs every reward, saves, reloads, and resumes from a checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from forenx.data.synth import synthesize
from forenx.training.checkpoint import is_adapter_checkpoint, load_checkpoint
from forenx.training.config import parse_sft_args
from forenx.training.sft import run_sft
from tests.launch import ACCELERATE, free_port, launch_env

REPO = Path(__file__).resolve().parents[2]
REWARDS = ("format_reward", "verdict_reward", "explanation_reward", "severity_reward")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "fs"
    synthesize(folder, n=24, seed=0, size=64, workers=1)
    return folder / "records.jsonl"


@pytest.fixture(scope="module")
def sft_checkpoint(synth, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sft") / "run"
    run_sft(*parse_sft_args([
        "--config", str(REPO / "recipes" / "configs" / "sft_tiny.yaml"), "--train_file", str(synth),
        "--output_dir", str(out), "--report_to", "none", "--per_device_train_batch_size", "4", "--max_steps", "2",
        "--eval_strategy", "no", "--save_strategy", "no", "--warmup_steps", "0", "--validate_images", "false"]))
    return out


def launch(synth: Path, model: Path, output_dir: Path, *extra: str, timeout: int = 600) -> None:
    env = launch_env()
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "recipes/grpo.py", "--config", "recipes/configs/grpo_tiny.yaml", "--model_name_or_path", str(model),
               "--train_file", str(synth), "--output_dir", str(output_dir), "--per_device_train_batch_size", "2",
               "--num_generations", "4", "--max_completion_length", "16", "--logging_steps", "1",
               "--save_strategy", "steps", "--save_steps", "1", "--report_to", "none", "--validate_images", "false",
               *extra]
    result = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def test_two_processes_train_log_save_reload_and_resume(synth, sft_checkpoint, tmp_path):
    out = tmp_path / "grpo"
    launch(synth, sft_checkpoint, out, "--max_steps", "2")

    checkpoint = out / "checkpoint-1"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()  # 2 ranks
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logs = [entry for entry in state["log_history"] if "reward" in entry]
    assert [entry["step"] for entry in logs] == [1, 2]
    for entry in logs:
        assert all(f"rewards/{name}/mean" in entry for name in REWARDS)
        assert "frac_reward_zero_std" in entry and "completions/clipped_ratio" in entry
        # generation batch = 2 per process x 2 processes = 4 = one prompt group of num_generations 4
        assert entry["num_tokens"] > 0
    for folder in (out, checkpoint):
        assert is_adapter_checkpoint(folder) and (folder / "processor_config.json").is_file()
        assert yaml.safe_load((folder / "forenx_run.yaml").read_text())["stage"] == "grpo"
    model, processor = load_checkpoint(out)
    inputs = processor.verdict_inputs([Image.new("RGB", (64, 64), (90, 140, 200))])
    sequences, prob_fake = model.generate_with_proba(**inputs, max_new_tokens=4, do_sample=False)
    assert sequences.shape[1] == inputs["input_ids"].shape[1] + 4 and 0.0 <= float(prob_fake[0]) <= 1.0

    # Resume from step 1 to step 3: the Trainer restores step, optimizer and RNG and goes on.
    resumed = tmp_path / "resumed"
    shutil.copytree(checkpoint, resumed / "checkpoint-1")
    launch(synth, sft_checkpoint, resumed, "--max_steps", "3", "--resume_from_checkpoint",
           str(resumed / "checkpoint-1"))
    state = json.loads((resumed / "checkpoint-3" / "trainer_state.json").read_text())
    resumed_logs = [entry for entry in state["log_history"] if "reward" in entry]
    assert [entry["step"] for entry in resumed_logs] == [1, 2, 3] and state["global_step"] == 3
    assert resumed_logs[0] == logs[0]  # step 1 restored from the checkpoint, not trained again
    # Step 2 after resuming sees the same prompts and samples as step 2 of the uninterrupted run.
    for key in ("num_tokens", "completions/mean_length", *(f"rewards/{name}/mean" for name in REWARDS)):
        assert resumed_logs[1][key] == logs[1][key], key

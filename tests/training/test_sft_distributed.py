"""The recipe under `accelerate launch` with two processes on the CPU: DDP (gloo), DeepSpeed ZeRO-2
and ZeRO-3. Each run trains, saves, and its output reloads and generates."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from forenx.data.synth import synthesize
from forenx.images import load_image
from forenx.training.checkpoint import load_checkpoint
from tests.launch import ACCELERATE, free_port, launch_env

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "fs"
    synthesize(folder, n=40, seed=0, size=64, workers=1)
    return folder / "records.jsonl"


def launch(launch_args: list[str], synth: Path, output_dir: Path, timeout: int = 600, extra: tuple[str, ...] = ()
           ) -> None:
    env = launch_env()
    command = [str(ACCELERATE), "launch", *launch_args, "--main_process_port", str(free_port()),
               "recipes/sft.py", "--config", "recipes/configs/sft_tiny.yaml", "--train_file", str(synth),
               "--output_dir", str(output_dir), "--max_steps", "3", "--per_device_train_batch_size", "4",
               "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--report_to", "none",
               "--warmup_steps", "0", *extra]
    result = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def check_output(output_dir: Path, synth: Path, trainable: int | None = None) -> None:
    # Two ranks really trained together: the Trainer stores one RNG state per process.
    checkpoint = output_dir / "checkpoint-2"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    state = json.loads((output_dir / "checkpoint-3" / "trainer_state.json").read_text())
    train_logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(train_logs) == 3 and all("mapper_accuracy" in entry for entry in train_logs)
    assert any("eval_verdict_accuracy" in entry for entry in state["log_history"])
    for folder in (output_dir, checkpoint):
        assert (folder / "forenx_run.yaml").is_file() and (folder / "processor_config.json").is_file()
        adapter = load_file(folder / "adapter_model.safetensors")
        assert all(t.numel() > 0 for t in adapter.values())  # gathered, not ZeRO-3 placeholders
        if trainable is not None:
            assert sum(t.numel() for t in adapter.values()) == trainable
        assert sum(float(t.abs().sum()) for key, t in adapter.items() if "lora_B" in key) > 0
    model, processor = load_checkpoint(output_dir)
    image = load_image(synth.parent / "images" / "train" / "000000.png")
    inputs = processor.verdict_inputs([image])
    sequences, prob_fake = model.generate_with_proba(**inputs, max_new_tokens=5, do_sample=False)
    assert sequences.shape == (1, inputs["input_ids"].shape[1] + 5)
    assert 0.0 <= float(prob_fake[0]) <= 1.0


def _trainable_of_tiny_lora() -> int:
    from forenx.modeling.builder import tiny_model
    from forenx.training.config import ForenXSFTConfig
    from forenx.training.lora import apply_finetuning, trainable_parameters

    args = ForenXSFTConfig(output_dir="/tmp/forenx-unused", report_to="none", lora_r=16)
    return trainable_parameters(apply_finetuning(tiny_model()[0], args))[0]


def test_two_processes_gloo(synth, tmp_path):
    launch(["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no"], synth, tmp_path / "ddp")
    check_output(tmp_path / "ddp", synth, _trainable_of_tiny_lora())


def test_two_processes_deepspeed_zero2(synth, tmp_path):
    launch(["--config_file", "recipes/accelerate/zero2.yaml", "--num_processes", "2"], synth, tmp_path / "zero2")
    check_output(tmp_path / "zero2", synth, _trainable_of_tiny_lora())


def test_two_processes_deepspeed_zero3_saves_gathered_adapter(synth, tmp_path):
    launch(["--config_file", "recipes/accelerate/zero3.yaml", "--num_processes", "2"], synth, tmp_path / "zero3")
    check_output(tmp_path / "zero3", synth, _trainable_of_tiny_lora())
    torch.testing.assert_close(  # the final adapter equals the last checkpoint's (same step)
        load_file(tmp_path / "zero3" / "adapter_model.safetensors"),
        load_file(tmp_path / "zero3" / "checkpoint-3" / "adapter_model.safetensors"))


def test_two_processes_keep_each_forgery_with_its_original(tmp_path):
    """forensic_pair_weight under DDP: accelerate hands each process whole batches of the paired
    sampler, so every row trains next to its partner (paired_rows 1.0 in every log, both ranks)."""
    folder = tmp_path / "paired"
    synthesize(folder, n=40, seed=0, size=64, workers=1, paired="train")
    synth = folder / "records.jsonl"
    launch(["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no"], synth, tmp_path / "ddp",
           extra=("--tiny_overrides", json.dumps({"forensic_width": 8}), "--forensic_pair_weight", "2.0"))
    check_output(tmp_path / "ddp", synth)
    state = json.loads((tmp_path / "ddp" / "checkpoint-3" / "trainer_state.json").read_text())
    logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(logs) == 3 and all(entry["paired_rows"] == 1.0 and entry["pair_loss"] > 0 for entry in logs)

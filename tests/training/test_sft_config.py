"""SFT settings: YAML + overrides, and the impossible combinations rejected at start."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from forenx.data.synth import synthesize
from forenx.data.validate import InvalidDataError
from forenx.modeling.builder import tiny_model
from forenx.training.config import ForenXSFTConfig, SFTConfigError, parse_sft_args
from forenx.training.lora import apply_finetuning
from forenx.training.sft import prepare_data

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "recipes" / "configs" / "sft_tiny.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "fs"
    synthesize(folder, n=24, seed=0, size=64, workers=1)
    return folder / "records.jsonl"


def args(synth: Path, tmp_path: Path, *extra: str):
    return parse_sft_args(["--config", str(TINY_YAML), "--train_file", str(synth), "--output_dir",
                           str(tmp_path / "out"), "--report_to", "none", *extra])


def test_yaml_values_and_command_line_overrides(synth, tmp_path):
    model_args, data_args, sft_args = args(synth, tmp_path, "--lora_r", "4", "--max_steps", "7",
                                           "--lora_target_modules", "q_proj", "v_proj")
    assert model_args.model_name_or_path == "tiny" and model_args.torch_dtype == "float32"
    assert data_args.max_length == 512 and data_args.eval_split == "val"  # from the YAML
    assert sft_args.lora_r == 4 and sft_args.max_steps == 7  # overridden
    assert sft_args.lora_target_modules == ["q_proj", "v_proj"]
    assert sft_args.modules_to_save == ["fusion", "multi_modal_projector"]
    assert sft_args.train_sampling_strategy == "random" and not sft_args.remove_unused_columns


def test_every_shipped_config_parses(synth, tmp_path):
    for name in ("sft_lora", "sft_qlora", "sft_full", "sft_tiny"):
        # The GPU configs name Hub models and bf16; only parsing is checked here (no download).
        model_args, _, sft_args = parse_sft_args(
            ["--config", str(REPO / "recipes" / "configs" / f"{name}.yaml"), "--train_file", str(synth),
             "--output_dir", str(tmp_path / name), "--bf16", "false", "--report_to", "none"])
        assert sft_args.finetuning in ("lora", "qlora", "full"), name
        assert model_args.torch_dtype in ("float32", "bfloat16"), name
        assert (sft_args.finetuning == "qlora") == model_args.load_in_4bit, name
        if name != "sft_tiny":
            assert sft_args.train_sampling_strategy == "group_by_length", name


def test_four_bit_with_full_fine_tuning_is_rejected(synth, tmp_path):
    with pytest.raises(SFTConfigError, match="4-bit weights cannot be trained directly"):
        args(synth, tmp_path, "--finetuning", "full", "--load_in_4bit", "true")


def test_global_batch_must_divide_and_sets_accumulation(synth, tmp_path):
    with pytest.raises(SFTConfigError, match="global_batch_size=30 is not a multiple of world size 1 x "
                                             "per_device_train_batch_size 16 = 16"):
        args(synth, tmp_path, "--global_batch_size", "30")
    *_, sft_args = args(synth, tmp_path, "--global_batch_size", "64")
    assert sft_args.gradient_accumulation_steps == 4


def test_bad_values_are_rejected(synth, tmp_path):
    with pytest.raises(SFTConfigError, match="finetuning='adapters'"):
        args(synth, tmp_path, "--finetuning", "adapters")
    with pytest.raises(SFTConfigError, match="torch_dtype='fp32'"):
        args(synth, tmp_path, "--torch_dtype", "fp32")
    with pytest.raises(SFTConfigError, match="train_file='.*missing.jsonl' does not exist"):
        args(synth, tmp_path, "--train_file", str(tmp_path / "missing.jsonl"), "--synth_n", "0")


def test_unknown_lora_targets_are_named():
    sft_args = ForenXSFTConfig(output_dir="/tmp/forenx-unused", report_to="none", lora_target_modules=["qkv"])
    with pytest.raises(SFTConfigError, match=r"\['qkv'\] are not linear layers of the language model; "
                                             "available: down_proj gate_proj k_proj o_proj q_proj up_proj v_proj"):
        apply_finetuning(tiny_model()[0], sft_args)


@pytest.mark.parametrize("finetuning", ["full", "lora"])
def test_freeze_modules_keeps_the_forensic_stream_frozen_while_the_rest_trains(finetuning):
    sft_args = ForenXSFTConfig(output_dir="/tmp/forenx-unused", report_to="none", finetuning=finetuning,
                               freeze_vision=False, freeze_modules=["forensic", "dino_tower"])
    model = apply_finetuning(tiny_model(forensic_width=8)[0], sft_args)
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    stream = [g for name, g in grads.items() if ".forensic." in name]
    dino = [g for name, g in grads.items() if ".dino_tower." in name]
    assert stream and dino and not any(stream) and not any(dino)
    # Everything else that was to train still does: the other tower, the fusion around the stream, the LM.
    for part in (".vision_tower.", ".fusion.", "language_model." if finetuning == "full" else "lora_"):
        assert any(g for name, g in grads.items() if part in name and ".forensic." not in name), part


def test_freeze_modules_names_a_module_the_model_lacks():
    sft_args = ForenXSFTConfig(output_dir="/tmp/forenx-unused", report_to="none", finetuning="full",
                               freeze_modules=["forensics"])
    with pytest.raises(SFTConfigError, match=r"freeze_modules: \['forensics'\] are not modules of the model; .*"
                                             "forensic \\(the forensic stream\\)"):
        apply_finetuning(tiny_model(forensic_width=8)[0], sft_args)


def test_invalid_records_fail_before_training(fixtures, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(fixtures / "bad_records", bad)
    _, data_args, _ = parse_sft_args(["--model_name_or_path", "tiny", "--train_file", str(bad / "records.jsonl"),
                                      "--output_dir", str(tmp_path / "o"), "--report_to", "none"])
    with pytest.raises(InvalidDataError, match="records.jsonl"):
        prepare_data(data_args, tiny_model()[1])


def test_max_length_too_small_names_the_record(synth, tmp_path):
    _, data_args, _ = args(synth, tmp_path, "--max_length", "100")
    with pytest.raises(SFTConfigError, match=r"record 'forgerysynth-s0-\d+' needs \d+ tokens \(image tokens "
                                             r"included\) but max_length=100"):
        prepare_data(data_args, tiny_model()[1])


def test_data_is_prepared_with_lengths_and_exact_labels(synth, tmp_path):
    _, data_args, _ = args(synth, tmp_path)
    processor = tiny_model()[1]
    data = prepare_data(data_args, processor)
    splits = {json.loads(line)["split"] for line in synth.read_text().splitlines()}
    assert {"train", "val"} <= splits
    assert len(data.train_dataset) > len(data.eval_dataset) > 0
    batch = data.collator([data.train_dataset[i] for i in range(3)])
    # The length column equals the collated length of each row (what length grouping sorts by).
    assert batch["attention_mask"].sum(1).tolist() == data.train_dataset["length"][:3]
    answer = processor.tokenizer.decode(batch["labels"][0][batch["labels"][0] != -100])
    assert answer.startswith('{"verdict": "') and torch.all(batch["labels"][0][:16] == -100)


def test_synth_data_is_made_when_missing(tmp_path):
    target = tmp_path / "made" / "records.jsonl"
    _, data_args, _ = parse_sft_args(["--model_name_or_path", "tiny", "--train_file", str(target), "--synth_n", "12",
                                      "--synth_size", "48", "--eval_split", "", "--output_dir", str(tmp_path / "o"),
                                      "--synth_procedural", "4", "--synth_procedural_photos", "2",
                                      "--report_to", "none"])
    data = prepare_data(data_args, tiny_model()[1])
    assert target.is_file() and len(data.train_dataset) > 0 and data.eval_dataset is None
    photos = [json.loads(line)["meta"]["photo"] for line in target.read_text().splitlines()]
    assert len(photos) == 16 and all(p.startswith("dead_leaves_") for p in photos[12:])

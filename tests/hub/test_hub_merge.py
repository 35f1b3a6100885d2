"""Reading checkpoints: what they are, what is refused and why."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from forenx.hub.errors import ReleaseError
from forenx.hub.merge import inspect_checkpoint, load_checkpoint_model, quantization_of
from forenx.hub.release import release


def test_adapter_and_full_checkpoints_are_recognised(adapter_checkpoint, full_checkpoint):
    adapter = inspect_checkpoint(adapter_checkpoint)
    assert adapter.kind == "adapter" and adapter.is_adapter
    assert adapter.adapter_config["modules_to_save"] and adapter.run_config["model"]["llm"] == "lmsys/vicuna-7b-v1.5"
    full = inspect_checkpoint(full_checkpoint)
    assert full.kind == "full" and full.config["model_type"] == "forenx"


def test_nonexistent_checkpoint(tmp_path):
    with pytest.raises(ReleaseError, match=r"checkpoint .*missing does not exist"):
        inspect_checkpoint(tmp_path / "missing")


def test_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ReleaseError, match="is not a ForenX checkpoint: it has neither adapter_config.json"):
        inspect_checkpoint(tmp_path)
    with pytest.raises(ReleaseError, match="is a file"):
        inspect_checkpoint(tmp_path / "notes.txt")


def test_checkpoint_without_weights(tmp_path, base_model_dir):
    shutil.copy(base_model_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ReleaseError, match="has config.json but no safetensors weights"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ReleaseError, match="no adapter_model.safetensors"):
        inspect_checkpoint(tmp_path)


def test_other_model_type_is_refused(tmp_path, base_model_dir):
    shutil.copytree(base_model_dir, tmp_path / "llava")
    config = json.loads((tmp_path / "llava" / "config.json").read_text())
    config["model_type"] = "llava"
    (tmp_path / "llava" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ReleaseError, match="holds a 'llava' model, not a ForenX one"):
        inspect_checkpoint(tmp_path / "llava")


def test_4bit_checkpoint_is_refused_with_the_reason(quantized_checkpoint, tmp_path):
    assert quantization_of(inspect_checkpoint(quantized_checkpoint).config) == "4-bit"
    with pytest.raises(ReleaseError, match=r"is 4-bit \(bitsandbytes\)\. ForenX does not republish quantised"):
        release(quantized_checkpoint, "my-lab/q", out=tmp_path / "q", merge=True)
    assert not (tmp_path / "q").exists()  # refused before anything was written


def test_merging_into_a_4bit_base_is_refused(adapter_checkpoint, quantized_checkpoint, base_model_dir, tmp_path):
    """A run that started from a saved 4-bit model: its base cannot take the merge; the float one can."""
    import yaml

    qlora = tmp_path / "qlora"
    shutil.copytree(adapter_checkpoint, qlora)
    run = yaml.safe_load((qlora / "forenx_run.yaml").read_text())
    run["model"].update(model_name_or_path=str(quantized_checkpoint), load_in_4bit=True)
    (qlora / "forenx_run.yaml").write_text(yaml.safe_dump(run))
    with pytest.raises(ReleaseError, match=r"base model .* is 4-bit \(bitsandbytes\)\. ForenX never merges LoRA"):
        load_checkpoint_model(inspect_checkpoint(qlora))
    # The unquantised base, given explicitly, is what a QLoRA adapter is merged into.
    loaded = load_checkpoint_model(inspect_checkpoint(qlora), base=str(base_model_dir))
    assert loaded.base_name == str(base_model_dir) and loaded.saved_dtype == "float32"
    assert not any("Linear4bit" in type(m).__name__ for m in loaded.model.modules())


def test_qlora_run_merges_into_the_unquantised_base(adapter_checkpoint, tmp_path):
    """load_in_4bit in the run config (QLoRA) rebuilds the base WITHOUT 4-bit for the merge."""
    import yaml

    qlora = tmp_path / "qlora"
    shutil.copytree(adapter_checkpoint, qlora)
    run = yaml.safe_load((qlora / "forenx_run.yaml").read_text())
    run["model"]["load_in_4bit"] = True
    (qlora / "forenx_run.yaml").write_text(yaml.safe_dump(run))
    loaded = load_checkpoint_model(inspect_checkpoint(qlora))
    assert not any("4bit" in type(m).__name__ for m in loaded.model.modules())
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


def test_adapter_without_a_recorded_base_needs_base(adapter_checkpoint, tmp_path):
    orphan = tmp_path / "orphan"
    shutil.copytree(adapter_checkpoint, orphan)
    config = json.loads((orphan / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = None
    (orphan / "adapter_config.json").write_text(json.dumps(config))
    (orphan / "forenx_run.yaml").unlink()
    with pytest.raises(ReleaseError, match="cannot tell which base model this adapter belongs to.*--base"):
        load_checkpoint_model(inspect_checkpoint(orphan))


def test_zero3_adapter_with_empty_tensors_is_refused(adapter_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "zero3"
    shutil.copytree(adapter_checkpoint, broken)
    weights = load_file(broken / "adapter_model.safetensors")
    name = next(k for k in weights if "lora_A" in k)
    weights[name] = weights[name].new_empty(0)
    save_file(weights, broken / "adapter_model.safetensors")
    with pytest.raises(ReleaseError, match=r"holds 1 empty tensors .*ZeRO-3 partitions without gathering"):
        inspect_checkpoint(broken)


def test_adapter_on_a_base_built_from_parts(tmp_path, images):
    """A run that built its base from parts (clip=, dino=, llm=) records them in forenx_run.yaml; the
    release rebuilds that base, applies the adapter (fusion and projector come from it) and merges."""
    import torch
    import yaml
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForImageTextToText,
        CLIPVisionConfig,
        CLIPVisionModel,
        Dinov2Config,
        Dinov2Model,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from forenx.modeling import build_model
    from forenx.modeling.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    parts = {"clip": tmp_path / "clip", "dino": tmp_path / "dino", "llm": tmp_path / "llm"}
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     patch_size=14, image_size=56)).save_pretrained(parts["clip"])
    Dinov2Model(Dinov2Config(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, patch_size=14,
                             image_size=56, mlp_ratio=2)).save_pretrained(parts["dino"])
    LlamaForCausalLM(LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)).save_pretrained(parts["llm"])
    tokenizer.save_pretrained(parts["llm"])
    base, processor = build_model(**{k: str(v) for k, v in parts.items()})
    model = get_peft_model(base, LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)",
                                            modules_to_save=["fusion", "multi_modal_projector"]))
    with torch.no_grad():
        for parameter in (p for p in model.parameters() if p.requires_grad):
            parameter.add_(torch.randn_like(parameter) * 0.05)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    run = {"model": {"model_name_or_path": None, **{k: str(v) for k, v in parts.items()}, "llava": None,
                     "torch_dtype": "float32", "load_in_4bit": False}}  # as the SFT recipe writes it
    (checkpoint / "forenx_run.yaml").write_text(yaml.safe_dump(run))
    assert json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"] in (None, "")

    inputs = processor.verdict_inputs(images)
    with torch.no_grad():
        expected = model.eval()(**inputs).logits
    result = release(checkpoint, "my-lab/from-parts", out=tmp_path / "release")
    assert result.mode == "merged" and result.reload_max_abs_diff == 0.0
    with torch.no_grad():
        got = AutoModelForImageTextToText.from_pretrained(result.folder)(**inputs).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


def test_adapter_on_the_tiny_model(tmp_path, images):
    """`model_name_or_path: tiny` (the SFT tiny recipe): the base is re-created from its seed."""
    import yaml
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from forenx.modeling import tiny_model

    base, processor = tiny_model(seed=0)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)",
                                            modules_to_save=["fusion", "multi_modal_projector"]))
    with torch.no_grad():
        for parameter in (p for p in model.parameters() if p.requires_grad):
            parameter.add_(torch.randn_like(parameter) * 0.05)
    checkpoint = tmp_path / "checkpoint-10"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    run = {"model": {"model_name_or_path": "tiny", "tiny_seed": 0, "chat_template": "chatml",
                     "torch_dtype": "float32", "load_in_4bit": False}}
    (checkpoint / "forenx_run.yaml").write_text(yaml.safe_dump(run))
    inputs = processor.verdict_inputs(images)
    with torch.no_grad():
        expected = model.eval()(**inputs).logits
    result = release(checkpoint, "my-lab/tiny-sft", out=tmp_path / "release")
    assert result.reload_max_abs_diff == 0.0
    with torch.no_grad():
        got = AutoModelForImageTextToText.from_pretrained(result.folder)(**inputs).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


@pytest.mark.parametrize("text", ["model: [unclosed\n", "- a list\n"])
def test_broken_run_config_is_refused_by_name(full_checkpoint, tmp_path, text):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(full_checkpoint, checkpoint)
    (checkpoint / "forenx_run.yaml").write_text(text)
    with pytest.raises(ReleaseError, match=r"ckpt.forenx_run\.yaml: (not valid YAML|expected a mapping)"):
        inspect_checkpoint(checkpoint)

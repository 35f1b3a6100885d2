"""SFT in one process on the tiny model and a small ForgerySynth set: what trains, what is saved,
what loads back, and resuming."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from forenx.data.synth import synthesize
from forenx.images import load_image
from forenx.modeling.builder import tiny_model
from forenx.training.checkpoint import is_adapter_checkpoint, load_checkpoint
from forenx.training.config import parse_sft_args
from forenx.training.sft import build_trainer, run_sft

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "recipes" / "configs" / "sft_tiny.yaml"
PROCESSOR_FILES = ("processor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("synth") / "fs"
    synthesize(folder, n=40, seed=0, size=64, workers=1)
    return folder / "records.jsonl"


def sft_args(synth: Path, output_dir: Path, *extra: str):
    return parse_sft_args([
        "--config", str(TINY_YAML), "--train_file", str(synth), "--output_dir", str(output_dir),
        "--report_to", "none", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
        "--logging_steps", "1", "--warmup_steps", "0", "--eval_strategy", "no", "--save_strategy", "no", *extra])


def _batch(trainer, n: int = 3):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


@torch.no_grad()
def _logits(model, batch) -> torch.Tensor:
    model.eval()
    return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_lora_with_gradient_checkpointing_trains_the_adapters_and_modules(synth, tmp_path):
    trainer = build_trainer(*sft_args(synth, tmp_path / "gc", "--activation_checkpointing", "true",
                                      "--max_steps", "1", "--learning_rate", "0.01"))
    model = trainer.model
    trainable = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) > 0
    assert model.base_model.model.is_activation_checkpointing is False  # switched on by train()
    lora = [name for name in trainable if "lora_" in name]
    assert lora and all(".language_model." in name for name in lora)  # never the towers' / fusion's q_proj
    saved = [name for name in trainable if "modules_to_save" in name]
    assert any(".fusion." in n for n in saved) and any(".multi_modal_projector." in n for n in saved)
    assert not any("vision_tower" in n or "dino_tower" in n for n in trainable)  # towers frozen
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if "embed_tokens" in name}

    trainer.train()

    assert model.base_model.model.is_activation_checkpointing
    after = dict(model.named_parameters())
    changed = [name for name, before in trainable.items() if not torch.equal(before, after[name])]
    assert any("lora_B" in n for n in changed), "no LoRA weight changed: inputs did not require grad"
    assert any(".fusion." in n for n in changed) and any(".multi_modal_projector." in n for n in changed)
    assert all(torch.equal(before, after[name]) for name, before in frozen.items())


def test_run_saves_adapter_processor_and_config_and_reloads(synth, tmp_path):
    out = tmp_path / "run"
    trainer = run_sft(*sft_args(synth, out, "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2",
                                "--save_strategy", "steps", "--save_steps", "2", "--report_to", "tensorboard",
                                "--modules_learning_rate", "0.005"))
    logs = trainer.state.log_history
    train_logs = [entry for entry in logs if "loss" in entry]
    assert len(train_logs) == 4 and all({"lm_loss", "mapper_loss", "mapper_accuracy"} <= set(e) for e in train_logs)
    for entry in train_logs:  # the logged parts add up to the loss (lambda = 1)
        assert entry["loss"] == pytest.approx(entry["lm_loss"] + entry["mapper_loss"], abs=2e-3)
    evals = [entry for entry in logs if "eval_loss" in entry]
    assert len(evals) >= 2 and all(0.0 <= e["eval_verdict_accuracy"] <= 1.0 for e in evals)
    assert list(out.rglob("events.out.tfevents*")), "no TensorBoard log written"
    # Own learning rate for the fully trained modules.
    assert sorted({group["initial_lr"] for group in trainer.optimizer.param_groups}) == [0.002, 0.005]

    for folder in (out, out / "checkpoint-2", out / "checkpoint-4"):
        assert is_adapter_checkpoint(folder), folder
        for name in PROCESSOR_FILES + ("adapter_model.safetensors", "forenx_run.yaml"):
            assert (folder / name).is_file(), folder / name
        run = yaml.safe_load((folder / "forenx_run.yaml").read_text())
        assert run["model"]["model_name_or_path"] == "tiny" and run["training"]["max_steps"] == 4
    adapter = load_file(out / "adapter_model.safetensors")
    assert any("fusion" in key for key in adapter) and any("multi_modal_projector" in key for key in adapter)
    assert all(t.abs().sum() > 0 for key, t in adapter.items() if "lora_B" in key)

    batch = _batch(trainer)
    expected = _logits(trainer.model, batch)
    model, processor = load_checkpoint(out)
    assert type(model).__name__ == "ForenXForConditionalGeneration" and not model.training
    torch.testing.assert_close(_logits(model, batch), expected, atol=1e-4, rtol=1e-4)
    assert processor.tokenizer.chat_template == trainer.processing_class.tokenizer.chat_template

    image = load_image(min((synth.parent / "images" / "val").iterdir()))
    inputs = processor.verdict_inputs([image, image])
    sequences, prob_fake = model.generate_with_proba(**inputs, max_new_tokens=6, do_sample=False)
    assert sequences.shape == (2, inputs["input_ids"].shape[1] + 6)
    assert torch.all((prob_fake >= 0) & (prob_fake <= 1))

    unmerged, _ = load_checkpoint(out / "checkpoint-4", merge=False)
    assert type(unmerged).__name__.startswith("PeftModel")
    torch.testing.assert_close(_logits(unmerged, batch), expected, atol=1e-4, rtol=1e-4)


def test_align_stage_trains_only_fusion_and_projector_and_saves_full_weights(synth, tmp_path):
    out = tmp_path / "align"
    trainer = run_sft(*sft_args(synth, out, "--stage", "align", "--max_steps", "2", "--learning_rate", "0.01"))
    assert (out / "model.safetensors").is_file() and not is_adapter_checkpoint(out)
    base, _ = tiny_model()
    model, _ = load_checkpoint(out)
    base_state, state = base.state_dict(), model.state_dict()
    changed = {name for name in base_state if not torch.equal(base_state[name], state[name])}
    assert changed and all(".fusion." in n or ".multi_modal_projector." in n for n in changed)
    torch.testing.assert_close(_logits(model, _batch(trainer)), _logits(trainer.model, _batch(trainer)))


def test_full_fine_tuning_saves_and_reloads(synth, tmp_path):
    out = tmp_path / "full"
    trainer = run_sft(*sft_args(synth, out, "--finetuning", "full", "--max_steps", "2"))
    assert (out / "model.safetensors").is_file()
    model, _ = load_checkpoint(out)
    base_lm = tiny_model()[0].model.language_model.layers[0].mlp.up_proj.weight
    assert not torch.equal(model.model.language_model.layers[0].mlp.up_proj.weight, base_lm)
    batch = _batch(trainer)
    torch.testing.assert_close(_logits(model, batch), _logits(trainer.model, batch))


def test_qlora_trains_a_4bit_lm_and_reloads_unquantised(synth, tmp_path):
    out = tmp_path / "qlora"
    trainer = run_sft(*sft_args(synth, out, "--finetuning", "qlora", "--activation_checkpointing", "true",
                                "--max_steps", "2", "--learning_rate", "0.01"))
    quantised = [name for name, m in trainer.model.named_modules() if type(m).__name__ == "Linear4bit"]
    assert quantised and all(".language_model." in name for name in quantised)
    assert all(t.abs().sum() > 0 for k, t in load_file(out / "adapter_model.safetensors").items() if "lora_B" in k)
    model, processor = load_checkpoint(out)
    assert not any(type(m).__name__ == "Linear4bit" for m in model.modules())  # merged into a float base
    image = load_image(synth.parent / "images" / "train" / "000000.png")
    sequences, prob_fake = model.generate_with_proba(**processor.verdict_inputs([image]), max_new_tokens=4)
    assert sequences.shape[0] == 1 and 0.0 <= float(prob_fake[0]) <= 1.0


def test_resume_continues_exactly(synth, tmp_path):
    k, total = 3, 6
    common = ("--max_steps", str(total), "--lora_dropout", "0.1", "--save_strategy", "steps", "--save_steps", str(k))
    uninterrupted = run_sft(*sft_args(synth, tmp_path / "a", *common))
    losses = {e["step"]: e["loss"] for e in uninterrupted.state.log_history if "loss" in e}
    # A run stopped after step k is the state in checkpoint-k; resuming it in a fresh output folder:
    resumed = run_sft(*sft_args(synth, tmp_path / "b", *common, "--resume_from_checkpoint",
                                str(tmp_path / "a" / f"checkpoint-{k}")))
    resumed_losses = {e["step"]: e["loss"] for e in resumed.state.log_history if "loss" in e and e["step"] > k}
    assert sorted(resumed_losses) == list(range(k + 1, total + 1))
    for step, loss in resumed_losses.items():
        assert loss == pytest.approx(losses[step], abs=1e-6), step
    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[key], b[key], atol=1e-6) for key in a)


def test_best_checkpoint_by_validation_auc_is_what_the_run_saves(synth, tmp_path):
    """load_best_model_at_end with metric_for_best_model verdict_auc (steadier than the accuracy at 0.5
    on a small validation split): the final output holds the best evaluated checkpoint's adapter."""
    out = tmp_path / "best"
    trainer = run_sft(*sft_args(synth, out, "--max_steps", "3", "--learning_rate", "0.02", "--eval_strategy", "steps",
                                "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
                                "--load_best_model_at_end", "true", "--metric_for_best_model", "verdict_auc",
                                "--eval_split", "val"))
    evals: dict[int, float] = {}
    for entry in trainer.state.log_history:  # the first evaluation of each step (run_sft evaluates once more)
        if "eval_verdict_auc" in entry:
            evals.setdefault(entry["step"], entry["eval_verdict_auc"])
    assert sorted(evals) == [1, 2, 3]
    best = Path(trainer.state.best_model_checkpoint)
    assert best.is_dir() and trainer.state.best_metric == max(evals.values())
    saved, kept = load_file(out / "adapter_model.safetensors"), load_file(best / "adapter_model.safetensors")
    assert saved.keys() == kept.keys() and all(torch.equal(saved[k], kept[k]) for k in saved)
    if best.name != "checkpoint-3":  # as it is with this seed: the last step is not the best
        last = load_file(out / "checkpoint-3" / "adapter_model.safetensors")
        assert any(not torch.equal(saved[k], last[k]) for k in saved)


def _full_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(folder)[0].state_dict()


def test_full_fine_tuning_with_trained_towers_resumes_and_keeps_the_best_checkpoint_exactly(synth, tmp_path):
    """Full fine-tuning with the towers trained: transformers saves DINOv2's attention under its legacy
    names (attention.attention.query ...) and the Trainer's own reload of a checkpoint
    (resume, load_best_model_at_end) matches names as they are, so it would silently keep the
    current tower weights. Resuming must give the uninterrupted run's losses and weights, and the
    best checkpoint must be what the run saves, towers included."""
    k, total = 2, 4
    common = ("--finetuning", "full", "--freeze_vision", "false", "--max_steps", str(total), "--learning_rate", "0.01",
              "--modules_learning_rate", "0.01", "--save_strategy", "steps", "--save_steps", "1",
              "--eval_strategy", "steps", "--eval_steps", "1", "--eval_split", "val", "--save_total_limit", "10")
    uninterrupted = run_sft(*sft_args(synth, tmp_path / "a", *common))
    losses = {e["step"]: e["loss"] for e in uninterrupted.state.log_history if "loss" in e}
    resumed = run_sft(*sft_args(synth, tmp_path / "b", *common, "--resume_from_checkpoint",
                                str(tmp_path / "a" / f"checkpoint-{k}")))
    for step in range(k + 1, total + 1):
        entry = next(e for e in resumed.state.log_history if e.get("step") == step and "loss" in e)
        assert entry["loss"] == pytest.approx(losses[step], abs=1e-6), step
    a, b = _full_weights(tmp_path / "a"), _full_weights(tmp_path / "b")
    assert all(torch.allclose(a[key], b[key], atol=1e-6) for key in a)

    best_run = run_sft(*sft_args(synth, tmp_path / "c", *common, "--load_best_model_at_end", "true",
                                 "--metric_for_best_model", "eval_loss"))
    best = Path(best_run.state.best_model_checkpoint)
    saved, kept = _full_weights(tmp_path / "c"), _full_weights(best)
    dino = [key for key in saved if "dino_tower" in key and "q_proj" in key]
    assert dino and all(torch.equal(saved[key], kept[key]) for key in saved)
    if best.name != f"checkpoint-{total}":
        last = _full_weights(tmp_path / "c" / f"checkpoint-{total}")
        assert any(not torch.equal(saved[key], last[key]) for key in dino)


def test_seed_fixes_the_new_adapters_whatever_ran_before(synth, tmp_path):
    # The LoRA adapters are drawn from the global RNG when the model is built; the Trainer seeds it only
    # later. build_trainer seeds it first, so one seed gives one run even after other random draws.
    first = build_trainer(*sft_args(synth, tmp_path / "a", "--seed", "3"))
    torch.rand(10)
    second = build_trainer(*sft_args(synth, tmp_path / "b", "--seed", "3"))
    other = build_trainer(*sft_args(synth, tmp_path / "c", "--seed", "4"))
    lora = [name for name, _ in first.model.named_parameters() if "lora_A" in name]
    assert lora
    weights = [dict(t.model.named_parameters()) for t in (first, second, other)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in lora)
    assert not all(torch.equal(weights[0][name], weights[2][name]) for name in lora)

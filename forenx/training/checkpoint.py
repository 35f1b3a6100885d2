"""Models in and out of training: the base model of a run, and :func:`load_checkpoint`.

:func:`build_base_model` makes the model a run starts from (``tiny``, a ForenX folder, parts, or a
LLaVA checkpoint; optionally with a 4-bit LM). :func:`load_checkpoint` is what inference, GRPO and
release use to open anything an SFT run wrote — a ``checkpoint-N`` folder or the final output,
with LoRA adapters or full weights::

    from forenx.training.checkpoint import load_checkpoint
    model, processor = load_checkpoint("runs/sft-tiny", device="cpu", torch_dtype="float32")
    inputs = processor.verdict_inputs([image])
    sequences, prob_fake = model.generate_with_proba(**inputs, max_new_tokens=64)

An adapter checkpoint is rebuilt as base model + adapter: the base comes from the run's
``forenx_run.yaml`` (``tiny`` is re-created from its seed and overrides, deterministic; a folder or
Hub id is loaded again), or else from the adapter's ``base_model_name_or_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from forenx.modeling.builder import build_model, lm_4bit_config, tiny_model
from forenx.modeling.forensic import use_map_cache
from forenx.modeling.modeling import ForenXForConditionalGeneration
from forenx.modeling.processing import ForenXProcessor
from forenx.training.run_config import RUN_CONFIG_NAME, read_run_config

if TYPE_CHECKING:  # the settings module imports transformers' Trainer stack (peft, bitsandbytes)
    from forenx.training.config import ModelArguments

__all__ = ["FullWeightsReload", "build_base_model", "build_training_model", "is_adapter_checkpoint", "load_checkpoint",
           "read_run_config", "use_forensic_map_cache"]

ADAPTER_CONFIG = "adapter_config.json"


class FullWeightsReload:
    """Trainer mixin: full-weight checkpoints come back whole on resume and ``load_best_model_at_end``.

    transformers saves some sub-models under legacy names (DINOv2's ``attention.attention.query``
    for ``attention.q_proj``) and ``Trainer`` reloads a checkpoint with a name-for-name
    ``load_state_dict(strict=False)``, so the towers' trained weights would be skipped with a warning
    and the current ones kept. Here such a checkpoint is read with ``from_pretrained`` (which maps
    the names) and copied in strictly. Adapters, DeepSpeed and FSDP keep the Trainer's own path.
    Used by the SFT and GRPO trainers (``class T(FullWeightsReload, Trainer)``).
    """

    def _full_weights_in(self, folder: str | None) -> bool:
        """Whether ``folder`` holds full weights that this process loads itself (not DeepSpeed / FSDP,
        not an adapter)."""
        if not folder or self.is_deepspeed_enabled or self.is_fsdp_enabled or is_adapter_checkpoint(folder):
            return False
        return any((Path(folder) / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json"))

    def _load_full_weights(self, folder: str) -> None:
        model = self.accelerator.unwrap_model(self.model)
        loaded = type(model).from_pretrained(folder, dtype=model.dtype, device_map="cpu")
        model.load_state_dict(loaded.state_dict(), strict=True)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if model is None and self._full_weights_in(resume_from_checkpoint):
            return self._load_full_weights(resume_from_checkpoint)
        return super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self):
        if self._full_weights_in(self.state.best_model_checkpoint):
            return self._load_full_weights(self.state.best_model_checkpoint)
        return super()._load_best_model()


def _dtype(name: str | torch.dtype) -> torch.dtype:
    return name if isinstance(name, torch.dtype) else getattr(torch, name)


def is_adapter_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a peft adapter (LoRA run) rather than full weights."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


@contextlib.contextmanager
def _without_zero3_init():
    """Build the model whole on each rank, even when a ZeRO-3 config is active.

    With ZeRO-3, transformers partitions every sub-model at construction (``deepspeed.zero.Init``);
    ForenX assembles its parts (and initialises the new ones) across sub-models, which that breaks.
    DeepSpeed still shards the parameters when the Trainer wraps the model.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    active = hf_deepspeed._hf_deepspeed_config_weak_ref() if hf_deepspeed._hf_deepspeed_config_weak_ref else None
    if active is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(active)


def build_base_model(args: ModelArguments) -> tuple[ForenXForConditionalGeneration, ForenXProcessor]:
    """The model and processor ``args`` describe, in ``args.torch_dtype``; the LM in 4-bit when
    ``args.load_in_4bit`` (bitsandbytes NF4; towers, fusion and projector stay unquantised)."""
    with _without_zero3_init():
        return _build_base_model(args)


def build_training_model(args: ModelArguments, seed: int) -> tuple[ForenXForConditionalGeneration, ForenXProcessor]:
    """:func:`build_base_model` for a training run (SFT or GRPO): the global RNG seeded with ``seed`` first, and
    the forensic stream given the map cache ``args.forensic_map_cache`` asks for.

    New weights (LoRA adapters, a built model's fusion) are drawn from the global RNG: seeding it here makes
    ``seed`` fix them as it fixes the data order (the Trainer seeds only when it is built, after them).
    """
    from transformers import set_seed

    set_seed(seed)
    model, processor = build_base_model(args)
    use_forensic_map_cache(model, args)
    return model, processor


def use_forensic_map_cache(model: torch.nn.Module, args: ModelArguments) -> None:
    """Give the model's forensic stream the map cache ``args.forensic_map_cache`` asks for (training)."""
    from forenx.training.config import SFTConfigError

    if args.forensic_map_cache and not use_map_cache(model, args.forensic_map_cache):
        raise SFTConfigError(f"forensic_map_cache={args.forensic_map_cache} keeps the forensic stream's maps, but the "
                             "model has no forensic stream (forensic_width); set forensic_map_cache 0.")


def _build_base_model(args: ModelArguments) -> tuple[ForenXForConditionalGeneration, ForenXProcessor]:
    dtype = _dtype(args.torch_dtype)
    source = args.model_name_or_path
    if source == "tiny":
        from forenx.modeling.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(args.chat_template) if args.chat_template else None
        model, processor = tiny_model(seed=args.tiny_seed, tokenizer=tokenizer, **(args.tiny_overrides or {}))
        model.to(dtype)
    elif source is not None:
        if not Path(source).exists():
            raise FileNotFoundError(f"model_name_or_path={source!r} is not a folder; give a ForenX folder, 'tiny', "
                                    "or build from parts with clip/dino/llm.")
        if is_adapter_checkpoint(source):  # e.g. continue from an earlier LoRA run: start from its merged model
            model, processor = load_checkpoint(source, torch_dtype=dtype)
        else:
            processor = ForenXProcessor.from_pretrained(source)
            if args.load_in_4bit:
                model = _quantized(source, dtype)
                model.name_or_path = source
                return model, processor
            model = ForenXForConditionalGeneration.from_pretrained(source, dtype=dtype)
    else:
        model, processor = build_model(args.clip, args.dino, args.llm, llava=args.llava,
                                       chat_template=args.chat_template, dtype=dtype)
    if args.load_in_4bit:
        # bitsandbytes quantises while loading: write the assembled model once, load it back in 4-bit.
        with tempfile.TemporaryDirectory(prefix="forenx-4bit-") as folder:
            model.save_pretrained(folder)
            return _quantized(folder, dtype), processor
    return model, processor


def _quantized(folder: str | os.PathLike, dtype: torch.dtype) -> ForenXForConditionalGeneration:
    model = ForenXForConditionalGeneration.from_pretrained(
        folder, dtype=dtype, quantization_config=lm_4bit_config(compute_dtype=dtype))
    model.name_or_path = ""  # not the temporary folder: load_checkpoint rebuilds the base from forenx_run.yaml
    return model


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    torch_dtype: str | torch.dtype | None = None, merge: bool = True
                    ) -> tuple[torch.nn.Module, ForenXProcessor]:
    """Open what an SFT run saved (``checkpoint-N`` or the final output folder): ``(model, processor)``.

    Full weights load with ``from_pretrained``. An adapter is applied to the rebuilt base model
    (unquantised, so it can merge) and, with ``merge=True``, merged into it: the result is a plain
    :class:`ForenXForConditionalGeneration`; ``merge=False`` returns the ``PeftModel`` (to keep
    training the adapter, e.g. GRPO). ``torch_dtype`` defaults to the run's. The model is in eval mode.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {str(path)!r} is not a folder")
    run = read_run_config(path)
    if torch_dtype is None:
        torch_dtype = (run or {}).get("model", {}).get("torch_dtype", "float32")
    dtype = _dtype(torch_dtype)
    processor = ForenXProcessor.from_pretrained(path)
    if is_adapter_checkpoint(path):
        from peft import PeftModel

        from forenx.training.config import ModelArguments

        if run is not None:
            model_args = ModelArguments(**{**run["model"], "load_in_4bit": False, "torch_dtype": str(dtype)[6:]})
        else:
            base = json.loads((path / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
            if not base:
                raise FileNotFoundError(f"{path}: adapter without {RUN_CONFIG_NAME} and without base_model_name_or_path; "
                                        "cannot tell which base model it adapts.")
            model_args = ModelArguments(model_name_or_path=base, torch_dtype=str(dtype)[6:])
        base_model, _ = build_base_model(model_args)
        model = PeftModel.from_pretrained(base_model, path)
        if merge:
            model = model.merge_and_unload()
    else:
        model = ForenXForConditionalGeneration.from_pretrained(path, dtype=dtype)
    model.to(device)
    model.eval()
    return model, processor

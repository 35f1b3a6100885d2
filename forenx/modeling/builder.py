"""Builders: a ForenX model (and its processor) from component checkpoints, from an existing LLaVA
checkpoint, or from a tiny random configuration (tests, demos, benchmarks).

Every builder returns ``(model, processor)``. Component arguments are Hub ids or local folders,
loaded with their own ``from_pretrained``; token ids (image placeholder, verdict words, answer
prefix) are read from the tokenizer, never written as literals.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    CLIPVisionModel,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerBase,
)

from forenx.modeling.configuration import ForenXConfig
from forenx.modeling.heads import answer_prefix_ids, verdict_token_ids
from forenx.modeling.modeling import ForenXForConditionalGeneration
from forenx.modeling.names import name_group_ids, name_prefix_ids, resolve_name_groups
from forenx.modeling.processing import ForenXProcessor, forensic_image_processor
from forenx.prompts import IMAGE_TOKEN

__all__ = [
    "NOT_QUANTIZED_MODULES",
    "build_model",
    "lm_4bit_config",
    "tiny_config",
    "tiny_model",
    "tokenizer_settings",
]

#: Parts that stay in full precision under 4-bit loading: only the language model is quantised.
NOT_QUANTIZED_MODULES = ["model.vision_tower", "model.dino_tower", "model.fusion", "model.multi_modal_projector",
                         "lm_head"]

PathOrId = str | os.PathLike


def tokenizer_settings(tokenizer: PreTrainedTokenizerBase, forensic_names: Any = None) -> dict[str, Any]:
    """Config fields that come from the tokenizer: image token id, verdict token ids, prefix ids
    (and, with ``forensic_names``, the resolved name groups and their token ids)."""
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_token_id is None or image_token_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {IMAGE_TOKEN!r} token; add it as a special token first "
                         f"(tokenizer.add_special_tokens({{'additional_special_tokens': [{IMAGE_TOKEN!r}]}})).")
    settings = {"image_token_id": image_token_id, "verdict_token_ids": verdict_token_ids(tokenizer),
                "answer_prefix_ids": answer_prefix_ids(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if forensic_names is not None:
        groups = resolve_name_groups(forensic_names)
        # Stored as [group, names] pairs: the head's output order (a saved config's JSON keys get sorted).
        settings.update(forensic_names=[[group, names] for group, names in groups.items()],
                        forensic_name_ids=name_group_ids(tokenizer, groups),
                        name_prefix_ids=name_prefix_ids(tokenizer))
    return settings


def _ensure_image_token(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Register ``<image>`` (and a pad token) if missing; True when the vocabulary grew."""
    grew = False
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        grew |= tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]},
                                             replace_extra_special_tokens=False) > 0
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return grew


def _processor(tokenizer: PreTrainedTokenizerBase, config: ForenXConfig) -> ForenXProcessor:
    return ForenXProcessor(image_processor=forensic_image_processor(config.image_size), tokenizer=tokenizer,
                           patch_size=config.vision_config.patch_size)


def _new_fusion_and_projector(model: ForenXForConditionalGeneration, device: torch.device | str) -> None:
    """Materialise the fusion (and, unless it was reused, the projector) built on the meta device."""
    for name in ("fusion", "multi_modal_projector"):
        module = getattr(model.model, name)
        if next(module.parameters()).is_meta:
            module.to_empty(device=device)
            for submodule in module.modules():
                if isinstance(submodule, (torch.nn.Linear, torch.nn.Conv2d)):  # Conv2d: the forensic stream
                    torch.nn.init.normal_(submodule.weight, std=model.config.text_config.initializer_range)
                    if submodule.bias is not None:
                        torch.nn.init.zeros_(submodule.bias)
                elif isinstance(submodule, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
                    torch.nn.init.ones_(submodule.weight)
                    torch.nn.init.zeros_(submodule.bias)


def _assemble(config: ForenXConfig, *, clip, dino, language_model, lm_head, projector=None
              ) -> ForenXForConditionalGeneration:
    """A ForenX model whose parts ARE the given modules (no copies); new parts are initialised."""
    with torch.device("meta"):
        model = ForenXForConditionalGeneration(config)
    model.model.vision_tower = clip
    model.model.dino_tower = dino
    model.model.language_model = language_model
    model.lm_head = lm_head
    if projector is not None:
        model.model.multi_modal_projector = projector
    _new_fusion_and_projector(model, device=lm_head.weight.device)
    if config.freeze_vision:
        clip.requires_grad_(False)
        dino.requires_grad_(False)
    assert not any(p.is_meta for p in model.parameters()), "a part of the model was left on the meta device"
    return model


def _load_tokenizer(tokenizer: PreTrainedTokenizerBase | PathOrId | None, default: PathOrId,
                    chat_template: str | None) -> PreTrainedTokenizerBase:
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = AutoTokenizer.from_pretrained(default if tokenizer is None else tokenizer)
    if chat_template is not None:
        from forenx.modeling.tokenizer import CHAT_TEMPLATES

        tokenizer.chat_template = CHAT_TEMPLATES.get(chat_template, chat_template)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer of {default} has no chat template; pass chat_template= one of "
                         "forenx.modeling.tokenizer.CHAT_TEMPLATES (chatml, llama3, vicuna) or a Jinja template.")
    return tokenizer


def build_model(clip: PathOrId | None = None, dino: PathOrId | None = None, llm: PathOrId | None = None, *,
                llava: PathOrId | None = None, tokenizer: PreTrainedTokenizerBase | PathOrId | None = None,
                chat_template: str | None = None, dtype: torch.dtype | str | None = None,
                **config_overrides: Any) -> tuple[ForenXForConditionalGeneration, ForenXProcessor]:
    """Build ForenX from parts (``clip``, ``dino``, ``llm``) or from a LLaVA checkpoint (``llava``, ``dino``).

    Each argument is a Hub id or a local folder. ``tokenizer`` defaults to the LM's (or LLaVA's);
    ``chat_template`` (a name of :data:`forenx.modeling.tokenizer.CHAT_TEMPLATES` or a Jinja text)
    replaces its template. From parts, ``<image>`` is added to the tokenizer when missing and the
    LM's embeddings grow to match. ``config_overrides`` go to :class:`ForenXConfig`
    (``fusion_dim``, ``fusion_heads``, ``mapper_loss_weight``, ...; ``image_size`` defaults to CLIP's).

    From LLaVA, its CLIP tower, projector and LM (with head) are reused as they are: the fusion
    outputs CLIP-width tokens, so the projector sees the input width it was trained on.
    """
    if dino is None:
        raise ValueError("build_model needs dino=<DINOv2 id or folder> (the artifact branch).")
    load_kwargs = {"dtype": dtype} if dtype is not None else {}
    if llava is not None:
        if clip is not None or llm is not None:
            raise ValueError("build_model: give either llava=... or clip=... and llm=..., not both.")
        source = LlavaForConditionalGeneration.from_pretrained(llava, **load_kwargs)
        if not isinstance(source.config.vision_feature_layer, int):
            raise ValueError(f"{llava}: vision_feature_layer={source.config.vision_feature_layer} (several layers) "
                             "is not supported; ForenX fuses one CLIP layer.")
        tokenizer = _load_tokenizer(tokenizer, llava, chat_template)
        if _ensure_image_token(tokenizer) or tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != source.config.image_token_id:
            raise ValueError(f"{llava}: the tokenizer's {IMAGE_TOKEN!r} id differs from the checkpoint's "
                             f"image_token_id={source.config.image_token_id}; pass the checkpoint's own tokenizer.")
        clip_model, language_model = source.model.vision_tower, source.model.language_model
        lm_head, projector = source.lm_head, source.model.multi_modal_projector
        text_config = source.config.text_config
        llava_fields = {"vision_feature_layer": source.config.vision_feature_layer,
                        "projector_hidden_act": source.config.projector_hidden_act,
                        "multimodal_projector_bias": source.config.multimodal_projector_bias,
                        "tie_word_embeddings": source.config.tie_word_embeddings}
    else:
        if clip is None or llm is None:
            raise ValueError("build_model needs clip=... and llm=... (or llava=...), each a Hub id or folder.")
        clip_model = CLIPVisionModel.from_pretrained(clip, **load_kwargs)
        causal_lm = AutoModelForCausalLM.from_pretrained(llm, **load_kwargs)
        tokenizer = _load_tokenizer(tokenizer, llm, chat_template)
        if _ensure_image_token(tokenizer) and len(tokenizer) > causal_lm.get_input_embeddings().num_embeddings:
            causal_lm.resize_token_embeddings(len(tokenizer))
        language_model, lm_head, projector = causal_lm.get_decoder(), causal_lm.get_output_embeddings(), None
        text_config = causal_lm.config
        llava_fields = {"tie_word_embeddings": causal_lm.config.tie_word_embeddings}
    dino_model = AutoModel.from_pretrained(dino, **load_kwargs)
    config = ForenXConfig(
        clip_config=clip_model.config.to_dict(), dino_config=dino_model.config.to_dict(),
        text_config=text_config.to_dict(),
        **{"image_size": clip_model.config.image_size, **llava_fields,
           **tokenizer_settings(tokenizer, config_overrides.pop("forensic_names", None)),
           **config_overrides})
    model = _assemble(config, clip=clip_model, dino=dino_model, language_model=language_model,
                      lm_head=lm_head, projector=projector)
    if dtype is not None:
        model.to(dtype)
    return model, _processor(tokenizer, config)


def lm_4bit_config(compute_dtype: torch.dtype = torch.bfloat16) -> BitsAndBytesConfig:
    """bitsandbytes NF4 settings that quantise the language model only (QLoRA); pass it as
    ``ForenXForConditionalGeneration.from_pretrained(path, quantization_config=lm_4bit_config())``."""
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=NOT_QUANTIZED_MODULES)


def tiny_config(tokenizer: PreTrainedTokenizerBase, **overrides: Any) -> ForenXConfig:
    """A tiny ForenX configuration (56 px, patch 14 -> 4x4 = 16 image tokens) for ``tokenizer``."""
    fields: dict[str, Any] = dict(
        image_size=56,
        clip_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "patch_size": 14, "projection_dim": 32},
        dino_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "patch_size": 14, "mlp_ratio": 2},
        text_config={"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "vocab_size": len(tokenizer), "max_position_embeddings": 2048,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        fusion_heads=4, fusion_bias_hidden=8,
        **tokenizer_settings(tokenizer, overrides.pop("forensic_names", None)),
    )
    fields.update(overrides)
    return ForenXConfig(**fields)


def tiny_model(seed: int = 0, tokenizer: PreTrainedTokenizerBase | None = None, **overrides: Any
               ) -> tuple[ForenXForConditionalGeneration, ForenXProcessor]:
    """A tiny random ForenX model and its processor; deterministic in ``seed``, no network.

    >>> model, processor = tiny_model()
    >>> model.config.num_image_tokens, model.training
    (16, False)
    """
    if tokenizer is None:
        from forenx.modeling.tokenizer import load_tokenizer

        tokenizer = load_tokenizer("chatml")
    config = tiny_config(tokenizer, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ForenXForConditionalGeneration(config)
    model.eval()
    return model, _processor(tokenizer, config)

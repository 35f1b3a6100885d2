"""Reference configurations (written as config literals: nothing is downloaded) and parameter
accounting on the meta device.

* ``fakereasoning-13b``: the FakeReasoning-sized setup — CLIP ViT-L/14-336, DINOv2-L/14 at 336 px
  (24x24 = 576 tokens), Llama-2-13B.
* ``llava-1.5-7b``: the same towers with Vicuna-7B (LLaVA-1.5-7B's LM).
* ``medium``: ViT-B-sized towers at 224 px (16x16 tokens) and a 1.1B LM (TinyLlama-sized), for
  benchmarks that must run on a workstation.

The LM vocabularies are the LMs' own (32000); the ``<image>`` placeholder a real tokenizer adds
sits past it, so ``image_token_id`` here is LLaVA's default and only matters for generation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from forenx.modeling.configuration import ForenXConfig

__all__ = ["COMPONENTS", "PRESETS", "component_parameters", "meta_model", "preset_config"]

_CLIP_L_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
               "patch_size": 14, "projection_dim": 768}
_DINO_L_14 = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "patch_size": 14,
              "mlp_ratio": 4, "layerscale_value": 1e-5}
_CLIP_B_14 = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
              "patch_size": 14, "projection_dim": 512}
_DINO_B_14 = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "patch_size": 14,
              "mlp_ratio": 4, "layerscale_value": 1e-5}
_LLAMA2_13B = {"model_type": "llama", "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
               "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000,
               "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}
_VICUNA_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
              "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}
_TINYLLAMA_1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
                 "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
                 "max_position_embeddings": 2048, "rms_norm_eps": 1e-5}

#: name -> the ForenXConfig fields of that preset.
PRESETS: dict[str, dict[str, Any]] = {
    "fakereasoning-13b": {"image_size": 336, "clip_config": _CLIP_L_336, "dino_config": _DINO_L_14,
                              "text_config": _LLAMA2_13B, "fusion_heads": 16},
    "llava-1.5-7b": {"image_size": 336, "clip_config": _CLIP_L_336, "dino_config": _DINO_L_14,
                         "text_config": _VICUNA_7B, "fusion_heads": 16},
    "medium": {"image_size": 224, "clip_config": _CLIP_B_14, "dino_config": _DINO_B_14, "text_config": _TINYLLAMA_1B,
                   "fusion_heads": 12},
}


def preset_config(name: str, **overrides: Any) -> ForenXConfig:
    """The :class:`ForenXConfig` of a preset, with ``overrides``.

    >>> preset_config("fakereasoning-13b").num_image_tokens
    576
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ForenXConfig(**{**PRESETS[name], **overrides})


def meta_model(config: ForenXConfig) -> nn.Module:
    """The model on the meta device: every shape, no memory, no weights."""
    from forenx.modeling.modeling import ForenXForConditionalGeneration

    with torch.device("meta"):
        return ForenXForConditionalGeneration(config)


#: component -> how to find its parameters on a ForenXForConditionalGeneration.
COMPONENTS: dict[str, Callable[[nn.Module], list[nn.Module]]] = {
    "clip": lambda m: [m.model.vision_tower],
    "dino": lambda m: [m.model.dino_tower],
    "fusion": lambda m: [m.model.fusion],
    "projector": lambda m: [m.model.multi_modal_projector],
    # The mapper reads the verdict words' logits from the LM head: it owns no parameters.
    "mapper": lambda m: [],
    "lm": lambda m: [m.model.language_model, m.lm_head],
}


def component_parameters(model: nn.Module) -> dict[str, dict[str, int]]:
    """``{component: {"total": n, "trainable": n}}`` for each of :data:`COMPONENTS`, plus ``"total"``.

    Shared (tied) parameters count once.
    """
    counts: dict[str, dict[str, int]] = {}
    seen: set[int] = set()
    for name, modules in COMPONENTS.items():
        total = trainable = 0
        for module in modules(model):
            for parameter in module.parameters():
                if id(parameter) in seen:
                    continue
                seen.add(id(parameter))
                total += parameter.numel()
                trainable += parameter.numel() if parameter.requires_grad else 0
        counts[name] = {"total": total, "trainable": trainable}
    counts["total"] = {key: sum(c[key] for c in counts.values()) for key in ("total", "trainable")}
    all_parameters = {id(p): p.numel() for p in model.parameters()}
    assert counts["total"]["total"] == sum(all_parameters.values()), "a parameter belongs to no component"
    return counts

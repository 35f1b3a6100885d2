"""The ForenX model: dual CLIP + DINOv2 encoder, forgery-aware fusion, LLaVA projector, any causal
LM, and the P(fake) probability mapper.

Importing this package registers ForenX with transformers' Auto classes (``AutoConfig``,
``AutoModelForImageTextToText``, ``AutoProcessor``), so a saved ForenX folder loads with them.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

from forenx.modeling.builder import build_model, tiny_model
from forenx.modeling.configuration import ForenXConfig
from forenx.modeling.fusion import ForgeryAwareFusion
from forenx.modeling.modeling import ForenXCausalLMOutputWithPast, ForenXForConditionalGeneration, ForenXModel
from forenx.modeling.processing import ForenXProcessor

__all__ = [
    "ForenXCausalLMOutputWithPast",
    "ForenXConfig",
    "ForenXForConditionalGeneration",
    "ForenXModel",
    "ForenXProcessor",
    "ForgeryAwareFusion",
    "build_model",
    "tiny_model",
]

AutoConfig.register(ForenXConfig.model_type, ForenXConfig, exist_ok=True)
AutoModel.register(ForenXConfig, ForenXModel, exist_ok=True)
AutoModelForImageTextToText.register(ForenXConfig, ForenXForConditionalGeneration, exist_ok=True)
AutoProcessor.register(ForenXConfig, ForenXProcessor, exist_ok=True)

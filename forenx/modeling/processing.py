"""`ForenXProcessor`: image processor + tokenizer + chat template, LLaVA style.

The image processor only resizes to the model's ``image_size`` and rescales to [0, 1]; the model
normalises per branch (CLIP and DINOv2 statistics differ). Resizing uses bicubic resampling and
keeps the whole image (no centre crop). Resizing does smooth fine traces: keep the source pixels
for evidence tools (ELA, spectrum) that need them.

The ``<image>`` placeholder (:data:`forenx.prompts.IMAGE_TOKEN`) expands to one token per fused
image token (the CLIP patch grid, CLS excluded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image
from transformers import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava.processing_llava import LlavaProcessor

from forenx.prompts import IMAGE_TOKEN, build_messages
from forenx.schema import ANSWER_PREFIX

__all__ = ["ForenXProcessor", "forensic_image_processor"]


def forensic_image_processor(image_size: int) -> CLIPImageProcessorPil:
    """Resize (bicubic, no crop) to ``image_size`` square and rescale to [0, 1]; no normalisation."""
    return CLIPImageProcessorPil(
        size={"height": image_size, "width": image_size}, resample=PILImageResampling.BICUBIC,
        do_resize=True, do_center_crop=False, do_rescale=True, do_normalize=False, do_convert_rgb=True,
    )


class ForenXProcessor(LlavaProcessor):
    """LLaVA's processor with ForenX's defaults, plus :meth:`verdict_inputs` for P(fake).

    ``patch_size`` is the CLIP patch size; the CLS token is not an image token
    (``vision_feature_select_strategy="default"``, ``num_additional_image_tokens=1``).
    """

    def __init__(self, image_processor=None, tokenizer=None, patch_size=None,
                 vision_feature_select_strategy="default", chat_template=None, image_token=IMAGE_TOKEN,
                 num_additional_image_tokens=1, **kwargs):
        if chat_template is None and tokenizer is not None:
            chat_template = getattr(tokenizer, "chat_template", None)
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                         vision_feature_select_strategy=vision_feature_select_strategy,
                         chat_template=chat_template, image_token=image_token,
                         num_additional_image_tokens=num_additional_image_tokens, **kwargs)

    def prompt(self, answer: str | None = None, **message_kwargs: Any) -> str:
        """The chat-formatted text for one image: the forensic prompt of :func:`forenx.prompts.build_messages`,
        with the generation prompt when there is no ``answer``."""
        return self.apply_chat_template(build_messages(answer, **message_kwargs), tokenize=False,
                                        add_generation_prompt=answer is None)

    def verdict_inputs(self, images: Sequence[Image.Image] | Any, **message_kwargs: Any) -> BatchFeature:
        """Model inputs whose last token precedes the verdict slot: prompt + generation prompt +
        :data:`~forenx.schema.ANSWER_PREFIX`, left padded. Feed them to
        ``model.predict_proba(**inputs)`` or ``model.generate_with_proba(**inputs)``."""
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        text = [self.prompt(**message_kwargs) + ANSWER_PREFIX] * len(images)
        # The chat template writes any BOS itself: the tokenizer must not add one more (training's
        # collator tokenizes the same way, so inference sees exactly the training prompt).
        return self(images=images, text=text, padding=True, padding_side="left", add_special_tokens=False,
                    return_tensors="pt")

"""`ForenXForConditionalGeneration`: LLaVA with a DINOv2 branch, forgery-aware fusion and a
probability mapper.

Built on transformers' LLaVA classes: the placeholder splice, KV cache, generation, gradient
checkpointing and quantisation come from there. ForenX replaces ``get_image_features``
(CLIP + DINOv2 -> fusion -> LLaVA projector) and extends ``forward`` with the mapper loss.
Parameter names of the CLIP tower, projector and LM equal LLaVA's, so a LLaVA checkpoint's
weights load into ForenX unchanged (see :func:`forenx.modeling.builder.build_model`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.llava.modeling_llava import (
    LlavaCausalLMOutputWithPast,
    LlavaForConditionalGeneration,
    LlavaModel,
    LlavaMultiModalProjector,
    LlavaPreTrainedModel,
)

from forenx.modeling.configuration import ForenXConfig
from forenx.modeling.forensic import ForensicEncoder, each_member
from forenx.modeling.fusion import ForgeryAwareFusion
from forenx.modeling.heads import add_verdict_evidence, forensic_loss, mapper_loss, prefix_ends, prob_fake
from forenx.modeling.names import NameEvidenceProcessor, NameTrie
from forenx.modeling.sharpening import sharpening_score
from forenx.modeling.vision import clip_patch_features, dino_patch_features, normalize

__all__ = ["ForenXCausalLMOutputWithPast", "ForenXForConditionalGeneration", "ForenXModel", "ForenXPreTrainedModel"]


@dataclass
class ForenXCausalLMOutputWithPast(LlavaCausalLMOutputWithPast):
    """LLaVA's output plus the ForenX losses and probability.

    ``loss`` = ``lm_loss`` + ``mapper_loss_weight`` * ``mapper_loss`` (+ ``forensic_loss_weight`` *
    ``forensic_loss`` with the forensic stream) when labels are given; with ``forensic_verdict`` the
    logits at the verdict slot already hold the stream's evidence, in every loss and in generation;
    ``prob_fake`` ``(B,)``: the mapper's P(fake) at each sequence's verdict slot (``nan`` where a
    sequence has none); ``forensic_logit`` ``(B,)``: the forensic stream's own logit (None without it);
    with ``forensic_members`` > 1, ``forensic_member_logits`` ``(B, members)``: each member's logit
    (their mean is ``forensic_logit``; ``forensic_loss`` and ``name_loss`` are the means of the members' own).
    With ``forensic_names``: ``name_logits`` ``(B, G)``, the anomaly-name head's logits over the name
    groups, and (with labels) ``name_loss``, its cross-entropy against the first name written,
    added to ``loss`` with weight ``forensic_name_weight``. With ``sharpening_evidence_weight``:
    ``sharpening_trace`` ``(B,)``, the images' unsharp-mask trace before the weight (None without it or
    when no image was encoded).
    """

    lm_loss: torch.FloatTensor | None = None
    mapper_loss: torch.FloatTensor | None = None
    forensic_loss: torch.FloatTensor | None = None
    prob_fake: torch.FloatTensor | None = None
    forensic_logit: torch.FloatTensor | None = None
    forensic_member_logits: torch.FloatTensor | None = None
    name_loss: torch.FloatTensor | None = None
    name_logits: torch.FloatTensor | None = None
    sharpening_trace: torch.FloatTensor | None = None


class ForenXPreTrainedModel(LlavaPreTrainedModel):
    config: ForenXConfig
    config_class = ForenXConfig


class ForenXModel(ForenXPreTrainedModel, LlavaModel):
    """LLaVA's model with ``dino_tower`` and ``fusion`` between ``vision_tower`` (CLIP) and the projector."""

    def __init__(self, config: ForenXConfig):
        ForenXPreTrainedModel.__init__(self, config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.dino_tower = AutoModel.from_config(config.dino_config)
        self.fusion = ForgeryAwareFusion(
            clip_dim=config.vision_config.hidden_size,
            dino_dim=config.dino_config.hidden_size,
            fusion_dim=config.fusion_dim,
            num_heads=config.fusion_heads,
            dino_heads=config.dino_config.num_attention_heads,
            mlp_ratio=config.fusion_mlp_ratio,
            attention_bias=config.fusion_attention_bias,
            bias_hidden=config.fusion_bias_hidden,
            layer_norm_eps=config.vision_config.layer_norm_eps,
            forensic_width=config.forensic_width,
            grid=config.image_size // config.vision_config.patch_size,
            image_size=config.image_size,
            name_groups=len(config.forensic_name_ids or ()),
            forensic_residual=config.forensic_residual,
            forensic_jpeg=config.forensic_jpeg,
            forensic_boundary=config.forensic_boundary,
            forensic_histogram=config.forensic_histogram,
            forensic_resampling=config.forensic_resampling,
            forensic_members=config.forensic_members,
        )
        self.multi_modal_projector = LlavaMultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        if config.freeze_vision:
            self.vision_tower.requires_grad_(False)
            self.dino_tower.requires_grad_(False)
        #: The images' unsharp-mask trace ``(B,)`` the last get_image_features computed (with
        #: ``sharpening_evidence_weight``), kept like the forensic logit until the next forward takes it:
        #: generation that encodes the images apart (``mm_encoder_outputs``) still gets it.
        self.sharpening_trace: torch.Tensor | None = None
        self.post_init()

    def get_image_features(self, pixel_values: torch.Tensor, vision_feature_layer: int | None = None,
                           vision_feature_select_strategy: str | None = None, **kwargs) -> BaseModelOutputWithPooling:
        """Fused, projected image tokens: ``pooler_output`` is a list of ``(N, text_hidden)``
        tensors, one per image; ``attentions`` holds the fusion attention ``(B, heads, N, N)``.

        ``pixel_values`` ``(B, 3, S, S)`` are in [0, 1]; each tower normalises with its own statistics.
        """
        config = self.config
        layer = config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        dtype = self.vision_tower.dtype
        raw_pixels = pixel_values  # the forensic stream reads them in float32, before any cast
        pixel_values = pixel_values.to(dtype)
        clip_tokens = clip_patch_features(
            self.vision_tower, normalize(pixel_values, config.clip_image_mean, config.clip_image_std), layer)
        dino_tokens, dino_attention = dino_patch_features(
            self.dino_tower, normalize(pixel_values, config.dino_image_mean, config.dino_image_std).to(self.dino_tower.dtype))
        self.sharpening_trace = sharpening_score(raw_pixels) if config.sharpening_evidence_weight else None
        fusion_dtype = self.fusion.q_proj.weight.dtype
        fused, fusion_attention = self.fusion(
            clip_tokens.to(fusion_dtype), dino_tokens.to(fusion_dtype),
            dino_attention if config.fusion_attention_bias else None,
            pixel_values=raw_pixels if self.fusion.forensic is not None else None)
        projected = self.multi_modal_projector(fused.to(self.multi_modal_projector.linear_1.weight.dtype))
        return BaseModelOutputWithPooling(last_hidden_state=fused, pooler_output=list(projected),
                                          attentions=(fusion_attention,))


class ForenXForConditionalGeneration(ForenXPreTrainedModel, LlavaForConditionalGeneration, GenerationMixin):
    """The ForenX model: LLaVA generation over fused CLIP+DINOv2 tokens, plus the P(fake) mapper.

    ``forward(labels=...)`` returns ``loss`` (the weighted sum), ``lm_loss``, ``mapper_loss`` and
    ``prob_fake``. :meth:`predict_proba` gives P(fake) in one forward pass; :meth:`generate_with_proba`
    generates text and returns P(fake) from the first generated step.
    """

    def __init__(self, config: ForenXConfig):
        ForenXPreTrainedModel.__init__(self, config)
        self.model = ForenXModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self._name_trie = (NameTrie(config.name_prefix_ids, config.forensic_name_ids)
                           if config.forensic_name_ids else None)
        self._name_sink: NameEvidenceProcessor | None = None  # set while generate() runs
        self.post_init()

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, labels=None, logits_to_keep=0, **kwargs) -> ForenXCausalLMOutputWithPast:
        if "past_key_values" in kwargs:  # the name generate() and older callers use
            cache = kwargs.pop("past_key_values")
        kwargs.pop("return_dict", None)  # always a dataclass: the extra fields need it
        outputs = super().forward(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                                  position_ids=position_ids, cache=cache, inputs_embeds=inputs_embeds,
                                  labels=None, logits_to_keep=logits_to_keep, return_dict=True, **kwargs)
        result = ForenXCausalLMOutputWithPast(**outputs)
        forensic_logit = self._take_forensic_logit()  # taken on every call: never left for a later batch
        result.forensic_logit = forensic_logit
        members = self._take(ForensicEncoder, "member_logits")  # (B, members) of an ensemble, else None
        result.forensic_member_logits = members
        member_groups = self._take(ForensicEncoder, "member_group_logits")
        evidence = forensic_logit if self.config.forensic_verdict else None
        trace = self.model.sharpening_trace  # taken on every call, like the forensic logit
        self.model.sharpening_trace = None
        result.sharpening_trace = trace
        if trace is not None and self.config.sharpening_evidence_weight:
            trace = self.config.sharpening_evidence_weight * trace
            evidence = trace if evidence is None else evidence + trace.to(evidence.device)
        if self.config.mapper_bias:
            evidence = self.config.mapper_bias if evidence is None else evidence + self.config.mapper_bias
        if (labels is not None or evidence is not None) and (self.config.verdict_token_ids is None
                                                             or self.config.answer_prefix_ids is None):
            raise ValueError("ForenXConfig.verdict_token_ids / answer_prefix_ids are not set; build the model "
                             "with forenx.build_model (it reads them from the tokenizer).")
        if evidence is not None and input_ids is not None:
            self._add_verdict_evidence(result.logits, input_ids, logits_to_keep, evidence)
        name_logits = self._take_name_logits()
        result.name_logits = name_logits
        if name_logits is not None:
            name_logp = name_logits.float().log_softmax(-1)
            if self._name_sink is not None:  # generate(): its logits processor adds the evidence step by step
                self._name_sink.group_logp = name_logp.detach()
            elif input_ids is not None:
                self._name_trie.add_evidence(result.logits, input_ids, name_logp,
                                             lambda t: self._kept(t, logits_to_keep))
        if labels is not None:
            result.lm_loss = self.loss_function(logits=result.logits, labels=labels,
                                                vocab_size=self.config.text_config.vocab_size, **kwargs)
            result.mapper_loss, result.prob_fake = mapper_loss(
                result.logits, labels, self.config.verdict_token_ids, self.config.answer_prefix_ids,
                self.config.mapper_temperature)
            result.loss = result.lm_loss + self.config.mapper_loss_weight * result.mapper_loss
        if labels is not None and forensic_logit is not None:
            result.forensic_loss = torch.stack([
                forensic_loss(logit, labels, self.config.verdict_token_ids, self.config.answer_prefix_ids)
                for logit in each_member(forensic_logit, members, dim=-1)]).mean()
            result.loss = result.loss + self.config.forensic_loss_weight * result.forensic_loss
        if labels is not None and name_logits is not None:
            targets = self._name_trie.targets(labels)
            result.name_loss = torch.stack([NameTrie.loss(logits, targets)
                                            for logits in each_member(name_logits, member_groups)]).mean()
            result.loss = result.loss + self.config.forensic_name_weight * result.name_loss
        return result

    def generate(self, *args, **kwargs):
        """``GenerationMixin.generate``; with ``forensic_names`` a :class:`NameEvidenceProcessor` joins
        the logits processors, so each anomaly name is written with the name head's evidence."""
        if self._name_trie is None or self._name_sink is not None:
            return super().generate(*args, **kwargs)
        sink = NameEvidenceProcessor(self._name_trie)
        kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), sink])
        self._name_sink = sink
        try:
            return super().generate(*args, **kwargs)
        finally:
            self._name_sink = None

    @staticmethod
    def _kept(t: torch.Tensor, logits_to_keep) -> torch.Tensor:
        """The positions of ``t`` ``(B, L)`` the logits were computed for."""
        return slice_logits_to_keep(t[..., None], logits_to_keep)[..., 0]

    def _add_verdict_evidence(self, logits: torch.Tensor, input_ids: torch.Tensor, logits_to_keep,
                              evidence: torch.Tensor | float) -> None:
        """Add ``evidence`` (the forensic logit with ``forensic_verdict``, ``(B,)``, plus the weighted
        unsharp-mask trace with ``sharpening_evidence_weight``, plus ``mapper_bias``)
        to the verdict words' logit difference wherever the input so far ends with the answer prefix
        (the verdict slot in training, the first generated step at inference, every position TRL
        scores), so the written verdict, P(fake) and every loss see the same evidence."""
        ends = prefix_ends(input_ids, self.config.answer_prefix_ids)
        evidence = torch.as_tensor(evidence, device=logits.device)
        if evidence.ndim and evidence.shape[0] != input_ids.shape[0]:
            raise ValueError(f"forensic_verdict: {evidence.shape[0]} images were encoded for "
                             f"{input_ids.shape[0]} sequences; give one image per sequence.")
        evidence = (evidence[:, None] if evidence.ndim else evidence).to(logits.dtype).expand_as(ends)
        add_verdict_evidence(logits, self._kept(ends, logits_to_keep), self.config.verdict_token_ids,
                             self._kept(evidence, logits_to_keep))

    def _take(self, kind: type, attribute: str) -> torch.Tensor | None:
        """``attribute`` of the first module of type ``kind`` in the fusion that holds one (what this
        forward pass computed), cleared so it is never left for a later batch. Searched among the
        fusion's modules, so a PEFT ``modules_to_save`` wrapper (whose active copy ran) is handled too."""
        for module in self.model.fusion.modules():
            value = getattr(module, attribute, None) if isinstance(module, kind) else None
            if value is not None:
                setattr(module, attribute, None)
                return value
        return None

    def _take_forensic_logit(self) -> torch.Tensor | None:
        """The forensic logit the fusion kept in this forward pass (None without the stream or when no
        image was encoded), cleared."""
        return self._take(ForgeryAwareFusion, "forensic_logit") if self.config.forensic_width else None

    def _take_name_logits(self) -> torch.Tensor | None:
        """The anomaly-name head's logits of this forward pass (None without ``forensic_names`` or when
        no image was encoded), cleared."""
        return self._take(ForensicEncoder, "group_logits") if self._name_trie is not None else None

    def prob_fake_from_logits(self, verdict_slot_logits: torch.Tensor) -> torch.Tensor:
        """P(fake) ``(B,)`` from LM logits ``(B, V)`` at the verdict slot (e.g. ``generate``'s first
        step: ``generate(..., output_logits=True, return_dict_in_generate=True).logits[0]`` when the
        prompt ends with the answer prefix)."""
        ids = torch.as_tensor(self.config.verdict_token_ids, device=verdict_slot_logits.device)
        return prob_fake(verdict_slot_logits[:, ids], self.config.mapper_temperature)

    @torch.no_grad()
    def predict_proba(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """P(fake) for a batch in one forward pass, no generation.

        The inputs must end with the answer prefix (left padding), as
        :meth:`ForenXProcessor.verdict_inputs <forenx.modeling.processing.ForenXProcessor.verdict_inputs>`
        builds them: prompt + generation prompt + :data:`forenx.schema.ANSWER_PREFIX`.
        """
        outputs = self(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                       logits_to_keep=1, use_cache=False, **kwargs)
        return self.prob_fake_from_logits(outputs.logits[:, -1])

    @torch.no_grad()
    def generate_with_proba(self, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                            attention_mask: torch.Tensor | None = None, **generate_kwargs):
        """``generate`` plus P(fake): returns ``(sequences, prob_fake)``.

        The prompt must end with the answer prefix (``processor.verdict_inputs``), so the first
        generated token is the verdict and its raw logits give P(fake) whatever the sampling settings.
        The returned sequences include the prompt, as ``generate``'s do.
        """
        generated = self.generate(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                                  output_logits=True, return_dict_in_generate=True, **generate_kwargs)
        return generated.sequences, self.prob_fake_from_logits(generated.logits[0])

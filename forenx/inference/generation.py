"""The fast generation loop of :class:`~forenx.inference.explainer.Explainer`.

``model.generate`` is general; explanation is one narrow case that it leaves speed on the table
for. This loop runs the same forward passes (the model's own image features, language model, KV
cache and ``lm_head``) with three differences:

* a **prefix cache**: the forensic prompt before the image placeholder (system turn and the start
  of the user turn) is identical for every image, so its keys/values are computed once
  (:func:`prefix_cache`) and every batch starts from a copy of them;
* **finished rows leave the batch**: when a row emits an end token its row is dropped from the
  cache and from the next forward pass (``generate`` keeps computing it and pads the output);
* **precomputed image features** can be passed in (``image_outputs``), so the caller keeps the
  fusion attention for its heatmap without running the vision towers twice.

Greedy decoding gives the same tokens as ``model.generate(do_sample=False)`` (tests check it
token for token, on left-padded batches too). P(fake) comes from the raw logits of the first step,
which is the verdict slot when the prompt ends with :data:`forenx.schema.ANSWER_PREFIX`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, LogitsProcessorList
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from forenx.modeling.names import NameEvidenceProcessor

__all__ = ["GeneratedAnswers", "PrefixCache", "generate_answers", "prefix_cache"]


@dataclass
class PrefixCache:
    """Keys/values of a prompt prefix shared by every row, computed once (batch 1)."""

    input_ids: torch.Tensor  #: ``(P,)`` the prefix tokens
    layers: list[tuple[torch.Tensor, torch.Tensor]]  #: per layer ``(1, heads, P, head_dim)`` keys and values

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def expand(self, batch_size: int, config) -> DynamicCache:
        """A fresh cache for ``batch_size`` rows starting from the prefix. The prefix tensors are
        only read: the cache grows by concatenation, which allocates new tensors."""
        return DynamicCache([(k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1))
                             for k, v in self.layers], config=config)


@dataclass
class GeneratedAnswers:
    """What :func:`generate_answers` returns, one entry per input row (in input order)."""

    #: Generated token ids per row (the prompt excluded), ending with the end token when one came.
    tokens: list[list[int]]
    #: Raw LM logits of the first generated step ``(B, V)`` (the verdict slot).
    first_logits: torch.Tensor
    #: How many forward passes the decode loop ran and how many rows they computed in total.
    forward_passes: int = 0
    rows_computed: int = 0


def _language_model(model):
    decoder = getattr(getattr(model, "model", None), "language_model", None)
    if decoder is None or getattr(model, "lm_head", None) is None:
        raise TypeError(f"{type(model).__name__} is not a LLaVA-style model (model.model.language_model + "
                        "lm_head); the fast loop cannot drive it. Use model.generate instead.")
    return decoder


@torch.no_grad()
def prefix_cache(model, prefix_ids: torch.Tensor) -> PrefixCache:
    """Run the language model once over ``prefix_ids`` ``(P,)`` (text only, before any image token)."""
    assert prefix_ids.ndim == 1 and len(prefix_ids) > 0
    assert not (prefix_ids == model.config.image_token_id).any(), "the prefix must end before the image"
    decoder = _language_model(model)
    cache = DynamicCache(config=model.config.text_config)
    decoder(input_ids=prefix_ids[None].to(model.device), cache=cache, use_cache=True)
    return PrefixCache(prefix_ids.cpu(), [(layer.keys, layer.values) for layer in cache.layers])


def _warpers(temperature: float, top_k: int | None, top_p: float | None) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


@torch.no_grad()
def generate_answers(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                     pixel_values: torch.Tensor | None = None, image_outputs=None,
                     prefix: PrefixCache | None = None, max_new_tokens: int = 256,
                     eos_token_id: int | Sequence[int] | None = None, do_sample: bool = False,
                     temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                     generator: torch.Generator | None = None,
                     logits_processor: LogitsProcessorList | None = None) -> GeneratedAnswers:
    """Generate continuations of ``input_ids`` ``(B, L)`` (left padded when ``attention_mask`` has
    zeros), like ``model.generate``, dropping each row from the batch once it has ended.

    ``image_outputs`` is the output of ``model.get_image_features`` for the batch (or give
    ``pixel_values``). ``prefix`` is a :func:`prefix_cache` of the first ``P`` tokens, which every
    row must share (no padding there). ``eos_token_id`` defaults to the generation config's.
    ``logits_processor`` (e.g. transformers' ``LogitsProcessorList``) sees the full sequences of the
    rows still running, as in ``generate``. A model with an anomaly-name head (``forensic_names``)
    gets its :class:`~forenx.modeling.names.NameEvidenceProcessor`, as its own ``generate`` adds it.
    """
    device = model.device
    decoder = _language_model(model)
    input_ids = input_ids.to(device)
    batch, length = input_ids.shape
    if attention_mask is not None:
        attention_mask = attention_mask.to(device)
        if bool(attention_mask.all()):
            attention_mask = None  # as generate does: no padding, so no mask (SDPA's causal path)
    if eos_token_id is None:
        eos_token_id = model.generation_config.eos_token_id
    eos_ids = torch.as_tensor([] if eos_token_id is None else
                              ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)),
                              dtype=torch.long, device=device)
    warpers = _warpers(temperature, top_k, top_p) if do_sample else LogitsProcessorList()

    # Positions as generate computes them for left padding.
    if attention_mask is None:
        positions = torch.arange(length, device=device).expand(batch, -1)
    else:
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)

    start = 0
    if prefix is not None:
        start = len(prefix)
        if attention_mask is not None and not bool(attention_mask[:, :start].all()):
            raise ValueError("a prefix cache needs the prefix unpadded in every row; pad on the right of the "
                             "prefix or run without it")
        if not torch.equal(input_ids[:, :start].cpu(), prefix.input_ids.expand(batch, -1)):
            raise ValueError("the inputs do not start with the cached prefix; the prompt changed since it was cached")
        cache = prefix.expand(batch, model.config.text_config)
    else:
        cache = DynamicCache(config=model.config.text_config)

    encoder_outputs = None
    if image_outputs is not None:
        encoder_outputs = {"image": image_outputs}
    forenx = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a PEFT wrapper
    names = None
    if getattr(forenx, "_name_trie", None) is not None:
        names = NameEvidenceProcessor(forenx._name_trie)
        logits_processor = LogitsProcessorList([*(logits_processor or []), names])
        forenx._name_sink = names  # the first forward hands the name head's posterior to it
    try:
        outputs = model(input_ids=input_ids[:, start:], attention_mask=attention_mask,
                        position_ids=positions[:, start:], cache=cache, use_cache=True, logits_to_keep=1,
                        pixel_values=pixel_values if image_outputs is None else None,
                        mm_encoder_outputs=encoder_outputs)
    finally:
        if names is not None:
            forenx._name_sink = None
    logits = outputs.logits[:, -1].float()
    first_logits = logits.clone()

    rows = torch.arange(batch, device=device)  # input row of each running row
    tokens: list[list[int]] = [[] for _ in range(batch)]
    sequences = input_ids
    next_position = positions[:, -1:] + 1
    passes, computed = 1, batch
    for step in range(max_new_tokens):
        scores = logits
        if logits_processor:
            scores = logits_processor(sequences, scores)
        if do_sample:
            probs = warpers(sequences, scores).softmax(-1)
            next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            next_tokens = scores.argmax(-1)
        for row, token in zip(rows.tolist(), next_tokens.tolist()):
            tokens[row].append(token)
        if step == max_new_tokens - 1:
            break
        running = ~torch.isin(next_tokens, eos_ids)
        if not bool(running.all()):
            if not bool(running.any()):
                break
            keep = running.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, next_tokens, next_position = rows[keep], next_tokens[keep], next_position[keep]
            sequences = sequences[keep]
            if names is not None and names.group_logp is not None:
                names.group_logp = names.group_logp[keep]
            if attention_mask is not None:
                attention_mask = attention_mask[keep]
        if logits_processor:
            sequences = torch.cat([sequences, next_tokens[:, None]], dim=-1)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(rows), 1)], dim=-1)
        hidden = decoder(input_ids=next_tokens[:, None], attention_mask=attention_mask, position_ids=next_position,
                         cache=cache, use_cache=True).last_hidden_state
        logits = model.lm_head(hidden[:, -1]).float()
        next_position = next_position + 1
        passes, computed = passes + 1, computed + len(rows)
    return GeneratedAnswers(tokens, first_logits, passes, computed)

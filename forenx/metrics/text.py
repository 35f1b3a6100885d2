"""Text metrics for FakeClue / MMFR parity: ROUGE-L F (stemmed), BLEU-1, and CSS.

- ROUGE-L F-measure with Porter stemming (the ``rouge-score`` package), averaged over pairs.
- BLEU-1 on whitespace tokens: clipped unigram precision times the brevity penalty, per pair, averaged.
- CSS (FakeReasoning's eval): cosine of the L2-normalised CLIP text embeddings of the prediction and
  the reference, with a CLIP text encoder given by path (CLIP truncates at 77 tokens).

>>> round(bleu1("the cat sat on the mat", "the cat is on the mat"), 4)
0.8333
>>> round(rouge_l("The cats are sitting", "the cat sat"), 4)
0.5714
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forenx.metrics.scorers import EmbeddingCache

__all__ = ["CLIPTextSimilarity", "bleu1", "rouge_l", "text_metrics"]

_ROUGE = None


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure with stemming."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(_ROUGE.score(reference, prediction)["rougeL"].fmeasure)


def bleu1(prediction: str, reference: str) -> float:
    """Sentence BLEU-1 on whitespace tokens (0 for an empty prediction)."""
    hyp, ref = prediction.split(), reference.split()
    if not hyp:
        return 0.0
    ref_counts = Counter(ref)
    clipped = sum(min(n, ref_counts[w]) for w, n in Counter(hyp).items())
    precision = clipped / len(hyp)
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp)) if ref else 0.0
    return precision * brevity


class CLIPTextSimilarity:
    """CSS: cosine of L2-normalised CLIP text embeddings (text_embeds), cached per distinct text.

    ``encoder`` is a folder with a CLIP text model (a CLIPTextModelWithProjection or a whole CLIPModel
    checkpoint) and its tokenizer, or a ``(model, tokenizer)`` pair.
    """

    def __init__(self, encoder: Any, *, batch_size: int = 64, max_length: int = 77,
                 max_cache_entries: int | None = 200_000):
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        if isinstance(encoder, (tuple, list)):
            self.model, self.tokenizer = encoder
        else:
            path = Path(encoder)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = CLIPTextModelWithProjection.from_pretrained(path)
        self.model.eval()
        self.batch_size = batch_size
        self.max_length = min(max_length, self.model.config.max_position_embeddings)
        self._cache = EmbeddingCache(max_cache_entries)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        missing = self._cache.missing(texts)
        with torch.inference_mode():
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                       return_tensors="pt")
                emb = self.model(**batch).text_embeds.float()
                emb = emb / emb.norm(dim=-1, keepdim=True)
                for text, vector in zip(chunk, emb.numpy()):
                    self._cache[text] = vector
        if not texts:
            return np.zeros((0, 0), np.float32)
        return self._cache.stack(texts)

    def __call__(self, predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        if not predictions:
            return np.zeros(0, np.float32)
        return np.einsum("ij,ij->i", self.embed(list(predictions)), self.embed(list(references))).astype(np.float32)


def text_metrics(predictions: Sequence[str], references: Sequence[str], *,
                 clip_encoder: Any | None = None) -> dict[str, Any]:
    """Mean ROUGE-L F, BLEU-1 and (with ``clip_encoder``) CSS over paired texts, 4 decimals."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    n = len(predictions)
    out: dict[str, Any] = {
        "n": n,
        "rouge_l": round(float(np.mean([rouge_l(p, r) for p, r in zip(predictions, references)])), 4) if n else 0.0,
        "bleu1": round(float(np.mean([bleu1(p, r) for p, r in zip(predictions, references)])), 4) if n else 0.0,
    }
    if clip_encoder is not None:
        css = clip_encoder if isinstance(clip_encoder, CLIPTextSimilarity) else CLIPTextSimilarity(clip_encoder)
        out["css"] = round(float(np.mean(css(predictions, references))), 4) if n else 0.0
    return out

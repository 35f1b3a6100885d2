"""SemAP / SemF1 computed the straightforward way: one pair at a time, nothing cached.

This is the baseline of bench/metrics.py and an independent reading of shared/METRICS.md (written
from the text, not from forenx.metrics): for every image, every prediction and every ground truth,
both texts are encoded afresh and compared; the greedy matching scans the whole matrix with nested
loops; thresholds, per-image means and the macro mean follow. It is slow on purpose, and must give
the same numbers as forenx.metrics.semantic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

Similarity = Callable[[str, str], np.float32]


def texts(anomaly: Mapping[str, object]) -> tuple[str, str]:
    def get(*keys: str) -> str:
        for key in keys:
            if anomaly.get(key) is not None:
                return str(anomaly[key]).strip()
        return ""
    return get("Observed Phenomenon", "phenomenon"), get("Reasoning", "reasoning")


class PerPairBERTScore:
    """BERTScore F1 of one pair: encode each text alone, greedy-match its token vectors."""

    def __init__(self, model, tokenizer, layer: int, max_length: int = 512):
        self.model, self.tokenizer, self.layer, self.max_length = model.eval(), tokenizer, layer, max_length
        self.special = {tokenizer.cls_token_id, tokenizer.sep_token_id}

    def _tokens(self, text: str):
        ids = self.tokenizer(text.strip(), add_special_tokens=True, truncation=True,
                             max_length=self.max_length)["input_ids"]
        with torch.inference_mode():
            states = self.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[self.layer][0]
        states = states.float()
        vectors = states / states.norm(dim=-1, keepdim=True)
        weights = torch.tensor([0.0 if i in self.special else 1.0 for i in ids])
        return vectors, weights

    def __call__(self, candidate: str, reference: str) -> np.float32:
        c, cw = self._tokens(candidate)
        r, rw = self._tokens(reference)
        if cw.sum() == 0 or rw.sum() == 0:
            return np.float32(0.0)
        sim = c @ r.T
        precision = (sim.max(dim=1).values * (cw / cw.sum())).sum()
        recall = (sim.max(dim=0).values * (rw / rw.sum())).sum()
        if float(precision + recall) == 0.0:
            return np.float32(0.0)
        return np.float32((2 * precision * recall / (precision + recall)).item())


class PerPairSentenceCosine:
    """Cosine of two sentence embeddings, each text encoded alone."""

    def __init__(self, model):
        self.model = model

    def __call__(self, candidate: str, reference: str) -> np.float32:
        a = self.model.encode([candidate], convert_to_numpy=True, normalize_embeddings=True)[0]
        b = self.model.encode([reference], convert_to_numpy=True, normalize_embeddings=True)[0]
        return np.float32(np.dot(a.astype(np.float32), b.astype(np.float32)))


def match(matrix: np.ndarray) -> list[tuple[int, int, float]]:
    used_p: set[int] = set()
    used_g: set[int] = set()
    pairs = []
    m, n = matrix.shape
    while len(used_p) < m and len(used_g) < n:
        best, bi, bj = -1.0, -1, -1
        for i in range(m):
            if i in used_p:
                continue
            for j in range(n):
                if j not in used_g and float(matrix[i, j]) > best:
                    best, bi, bj = float(matrix[i, j]), i, j
        if best <= 0.0:
            break
        used_p.add(bi)
        used_g.add(bj)
        pairs.append((bi, bj, best))
    return pairs


def semap_per_pair(predictions: Mapping[str, Sequence[Mapping]], ground_truth: Mapping[str, Sequence[Mapping]],
                   similarity: Similarity, *, alpha: float = 0.5,
                   thresholds: Sequence[float] = (0.7, 0.8, 0.9), official_image_set: bool = False) -> dict:
    preds = {Path(k).name: v or [] for k, v in predictions.items()}
    gts = {Path(k).name: v or [] for k, v in ground_truth.items()}
    images = sorted(set(preds) & set(gts)) if official_image_set else sorted(gts)
    per_image = {}
    for image in images:
        p, g = preds.get(image, []), gts[image]
        matrix = np.zeros((len(p), len(g)), dtype=np.float32)
        for i, pa in enumerate(p):
            for j, ga in enumerate(g):
                (pp, pr), (gp, gr) = texts(pa), texts(ga)
                fused = np.float32(alpha) * similarity(pp, gp) + np.float32(1.0 - alpha) * similarity(pr, gr)
                matrix[i, j] = np.clip(np.float32(fused), np.float32(0), np.float32(1))
        pairs = match(matrix) if len(p) and len(g) else []
        precisions, f1s = [], []
        for t in thresholds:
            tp = sum(1 for _, _, s in pairs if s >= t)
            fp, fn = len(p) - tp, len(g) - tp
            prec = tp / (tp + fp) if tp + fp else 0.0
            rec = tp / (tp + fn) if tp + fn else 0.0
            precisions.append(prec)
            f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
        per_image[image] = (float(np.mean(precisions)), float(np.mean(f1s)), pairs)
    return {"SemAP": float(np.mean([v[0] for v in per_image.values()])),
            "SemF1": float(np.mean([v[1] for v in per_image.values()])), "per_image": per_image}

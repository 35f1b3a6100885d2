"""Evaluation metrics.

- :mod:`forenx.metrics.semantic`: SemAP / SemF1 / CSemAP / CSemF1 of anomaly explanations, exactly as
  shared/METRICS.md (the AnomReason evaluator) defines them.
- :mod:`forenx.metrics.scorers`: the pluggable text similarity — BERTScore F1 on any local encoder,
  sentence-embedding cosine (all-MiniLM-L6-v2, offline).
- :mod:`forenx.metrics.detection`: accuracy (real / fake / overall), AUC, AP, F1, ECE, temperature.
- :mod:`forenx.metrics.text`: ROUGE-L, BLEU-1, CSS (FakeClue / MMFR parity).
- :mod:`forenx.metrics.io`: reading predictions and ground truth (ForenX JSONL, AnomReason JSON).

Submodules import torch / transformers only inside the functions that need them.
"""

from forenx.metrics.detection import (
    apply_temperature,
    detection_metrics,
    expected_calibration_error,
    fit_platt,
    fit_platt_evidence,
    fit_temperature,
)
from forenx.metrics.io import ExplanationSet, MetricsInputError, check_image_sets, load_explanations
from forenx.metrics.scorers import BERTScoreScorer, SentenceScorer, TextScorer, build_scorer
from forenx.metrics.semantic import (
    ALPHA_VIEWS,
    DEFAULT_THRESHOLDS,
    greedy_match,
    image_semantic_scores,
    semantic_markdown,
    semantic_scores,
)
from forenx.metrics.text import CLIPTextSimilarity, bleu1, rouge_l, text_metrics

__all__ = [
    "ALPHA_VIEWS",
    "DEFAULT_THRESHOLDS",
    "BERTScoreScorer",
    "CLIPTextSimilarity",
    "ExplanationSet",
    "MetricsInputError",
    "SentenceScorer",
    "TextScorer",
    "apply_temperature",
    "bleu1",
    "build_scorer",
    "check_image_sets",
    "detection_metrics",
    "expected_calibration_error",
    "fit_platt",
    "fit_platt_evidence",
    "fit_temperature",
    "greedy_match",
    "image_semantic_scores",
    "load_explanations",
    "rouge_l",
    "semantic_markdown",
    "semantic_scores",
    "text_metrics",
]

"""GRPO rewards for forensic answers: TRL-style callables ``(completions, **kwargs) -> list[float | None]``.

GRPO prompts end with :data:`forenx.schema.ANSWER_PREFIX` (``{"verdict": "``), exactly as the
explainer forces it, so a completion starts AT the verdict word: ``fake", "anomalies": [...], ...}``.
Every reward reads ``ANSWER_PREFIX + completion`` (:func:`full_answer`) and parses it with
:func:`forenx.schema.parse_answer`, the one parser of model text. Completions may be plain strings
or conversational (``[{"role": "assistant", "content": ...}]``), as TRL passes them.

Dataset columns arrive as keyword arguments (TRL passes every column of the batch): ``label``
(``real`` / ``fake``; anything else gives ``None``, which TRL skips) and ``quadruples`` (the
reference anomalies, record rows of :func:`forenx.data.io.records_to_dataset`).

==============  =========================================================================================
reward          value
==============  =========================================================================================
format          1 when ``ANSWER_PREFIX + completion`` is exactly one JSON object in the answer format
                (keys as written by :func:`~forenx.schema.render_answer`, verdict real/fake, every anomaly
                with four non-empty fields, integer severity 0..100, string summary), nothing after it;
                else 0. A truncated completion cannot close the object and scores 0.
verdict         1 when the parsed verdict equals the label, else 0 (an unreadable answer is wrong).
explanation     SemF1 (shared/METRICS.md) of the predicted anomalies against the reference quadruples,
                with a sentence-embedding scorer (each distinct text embedded once, cached across steps)
                and thresholds of its own scale. Real image: 1 for no anomalies, 0 for any.
severity        mean of ``1 - |predicted - reference| / 100`` over the anomalies matched one-to-one (pair
                score >= the lowest threshold); 0 with no match; ``None`` for real images.
calibration     ``1 - (P(fake) - y)^2`` (one minus the Brier score) of the probability mapper; needs a
                ``prob_fake`` column (see :func:`calibration_reward` for why GRPO gives it no gradient).
==============  =========================================================================================

Duplicates earn nothing: matching is one-to-one (greedy, as the metric), so 50 copies of one right
anomaly match one reference and the other 49 are false positives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from forenx.metrics.semantic import (
    anomaly_texts,
    fuse_scores,
    greedy_match,
    pair_similarities,
    threshold_scores,
)
from forenx.schema import ANSWER_PREFIX, SEVERITY_MAX, SEVERITY_MIN, ForensicReport, Verdict, parse_answer

__all__ = [
    "REWARD_FUNCTIONS",
    "SENTENCE_THRESHOLDS",
    "calibration_reward",
    "completion_text",
    "explanation_reward",
    "format_reward",
    "full_answer",
    "is_valid_answer",
    "severity_reward",
    "verdict_reward",
]

#: SemF1 thresholds for sentence-embedding cosine (all-MiniLM-L6-v2). Its cosines of paraphrases sit
#: lower than BERTScore F1 (0.7/0.8/0.9 is BERTScore's scale), so the reward uses its own thresholds.
SENTENCE_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7)

_ANSWER_KEYS = ("verdict", "anomalies", "summary")
_ANOMALY_KEYS = ("name", "phenomenon", "reasoning", "severity")


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or TRL's conversational ``[{"role", "content"}]``.

    >>> completion_text([{"role": "assistant", "content": 'real", "anomalies": []}'}])
    'real", "anomalies": []}'
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "fake"}]}])
    'fake'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, Sequence):
        parts: list[str] = []
        for message in completion:
            content = message.get("content") if isinstance(message, Mapping) else message
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, Sequence):
                parts += [block.get("text", "") for block in content
                          if isinstance(block, Mapping) and block.get("type") == "text"]
        return "".join(parts)
    return "" if completion is None else str(completion)


def full_answer(completion: Any) -> str:
    """The whole answer: :data:`~forenx.schema.ANSWER_PREFIX` (the end of every GRPO prompt) + completion.

    >>> full_answer('fake", "anomalies": [], "summary": ""}')
    '{"verdict": "fake", "anomalies": [], "summary": ""}'
    """
    return ANSWER_PREFIX + completion_text(completion)


def _parse_all(completions: Sequence[Any]) -> list[ForensicReport]:
    return [parse_answer(full_answer(c)) for c in completions]


def _label(value: Any) -> Verdict | None:
    return Verdict.coerce(value) if value is not None else None


def _column(kwargs: Mapping[str, Any], name: str, n: int, reward: str) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        raise KeyError(f"the {reward} reward needs the dataset column {name!r} (passed by the trainer as a keyword "
                       f"argument); the dataset has none")
    if len(values) != n:
        raise ValueError(f"{reward} reward: {n} completions but {len(values)} values of {name!r}")
    return list(values)


def is_valid_answer(text: str) -> bool:
    """True when ``text`` is exactly one answer object in the format of :func:`forenx.schema.render_answer`.

    Stricter than :func:`~forenx.schema.parse_answer` (which is lenient so that evaluation can read
    anything): no code fences, no text around the object, keys spelled as rendered, every field
    present and non-empty, severity an integer in 0..100.

    >>> is_valid_answer('{"verdict": "real", "anomalies": [], "summary": "Clean."}')
    True
    >>> is_valid_answer('{"Verdict": "real", "anomalies": [], "summary": "Clean."}')
    False
    """
    try:
        obj = json.loads(text)  # the whole text, so trailing or leading text fails
    except (json.JSONDecodeError, RecursionError):
        return False
    if not isinstance(obj, dict) or set(obj) != set(_ANSWER_KEYS):
        return False
    if obj["verdict"] not in (Verdict.REAL.value, Verdict.FAKE.value) or not isinstance(obj["summary"], str):
        return False
    anomalies = obj["anomalies"]
    if not isinstance(anomalies, list):
        return False
    for anomaly in anomalies:
        if not isinstance(anomaly, dict) or set(anomaly) != set(_ANOMALY_KEYS):
            return False
        if not all(isinstance(anomaly[k], str) and anomaly[k].strip() for k in _ANOMALY_KEYS[:3]):
            return False
        severity = anomaly["severity"]
        if isinstance(severity, bool) or not isinstance(severity, int) or not SEVERITY_MIN <= severity <= SEVERITY_MAX:
            return False
    return True


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 for a completion that makes a valid answer (:func:`is_valid_answer` of
    :func:`full_answer`), else 0.0. Truncated completions cannot close the object and score 0.

    >>> format_reward(['fake", "anomalies": [{"name": "Seam", "phenomenon": "A hard edge", '
    ...                '"reasoning": "Splices leave edges", "severity": 70}], "summary": "Spliced."}',
    ...                'fake", "anomalies": [{"name": "Seam", "phen',
    ...                [{"role": "assistant", "content": 'real", "anomalies": [], "summary": "ok"}'}]])
    [1.0, 0.0, 1.0]
    """
    return [1.0 if is_valid_answer(full_answer(c)) else 0.0 for c in completions]


def verdict_reward(completions: list[Any], label: list[str], **kwargs: Any) -> list[float | None]:
    """1.0 when the answer's verdict equals the record's ``label``, 0.0 otherwise (unreadable
    answers included); ``None`` (skipped by TRL) where the label is neither real nor fake.

    >>> verdict_reward(['fake", "anomalies": []}', 'real", "anomalies": []}', 'maybe'], ["fake", "fake", "fake"])
    [1.0, 0.0, 0.0]
    """
    labels = _column({"label": label}, "label", len(completions), "verdict")
    out: list[float | None] = []
    for report, value in zip(_parse_all(completions), labels):
        truth = _label(value)
        out.append(None if truth is None else float(report.verdict is truth))
    return out


# --- explanation and severity: matched anomalies -------------------------------------------------------------


@lru_cache(maxsize=1)
def _default_scorer():
    from forenx.metrics.scorers import SentenceScorer

    return SentenceScorer()


def _matches(reports: Sequence[ForensicReport], references: Sequence[Sequence[Any]], scorer: Any,
             alpha: float) -> list[tuple[list[tuple[int, int, float]], int, int]]:
    """For each completion: greedy one-to-one matches ``(pred, ref, score)``, #predictions, #references.

    ONE ``score_pairs`` call for the whole batch: the scorer embeds each distinct text once (and
    caches it across calls), so a batch of many completions costs one encoder pass over new texts.
    """
    preds = [[anomaly_texts(q) for q in report.anomalies] for report in reports]
    refs = [[anomaly_texts(q) for q in (reference or [])] for reference in references]
    out = []
    for (phenomenon, reasoning), p, r in zip(pair_similarities(preds, refs, scorer), preds, refs):
        pairs = greedy_match(fuse_scores(phenomenon, reasoning, alpha)) if p and r else []
        out.append((pairs, len(p), len(r)))
    return out


def _reference_severity(reference: Any) -> int:
    value = reference.severity if hasattr(reference, "severity") else reference.get("severity")
    value = 50 if value is None else int(value)
    return min(max(value, SEVERITY_MIN), SEVERITY_MAX)


def _split(completions: list[Any], label: list[Any], quadruples: list[Any], reward: str):
    labels = _column({"label": label}, "label", len(completions), reward)
    references = _column({"quadruples": quadruples}, "quadruples", len(completions), reward)
    return _parse_all(completions), labels, references


def explanation_reward(completions: list[Any], label: list[str], quadruples: list[Any], scorer: Any = None,
                       alpha: float = 0.5, thresholds: Sequence[float] = SENTENCE_THRESHOLDS,
                       **kwargs: Any) -> list[float | None]:
    """SemF1 of each completion's anomalies against the reference ``quadruples``; for real images
    1.0 when no anomaly is reported and 0.0 otherwise; 0.0 for unreadable answers; ``None`` for
    unlabelled records.

    ``scorer`` (any :class:`forenx.metrics.scorers.TextScorer`) defaults to the offline
    all-MiniLM-L6-v2 :class:`~forenx.metrics.scorers.SentenceScorer`, loaded on first use and kept;
    ``alpha`` weighs phenomenon against reasoning; ``thresholds`` are on the scorer's scale.
    Bind them with ``functools.partial`` (as :mod:`forenx.training.grpo` does).

    >>> class Exact:  # a toy scorer: 1 for identical texts, else 0
    ...     def score_pairs(self, c, r): return np.array([float(x == y) for x, y in zip(c, r)], np.float32)
    >>> seam = {"name": "Seam", "phenomenon": "hard edge", "reasoning": "splice", "severity": 70}
    >>> good = 'fake", "anomalies": [' + json.dumps(seam) + '], "summary": "s"}'
    >>> copies = 'fake", "anomalies": [' + ", ".join([json.dumps(seam)] * 3) + '], "summary": "s"}'
    >>> explanation_reward([good, copies, 'real", "anomalies": []}'], ["fake", "fake", "real"],
    ...                    [[seam], [seam], []], scorer=Exact())
    [1.0, 0.5, 1.0]
    """
    thresholds = tuple(float(t) for t in thresholds)
    reports, labels, references = _split(completions, label, quadruples, "explanation")
    rewards: list[float | None] = [None] * len(completions)
    scored = []
    for k, (report, value, reference) in enumerate(zip(reports, labels, references)):
        truth = _label(value)
        if truth is None:
            continue
        if report.verdict is None:  # an unreadable answer explains nothing
            rewards[k] = 0.0
        elif truth is Verdict.REAL or not reference:
            # Nothing to find: reporting nothing is right, any invented anomaly is wrong.
            rewards[k] = 0.0 if report.anomalies else 1.0
        else:
            scored.append(k)
    if scored:
        active = scorer if scorer is not None else _default_scorer()
        results = _matches([reports[k] for k in scored], [references[k] for k in scored], active, alpha)
        for k, (pairs, m, n) in zip(scored, results):
            rewards[k] = threshold_scores([s for _, _, s in pairs], m, n, thresholds)["SemF1"]
    return rewards


def severity_reward(completions: list[Any], label: list[str], quadruples: list[Any], scorer: Any = None,
                    alpha: float = 0.5, thresholds: Sequence[float] = SENTENCE_THRESHOLDS,
                    **kwargs: Any) -> list[float | None]:
    """Mean ``1 - |predicted - reference| / 100`` over the anomalies matched one-to-one to the
    reference ``quadruples`` (matched as in :func:`explanation_reward`, pair score >= the lowest
    threshold); 0.0 without a match or for an unreadable answer; ``None`` for real images (there is
    no severity to agree with; the explanation reward judges them).

    >>> class Exact:
    ...     def score_pairs(self, c, r): return np.array([float(x == y) for x, y in zip(c, r)], np.float32)
    >>> seam = {"name": "Seam", "phenomenon": "hard edge", "reasoning": "splice", "severity": 70}
    >>> said = 'fake", "anomalies": [' + json.dumps({**seam, "severity": 40}) + '], "summary": "s"}'
    >>> severity_reward([said, 'real", "anomalies": []}'], ["fake", "real"], [[seam], []], scorer=Exact())
    [0.7, None]
    """
    floor = min(float(t) for t in thresholds)
    reports, labels, references = _split(completions, label, quadruples, "severity")
    rewards: list[float | None] = [None] * len(completions)
    scored = []
    for k, (report, value, reference) in enumerate(zip(reports, labels, references)):
        if _label(value) is not Verdict.FAKE or not reference:
            continue
        if report.verdict is None or not report.anomalies:
            rewards[k] = 0.0
        else:
            scored.append(k)
    if scored:
        active = scorer if scorer is not None else _default_scorer()
        results = _matches([reports[k] for k in scored], [references[k] for k in scored], active, alpha)
        for k, (pairs, _, _) in zip(scored, results):
            agreement = [1.0 - abs(reports[k].anomalies[i].severity - _reference_severity(references[k][j]))
                         / (SEVERITY_MAX - SEVERITY_MIN)
                         for i, j, score in pairs if score >= floor]  # parse_answer clamps to 0..100
            rewards[k] = float(np.mean(agreement)) if agreement else 0.0
    return rewards


def calibration_reward(completions: list[Any], label: list[str], prob_fake: list[float] | None = None,
                       **kwargs: Any) -> list[float | None]:
    """One minus the Brier score of the probability mapper: ``1 - (P(fake) - y)^2``, y = 1 for fake.

    ``prob_fake`` holds the mapper's P(fake) for each completion's prompt (``None`` / nan entries
    give ``None``). Why it gives GRPO no gradient: every GRPO prompt ends with the answer prefix,
    so P(fake) at the verdict slot depends on the prompt only and is the SAME for all completions
    of a group; the group-relative advantage of a constant is zero. :class:`forenx.training.grpo.ForenXGRPOTrainer`
    therefore computes ``prob_fake`` (one forward pass per prompt) only when this reward is
    configured, and it serves as a logged calibration metric; the mapper is trained by the SFT
    mapper loss.

    >>> calibration_reward(["x", "y", "z"], ["fake", "real", "fake"], prob_fake=[0.9, 0.9, None])
    [0.99, 0.18999999999999995, None]
    """
    labels = _column({"label": label}, "label", len(completions), "calibration")
    probs = _column({"prob_fake": prob_fake}, "prob_fake", len(completions), "calibration")
    out: list[float | None] = []
    for value, p in zip(labels, probs):
        truth = _label(value)
        if truth is None or p is None or (isinstance(p, float) and math.isnan(p)):
            out.append(None)
        else:
            out.append(1.0 - (float(p) - float(truth is Verdict.FAKE)) ** 2)
    return out


#: Reward names accepted in the GRPO config (``reward_funcs``), in their usual order.
REWARD_FUNCTIONS: tuple[str, ...] = ("format", "verdict", "explanation", "severity", "calibration")

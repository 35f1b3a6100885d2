"""SemAP / SemF1 / CSemAP / CSemF1 of anomaly explanations, exactly as shared/METRICS.md defines them.

For one image with M predicted and N ground-truth anomalies the pair score is::

    S_ij = clip(a * sim(pred_i.phenomenon, gt_j.phenomenon) + (1 - a) * sim(pred_i.reasoning, gt_j.reasoning), 0, 1)

with ``sim`` a pluggable :mod:`forenx.metrics.scorers` scorer (BERTScore F1 reproduces the
AnomReason evaluator). Greedy one-to-one matching runs once per image before any threshold; for each
threshold t a matched pair with S >= t is a true positive; P_t, F1_t are averaged over the thresholds
per image, then over images (macro). Everything is float32 where the original is (the pair scores,
the fusion, the clip) and float64 for the averages, as in the original.

Image sets: by default every ground-truth image is scored and a missing prediction counts as an
empty list (score 0); ``official_image_set=True`` reproduces the AnomReason tool, which scores only
the images present in both files. The result says which rule was used.

>>> from forenx.schema import Quadruple
>>> same = {"a.jpg": [Quadruple("n", "hand has six fingers", "hands have five fingers")]}
>>> class Exact:  # a toy scorer: 1 for identical texts, else 0
...     name = "exact"
...     def score_pairs(self, c, r): return np.array([float(x == y) for x, y in zip(c, r)], np.float32)
...     def describe(self): return {"scorer": "exact"}
>>> result = semantic_scores(same, same, Exact())
>>> result["views"]["Full"]["SemAP"], result["views"]["Full"]["SemF1"], result["image_set"]
(1.0, 1.0, 'strict')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from forenx.schema import Quadruple, Verdict

__all__ = [
    "ALPHA_VIEWS",
    "DEFAULT_THRESHOLDS",
    "anomaly_texts",
    "fuse_scores",
    "greedy_match",
    "image_key",
    "image_semantic_scores",
    "semantic_markdown",
    "semantic_scores",
    "threshold_scores",
]

#: The three views of the metric: phenomenon only, reasoning only, and both (the default).
ALPHA_VIEWS: dict[str, float] = {"Phe": 1.0, "Rea": 0.0, "Full": 0.5}
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.7, 0.8, 0.9)


def image_key(image_id: Any) -> str:
    """Image ids are compared by file basename (either path separator).

    >>> image_key("data/images/x_sdv35.jpg"), image_key("C:\\\\imgs\\\\y.png"), image_key("z.jpg")
    ('x_sdv35.jpg', 'y.png', 'z.jpg')
    """
    text = str(image_id).strip()
    return PureWindowsPath(PurePosixPath(text).name).name


def anomaly_texts(anomaly: Quadruple | Mapping[str, Any]) -> tuple[str, str]:
    """(phenomenon, reasoning) of one anomaly, stripped; a missing field is "".

    Accepts a :class:`Quadruple`, AnomReason keys ("Observed Phenomenon", "Reasoning") or ForenX
    keys ("phenomenon", "reasoning").

    >>> anomaly_texts({"Observed Phenomenon": " six fingers ", "Name": "hand"})
    ('six fingers', '')
    """
    if isinstance(anomaly, Quadruple):
        return anomaly.phenomenon.strip(), anomaly.reasoning.strip()
    if not isinstance(anomaly, Mapping):
        raise TypeError(f"an anomaly must be a Quadruple or a mapping, got {type(anomaly).__name__}")

    def text(*keys: str) -> str:
        for key in keys:
            if key in anomaly and anomaly[key] is not None:
                return str(anomaly[key]).strip()
        return ""

    return text("Observed Phenomenon", "phenomenon"), text("Reasoning", "reasoning")


def fuse_scores(phenomenon: np.ndarray, reasoning: np.ndarray, alpha: float) -> np.ndarray:
    """clip(a * phe + (1 - a) * rea, 0, 1) in float32, as the original computes it.

    The float32 rounding matters at a threshold: this pair counts as a match at t = 0.7.

    >>> fuse_scores(np.array([0.8], np.float32), np.array([0.6], np.float32), 0.5)
    array([0.70000005], dtype=float32)
    """
    phe = np.asarray(phenomenon, dtype=np.float32)
    rea = np.asarray(reasoning, dtype=np.float32)
    fused = np.float32(alpha) * phe + np.float32(1.0 - alpha) * rea
    return np.clip(fused, np.float32(0.0), np.float32(1.0)).astype(np.float32)


def greedy_match(scores: np.ndarray) -> list[tuple[int, int, float]]:
    """One-to-one greedy matching on an M x N score matrix.

    Repeatedly takes the largest remaining score among unused rows (predictions) and columns
    (ground truths); ties go to the lowest row, then the lowest column; stops when one side is used
    up or the largest remaining score is <= 0. Returns (pred, gt, score) in the order matched.

    >>> greedy_match(np.array([[0.9, 0.9], [0.9, 0.2]], np.float32))
    [(0, 0, 0.8999999761581421), (1, 1, 0.20000000298023224)]
    >>> greedy_match(np.zeros((2, 3), np.float32))
    []
    """
    matrix = np.array(scores, dtype=np.float64)  # float32 values, compared exactly
    if matrix.ndim != 2:
        raise ValueError(f"the score matrix must be 2-D, got shape {matrix.shape}")
    pairs: list[tuple[int, int, float]] = []
    for _ in range(min(matrix.shape)):
        flat = int(np.argmax(matrix))  # first maximum in row-major order: lowest row, then column
        i, j = divmod(flat, matrix.shape[1])
        best = matrix[i, j]
        if not best > 0.0:
            break
        pairs.append((i, j, float(best)))
        matrix[i, :] = -np.inf
        matrix[:, j] = -np.inf
    return pairs


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def threshold_scores(matched: Sequence[float], num_pred: int, num_gt: int,
                     thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """Per-image SemAP / SemF1 from the scores of the matched pairs.

    >>> r = threshold_scores([0.95, 0.75], num_pred=3, num_gt=2)
    >>> round(r["SemAP"], 4), round(r["SemF1"], 4), r["by_threshold"][0]["TP"]
    (0.4444, 0.5333, 2)
    """
    values = np.asarray(matched, dtype=np.float64)
    by_threshold = []
    for t in thresholds:
        tp = int(np.count_nonzero(values >= float(t))) if num_pred and num_gt else 0
        fp, fn = max(0, num_pred - tp), max(0, num_gt - tp)
        precision, recall, f1 = _prf(tp, fp, fn)
        by_threshold.append({"threshold": float(t), "TP": tp, "FP": fp, "FN": fn,
                             "Precision": precision, "Recall": recall, "F1": f1})
    return {
        "SemAP": float(np.mean([b["Precision"] for b in by_threshold])),
        "SemF1": float(np.mean([b["F1"] for b in by_threshold])),
        "by_threshold": by_threshold,
    }


def pair_similarities(predictions: Sequence[Sequence[tuple[str, str]]],
                       ground_truth: Sequence[Sequence[tuple[str, str]]],
                       scorer: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(phenomenon, reasoning) similarity matrices of every image, from ONE scorer call."""
    candidates: list[str] = []
    references: list[str] = []
    for preds, gts in zip(predictions, ground_truth):
        for p_phe, p_rea in preds:
            for g_phe, g_rea in gts:
                candidates += [p_phe, p_rea]
                references += [g_phe, g_rea]
    flat = np.asarray(scorer.score_pairs(candidates, references), dtype=np.float32) if candidates \
        else np.zeros(0, np.float32)
    out, start = [], 0
    for preds, gts in zip(predictions, ground_truth):
        m, n = len(preds), len(gts)
        block = flat[start:start + 2 * m * n].reshape(m, n, 2)
        start += 2 * m * n
        out.append((block[:, :, 0], block[:, :, 1]))
    return out


def image_semantic_scores(predicted: Sequence[Quadruple | Mapping[str, Any]],
                          reference: Sequence[Quadruple | Mapping[str, Any]], scorer: Any, *,
                          alpha: float = 0.5, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """SemAP / SemF1 of one image (e.g. a GRPO explanation reward); returns the matched pairs too."""
    preds = [anomaly_texts(a) for a in predicted]
    gts = [anomaly_texts(a) for a in reference]
    phe, rea = pair_similarities([preds], [gts], scorer)[0]
    pairs = greedy_match(fuse_scores(phe, rea, alpha)) if preds and gts else []
    result = threshold_scores([s for _, _, s in pairs], len(preds), len(gts), thresholds)
    result["pairs"] = pairs
    return result


def _keyed(mapping: Mapping[str, Any], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for raw, value in mapping.items():
        key = image_key(raw)
        if key in out:
            raise ValueError(f"{what}: image ids {origin[key]!r} and {raw!r} have the same basename "
                             f"{key!r}; ids are compared by basename, so rename one")
        out[key], origin[key] = value, str(raw)
    return out


def _round(x: float) -> float:
    return round(float(x), 4)


def semantic_scores(
    predictions: Mapping[str, Sequence[Quadruple | Mapping[str, Any]] | None],
    ground_truth: Mapping[str, Sequence[Quadruple | Mapping[str, Any]] | None],
    scorer: Any,
    *,
    alphas: Mapping[str, float] | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    official_image_set: bool = False,
    verdicts: Mapping[str, Verdict | str | None] | None = None,
    labels: Mapping[str, str | None] | None = None,
    per_image: bool = True,
) -> dict[str, Any]:
    """SemAP / SemF1 (and CSemAP / CSemF1 when ``verdicts`` and ``labels`` are given) of a data set.

    ``predictions`` / ``ground_truth`` map image ids (compared by basename) to anomaly lists.
    ``alphas`` maps view names to alpha (default Phe 1.0, Rea 0.0, Full 0.5); every text is scored
    once and serves all views. CSem: a fake image's predictions count as [] unless its verdict is
    "fake". Values are rounded to 4 decimals (pair scores to 6); ``micro`` holds P/R/F1 per
    threshold over all pairs of all images.
    """
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds:
        raise ValueError("at least one threshold is needed")
    views = dict(ALPHA_VIEWS if alphas is None else alphas)
    for name, a in views.items():
        if not 0.0 <= float(a) <= 1.0:
            raise ValueError(f"alpha of view {name!r} must be within [0, 1], got {a}")
    preds_by_id = _keyed(predictions, "predictions")
    gts_by_id = _keyed(ground_truth, "ground truth")

    unknown = sorted(set(preds_by_id) - set(gts_by_id))
    missing = sorted(set(gts_by_id) - set(preds_by_id))
    if official_image_set:
        images = sorted(set(preds_by_id) & set(gts_by_id))
        if not images:
            raise ValueError("no image is in both the predictions and the ground truth")
    else:
        if unknown:
            raise ValueError(f"{len(unknown)} prediction(s) for images that are not in the ground truth, "
                             f"e.g. {unknown[:3]}; fix the ids (compared by basename) or pass "
                             "official_image_set=True to score only the images in both")
        images = sorted(gts_by_id)

    pred_texts = [[anomaly_texts(a) for a in (preds_by_id.get(k) or [])] for k in images]
    gt_texts = [[anomaly_texts(a) for a in (gts_by_id[k] or [])] for k in images]
    similarities = pair_similarities(pred_texts, gt_texts, scorer)

    classification_aware = verdicts is not None and labels is not None
    if classification_aware:
        verdict_by_id = {image_key(k): Verdict.coerce(v) for k, v in verdicts.items()}
        label_by_id = {image_key(k): Verdict.coerce(v) for k, v in labels.items()}
        # A fake image keeps its predictions only when the model called it fake.
        keeps = [not (label_by_id.get(k) is Verdict.FAKE and verdict_by_id.get(k) is not Verdict.FAKE)
                 for k in images]

    result: dict[str, Any] = {
        "metric": "SemAP / SemF1",
        **dict(scorer.describe()),
        "image_set": "official" if official_image_set else "strict",
        "image_set_rule": ("images present in both files (the AnomReason tool's rule)" if official_image_set
                           else "every ground-truth image; a missing prediction is an empty list"),
        "num_images": len(images),
        "num_ground_truth_images": len(gts_by_id),
        "num_prediction_images": len(preds_by_id),
        "missing_predictions": len(missing) if not official_image_set else 0,
        "dropped_images": {"ground_truth_without_prediction": len(missing),
                           "prediction_without_ground_truth": len(unknown)} if official_image_set else {},
        "thresholds": list(thresholds),
        "classification_aware": classification_aware,
        "views": {},
    }
    images_out: dict[str, Any] = {k: {"num_predictions": len(p), "num_ground_truths": len(g),
                                      "prediction_missing": k not in preds_by_id}
                                  for k, p, g in zip(images, pred_texts, gt_texts)}
    for view, alpha in views.items():
        sem_ap, sem_f1, c_ap, c_f1 = [], [], [], []
        micro = {t: np.zeros(3, dtype=np.int64) for t in thresholds}
        c_micro = {t: np.zeros(3, dtype=np.int64) for t in thresholds}
        for index, (k, preds, gts) in enumerate(zip(images, pred_texts, gt_texts)):
            phe, rea = similarities[index]
            pairs = greedy_match(fuse_scores(phe, rea, alpha)) if preds and gts else []
            scores = threshold_scores([s for _, _, s in pairs], len(preds), len(gts), thresholds)
            sem_ap.append(scores["SemAP"])
            sem_f1.append(scores["SemF1"])
            for b in scores["by_threshold"]:
                micro[b["threshold"]] += (b["TP"], b["FP"], b["FN"])
            entry = {"alpha": float(alpha), "SemAP": _round(scores["SemAP"]), "SemF1": _round(scores["SemF1"]),
                     "pairs": [[i, j, round(s, 6)] for i, j, s in pairs]}
            if classification_aware:
                kept = scores if keeps[index] else threshold_scores([], 0, len(gts), thresholds)
                c_ap.append(kept["SemAP"])
                c_f1.append(kept["SemF1"])
                for b in kept["by_threshold"]:
                    c_micro[b["threshold"]] += (b["TP"], b["FP"], b["FN"])
                entry.update(CSemAP=_round(kept["SemAP"]), CSemF1=_round(kept["SemF1"]))
            images_out[k][view] = entry
        summary: dict[str, Any] = {
            "alpha": float(alpha),
            "SemAP": _round(np.mean(sem_ap)) if sem_ap else 0.0,
            "SemF1": _round(np.mean(sem_f1)) if sem_f1 else 0.0,
            "micro": _micro(micro),
        }
        if classification_aware:
            summary.update(CSemAP=_round(np.mean(c_ap)) if c_ap else 0.0,
                           CSemF1=_round(np.mean(c_f1)) if c_f1 else 0.0, micro_classification_aware=_micro(c_micro))
        result["views"][view] = summary
    if per_image:
        result["per_image"] = images_out
    return result


def _micro(counts: Mapping[float, Iterable[int]]) -> dict[str, dict[str, Any]]:
    out = {}
    for t, (tp, fp, fn) in counts.items():
        precision, recall, f1 = _prf(int(tp), int(fp), int(fn))
        out[f"{t:g}"] = {"TP": int(tp), "FP": int(fp), "FN": int(fn), "Precision": _round(precision),
                         "Recall": _round(recall), "F1": _round(f1)}
    return out


def semantic_markdown(result: Mapping[str, Any]) -> str:
    """A Markdown report of :func:`semantic_scores`: one row per view, 4 decimals, then micro P/R/F1.

    >>> r = {"scorer": "sentence", "encoder": "m", "image_set": "strict", "num_images": 2, "thresholds": [0.7],
    ...      "classification_aware": False, "views": {"Full": {"alpha": 0.5, "SemAP": 0.5, "SemF1": 0.25,
    ...      "micro": {"0.7": {"Precision": 0.5, "Recall": 0.5, "F1": 0.5, "TP": 1, "FP": 1, "FN": 1}}}}}
    >>> print(semantic_markdown(r).splitlines()[4])
    | Full | 0.5 | 0.5000 | 0.2500 |
    """
    aware = bool(result.get("classification_aware"))
    lines = [
        f"SemAP / SemF1 — scorer: {result.get('scorer')} ({result.get('encoder')}"
        + (f", layer {result['layer']}" if result.get("layer") is not None else "") + f"); image set: "
        f"{result.get('image_set')} ({result.get('num_images')} images); thresholds: "
        + ", ".join(f"{t:g}" for t in result.get("thresholds", [])),
        "",
        "| View | alpha | SemAP | SemF1 |" + (" CSemAP | CSemF1 |" if aware else ""),
        "|---|---|---|---|" + ("---|---|" if aware else ""),
    ]
    for view, v in result["views"].items():
        row = f"| {view} | {v['alpha']:g} | {v['SemAP']:.4f} | {v['SemF1']:.4f} |"
        if aware:
            row += f" {v['CSemAP']:.4f} | {v['CSemF1']:.4f} |"
        lines.append(row)
    lines += ["", "Micro-averaged over all anomalies:", "",
              "| View | t | Precision | Recall | F1 | TP | FP | FN |", "|---|---|---|---|---|---|---|---|"]
    for view, v in result["views"].items():
        for t, m in v["micro"].items():
            lines.append(f"| {view} | {t} | {m['Precision']:.4f} | {m['Recall']:.4f} | {m['F1']:.4f} | "
                         f"{m['TP']} | {m['FP']} | {m['FN']} |")
    return "\n".join(lines) + "\n"

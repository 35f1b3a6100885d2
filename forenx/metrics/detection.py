"""Detection metrics: accuracy on real, on fake and overall; AUC, AP and F1 from P(fake); ECE; a
temperature fit for calibration; all overall and per generator.

An unparseable answer (verdict None) is WRONG, never a coin flip: it is counted as the opposite of
the label for accuracy and F1, and — when the model gave no P(fake) either — it gets the worst
possible score for AUC / AP. Where the probability mapper's P(fake) is present it is used for AUC,
AP, F1 and ECE; otherwise the verdict stands in as 1.0 (fake) or 0.0 (real).

>>> r = detection_metrics(["fake", "real", "fake"], ["fake", "real", None], prob_fake=[0.9, 0.2, None])
>>> r["accuracy"], r["accuracy_real"], r["accuracy_fake"], r["unparseable"]
(0.6667, 1.0, 0.5, 1)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from forenx.schema import Verdict

__all__ = [
    "apply_temperature",
    "detection_metrics",
    "expected_calibration_error",
    "fake_scores",
    "fit_platt",
    "fit_platt_evidence",
    "fit_temperature",
    "logistic_nll",
]


def _labels(values: Sequence[Any], what: str) -> list[Verdict | None]:
    return [Verdict.coerce(v) for v in values]


def fake_scores(labels: Sequence[Any], verdicts: Sequence[Any], prob_fake: Sequence[float | None] | None = None
                ) -> np.ndarray:
    """Score of "fake" per sample: P(fake) where present, else the verdict (1 / 0), else the wrong end.

    >>> fake_scores(["fake", "real", "fake"], ["fake", None, None], [None, None, 0.7]).tolist()
    [1.0, 1.0, 0.7]
    """
    y = _labels(labels, "label")
    v = _labels(verdicts, "verdict")
    p = list(prob_fake) if prob_fake is not None else [None] * len(y)
    out = np.empty(len(y), dtype=np.float64)
    for i, (label, verdict, prob) in enumerate(zip(y, v, p)):
        if prob is not None and not (isinstance(prob, float) and math.isnan(prob)):
            out[i] = float(prob)
        elif verdict is not None:
            out[i] = 1.0 if verdict is Verdict.FAKE else 0.0
        else:  # unparseable and no probability: as wrong as possible
            out[i] = 0.0 if label is Verdict.FAKE else 1.0
    return out


def expected_calibration_error(prob_fake: Sequence[float], labels: Sequence[Any], n_bins: int = 15) -> float:
    """ECE of the predicted class's confidence, ``n_bins`` equal-width bins over [0, 1].

    >>> expected_calibration_error([0.9, 0.8, 0.3], ["fake", "real", "real"])
    0.4
    """
    p = np.asarray(prob_fake, dtype=np.float64)
    y = np.array([Verdict.coerce(v) is Verdict.FAKE for v in labels])
    if len(p) == 0:
        return 0.0
    predicted_fake = p >= 0.5
    confidence = np.where(predicted_fake, p, 1.0 - p)
    correct = predicted_fake == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds confidences in (edge_i, edge_i+1]; 0 falls in the first bin.
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return round(float(ece), 4)


def _as_fake_logits(values: Sequence[Any]) -> np.ndarray:
    """Logit of fake: from (real, fake) logit pairs, or from P(fake)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2:
        if arr.shape[1] != 2:
            raise ValueError(f"logits must be (n, 2) for (real, fake), got shape {arr.shape}")
        return arr[:, 1] - arr[:, 0]
    p = np.clip(arr, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def logistic_nll(fake_logits: np.ndarray, is_fake: np.ndarray) -> float:
    """Mean negative log-likelihood of sigmoid(``fake_logits``) for 0/1 targets ``is_fake``.

    >>> round(logistic_nll(np.array([0.0, 2.0]), np.array([1.0, 0.0])), 4)
    1.41
    """
    return float(np.mean(np.logaddexp(0.0, fake_logits) - is_fake * fake_logits))


def _logits_and_targets(values: Sequence[Any], labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    z = _as_fake_logits(values)
    y = np.array([Verdict.coerce(v) is Verdict.FAKE for v in labels], dtype=np.float64)
    if len(z) != len(y) or not len(z):
        raise ValueError(f"need as many labels as logits (got {len(y)} and {len(z)}), at least one")
    return z, y


def fit_temperature(values: Sequence[Any], labels: Sequence[Any]) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) on a validation split.

    ``values`` are (real, fake) logits of shape (n, 2) or P(fake) of shape (n,).

    >>> round(fit_temperature([[0.0, 4.0], [0.0, -4.0], [0.0, 4.0], [0.0, 4.0]], ["fake", "real", "real", "fake"]), 2)
    3.64
    """
    from scipy.optimize import minimize_scalar

    z, y = _logits_and_targets(values, labels)

    def nll(log_t: float) -> float:
        return logistic_nll(z / math.exp(log_t), y)

    best = minimize_scalar(nll, bounds=(math.log(1e-2), math.log(1e2)), method="bounded",
                           options={"xatol": 1e-6})
    return float(math.exp(best.x))


def fit_platt(values: Sequence[Any], labels: Sequence[Any]) -> tuple[float, float]:
    """Temperature T and bias b minimising the NLL of sigmoid((logit_fake + b) / T) on a validation
    split (Platt scaling). Unlike a temperature alone, the bias moves the 0.5 threshold: a detector
    whose held-out reals all score a little too fake gets its verdicts right again.

    ``values`` are (real, fake) logits of shape (n, 2) or P(fake) of shape (n,); both labels must occur.

    >>> t, b = fit_platt([3.0, 4.0, 2.0, 5.0, 1.0, 0.0], ["real", "fake", "real", "fake", "real", "real"])
    >>> round(t, 2) > 0, b < -2
    (True, True)
    """
    temperature, bias, _ = _fit_logistic(*_logits_and_targets(values, labels), None)
    return temperature, bias


def fit_platt_evidence(values: Sequence[Any], labels: Sequence[Any], evidence: Sequence[float]
                       ) -> tuple[float, float, float]:
    """:func:`fit_platt` with one more input: T, b and a weight w >= 0 minimising the NLL of
    sigmoid((logit_fake + b + w * evidence) / T), ``evidence`` one score per example (an untrained
    detector's, larger = more likely edited). w is 0 where the evidence does not help on the split.
    ``values`` as for :func:`fit_platt`: (real, fake) logit pairs, or P(fake) when one-dimensional.

    >>> pairs, labels = [[0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]], ["real", "fake", "real", "fake"]
    >>> t, b, w = fit_platt_evidence(pairs, labels, [0.0, 1.0, 0.0, 1.0])
    >>> w > 5
    True
    """
    z, y = _logits_and_targets(values, labels)
    extra = np.asarray(evidence, dtype=np.float64)
    if extra.shape != z.shape or not np.isfinite(extra).all():
        raise ValueError(f"fit_platt_evidence: need one finite evidence score per example ({len(z)}), "
                         f"got shape {extra.shape}")
    return _fit_logistic(z, y, extra)


def _fit_logistic(z: np.ndarray, y: np.ndarray, evidence: np.ndarray | None) -> tuple[float, float, float]:
    """(T, b, w) of sigmoid((z + b + w * evidence) / T) by maximum likelihood (w = 0 without evidence)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    if y.all() or not y.any():
        raise ValueError("fit_platt needs both real and fake examples: with one class the bias runs off to infinity")
    extra = np.zeros_like(z) if evidence is None else evidence

    def nll(params: np.ndarray) -> tuple[float, np.ndarray]:
        scale = math.exp(-params[0])
        logits = (z + params[1] + params[2] * extra) * scale
        residual = expit(logits) - y  # d NLL / d logit, per example
        gradient = np.array([-np.mean(residual * logits), scale * np.mean(residual),
                             scale * np.mean(residual * extra)])
        return logistic_nll(logits, y), gradient

    bounds = [(math.log(1e-2), math.log(1e2)), (-50.0, 50.0), (0.0, 0.0 if evidence is None else 100.0)]
    best = minimize(nll, np.zeros(3), jac=True, method="L-BFGS-B", bounds=bounds)
    return float(math.exp(best.x[0])), float(best.x[1]), float(best.x[2])


def apply_temperature(values: Sequence[Any], temperature: float) -> np.ndarray:
    """Calibrated P(fake) = sigmoid(logit_fake / T).

    >>> apply_temperature([0.5, 0.9], 1.0).round(4).tolist()
    [0.5, 0.9]
    """
    z = _as_fake_logits(values) / float(temperature)
    return 1.0 / (1.0 + np.exp(-z))


def _group_metrics(y: np.ndarray, predicted_fake: np.ndarray, unparseable: np.ndarray, scores: np.ndarray,
                   probs: list[float | None], labels: list[Verdict | None]) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    correct = (predicted_fake == y) & ~unparseable
    real, fake = ~y, y
    out: dict[str, Any] = {
        "n": len(y), "n_real": int(real.sum()), "n_fake": int(fake.sum()), "unparseable": int(unparseable.sum()),
        "accuracy": round(float(correct.mean()), 4) if len(y) else None,
        "accuracy_real": round(float(correct[real].mean()), 4) if real.any() else None,
        "accuracy_fake": round(float(correct[fake].mean()), 4) if fake.any() else None,
    }
    both = real.any() and fake.any()
    # AP needs both classes as much as AUC does: on fakes alone every ranking has AP 1.
    out["auc"] = round(float(roc_auc_score(y, scores)), 4) if both else None
    out["ap"] = round(float(average_precision_score(y, scores)), 4) if both else None
    out["f1"] = round(float(f1_score(y, scores >= 0.5, zero_division=0.0)), 4) if len(y) else None
    with_prob = [i for i, p in enumerate(probs) if p is not None]
    out["n_with_prob"] = len(with_prob)
    out["ece"] = (expected_calibration_error([probs[i] for i in with_prob], [labels[i] for i in with_prob])
                  if with_prob else None)
    return out


def detection_metrics(labels: Sequence[Any], verdicts: Sequence[Any], *,
                      prob_fake: Sequence[float | None] | None = None,
                      generators: Sequence[str | None] | None = None) -> dict[str, Any]:
    """Detection metrics overall and per generator (real images have their own generator, often None).

    ``labels``: "real" / "fake" per image (others are skipped and counted in ``skipped_unlabelled``);
    ``verdicts``: the parsed verdicts, None for an unparseable answer (counted wrong). Each generator's
    entry also has ``auc_vs_real`` / ``ap_vs_real``: its fakes against all the reals (which generator
    a detector misses, when the reals are one pool and every generator's group holds fakes only).
    """
    if len(labels) != len(verdicts):
        raise ValueError(f"{len(labels)} labels but {len(verdicts)} verdicts")
    probs_all = list(prob_fake) if prob_fake is not None else [None] * len(labels)
    gens_all = list(generators) if generators is not None else [None] * len(labels)
    if not len(probs_all) == len(gens_all) == len(labels):
        raise ValueError("labels, verdicts, prob_fake and generators must have the same length")
    keep = [i for i, label in enumerate(labels) if Verdict.coerce(label) is not None]
    y_lab = [Verdict.coerce(labels[i]) for i in keep]
    v_lab = [Verdict.coerce(verdicts[i]) for i in keep]
    probs = [None if probs_all[i] is None else float(probs_all[i]) for i in keep]
    gens = [gens_all[i] for i in keep]
    y = np.array([label is Verdict.FAKE for label in y_lab], dtype=bool)
    unparseable = np.array([v is None for v in v_lab], dtype=bool)
    predicted_fake = np.array([v is Verdict.FAKE for v in v_lab], dtype=bool)
    scores = fake_scores(y_lab, v_lab, probs)

    result = _group_metrics(y, predicted_fake, unparseable, scores, probs, y_lab)
    result["skipped_unlabelled"] = len(labels) - len(keep)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(gens):
        groups["(none)" if g is None else str(g)].append(i)
    if generators is not None:
        reals = np.flatnonzero(~y)
        result["per_generator"] = {
            g: {**_group_metrics(y[idx], predicted_fake[idx], unparseable[idx], scores[idx],
                                 [probs[i] for i in idx], [y_lab[i] for i in idx]),
                **_against_reals(y, scores, idx, reals)}
            for g, idx in sorted(groups.items())
        }
    return result


def _against_reals(y: np.ndarray, scores: np.ndarray, idx: list[int], reals: np.ndarray
                   ) -> dict[str, float | None]:
    """``auc_vs_real`` / ``ap_vs_real``: the group's fakes ranked against ALL the evaluated reals (``reals``,
    their indices: the usual per-generator figure when one pool of real images serves every generator; a
    generator of fakes only has no AUC of its own). None without fakes in the group or reals in the set."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    fakes = [i for i in idx if y[i]]
    if not fakes or not reals.size:
        return {"auc_vs_real": None, "ap_vs_real": None}
    pool = np.concatenate([reals, fakes])
    return {"auc_vs_real": round(float(roc_auc_score(y[pool], scores[pool])), 4),
            "ap_vs_real": round(float(average_precision_score(y[pool], scores[pool])), 4)}

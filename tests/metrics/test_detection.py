"""Detection metrics: unparseable answers are wrong, per-generator breakdown, ECE and temperature."""

from __future__ import annotations

import numpy as np
import pytest

from forenx.metrics.detection import (
    apply_temperature,
    detection_metrics,
    expected_calibration_error,
    fake_scores,
    fit_platt,
    fit_platt_evidence,
    fit_temperature,
)


def test_accuracy_per_class_counts_unparseable_as_wrong():
    labels = ["real", "real", "fake", "fake", "fake"]
    verdicts = ["real", None, "fake", None, "real"]
    r = detection_metrics(labels, verdicts)
    assert (r["accuracy"], r["accuracy_real"], r["accuracy_fake"]) == (0.4, 0.5, round(1 / 3, 4))
    assert r["unparseable"] == 2 and r["n_real"] == 2 and r["n_fake"] == 3
    # Without probabilities an unparseable answer is scored at the wrong end: AUC as for wrong answers.
    wrong = detection_metrics(labels, ["real", "fake", "fake", "real", "real"])
    assert r["auc"] == wrong["auc"] and r["ap"] == wrong["ap"] and r["f1"] == wrong["f1"]
    assert r["ece"] is None and r["n_with_prob"] == 0


def test_auc_ap_f1_use_prob_fake_where_present():
    labels = ["real", "real", "fake", "fake"]
    verdicts = ["real", "fake", "fake", None]
    probs = [0.1, 0.6, 0.9, 0.7]
    r = detection_metrics(labels, verdicts, prob_fake=probs)
    assert r["auc"] == 1.0 and r["ap"] == 1.0  # every fake above every real
    assert r["f1"] == pytest.approx(0.8)  # threshold 0.5: TP 2, FP 1, FN 0
    assert r["accuracy"] == 0.5  # the unparseable answer stays wrong for accuracy
    assert fake_scores(labels, verdicts, probs).tolist() == probs


def test_per_generator_and_unlabelled():
    labels = ["fake", "fake", "real", "unknown"]
    verdicts = ["fake", "real", "real", "fake"]
    r = detection_metrics(labels, verdicts, generators=["sdxl", "flux", None, "sdxl"])
    assert r["skipped_unlabelled"] == 1 and r["n"] == 3
    per = r["per_generator"]
    assert set(per) == {"sdxl", "flux", "(none)"}
    assert per["sdxl"]["accuracy_fake"] == 1.0 and per["flux"]["accuracy_fake"] == 0.0
    assert per["(none)"]["accuracy_real"] == 1.0 and per["(none)"]["auc"] is None  # one class only
    # A group of fakes only has no AUC or AP of its own (on fakes alone every ranking has AP 1).
    assert per["sdxl"]["auc"] is None and per["sdxl"]["ap"] is None


def test_per_generator_ranks_each_generators_fakes_against_all_reals():
    """One pool of reals for every generator: a generator whose fakes score below the reals shows up."""
    labels = ["real", "real", "real", "fake", "fake", "fake", "fake"]
    gens = ["camera", "camera", "camera", "blur", "blur", "sharpening", "sharpening"]
    probs = [0.1, 0.3, 0.5, 0.9, 0.8, 0.4, 0.05]
    verdicts = ["fake" if p > 0.5 else "real" for p in probs]
    per = detection_metrics(labels, verdicts, prob_fake=probs, generators=gens)["per_generator"]
    assert per["blur"]["auc_vs_real"] == 1.0 and per["blur"]["ap_vs_real"] == 1.0
    # sharpening: 0.4 beats 0.1 and 0.3, loses to 0.5; 0.05 beats none -> 2 of 6 pairs.
    assert per["sharpening"]["auc_vs_real"] == round(2 / 6, 4)
    assert 0 < per["sharpening"]["ap_vs_real"] < 1
    assert per["camera"]["auc_vs_real"] is None and per["camera"]["ap_vs_real"] is None  # no fakes
    # Without any reals in the set there is nothing to rank against.
    only_fakes = detection_metrics(["fake", "fake"], ["fake", "real"], prob_fake=[0.9, 0.2], generators=["a", "b"])
    assert only_fakes["per_generator"]["a"]["auc_vs_real"] is None


def test_ece_by_hand():
    # Confidences 0.9 (right), 0.8 (wrong), 0.7 (right), each alone in its bin.
    assert expected_calibration_error([0.9, 0.8, 0.3], ["fake", "real", "real"]) == 0.4
    # Perfectly calibrated within one bin: 4 samples at confidence 0.75, 3 right.
    assert expected_calibration_error([0.75, 0.75, 0.75, 0.25], ["fake", "fake", "real", "real"]) == 0.0
    # Same confidences, half right: |0.5 - 0.75|.
    assert expected_calibration_error([0.75, 0.75, 0.75, 0.25], ["fake", "real", "real", "real"]) == 0.25
    assert expected_calibration_error([1.0, 0.0], ["fake", "real"]) == 0.0


def test_temperature_fit_minimises_nll_and_improves_calibration():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, size=2000)
    labels = np.where(rng.random(2000) < 1 / (1 + np.exp(-true_logit)), "fake", "real")
    overconfident = np.stack([np.zeros(2000), 3.0 * true_logit], axis=1)  # logits 3x too sharp
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(apply_temperature(overconfident, 1.0), labels)
    after = expected_calibration_error(apply_temperature(overconfident, t), labels)
    assert after < before / 2
    # Probabilities work too, and give the same temperature as the logits they come from.
    assert fit_temperature(apply_temperature(overconfident, 1.0), labels) == pytest.approx(t, rel=1e-3)
    with pytest.raises(ValueError, match="as many labels"):
        fit_temperature([0.5, 0.6], ["fake"])


def test_fit_platt_recovers_a_known_temperature_and_bias():
    """Labels drawn from sigmoid((z + b) / T): the fit finds T and b, and names a one-class split."""
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 4.0, 20000)
    labels = ["fake" if u else "real" for u in rng.random(z.size) < 1 / (1 + np.exp(-(z - 1.5) / 2.0))]
    t, b = fit_platt(np.stack([np.zeros_like(z), z], 1), labels)
    assert t == pytest.approx(2.0, rel=0.05) and b == pytest.approx(-1.5, abs=0.1)
    # A temperature alone cannot move the threshold; the bias can.
    shifted = ["fake" if v > 1.5 else "real" for v in z]
    t, b = fit_platt(list(1 / (1 + np.exp(-z))), shifted)
    assert abs(b + 1.5) < 0.2 * max(1.0, t)
    with pytest.raises(ValueError, match="both real and fake"):
        fit_platt([0.2, 0.7], ["real", "real"])


def test_fit_platt_evidence_recovers_a_known_weight_and_never_a_negative_one():
    """Labels drawn from sigmoid((z + b + w e) / T): the fit finds T, b and w; evidence that points the
    wrong way gets weight 0 (and then the fit is fit_platt's); bad evidence is named."""
    rng = np.random.default_rng(1)
    z, e = rng.normal(0.0, 3.0, 20000), rng.exponential(1.0, 20000)
    labels = ["fake" if u else "real" for u in rng.random(z.size) < 1 / (1 + np.exp(-(z - 1.0 + 4.0 * e) / 2.0))]
    pairs = np.stack([np.zeros_like(z), z], 1)  # (real, fake) logits
    t, b, w = fit_platt_evidence(pairs, labels, e)
    assert t == pytest.approx(2.0, rel=0.05) and b == pytest.approx(-1.0, abs=0.15) and w == pytest.approx(4.0, rel=0.05)
    t, b, w = fit_platt_evidence(pairs, labels, -e)
    assert w == 0.0 and (t, b) == pytest.approx(fit_platt(pairs, labels), rel=1e-3)
    with pytest.raises(ValueError, match="one finite evidence score per example"):
        fit_platt_evidence(pairs[:4], labels[:4], [0.0, 1.0, np.nan, 2.0])

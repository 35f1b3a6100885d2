"""GRPO rewards on fixed completions (tests/fixtures/grpo_rewards): good, malformed, truncated and
adversarial answers, with the real offline sentence scorer (all-MiniLM-L6-v2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forenx.metrics.scorers import SentenceScorer
from forenx.schema import ANSWER_PREFIX
from forenx.training.rewards import (
    calibration_reward,
    explanation_reward,
    format_reward,
    full_answer,
    severity_reward,
    verdict_reward,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "grpo_rewards" / "completions.jsonl"


@pytest.fixture(scope="module")
def cases() -> dict[str, dict]:
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    return {row["case"]: row for row in rows}


@pytest.fixture(scope="module")
def scorer() -> SentenceScorer:
    return SentenceScorer()


def _columns(rows: list[dict]) -> dict[str, list]:
    return {"completions": [r["completion"] for r in rows], "label": [r["label"] for r in rows],
            "quadruples": [r["quadruples"] for r in rows]}


def _one(func, row: dict, **kwargs) -> float | None:
    return func(**_columns([row]), **kwargs)[0]


def test_format_and_verdict_match_the_fixture_expectations(cases):
    rows = list(cases.values())
    columns = _columns(rows)
    formats = format_reward(columns["completions"])
    verdicts = verdict_reward(columns["completions"], label=columns["label"])
    for row, got_format, got_verdict in zip(rows, formats, verdicts):
        assert got_format == row["format"], row["case"]
        assert got_verdict == row["verdict"], row["case"]


def test_conversational_completions_score_like_strings(cases, scorer):
    rows = [cases["good_exact"], cases["truncated"], cases["good_paraphrase"]]
    strings = _columns(rows)
    chats = {**strings, "completions": [[{"role": "assistant", "content": c}] for c in strings["completions"]]}
    for func in (format_reward, verdict_reward):
        assert func(**chats) == func(**strings)
    assert explanation_reward(**chats, scorer=scorer) == explanation_reward(**strings, scorer=scorer)


def test_rewards_read_the_prefix_plus_completion(cases):
    # The completion starts at the verdict word: the reward must see the whole answer.
    completion = cases["good_exact"]["completion"]
    assert not completion.startswith("{")
    assert full_answer(completion).startswith(ANSWER_PREFIX + "fake")
    assert format_reward([ANSWER_PREFIX + completion]) == [0.0]  # a prompt prefix written twice is not an answer


def test_explanation_rewards_right_anomalies_and_punishes_wrong_ones(cases, scorer):
    exact = _one(explanation_reward, cases["good_exact"], scorer=scorer)
    paraphrase = _one(explanation_reward, cases["good_paraphrase"], scorer=scorer)
    unrelated = _one(explanation_reward, cases["unrelated_anomaly"], scorer=scorer)
    assert exact == pytest.approx(1.0)
    assert 0.0 < paraphrase < exact  # one of two references found, in other words
    assert unrelated == 0.0
    assert _one(explanation_reward, cases["wrong_verdict"], scorer=scorer) == 0.0  # fake image, nothing found


def test_explanation_on_real_images_rewards_reporting_nothing(cases, scorer):
    assert _one(explanation_reward, cases["good_real"], scorer=scorer) == 1.0
    assert _one(explanation_reward, cases["real_invents_anomalies"], scorer=scorer) == 0.0


def test_fifty_copies_of_one_anomaly_earn_less_than_one_copy(cases, scorer):
    row = cases["adversarial_50_copies"]
    copies = _one(explanation_reward, row, scorer=scorer)
    single = _one(explanation_reward, {**row, "completion": row["completion"].replace(
        row["completion"][row["completion"].index("{"):row["completion"].rindex("}]") + 1],
        json.dumps(row["quadruples"][0]))}, scorer=scorer)
    # One-to-one matching: 1 true positive, 49 false positives -> P = 1/50, R = 1/2.
    assert copies == pytest.approx(2 * (1 / 50) * 0.5 / (1 / 50 + 0.5))
    assert single == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert copies < single
    # Severity agreement is averaged over matches, so copies do not add to it either.
    assert _one(severity_reward, row, scorer=scorer) == pytest.approx(1.0)


def test_unreadable_and_truncated_answers_score_zero(cases, scorer):
    for name in ("malformed_not_json", "truncated"):
        row = cases[name]
        assert _one(format_reward, row) == 0.0
        assert _one(verdict_reward, row) == 0.0
        assert _one(explanation_reward, row, scorer=scorer) == 0.0
        assert _one(severity_reward, row, scorer=scorer) == 0.0


def test_verdict_only_gets_the_verdict_but_no_explanation(cases, scorer):
    row = cases["adversarial_verdict_only"]
    assert _one(verdict_reward, row) == 1.0
    assert _one(format_reward, row) == 0.0
    assert _one(explanation_reward, row, scorer=scorer) == 0.0
    assert _one(severity_reward, row, scorer=scorer) == 0.0


def test_huge_severity_fails_format_and_is_clamped_for_agreement(cases, scorer):
    row = cases["adversarial_huge_severity"]
    assert _one(format_reward, row) == 0.0
    # parse_answer clamps to 100; the reference says 83.
    assert _one(severity_reward, row, scorer=scorer) == pytest.approx(1 - 17 / 100)


def test_keys_in_wrong_case_fail_format_only(cases, scorer):
    row = cases["adversarial_keys_wrong_case"]
    assert _one(format_reward, row) == 0.0
    # The lenient parser still reads the anomaly, so the content rewards judge its content.
    assert _one(explanation_reward, row, scorer=scorer) == pytest.approx(2 / 3)  # 1 of 2 references, exactly


def test_severity_agreement_of_matched_anomalies(cases, scorer):
    row = cases["good_paraphrase"]  # severity 75 vs the matched reference's 83
    assert _one(severity_reward, row, scorer=scorer) == pytest.approx(1 - 8 / 100)
    assert _one(severity_reward, cases["unrelated_anomaly"], scorer=scorer) == 0.0  # nothing matched
    assert _one(severity_reward, cases["good_real"], scorer=scorer) is None  # nothing to agree with


def test_unlabelled_records_are_skipped_and_missing_columns_named(cases, scorer):
    row = {**cases["good_exact"], "label": "unknown"}
    assert _one(verdict_reward, row) is None
    assert _one(explanation_reward, row, scorer=scorer) is None
    with pytest.raises(KeyError, match="quadruples"):
        explanation_reward(["x"], label=["fake"], quadruples=None, scorer=scorer)


def test_calibration_is_one_minus_brier():
    assert calibration_reward(["a", "b"], label=["fake", "real"], prob_fake=[1.0, 0.25]) == [1.0, 1 - 0.0625]
    assert calibration_reward(["a"], label=["fake"], prob_fake=[float("nan")]) == [None]


def test_explanation_embeds_each_distinct_text_once_across_calls(cases, scorer):
    scorer.clear_cache()
    rows = [cases["good_exact"], cases["good_paraphrase"], cases["adversarial_50_copies"]]
    explanation_reward(**_columns(rows), scorer=scorer)
    distinct = {t for r in rows for q in r["quadruples"] for t in (q["phenomenon"], q["reasoning"])}
    distinct |= {t for r in rows for q in json.loads(full_answer(r["completion"]))["anomalies"]
                 for t in (q["phenomenon"], q["reasoning"])}
    assert len(scorer._cache) == len(distinct)
    calls = []
    encode = scorer.model.encode
    scorer.model.encode = lambda texts, **kw: calls.append(list(texts)) or encode(texts, **kw)
    try:
        explanation_reward(**_columns(rows), scorer=scorer)  # the next step: all texts cached
    finally:
        scorer.model.encode = encode
    assert calls == []

"""SemAP / SemF1 / CSemAP on hand-computed cases, and on the AnomReason fixture with both scorers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from forenx.metrics.scorers import BERTScoreScorer, SentenceScorer
from forenx.metrics.semantic import (
    fuse_scores,
    greedy_match,
    image_semantic_scores,
    semantic_scores,
    threshold_scores,
)
from forenx.schema import Quadruple

FIXTURES = Path(__file__).parent.parent / "fixtures"


class TableScorer:
    """sim(c, r) from a table; 1.0 for identical texts; else 0. Counts the pairs it is asked."""

    name = "table"

    def __init__(self, table=None):
        self.table = dict(table or {})
        self.calls = 0

    def score_pairs(self, candidates, references):
        self.calls += 1
        return np.array([self.table.get((c, r), 1.0 if c == r else 0.0) for c, r in zip(candidates, references)],
                        dtype=np.float32)

    def describe(self):
        return {"scorer": self.name, "encoder": "table"}


def q(phe: str, rea: str | None = None) -> Quadruple:
    return Quadruple(name="n", phenomenon=phe, reasoning=phe if rea is None else rea)


def full(result, view="Full"):
    v = result["views"][view]
    return v["SemAP"], v["SemF1"]


# --- matching -------------------------------------------------------------------------------------------

def test_greedy_takes_the_largest_first_and_breaks_ties_by_prediction_then_ground_truth():
    assert [(i, j) for i, j, _ in greedy_match(np.array([[0.5, 0.9], [0.9, 0.5]], np.float32))] == [(0, 1), (1, 0)]
    assert [(i, j) for i, j, _ in greedy_match(np.full((2, 2), 0.8, np.float32))] == [(0, 0), (1, 1)]
    # A larger score later in the matrix wins over an earlier smaller one.
    assert [(i, j) for i, j, _ in greedy_match(np.array([[0.6, 0.1], [0.7, 0.65]], np.float32))] == [(1, 0), (0, 1)]


def test_greedy_stops_at_zero_and_when_a_side_is_used_up():
    assert greedy_match(np.zeros((3, 2), np.float32)) == []
    # An all-zero row stays unmatched; the other rows match.
    pairs = greedy_match(np.array([[0.0, 0.0], [0.3, 0.9], [0.8, 0.0]], np.float32))
    assert [(i, j) for i, j, _ in pairs] == [(1, 1), (2, 0)]
    assert len(greedy_match(np.full((5, 2), 0.5, np.float32))) == 2
    assert greedy_match(np.zeros((0, 4), np.float32)) == []


def test_thresholds_compare_the_float32_score():
    # float32(0.7) is 0.69999998..., below the threshold 0.7; fusing 0.8/0.6 gives 0.70000005, above it.
    assert threshold_scores([float(np.float32(0.7))], 1, 1, (0.7,))["by_threshold"][0]["TP"] == 0
    fused = float(fuse_scores(np.float32([0.8]), np.float32([0.6]), 0.5)[0])
    assert threshold_scores([fused], 1, 1, (0.7,))["by_threshold"][0]["TP"] == 1
    assert fuse_scores(np.float32([-0.4, 1.3]), np.float32([-0.2, 1.1]), 0.5).tolist() == [0.0, 1.0]


# --- hand-computed data sets ------------------------------------------------------------------------------

def test_identical_predictions_score_one_in_every_view():
    gt = {"a.jpg": [q("six fingers", "hands have five"), q("melted clock", "clocks are rigid")],
          "b.jpg": [q("floating cup", "gravity")]}
    result = semantic_scores(gt, gt, TableScorer())
    for view in ("Phe", "Rea", "Full"):
        assert full(result, view) == (1.0, 1.0)
        assert result["views"][view]["micro"]["0.9"] == {"TP": 3, "FP": 0, "FN": 0, "Precision": 1.0,
                                                         "Recall": 1.0, "F1": 1.0}


def test_empty_lists_score_zero():
    gt = {"a.jpg": [q("x")], "b.jpg": [], "c.jpg": [q("y")]}
    pred = {"a.jpg": [], "b.jpg": [q("z")], "c.jpg": [q("y")]}
    result = semantic_scores(pred, gt, TableScorer())
    per = result["per_image"]
    assert [per[k]["Full"]["SemAP"] for k in ("a.jpg", "b.jpg", "c.jpg")] == [0.0, 0.0, 1.0]
    assert full(result) == (round(1 / 3, 4), round(1 / 3, 4))


def test_unequal_counts():
    # 3 predictions, 2 ground truths. Pair scores 0.95 (p0-g0) and 0.75 (p1-g1); p2 matches nothing.
    table = {("p0", "g0"): 0.95, ("p1", "g1"): 0.75, ("p2", "g0"): 0.5}
    pred = {"a.jpg": [q("p0"), q("p1"), q("p2")]}
    gt = {"a.jpg": [q("g0"), q("g1")]}
    result = semantic_scores(pred, gt, TableScorer(table))
    # t=0.7: TP 2, P 2/3, R 1, F1 0.8; t=0.8 and 0.9: TP 1, P 1/3, R 1/2, F1 0.4.
    assert full(result) == (round((2 / 3 + 1 / 3 + 1 / 3) / 3, 4), round((0.8 + 0.4 + 0.4) / 3, 4))
    assert result["per_image"]["a.jpg"]["Full"]["pairs"] == [[0, 0, 0.95], [1, 1, 0.75]]
    micro = result["views"]["Full"]["micro"]
    assert (micro["0.7"]["TP"], micro["0.7"]["FP"], micro["0.7"]["FN"]) == (2, 1, 0)
    assert (micro["0.8"]["TP"], micro["0.8"]["FP"], micro["0.8"]["FN"]) == (1, 2, 1)


def test_ties_go_to_the_lowest_prediction_then_ground_truth():
    table = {(p, g): 0.85 for p in ("p0", "p1") for g in ("g0", "g1")}
    result = semantic_scores({"a.jpg": [q("p0"), q("p1")]}, {"a.jpg": [q("g0"), q("g1")]}, TableScorer(table))
    assert [pair[:2] for pair in result["per_image"]["a.jpg"]["Full"]["pairs"]] == [[0, 0], [1, 1]]


def test_all_zero_rows_leave_predictions_unmatched():
    table = {("p1", "g0"): 0.95}
    result = semantic_scores({"a.jpg": [q("p0"), q("p1")]}, {"a.jpg": [q("g0")]}, TableScorer(table))
    assert result["per_image"]["a.jpg"]["Full"]["pairs"] == [[1, 0, 0.95]]
    # P = 1/2 at every threshold; R = 1; F1 = 2/3.
    assert full(result) == (0.5, round(2 / 3, 4))


def test_each_alpha_view_uses_its_fields():
    # Phenomena agree (0.95), reasonings do not (0.55): Phe matches at every t, Rea at none, Full (0.75)
    # at t=0.7 only, alpha 0.7 (0.83) at 0.7 and 0.8.
    table = {("ph", "gh"): 0.95, ("pr", "gr"): 0.55}
    result = semantic_scores({"a.jpg": [q("ph", "pr")]}, {"a.jpg": [q("gh", "gr")]}, TableScorer(table))
    assert full(result, "Phe") == (1.0, 1.0)
    assert full(result, "Rea") == (0.0, 0.0)
    assert full(result, "Full") == (round(1 / 3, 4), round(1 / 3, 4))
    custom = semantic_scores({"a.jpg": [q("ph", "pr")]}, {"a.jpg": [q("gh", "gr")]}, TableScorer(table),
                             alphas={"mostly phenomenon": 0.7})
    assert custom["views"]["mostly phenomenon"]["alpha"] == 0.7
    assert full(custom, "mostly phenomenon") == (round(2 / 3, 4), round(2 / 3, 4))


def test_every_text_pair_is_scored_in_one_call_for_all_views():
    scorer = TableScorer()
    gt = {f"{i}.jpg": [q(f"a{i}"), q(f"b{i}")] for i in range(5)}
    semantic_scores(gt, gt, scorer)
    assert scorer.calls == 1


def test_csemap_zeroes_a_fake_image_not_judged_fake():
    gt = {"fake1.jpg": [q("x")], "fake2.jpg": [q("y")], "fake3.jpg": [q("z")], "real.jpg": [q("w")]}
    labels = {"fake1.jpg": "fake", "fake2.jpg": "fake", "fake3.jpg": "fake", "real.jpg": "real"}
    verdicts = {"fake1.jpg": "fake", "fake2.jpg": "real", "fake3.jpg": None, "real.jpg": "real"}
    result = semantic_scores(gt, gt, TableScorer(), verdicts=verdicts, labels=labels)
    view = result["views"]["Full"]
    assert (view["SemAP"], view["SemF1"]) == (1.0, 1.0)
    assert (view["CSemAP"], view["CSemF1"]) == (0.5, 0.5)
    assert result["per_image"]["fake2.jpg"]["Full"]["CSemAP"] == 0.0
    assert result["per_image"]["fake3.jpg"]["Full"]["CSemAP"] == 0.0
    assert result["per_image"]["real.jpg"]["Full"]["CSemAP"] == 1.0
    assert view["micro_classification_aware"]["0.7"] == {"TP": 2, "FP": 0, "FN": 2, "Precision": 1.0,
                                                        "Recall": 0.5, "F1": round(2 / 3, 4)}


def test_image_ids_are_compared_by_basename():
    gt = {"x.jpg": [q("a")], "y.jpg": [q("b")]}
    pred = {"/data/run/x.jpg": [q("a")], "sub\\dir\\y.jpg": [q("b")]}
    assert full(semantic_scores(pred, gt, TableScorer())) == (1.0, 1.0)
    with pytest.raises(ValueError, match="same basename"):
        semantic_scores({"a/x.jpg": [], "b/x.jpg": []}, gt, TableScorer())


def test_strict_and_official_image_sets():
    gt = {"x.jpg": [q("a")], "y.jpg": [q("b")]}
    pred = {"x.jpg": [q("a")]}
    strict = semantic_scores(pred, gt, TableScorer())
    official = semantic_scores(pred, gt, TableScorer(), official_image_set=True)
    assert strict["image_set"] == "strict" and strict["num_images"] == 2 and strict["missing_predictions"] == 1
    assert full(strict) == (0.5, 0.5)
    assert official["image_set"] == "official" and official["num_images"] == 1
    assert official["dropped_images"] == {"ground_truth_without_prediction": 1, "prediction_without_ground_truth": 0}
    assert full(official) == (1.0, 1.0)
    with pytest.raises(ValueError, match="not in the ground truth"):
        semantic_scores({"z.jpg": [q("a")]}, gt, TableScorer())
    assert full(semantic_scores({"z.jpg": [], **pred}, gt, TableScorer(), official_image_set=True)) == (1.0, 1.0)


def test_anomreason_keys_and_single_image_reward():
    pred = [{"Observed Phenomenon": "a", "Reasoning": "b"}]
    gt = [{"Observed Phenomenon": " a ", "Reasoning": "b", "Name": "ignored", "Severity Score": "5/100"}]
    result = image_semantic_scores(pred, gt, TableScorer())
    assert (result["SemAP"], result["SemF1"], result["pairs"]) == (1.0, 1.0, [(0, 0, 1.0)])


# --- real scorers ----------------------------------------------------------------------------------------

def reference_bertscore_f1(model, tokenizer, layer: int, candidate: str, reference: str) -> float:
    """METRICS.md read literally, one pair at a time."""
    def tokens(text):
        ids = tokenizer(text.strip(), add_special_tokens=True, truncation=True, max_length=512)["input_ids"]
        with torch.no_grad():
            h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[layer][0]
        w = torch.tensor([0.0 if i in (tokenizer.cls_token_id, tokenizer.sep_token_id) else 1.0 for i in ids])
        return h / h.norm(dim=-1, keepdim=True), w
    (c, cw), (r, rw) = tokens(candidate), tokens(reference)
    if cw.sum() == 0 or rw.sum() == 0:
        return 0.0
    sim = c @ r.T
    p = float((sim.max(dim=1).values * cw).sum() / cw.sum())
    rr = float((sim.max(dim=0).values * rw).sum() / rw.sum())
    return 2 * p * rr / (p + rr) if p + rr else 0.0


PAIRS = [
    ("The left hand has six fingers.", "An extra finger grows from the hand."),
    ("Shadows fall in two directions.",
     "The lighting is inconsistent across the scene, with shadows pointing different ways."),
    ("", "Text on the sign is garbled."),
    ("The clock face is melted", "The clock face is melted"),
]


@pytest.mark.parametrize("fixture_name,layer", [("tiny_bert_dir", 1), ("tiny_distilbert_dir", 2),
                                                ("tiny_distilbert_dir", 0)])
def test_bertscore_matches_a_per_pair_reference(request, fixture_name, layer):
    from transformers import AutoModel, AutoTokenizer

    folder = request.getfixturevalue(fixture_name)
    scorer = BERTScoreScorer(str(folder), layer=layer)
    got = scorer.score_pairs([c for c, _ in PAIRS], [r for _, r in PAIRS])
    model, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    want = [reference_bertscore_f1(model, tokenizer, layer, c, r) for c, r in PAIRS]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert got[2] == 0.0  # an empty text has only [CLS]/[SEP], which weigh 0
    assert got[3] == pytest.approx(1.0, abs=1e-6)
    # Symmetric F1 and the cache: asking again reuses the embeddings.
    again = scorer.score_pairs([r for _, r in PAIRS], [c for c, _ in PAIRS])
    np.testing.assert_allclose(again, got, atol=1e-6)


def test_bertscore_truncates_at_512_tokens_and_checks_the_layer(tiny_bert_dir):
    scorer = BERTScoreScorer(str(tiny_bert_dir), layer=2)
    assert len(scorer.token_ids("word " * 2000)) == 512
    assert scorer.score_pairs(["word " * 2000], ["word " * 1000]).shape == (1,)
    with pytest.raises(ValueError, match="layer 7 does not exist"):
        BERTScoreScorer(str(tiny_bert_dir), layer=7)


@pytest.fixture(scope="module")
def anomreason():
    folder = FIXTURES / "anomreason"
    return (json.loads((folder / "pre_data_test_case.json").read_text()),
            json.loads((folder / "gt_data_test_case.json").read_text()))


def test_anomreason_fixture_with_bertscore_on_a_tiny_encoder(anomreason, tiny_distilbert_dir):
    """The whole fixture with BERTScore, equal to a per-pair evaluation of the same metric."""
    from transformers import AutoModel, AutoTokenizer

    pred, gt = anomreason
    scorer = BERTScoreScorer(str(tiny_distilbert_dir), layer=3)
    # A random tiny encoder's BERTScore sits around 0.5-0.62: thresholds on that scale.
    result = semantic_scores(pred, gt, scorer, thresholds=(0.5, 0.55, 0.6))
    assert result["num_images"] == 100 and result["image_set"] == "strict"
    assert result["scorer"] == "bertscore" and result["layer"] == 3
    for view in ("Phe", "Rea", "Full"):
        assert 0.0 < result["views"][view]["SemAP"] <= 1.0
        assert result["views"][view]["SemF1"] > 0.0
    # Two images have no prediction at all: they score 0 under both rules.
    assert [k for k, v in result["per_image"].items() if v["num_predictions"] == 0] == sorted(
        k for k in gt if not pred[k])
    official = semantic_scores(pred, gt, scorer, thresholds=(0.5, 0.55, 0.6), official_image_set=True)
    assert official["views"] == result["views"]

    # An independent per-pair evaluation of a few images gives the same matches and scores.
    model, tokenizer = AutoModel.from_pretrained(tiny_distilbert_dir).eval(), AutoTokenizer.from_pretrained(
        tiny_distilbert_dir)
    for image in sorted(gt)[:2]:
        matrix = np.zeros((len(pred[image]), len(gt[image])), np.float32)
        for i, p in enumerate(pred[image]):
            for j, g in enumerate(gt[image]):
                phe = np.float32(reference_bertscore_f1(model, tokenizer, 3, p["Observed Phenomenon"],
                                                        g["Observed Phenomenon"]))
                rea = np.float32(reference_bertscore_f1(model, tokenizer, 3, p["Reasoning"], g["Reasoning"]))
                matrix[i, j] = np.clip(np.float32(0.5) * phe + np.float32(0.5) * rea, 0, 1)
        want = greedy_match(matrix)
        got = result["per_image"][image]["Full"]["pairs"]
        assert [g[:2] for g in got] == [[i, j] for i, j, _ in want]
        np.testing.assert_allclose([g[2] for g in got], [s for _, _, s in want], atol=2e-6)


@pytest.mark.slow
def test_anomreason_fixture_with_the_sentence_scorer(anomreason):
    pred, gt = anomreason
    scorer = SentenceScorer()
    result = semantic_scores(pred, gt, scorer, thresholds=(0.3, 0.4, 0.5), per_image=False)
    assert result["scorer"] == "sentence" and result["num_images"] == 100
    views = {k: (v["SemAP"], v["SemF1"]) for k, v in result["views"].items()}
    # Regression values on this machine's all-MiniLM-L6-v2 (scores on the cosine scale).
    assert views == {"Phe": (0.6971, 0.6587), "Rea": (0.6456, 0.6105), "Full": (0.6649, 0.6278)}
    cached = len(scorer._cache)
    # Every distinct text of the images that have both predictions and ground truth, encoded once.
    scored = [k for k in gt if pred[k] and gt[k]]
    assert cached == len({t for data in (pred, gt) for k in scored for a in data[k]
                          for t in (a["Observed Phenomenon"].strip(), a["Reasoning"].strip())})
    semantic_scores(pred, gt, scorer, per_image=False)
    assert len(scorer._cache) == cached  # nothing re-encoded


@pytest.mark.parametrize("kind", ["bertscore", "sentence"])
def test_the_embedding_cache_is_bounded_and_scores_do_not_change(kind, tiny_bert_dir):
    # A long GRPO run sees new completions at every step: the cache keeps the most recent texts only.
    def scorer(bound):
        if kind == "bertscore":
            return BERTScoreScorer(str(tiny_bert_dir), layer=2, max_cache_entries=bound)
        return SentenceScorer(max_cache_entries=bound)

    bounded, unbounded = scorer(6), scorer(None)
    steps = [([f"step {s} candidate {i} blurred edge" for i in range(4)],
              [f"reference {i} of step {s}: lighting differs" for i in range(4)]) for s in range(5)]
    for candidates, references in steps:
        got = bounded.score_pairs(candidates, references)  # one call needs 8 texts: more than the bound
        np.testing.assert_allclose(got, unbounded.score_pairs(candidates, references), rtol=0, atol=1e-6)
        assert len(bounded._cache) == 6
    assert len(unbounded._cache) == 40
    # The most recently used texts are the ones kept.
    assert set(bounded._cache) <= set(steps[-1][0]) | set(steps[-1][1])
    with pytest.raises(ValueError, match="max_cache_entries"):
        scorer(0)

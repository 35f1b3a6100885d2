"""Benchmark: SemAP / SemF1 scoring speed of forenx.metrics against a straightforward per-pair
implementation of the same metric (bench/baselines/semap_per_pair.py), with identical numbers.

    python bench/metrics.py                       # 10,000 images x 6 x 6, both scorers, + the fixture pass
    python bench/metrics.py --images 2000 --baseline-images 10
    python bench/metrics.py --check-bert-score    # also compare with the bert-score package (if installed)

Data: N images, each with 6 predicted and 6 reference anomalies drawn (seeded) from the AnomReason
fixture's 551 predicted and 610 annotated anomalies, so texts repeat as they do in real data sets (about 2,300 distinct texts in all).
Scorers: the sentence scorer (all-MiniLM-L6-v2, offline) and BERTScore on a small local encoder
(a random 2-layer BERT with the MiniLM WordPiece vocabulary; distilbert-base-uncased is not available
offline). The per-pair baseline runs on the first ``--baseline-images`` images only and its time is
extrapolated linearly to N (each image costs it the same: 36 pairs x 2 fields, every text encoded
anew); ForenX runs on all N. Numbers are checked on the baseline's images: same matched pairs,
pair scores within 1e-5, and SemAP / SemF1 equal to 4 decimals (Full on all baseline images,
Phe and Rea on the first 5). "one view" times one alpha from scratch (encoding included), as the
baseline does; "three views" scores Phe, Rea and Full from one encoding, against 3x the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.baselines.semap_per_pair import (
    PerPairBERTScore,
    PerPairSentenceCosine,
    semap_per_pair,
)
from forenx.metrics.scorers import BERTScoreScorer, SentenceScorer, default_sentence_model_path
from forenx.metrics.semantic import ALPHA_VIEWS, semantic_scores

FIXTURE = ROOT / "tests" / "fixtures" / "anomreason"


def load_fixture():
    pred = json.loads((FIXTURE / "pre_data_test_case.json").read_text())
    gt = json.loads((FIXTURE / "gt_data_test_case.json").read_text())
    return pred, gt


def synthetic(n_images: int, per_image: int = 6, seed: int = 0):
    pred, gt = load_fixture()
    pool_p = [a for items in pred.values() for a in items]
    pool_g = [a for items in gt.values() for a in items]
    rng = random.Random(seed)
    preds = {f"img_{i:06d}.jpg": rng.sample(pool_p, per_image) for i in range(n_images)}
    gts = {f"img_{i:06d}.jpg": rng.sample(pool_g, per_image) for i in range(n_images)}
    return preds, gts


def tiny_encoder(folder: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(default_sentence_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def compare(fast: dict, base: dict, view: str) -> dict:
    """Same matches, same pair scores (to 1e-5), same per-image and overall numbers to 4 decimals."""
    worst, same_pairs, same_images = 0.0, True, True
    for image, (ap, f1, pairs) in base["per_image"].items():
        got = fast["per_image"][image][view]
        same_pairs &= [p[:2] for p in got["pairs"]] == [[i, j] for i, j, _ in pairs]
        if pairs and got["pairs"]:
            worst = max(worst, max(abs(g[2] - s) for g, (_, _, s) in zip(got["pairs"], pairs)))
        same_images &= (got["SemAP"], got["SemF1"]) == (round(ap, 4), round(f1, 4))
    overall = (fast["views"][view]["SemAP"], fast["views"][view]["SemF1"]) == (round(base["SemAP"], 4),
                                                                               round(base["SemF1"], 4))
    return {"same_pairs": bool(same_pairs), "same_per_image_4dp": bool(same_images), "same_overall_4dp": overall,
            "max_pair_score_diff": float(worst)}


def bench_scorer(name: str, make_fast, per_pair, preds, gts, n_base: int, thresholds,
                 view_check_images: int = 5) -> dict:
    base_keys = sorted(gts)[:n_base]
    base_preds = {k: preds[k] for k in base_keys}
    base_gts = {k: gts[k] for k in base_keys}

    scorer = make_fast()
    start = time.perf_counter()
    semantic_scores(preds, gts, scorer, alphas={"Full": 0.5}, thresholds=thresholds, per_image=False)
    fast_one_view = time.perf_counter() - start
    fresh = make_fast()
    start = time.perf_counter()
    semantic_scores(preds, gts, fresh, thresholds=thresholds, per_image=False)
    fast_three_views = time.perf_counter() - start

    start = time.perf_counter()
    base = semap_per_pair(base_preds, base_gts, per_pair, alpha=0.5, thresholds=thresholds)
    base_time = time.perf_counter() - start
    base_extrapolated = base_time * len(gts) / n_base

    checks = {}
    fast_subset = semantic_scores(base_preds, base_gts, make_fast(), thresholds=thresholds)
    # Phe and Rea are checked on the first few images only: the baseline is slow on purpose.
    few = {k: base_preds[k] for k in base_keys[:view_check_images]}
    for view, alpha in ALPHA_VIEWS.items():
        if alpha == 0.5:
            checks[view] = {"images": n_base, **compare(fast_subset, base, view)}
            continue
        few_gts = {k: base_gts[k] for k in few}
        ref = semap_per_pair(few, few_gts, per_pair, alpha=alpha, thresholds=thresholds)
        fast_few = semantic_scores(few, few_gts, make_fast(), thresholds=thresholds)
        checks[view] = {"images": len(few), **compare(fast_few, ref, view)}
    row = {
        "scorer": name, "images": len(gts), "baseline_images": n_base,
        "forenx_s_one_view": round(fast_one_view, 2), "forenx_s_three_views": round(fast_three_views, 2),
        "baseline_s_measured": round(base_time, 2), "baseline_s_extrapolated_to_N": round(base_extrapolated, 1),
        "speedup_one_view": round(base_extrapolated / fast_one_view, 1),
        "speedup_three_views_vs_3x_baseline": round(3 * base_extrapolated / fast_three_views, 1),
        "identical": checks,
    }
    print(json.dumps(row, indent=2), flush=True)
    return row


def fixture_pass() -> dict:
    pred, gt = load_fixture()
    scorer = SentenceScorer()
    start = time.perf_counter()
    result = semantic_scores(pred, gt, scorer, per_image=False)
    seconds = time.perf_counter() - start
    row = {"fixture_sentence_pass_s_three_views": round(seconds, 2), "distinct_texts_encoded": len(scorer._cache),
           "Full": (result["views"]["Full"]["SemAP"], result["views"]["Full"]["SemF1"])}
    print(json.dumps(row), flush=True)
    return row


def check_bert_score(encoder: Path, layer: int, n_images: int) -> dict:
    """Our BERTScore matrix vs the bert-score package (the original evaluator's scorer), same encoder."""
    from bert_score import BERTScorer

    from bench.baselines.semap_per_pair import texts

    pred, gt = load_fixture()
    keys = sorted(k for k in gt if pred[k])[:n_images]
    ours = BERTScoreScorer(str(encoder), layer=layer)
    theirs = BERTScorer(model_type=str(encoder), num_layers=layer, lang="en", rescale_with_baseline=False)
    worst = 0.0
    for k in keys:
        for field in (0, 1):
            g = [texts(a)[field] for a in gt[k]]
            for a in pred[k]:
                c = [texts(a)[field]] * len(g)  # one prediction against all ground truths, as the original
                _, _, f = theirs.score(c, g, batch_size=64, verbose=False)
                worst = max(worst, float(np.abs(f.numpy() - ours.score_pairs(c, g)).max()))
    row = {"bert_score_package_check_images": len(keys), "encoder": str(encoder), "layer": layer,
           "max_abs_diff_F1": worst}
    print(json.dumps(row), flush=True)
    return row


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--baseline-images", type=int, default=10, help="sentence scorer baseline images")
    parser.add_argument("--bert-baseline-images", type=int, default=20, help="BERTScore baseline images")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    parser.add_argument("--check-bert-score", action="store_true")
    parser.add_argument("--skip", nargs="*", default=[], choices=["sentence", "bertscore", "fixture"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    preds, gts = synthetic(args.images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        encoder = tiny_encoder(Path(tmp))
        if "fixture" not in args.skip:
            rows.append(fixture_pass())
        if "bertscore" not in args.skip:
            from transformers import AutoModel, AutoTokenizer

            per_pair = PerPairBERTScore(AutoModel.from_pretrained(encoder), AutoTokenizer.from_pretrained(encoder), 2)
            rows.append(bench_scorer("bertscore (tiny 2-layer BERT, layer 2)",
                                     lambda: BERTScoreScorer(str(encoder), layer=2), per_pair, preds, gts,
                                     args.bert_baseline_images, (0.5, 0.55, 0.6)))
        if "sentence" not in args.skip:
            model = SentenceScorer().model
            rows.append(bench_scorer("sentence (all-MiniLM-L6-v2)", lambda: SentenceScorer(model),
                                     PerPairSentenceCosine(model), preds, gts, args.baseline_images,
                                     (0.3, 0.4, 0.5)))
        if args.check_bert_score:
            rows.append(check_bert_score(encoder, 2, 100))
            rows.append(check_bert_score(Path(default_sentence_model_path()), 5, 5))
    print("\nsummary")
    for row in rows:
        if "speedup_one_view" in row:
            print(f"- {row['scorer']}: {row['images']} images x 6 x 6: ForenX {row['forenx_s_one_view']} s "
                  f"(three views {row['forenx_s_three_views']} s); per-pair baseline {row['baseline_s_measured']} s "
                  f"on {row['baseline_images']} images -> {row['baseline_s_extrapolated_to_N']} s extrapolated; "
                  f"speedup {row['speedup_one_view']}x (three views: {row['speedup_three_views_vs_3x_baseline']}x); "
                  f"identical: {all(c['same_pairs'] and c['same_overall_4dp'] and c['same_per_image_4dp'] for c in row['identical'].values())}")


if __name__ == "__main__":
    main()

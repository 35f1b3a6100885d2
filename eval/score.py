"""Score a predictions file against ground truth: SemAP / SemF1 (+ CSemAP / CSemF1).

The same as `forenx eval score`; kept as a script beside eval/run_eval.py:

    python eval/score.py --pred preds.json --gt gt.json                                   # sentence scorer
    python eval/score.py --pred preds.json --gt gt.json --scorer bertscore \
        --encoder distilbert-base-uncased --layer 5 --official-image-set --out runs/score  # AnomReason setting
"""

from __future__ import annotations

import typer

from forenx.cli.eval import score

if __name__ == "__main__":
    typer.run(score)

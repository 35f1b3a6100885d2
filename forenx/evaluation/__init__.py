"""Batch reasoning evaluation: ``accelerate launch eval/run_eval.py --config eval/configs/NAME.yaml``.

- :mod:`forenx.evaluation.config`: :class:`EvalConfig` (one documented field each) and its parser.
- :mod:`forenx.evaluation.runner`: :func:`run_evaluation` — shard by id, generate with the
  :class:`forenx.inference.Explainer`, append per-rank JSONL, resume, merge, score with
  :mod:`forenx.metrics`, write metrics.json / report.md / predictions in AnomReason's format.
"""

from forenx.evaluation.config import EvalConfig, EvalConfigError, parse_eval_args
from forenx.evaluation.runner import (
    EvalRunError,
    finished_ids,
    merge_predictions,
    read_prediction_lines,
    render_report,
    run_evaluation,
    score_predictions,
    select_records,
    shard,
)

__all__ = [
    "EvalConfig",
    "EvalConfigError",
    "EvalRunError",
    "finished_ids",
    "merge_predictions",
    "parse_eval_args",
    "read_prediction_lines",
    "render_report",
    "run_evaluation",
    "score_predictions",
    "select_records",
    "shard",
]

"""`forenx eval ...` commands.

    forenx eval score --pred preds.json --gt gt.json                       # sentence scorer, offline
    forenx eval score --pred preds.json --gt gt.json --scorer bertscore \\
        --encoder distilbert-base-uncased --layer 5 --official-image-set    # the AnomReason setting
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)


def _parse_thresholds(text: str) -> list[float]:
    values = []
    for piece in text.split(","):
        if piece.strip():
            try:
                values.append(float(piece))
            except ValueError:
                raise typer.BadParameter(f"{piece.strip()!r} is not a number", param_hint="--thresholds") from None
    if not values:
        raise typer.BadParameter("give at least one threshold, e.g. 0.7,0.8,0.9", param_hint="--thresholds")
    return values


@app.command()
def score(
    pred: Annotated[Path, typer.Option("--pred", help="Predictions: AnomReason JSON or ForenX JSONL.")],
    gt: Annotated[Path, typer.Option("--gt", help="Ground truth: AnomReason JSON or ForenX JSONL.")],
    format: Annotated[str | None, typer.Option("--format", help="forenx | anomreason (default: detected).")] = None,
    scorer: Annotated[str | None, typer.Option(
        "--scorer", help="bertscore | sentence (default: bertscore when --encoder is given, else sentence).")] = None,
    encoder: Annotated[str | None, typer.Option(
        "--encoder", help="Encoder path or Hub id (bertscore: e.g. distilbert-base-uncased; sentence: a "
                          "sentence-transformers model; default all-MiniLM-L6-v2, offline).")] = None,
    layer: Annotated[int | None, typer.Option(
        "--layer", help="BERTScore layer (0 = embeddings; default: bert-score's for known encoders, "
                        "else the last).")] = None,
    alpha: Annotated[float, typer.Option(
        "--alpha", help="Headline view's alpha (Phe 1.0, Rea 0.0, Full 0.5 are always reported; another "
                        "value adds a view).")] = 0.5,
    thresholds: Annotated[str, typer.Option(
        "--thresholds", help="Comma-separated thresholds (the sentence scorer lives on another scale).")] = "0.7,0.8,0.9",
    official_image_set: Annotated[bool, typer.Option(
        "--official-image-set", help="Score only the images present in both files (the AnomReason tool's rule) "
                                     "instead of counting a missing prediction as an empty list.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics.json and metrics.md.")] = Path("eval_scores"),
) -> None:
    """Score explanations: SemAP / SemF1 (and CSemAP / CSemF1 when verdicts and labels are present)."""
    from forenx.metrics.io import MetricsInputError, check_image_sets, load_explanations
    from forenx.metrics.scorers import build_scorer
    from forenx.metrics.semantic import ALPHA_VIEWS, semantic_markdown, semantic_scores

    if format is not None and format not in ("forenx", "anomreason"):
        raise typer.BadParameter(f"{format!r}: use forenx or anomreason", param_hint="--format")
    if not 0.0 <= alpha <= 1.0:
        raise typer.BadParameter(f"{alpha} is not within [0, 1]", param_hint="--alpha")
    threshold_values = _parse_thresholds(thresholds)
    scorer_name = scorer or ("bertscore" if encoder else "sentence")
    try:
        predictions = load_explanations(pred, format=format, role="predictions")
        ground_truth = load_explanations(gt, format=format, role="ground truth")
        check_image_sets(predictions, ground_truth, official_image_set=official_image_set)
        text_scorer = build_scorer(scorer_name, encoder, layer)
    except (MetricsInputError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    views = dict(ALPHA_VIEWS)
    headline = next((name for name, a in views.items() if a == alpha), None)
    if headline is None:
        headline = f"alpha={alpha:g}"
        views[headline] = alpha
    aware = predictions.has_verdicts and ground_truth.has_verdicts
    result = semantic_scores(
        predictions.anomalies, ground_truth.anomalies, text_scorer, alphas=views, thresholds=threshold_values,
        official_image_set=official_image_set,
        verdicts=predictions.verdicts if aware else None, labels=ground_truth.verdicts if aware else None,
    )
    result = {"predictions": str(pred), "ground_truth": str(gt), "format": predictions.format,
              "headline": {"view": headline, **{k: v for k, v in result["views"][headline].items()
                                                if k in ("alpha", "SemAP", "SemF1", "CSemAP", "CSemF1")}},
              **result}
    table = semantic_markdown(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "metrics.md").write_text(table, encoding="utf-8")
    typer.echo(table)
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'metrics.md'}")


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(ctx: typer.Context) -> None:
    """Batch reasoning eval in this process: the same as `python eval/run_eval.py --config ... [--field value]`.

    For several processes or nodes use `accelerate launch eval/run_eval.py ...`.
    """
    from forenx.evaluation import EvalConfigError, EvalRunError, parse_eval_args, run_evaluation

    try:
        metrics = run_evaluation(parse_eval_args(list(ctx.args)))
    except (EvalConfigError, EvalRunError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if metrics is not None:
        typer.echo(f"wrote {metrics['config']['output_dir']}/metrics.json and report.md")

"""Batch reasoning evaluation over processes and nodes: shard by id, generate, append, resume, merge, score.

:func:`run_evaluation` is what ``accelerate launch eval/run_eval.py`` runs in every process:

1. The main process validates the records (:func:`forenx.data.validate.require_valid`) and builds the
   scorer before any model loads, so bad data or a bad encoder fail in seconds; every process loads
   the model (:meth:`forenx.inference.Explainer.from_pretrained`, the one generation path).
2. Every process reads the prediction lines already in ``output_dir`` (any rank's file, whatever
   world size wrote them): those ids are finished and never generated again. The rest are sharded
   explicitly by id — rank r takes the pending ids whose position (file order) mod world_size == r —
   so no sample is padded in or done twice.
3. Each process appends every finished sample to ``output_dir/predictions.rank{R}.jsonl`` as soon as
   its batch is done (flush + fsync per batch): a SIGKILL loses at most the batch in flight, and a
   line cut short by the kill is ignored on resume (and cut off before the file grows again).
4. The processes meet (with a timeout; a process's exception is reported by every process), and the
   main process merges the rank files (one line per id; every id exactly once, or the missing ids are
   named), scores with :mod:`forenx.metrics` and writes ``predictions.jsonl``, ``metrics.json``,
   ``report.md`` and ``predictions_anomreason.json``.

A sample whose report carries an ``error`` (e.g. the model failed on its batch) is written, and
generated again by the next run into the same ``output_dir``; the newest line without error wins.
Several nodes must share ``output_dir`` (a shared file system): the main process reads every rank's file.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from forenx.data.records import Record
from forenx.evaluation.config import EvalConfig, EvalConfigError
from forenx.schema import ForensicReport, Quadruple, Verdict

__all__ = [
    "PAUSE_ENV",
    "EvalRunError",
    "MergedPredictions",
    "finished_ids",
    "merge_predictions",
    "read_prediction_lines",
    "render_report",
    "run_evaluation",
    "score_predictions",
    "select_records",
    "shard",
]

#: Seconds each process sleeps after writing a batch: lets crash tests and demos kill a run mid-way
#: at a known point. Unset (the default) means no pause.
PAUSE_ENV = "FORENX_EVAL_PAUSE_AFTER_BATCH"
RANK_FILE = "predictions.rank{rank}.jsonl"
RANK_GLOB = "predictions.rank*.jsonl"
CONFIG_FILE = "eval_config.json"


class EvalRunError(RuntimeError):
    """A process of the evaluation failed, or the merged predictions are incomplete."""


# ------------------------------------------------------------------------------------ records
def select_records(config: EvalConfig) -> list[Record]:
    """The records to evaluate, in file order: split filter, then ``limit``. Ids must be unique.

    Raises :class:`EvalConfigError` when the split matches nothing (naming the splits present).
    """
    from forenx.data.io import read_records

    records = read_records(config.data_file)
    if config.split is not None:
        selected = [r for r in records if r.split == config.split]
        if not selected:
            present = sorted({str(r.split) for r in records})
            raise EvalConfigError(f"split={config.split!r}: no record of {config.data_file} has this split "
                                  f"(present: {', '.join(present)}); set split to one of them or leave it out.")
        records = selected
    if config.limit is not None:
        records = records[: config.limit]
    seen: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        if record.id in seen:
            raise EvalConfigError(f"{config.data_file}: id {record.id!r} appears twice (records {seen[record.id]} "
                                  f"and {number} of the selection); ids must be unique to shard and resume by id.")
        seen[record.id] = number
    return records


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """The items of ``rank``: those whose position mod ``world_size`` is ``rank``; no padding, no repeats.

    >>> shard(["a", "b", "c", "d", "e"], 0, 2), shard(["a", "b", "c", "d", "e"], 1, 2)
    (['a', 'c', 'e'], ['b', 'd'])
    """
    assert 0 <= rank < world_size, f"rank {rank} outside world size {world_size}"
    return list(items[rank::world_size])


# ------------------------------------------------------------------------- prediction files
def read_prediction_lines(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """The complete prediction lines of one rank file, and the byte length they cover.

    A last line without its newline was cut short by a kill mid-write: it is left out (and the
    returned length stops before it). Any other bad line is a damaged file and raises.
    """
    path = Path(path)
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    lines = []
    for number, raw in enumerate(data[:complete].splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EvalRunError(f"{path}:{number}: not a JSON line ({exc.msg}); the file was edited or damaged. "
                               "Remove that line (its sample is generated again on the next run).") from None
        if not isinstance(value, dict) or "id" not in value:
            raise EvalRunError(f"{path}:{number}: a prediction line must be an object with an 'id'; remove it.")
        lines.append(value)
    return lines, complete


def _rank_files(output_dir: Path) -> list[Path]:
    return sorted(p for p in output_dir.glob(RANK_GLOB) if p.is_file())


def finished_ids(output_dir: str | os.PathLike) -> set[str]:
    """Ids with a prediction line without error in any rank file of ``output_dir``."""
    done: set[str] = set()
    for path in _rank_files(Path(output_dir)):
        lines, _ = read_prediction_lines(path)
        done.update(str(line["id"]) for line in lines if not line.get("error"))
    return done


def _cut_partial_line(path: Path) -> None:
    """Drop a last line cut short by a kill, so that appended lines start on a line of their own."""
    if path.is_file():
        _, complete = read_prediction_lines(path)
        if complete != path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(complete)


def prediction_line(record: Record, report: ForensicReport) -> dict[str, Any]:
    """One finished sample: the record's id, image, label and generator, then the report's fields.

    Flat, so ``forenx eval score --pred predictions.jsonl --gt records.jsonl`` reads it directly.
    """
    report.image = record.image
    return {"id": record.id, "image": record.image, "label": record.label, "generator": record.generator,
            **{k: v for k, v in report.to_dict().items() if k != "image"}}


@dataclass
class MergedPredictions:
    """The rank files merged: one line per evaluated id, in record order, and what the merge found."""

    lines: dict[str, dict[str, Any]]
    missing: list[str] = field(default_factory=list)
    duplicates: int = 0
    outside_selection: int = 0
    files: list[str] = field(default_factory=list)


def merge_predictions(output_dir: str | os.PathLike, ids: Sequence[str]) -> MergedPredictions:
    """Merge every rank file: per id the newest line without error (else the newest line).

    ``duplicates`` counts the extra lines of ids seen more than once (a retried error, a resumed
    batch); ``missing`` lists the ids of ``ids`` with no line at all.
    """
    wanted = set(ids)
    chosen: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    outside = 0
    files = _rank_files(Path(output_dir))
    for path in files:
        for line in read_prediction_lines(path)[0]:
            key = str(line["id"])
            if key not in wanted:
                outside += 1
                continue
            seen[key] = seen.get(key, 0) + 1
            current = chosen.get(key)
            if current is None or not line.get("error") or current.get("error"):
                chosen[key] = line
    return MergedPredictions(
        lines={k: chosen[k] for k in ids if k in chosen},
        missing=[k for k in ids if k not in chosen],
        duplicates=sum(n - 1 for n in seen.values()),
        outside_selection=outside,
        files=[p.name for p in files],
    )


# ------------------------------------------------------------------------------------ scoring
def _semantic_ids(records: Sequence[Record], config: EvalConfig) -> list[Record]:
    if config.semantic_images == "all":
        return list(records)
    return [r for r in records if Verdict.coerce(r.label) is not Verdict.REAL]


def score_predictions(records: Sequence[Record], lines: Mapping[str, Mapping[str, Any]], config: EvalConfig,
                      scorer: Any = None) -> dict[str, Any]:
    """Metrics of merged prediction lines against their records, all through :mod:`forenx.metrics`.

    ``semantic``: SemAP / SemF1 (CSemAP / CSemF1 when labels are present) over the images chosen by
    ``config.semantic_images``, keyed by record id; ``detection``: accuracy (real, fake, overall),
    AUC, AP, F1, ECE, per generator (an unparseable answer is wrong); ``text`` with ``text_metrics``.
    """
    from forenx.metrics import build_scorer, detection_metrics, semantic_scores, text_metrics

    if scorer is None:
        scorer = build_scorer(config.scorer, config.encoder, config.layer)
    reports = {r.id: lines[r.id] for r in records if r.id in lines}
    labelled = any(Verdict.coerce(r.label) is not None for r in records)
    out: dict[str, Any] = {"num_records": len(records), "num_predictions": len(reports),
                           "unparseable": sum(1 for p in reports.values() if p.get("verdict") is None),
                           "errors": sum(1 for p in reports.values() if p.get("error"))}

    semantic_records = _semantic_ids(records, config)
    if semantic_records:
        predictions = {r.id: [Quadruple.from_dict(a) for a in reports[r.id].get("anomalies") or []]
                       for r in semantic_records if r.id in reports}
        ground_truth = {r.id: r.quadruples for r in semantic_records}
        aware = {}
        if labelled:
            aware = {"verdicts": {k: reports[k].get("verdict") for k in predictions},
                     "labels": {r.id: r.label for r in semantic_records}}
        out["semantic"] = semantic_scores(predictions, ground_truth, scorer, thresholds=config.thresholds,
                                          official_image_set=config.official_image_set, **aware)
        out["semantic"]["images_scored"] = ("records not labelled real" if config.semantic_images == "fake"
                                            else "every record")
    if labelled:
        evaluated = [r for r in records if r.id in reports]
        out["detection"] = detection_metrics(
            [r.label for r in evaluated], [reports[r.id].get("verdict") for r in evaluated],
            prob_fake=[reports[r.id].get("prob_fake") for r in evaluated],
            generators=[r.generator or ("real" if Verdict.coerce(r.label) is Verdict.REAL else None)
                        for r in evaluated])
    if config.text_metrics:
        evaluated = [r for r in records if r.id in reports]
        out["text"] = text_metrics([str(reports[r.id].get("summary") or "") for r in evaluated],
                                   [r.summary for r in evaluated], clip_encoder=config.css_encoder)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render_report(metrics: Mapping[str, Any]) -> str:
    """``report.md``: the run, the semantic table (scorer and image-set rule stated), detection tables."""
    from forenx.metrics import semantic_markdown

    run, config = metrics["run"], metrics["config"]
    lines = [
        "# ForenX evaluation", "",
        f"- model: `{config['model']}`",
        f"- data: `{config['data_file']}`" + (f" (split {config['split']})" if config.get("split") else "")
        + f" — {metrics['num_records']} records, {metrics['num_predictions']} predictions, "
        f"{metrics['unparseable']} unparseable answers, {metrics['errors']} errors",
        f"- generation: max_new_tokens {config['max_new_tokens']}, "
        + (f"sampling (temperature {config['temperature']})" if config["do_sample"] else "greedy")
        + f", batch {config['batch_size']}, evidence {'on' if config['evidence'] else 'off'}",
        (f"- run: {run['world_size']} process(es); {run['generated_this_run']} generated this run, "
         f"{run['resumed']} taken from earlier runs; generation {run['generation_s']:.1f} s"),
        "",
    ]
    semantic = metrics.get("semantic")
    if semantic:
        lines += ["## Explanations (SemAP / SemF1)", "",
                  (f"Images scored: {semantic['images_scored']}. Image-set rule: {semantic['image_set']} — "
                   f"{semantic['image_set_rule']}."), "", semantic_markdown(semantic)]
    detection = metrics.get("detection")
    if detection:
        keys = ("n", "accuracy", "accuracy_real", "accuracy_fake", "auc", "ap", "auc_vs_real", "f1", "ece",
                "unparseable")
        header = "| Group | " + " | ".join(keys) + " |"
        lines += ["## Detection", "", "An unparseable answer counts as wrong; auc_vs_real ranks a group's fakes "
                  "against all the reals.", "", header,
                  "|" + "---|" * (len(keys) + 1)]
        lines.append("| all | " + " | ".join(_fmt(detection.get(k)) for k in keys) + " |")
        for group, values in detection.get("per_generator", {}).items():
            lines.append(f"| {group} | " + " | ".join(_fmt(values.get(k)) for k in keys) + " |")
        lines.append("")
    text = metrics.get("text")
    if text:
        lines += ["## Summary text (FakeClue / MMFR style)", "", "| n | ROUGE-L | BLEU-1 | CSS |", "|---|---|---|---|",
                  f"| {text['n']} | {_fmt(text['rouge_l'])} | {_fmt(text['bleu1'])} | {_fmt(text.get('css'))} |", ""]
    if metrics.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in metrics["notes"]] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- distributed run
def _exchange(state, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process's payload, on every process (a meeting point with the configured timeout)."""
    if state.num_processes == 1:
        return [payload]
    from accelerate.utils import gather_object

    return gather_object([payload])


def _check(state, error: str | None, stage: str) -> list[dict[str, Any]]:
    """Meet the other processes; if any failed at ``stage``, raise everywhere naming the process."""
    statuses = _exchange(state, {"rank": state.process_index, "error": error})
    failed = [s for s in statuses if s["error"]]
    if failed:
        raise EvalRunError(f"{stage} failed on " + "; ".join(f"process {s['rank']}: {s['error']}" for s in failed))
    return statuses


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (EvalConfigError, EvalRunError, FileNotFoundError, OSError, ValueError)):
        return f"{type(exc).__name__}: {exc}"
    return "".join(traceback.format_exception(exc)).strip()


def _check_resume_settings(config: EvalConfig, output_dir: Path) -> None:
    saved_path = output_dir / CONFIG_FILE
    if not saved_path.is_file() or not _rank_files(output_dir):
        return
    saved = json.loads(saved_path.read_text(encoding="utf-8")).get("generation", {})
    now = config.generation_settings()
    changed = {k: (saved.get(k), v) for k, v in now.items() if k in saved and saved[k] != v}
    if changed:
        detail = ", ".join(f"{k} was {old!r}, now {new!r}" for k, (old, new) in changed.items())
        raise EvalConfigError(f"{output_dir} holds predictions of a run with other generation settings ({detail}); "
                              "use a new output_dir, or the same settings to resume that run.")


def _prepare(config: EvalConfig) -> tuple[list[Record], Any]:
    """Main process, before any model loads: validate the data, select, check a resume, build the scorer."""
    from forenx.data.validate import require_valid
    from forenx.metrics import build_scorer

    require_valid(config.data_file, config.data_root, check_images=config.validate_images)
    records = select_records(config)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _check_resume_settings(config, output_dir)
    (output_dir / CONFIG_FILE).write_text(json.dumps(
        {"config": config.to_dict(), "generation": config.generation_settings()}, indent=2) + "\n", encoding="utf-8")
    scorer = build_scorer(config.scorer, config.encoder, config.layer)
    return records, scorer


def _generate(config: EvalConfig, explainer, records: Sequence[Record], rank_file: Path, root: Path,
              show_progress: bool) -> int:
    """Explain ``records`` in batches, appending each batch's lines to ``rank_file`` at once."""
    from tqdm.auto import tqdm

    from forenx.data.io import resolve_in_root

    pause = float(os.environ.get(PAUSE_ENV) or 0)
    done = 0
    sources = [resolve_in_root(root, r.image) for r in records]
    with open(rank_file, "a", encoding="utf-8", newline="\n") as f, \
            tqdm(total=len(records), desc="explaining", disable=not show_progress) as bar:
        for views in explainer.iter_batches(sources):
            batch = records[done: done + len(views)]
            f.writelines(json.dumps(prediction_line(record, view.report), ensure_ascii=False) + "\n"
                         for record, view in zip(batch, views))
            f.flush()
            os.fsync(f.fileno())
            done += len(views)
            bar.update(len(views))
            if pause:
                time.sleep(pause)
    return done


def run_evaluation(config: EvalConfig) -> dict[str, Any] | None:
    """Run the evaluation in this process (one of ``accelerate launch``'s, or alone).

    Returns the metrics on the main process, None on the others. Raises :class:`EvalRunError`
    (on every process) when any process fails, and :class:`EvalConfigError` /
    :class:`forenx.data.validate.InvalidDataError` for bad settings or data, before generation.
    """
    from forenx.training.distributed import close_process_group

    try:
        metrics = _run(config)
    except BaseException:
        # No barrier on an error: the processes may not all get here.
        close_process_group(wait=False)
        raise
    # Every process got here (the last meeting in _run is collective): meet once more, then end the
    # group together. Ending it without this barrier, one 2-process run in a network namespace lost a
    # process to SIGABRT ("terminate called without an active exception") after all its work was done.
    close_process_group(wait=True)
    return metrics


def _run(config: EvalConfig) -> dict[str, Any] | None:
    import torch
    from accelerate import PartialState
    from accelerate.utils import set_seed

    from forenx.data.io import default_root
    from forenx.inference.explainer import Explainer

    started = time.perf_counter()
    # Without an accelerator, accelerate finds no backend for launched processes and each would run
    # alone (every one of them rank 0): ask for the CPU (gloo) explicitly.
    state = PartialState(cpu=not torch.accelerator.is_available(), timeout=timedelta(seconds=config.timeout_s))
    rank, world = state.process_index, state.num_processes
    output_dir = Path(config.output_dir)
    root = Path(config.data_root) if config.data_root else default_root(config.data_file)

    # 1. Data and scorer checked once, before any model loads.
    records, scorer, error, failure = None, None, None, None
    if state.is_main_process:
        try:
            records, scorer = _prepare(config)
        except Exception as exc:  # noqa: BLE001 -- reported to every process, then raised as is
            error, failure = _describe(exc), exc
    try:
        _check(state, error, "checking the data and settings")
    except EvalRunError:
        if failure is not None:
            raise failure from None
        raise

    # 2. Every process: the selection, what is already finished, the model.
    explainer, error = None, None
    try:
        if records is None:
            records = select_records(config)
        rank_file = output_dir / RANK_FILE.format(rank=rank)
        _cut_partial_line(rank_file)
        done = finished_ids(output_dir) & {r.id for r in records}
        set_seed(config.seed)
        explainer = Explainer.from_pretrained(
            config.model, device=str(state.device), dtype=config.dtype, batch_size=config.batch_size,
            max_new_tokens=config.max_new_tokens, evidence=config.evidence, do_sample=config.do_sample,
            temperature=config.temperature, top_p=config.top_p, top_k=config.top_k,
            seed=config.seed + rank if config.do_sample else None)
    except Exception as exc:  # noqa: BLE001 -- reported to every process by the meeting below
        error = _describe(exc)
    _check(state, error, "loading the model")
    # Every process read the finished ids before anyone writes (the meeting above), so all agree.
    pending = [r for r in records if r.id not in done]
    mine = shard(pending, rank, world)

    # 3. Generate and append.
    generation_started, cpu_started = time.perf_counter(), time.process_time()
    generated, error = 0, None
    try:
        with torch.inference_mode():
            generated = _generate(config, explainer, mine, rank_file, root, state.is_main_process)
    except Exception as exc:  # noqa: BLE001
        error = _describe(exc)
    generation_s, generation_cpu_s = time.perf_counter() - generation_started, time.process_time() - cpu_started
    statuses = _exchange(state, {"rank": rank, "error": error, "generated": generated, "assigned": len(mine),
                                 "generation_s": generation_s, "generation_cpu_s": generation_cpu_s})
    failed = [s for s in statuses if s["error"]]
    if failed:
        raise EvalRunError("generation failed on " + "; ".join(f"process {s['rank']}: {s['error']}" for s in failed)
                           + f". Finished samples are kept in {output_dir}; run the same command again to resume.")
    # 4. The main process merges, scores and writes; the others wait for it, so that no process
    # tears its process group down while another still uses it (gloo aborts at exit otherwise).
    metrics, error, failure = None, None, None
    if state.is_main_process:
        try:
            metrics = _merge_score_write(config, records, scorer, statuses, done, output_dir, world, started)
        except Exception as exc:  # noqa: BLE001 -- reported to every process, then raised as is
            error, failure = _describe(exc), exc
    try:
        _check(state, error, "merging and scoring")
    except EvalRunError:
        if failure is not None:
            raise failure from None
        raise
    return metrics


def _merge_score_write(config: EvalConfig, records: list[Record], scorer: Any, statuses: list[dict[str, Any]],
                       done: set[str], output_dir: Path, world: int, started: float) -> dict[str, Any]:
    """Main process: merge every rank file, check each id is there once, score, write the outputs."""
    ids = [r.id for r in records]
    merged = merge_predictions(output_dir, ids)
    if merged.missing:
        raise EvalRunError(f"{len(merged.missing)} of {len(ids)} samples have no prediction in {output_dir} "
                           f"(e.g. {merged.missing[:5]}; rank files found: {', '.join(merged.files) or 'none'}); "
                           "run the same command again to generate them. With several machines, output_dir must "
                           "be a folder they all share: the main process reads every process's file.")
    with open(output_dir / "predictions.jsonl", "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(merged.lines[key], ensure_ascii=False) + "\n" for key in ids)
    metrics = score_predictions(records, merged.lines, config, scorer)
    notes = []
    if merged.duplicates:
        notes.append(f"{merged.duplicates} repeated prediction line(s) (retried or resumed samples) were merged "
                     "to one per id.")
    if merged.outside_selection:
        notes.append(f"{merged.outside_selection} line(s) in the rank files are for ids outside this selection "
                     "(another split or limit) and were left out.")
    notes.extend(_export_anomreason(records, merged.lines, output_dir))
    generated_total = sum(s["generated"] for s in statuses)
    metrics["run"] = {
        "world_size": world, "generated_this_run": generated_total, "resumed": len(done),
        "per_process": [{k: s[k] for k in ("rank", "assigned", "generated", "generation_s", "generation_cpu_s")}
                        for s in statuses],
        "generation_s": max(s["generation_s"] for s in statuses),
        "samples_per_s": generated_total / max(max(s["generation_s"] for s in statuses), 1e-9),
        "total_s": time.perf_counter() - started, "rank_files": merged.files,
    }
    metrics["config"] = config.to_dict()
    metrics["notes"] = notes
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    (output_dir / "report.md").write_text(render_report(metrics), encoding="utf-8")
    return metrics


def _export_anomreason(records: Iterable[Record], lines: Mapping[str, Mapping[str, Any]], output_dir: Path) -> list[str]:
    """Write predictions_anomreason.json (keyed as AnomReason keys images); notes when it cannot be written."""
    from forenx.data.export import reports_to_anomreason, write_anomreason

    reports = {}
    for record in records:
        original = record.meta.get("anomreason")
        key = original.get("file_name") if isinstance(original, Mapping) and original.get("file_name") else \
            Path(record.image.replace("\\", "/")).name
        if key in reports:
            return [(f"predictions_anomreason.json not written: records {reports[key].image!r} and "
                     f"{record.image!r} share the image file name {key!r}, which AnomReason's format keys by.")]
        reports[key] = ForensicReport.from_dict({**lines[record.id], "image": record.image})
    write_anomreason(reports_to_anomreason(reports), output_dir / "predictions_anomreason.json")
    return []

"""`forenx explain PATHS...`: explain images (files, folders, globs) in batches.

    forenx explain image.jpg                                 # the default model shipped in the package
    forenx explain shots/ more/*.png --model PATH_OR_HUB_ID --batch-size 8 --format html --out report/

Terminal blocks (rich) go to stdout; with ``--out DIR`` every image's report is written to
``DIR/<image name>.<format>`` as soon as its batch finishes, and ``DIR/reports.json`` (all reports
so far, no pictures) is replaced after every batch, so an interruption or a later failure loses
nothing already written. Without ``--out``, ``--format json|md|html`` prints the whole document to
stdout at the end. The exit status is 1 when any file failed (the others are still explained),
2 when nothing could start (no model, bad option).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from forenx.console import fail
from forenx.images import IMAGE_EXTENSIONS

__all__ = ["expand_paths", "register"]

_GLOB_CHARACTERS = set("*?[")
_SUFFIX = {"text": "txt", "json": "json", "md": "md", "html": "html"}


def expand_paths(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """Files as given, folders searched recursively for image files, globs expanded (recursive
    ``**`` too), each path once in first-seen order. Returns ``(images, warnings)``.

    A path that does not exist is kept: the explainer reports it as a failed file.
    """
    images: list[str] = []
    warnings: list[str] = []
    for raw in paths:
        if any(ch in _GLOB_CHARACTERS for ch in raw) and not os.path.exists(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                images.append(raw)  # reported as "file not found", with the pattern as its name
                continue
            candidates = matches
        else:
            candidates = [raw]
        for candidate in candidates:
            path = Path(candidate)
            if path.is_dir():
                found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
                if not found:
                    warnings.append(f"{candidate}: no image files in this folder ({', '.join(sorted(IMAGE_EXTENSIONS))})")
                images.extend(found)
            else:
                images.append(candidate)
    seen: set[str] = set()
    unique = [p for p in images if not (p in seen or seen.add(p))]
    return unique, warnings


def _output_name(image: str, used: set[str], suffix: str) -> str:
    """``photo.jpg`` -> ``photo.jpg.<suffix>``; a second ``photo.jpg`` from another folder gets ``-2``."""
    base = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in Path(image).name) or "image"
    name, number = f"{base}.{suffix}", 1
    while name in used:
        number += 1
        name = f"{base}-{number}.{suffix}"
    used.add(name)
    return name


def explain(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) and globs.",
                                               show_default=False)],
    model: Annotated[str | None, typer.Option("--model", "-m", help="A saved ForenX model folder or Hub id "
                                              "(default: forenx-nano, shipped in the package).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per batch.")] = 8,
    report_format: Annotated[str, typer.Option("--format", "-f", help="text, json, md or html.")] = "text",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the report files "
                                             "(written batch by batch).")] = None,
    no_evidence: Annotated[bool, typer.Option("--no-evidence", help="Skip the evidence tools (metadata, C2PA, "
                                              "error-level analysis, spectrum).")] = False,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda when available).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Longest answer, in tokens.")] = 512,
    sample: Annotated[bool, typer.Option("--sample", help="Sample the text instead of greedy decoding "
                                         "(P(fake) is unaffected).")] = False,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature.")] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for sampling (repeatable text).")] = None,
) -> None:
    """Explain images: verdict, P(fake), the model's anomalies and the evidence, in batches."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from forenx.inference.report import print_reports, render_html, render_json, render_markdown, write_report

    if report_format not in _SUFFIX:
        fail(f"--format {report_format!r} is not one of {', '.join(_SUFFIX)}")
    if device not in (None, "cpu", "cuda") and not str(device).startswith("cuda:"):
        fail(f"--device {device!r}: use cpu or cuda")
    images, warnings = expand_paths(paths)
    stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    for warning in warnings:
        stderr.print(f"warning: {warning}", markup=False)
    if not images:
        fail("no images to explain: " + "; ".join(warnings or ["no paths given"]), code=1)

    import torch
    from transformers.utils import logging as transformers_logging

    from forenx.inference.explainer import Explainer

    transformers_logging.disable_progress_bar()  # "Loading weights" bars would mix with the reports

    if seed is not None:
        torch.manual_seed(seed)
    if device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is available here; use --device cpu")
    try:
        explainer = Explainer.from_pretrained(model, device=device, batch_size=batch_size,
                                              max_new_tokens=max_new_tokens, evidence=not no_evidence,
                                              do_sample=sample, temperature=temperature, seed=seed)
    except (OSError, ValueError) as exc:
        fail(str(exc))

    stdout = Console(highlight=False, soft_wrap=False)
    used_names: set[str] = set()
    summaries = []  # every report so far, without pictures (reports.json)
    views_for_stdout = []
    failed = 0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    progress = Progress(TextColumn("explaining"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=stderr, transient=True, disable=len(images) <= batch_size)
    with progress:
        task = progress.add_task("explain", total=len(images))
        for batch in explainer.iter_batches(images):
            for view in batch:
                failed += view.report.error is not None
                summaries.append(view.report)
                if out is not None:
                    write_report(view, out / _output_name(view.report.image, used_names, _SUFFIX[report_format]), report_format)
            if out is not None:
                write_report(summaries, out / "reports.json", "json")
            if report_format == "text":
                print_reports(batch, console=stdout)
            elif out is None:
                views_for_stdout.extend(batch)
            progress.advance(task, len(batch))
    if views_for_stdout:
        renderer = {"json": render_json, "md": render_markdown, "html": render_html}[report_format]
        typer.echo(renderer(views_for_stdout))
    message = f"{len(images) - failed} of {len(images)} image(s) explained"
    if failed:
        message += f", {failed} failed"
    if out is not None:
        message += f"; reports in {out}"
    stderr.print(message, markup=False)
    if failed or warnings:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Adds the command to the main app."""
    app.command("explain", no_args_is_help=True)(explain)

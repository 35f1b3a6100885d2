"""`forenx data ...` commands: validate, stats, convert, export (and synth, push).

Each command is one function; the library code it calls lives in forenx.data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from forenx.console import fail

app = typer.Typer(no_args_is_help=True)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Record file (JSONL).")],
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", help="Data root the image paths are relative to (default: the folder holding FILE)."
        ),
    ] = None,
    no_images: Annotated[
        bool, typer.Option("--no-images", help="Check paths only; do not decode the images.")
    ] = False,
) -> None:
    """Report every bad record with its line number and reason; exit 1 when any is bad."""
    from rich.markup import escape
    from rich.table import Table

    from forenx.data.validate import PROBLEM_KINDS, validate_records

    try:
        report = validate_records(file, root, check_images=not no_images)
    except (FileNotFoundError, OSError) as exc:
        fail(str(exc))
    console = _console()
    for problem in report.problems:
        console.print(
            f"{file}:{problem.line_no}: [{problem.kind}] {problem.reason}"
            + (f" (id {problem.record_id!r})" if problem.record_id else ""),
            markup=False,
        )
    table = Table(title=f"{file} (root {report.root})")
    table.add_column("check")
    table.add_column("count", justify="right")
    table.add_column("meaning")
    table.add_row("records", str(report.n_records), "non-blank lines")
    table.add_row("valid", str(report.n_valid), "", style="green")
    table.add_row(
        "invalid",
        str(report.n_invalid),
        "lines with at least one problem",
        style="red" if report.n_invalid else None,
    )
    for kind, count in report.counts().items():
        table.add_row(f"  {kind}", str(count), escape(PROBLEM_KINDS[kind]), style="red")
    console.print(table)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def stats(
    file: Annotated[Path, typer.Argument(help="Record file (JSONL).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the counts as JSON instead of tables.")
    ] = False,
) -> None:
    """Counts by label, source, generator, split, anomalies per image, and a severity histogram."""
    from forenx.data.io import RecordFileError, read_records
    from forenx.data.stats import compute_stats, stats_tables

    if not file.is_file():
        fail(f"record file {str(file)!r} not found")
    try:
        counts = compute_stats(read_records(file))
    except RecordFileError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(counts, indent=2))
        return
    console = _console()
    console.print(
        f"{file}: {counts['records']} records, {counts['anomalies']} anomalies, "
        f"{counts['with_mask']} with a mask",
        markup=False,
    )
    for table in stats_tables(counts):
        console.print(table)


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="The dataset's annotation file or folder, in its own format.")],
    dataset: Annotated[
        str,
        typer.Option(
            "--from",
            help="Dataset name: anomreason, fakeclue, mmfr, synthscars, loki, sid_set, mmtd_set, so_fake.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Record file to write (JSONL).")],
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Data root; when given, records whose image is not under it are skipped (and reported). "
            "so_fake and SID-Set parquet extract their images there.",
        ),
    ] = None,
    image_prefix: Annotated[
        str,
        typer.Option(
            "--image-prefix",
            help="Prepended to the dataset's own image paths, "
            "e.g. 'loki/' when the dataset sits in that folder of the root.",
        ),
    ] = "",
    split: Annotated[
        str | None, typer.Option("--split", help="Split name written into every record.")
    ] = None,
    mask_dir: Annotated[
        str | None,
        typer.Option(
            "--mask-dir",
            help="SynthScars: write polygon masks to ROOT/MASK_DIR/<id>.png (needs --root and the images).",
        ),
    ] = None,
) -> None:
    """Convert a public dataset into ForenX records; prints what was skipped and why."""
    from forenx.data.converters import CONVERTERS
    from forenx.data.converters import convert as run_converter
    from forenx.data.io import write_records

    if dataset not in CONVERTERS:
        fail(f"unknown dataset {dataset!r}; choose one of {', '.join(sorted(CONVERTERS))}")
    options = {}
    if mask_dir is not None:
        if dataset != "synthscars" or root is None:
            fail("--mask-dir works with --from synthscars and needs --root")
        options = {"mask_dir": mask_dir}
    try:
        result = run_converter(dataset, src, image_prefix=image_prefix, split=split, root=root, **options)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        fail(str(exc))
    written = write_records(result.records, out)
    console = _console()
    for skipped in result.skipped:
        console.print(f"skipped {skipped.where}: {skipped.reason}", markup=False)
    console.print(
        f"{dataset}: wrote {written} records to {out}; {len(result.skipped)} entries skipped "
        f"(card: data_cards/{CONVERTERS[dataset].card})",
        markup=False,
    )


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="Record file, or a JSONL of ForensicReport predictions.")],
    out: Annotated[Path, typer.Option("--out", help="AnomReason JSON file to write.")],
) -> None:
    """Write records or predictions in AnomReason's own format, for its official evaluator."""
    from forenx.data.export import export_file

    if not file.is_file():
        fail(f"file {str(file)!r} not found")
    try:
        count = export_file(file, out)
    except ValueError as exc:
        fail(str(exc))
    _console().print(f"wrote {count} images in AnomReason format to {out}", markup=False)


# ----------------------------------------------------------------------------------------------
# ForgerySynth: the `synth` command goes below (it calls forenx.data.synth); `push` after it.
from forenx.data.synth.cli import synth_command  # noqa: E402  (typer only; heavy imports happen inside)

app.command("synth")(synth_command)


from forenx.hub.cli import push_dataset_command  # noqa: E402  (typer only; heavy imports happen inside)

app.command("push")(push_dataset_command)

"""``forenx data synth``: write a ForgerySynth data set.

Registered on the ``forenx data`` app by ``app.command("synth")(synth_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forenx.console import fail

__all__ = ["synth_command"]


def synth_command(
    out: Annotated[Path, typer.Option("--out", help="Output folder (records.jsonl, images/, masks/, README.md).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of samples.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives byte-identical files.")] = 0,
    photos: Annotated[Path | None, typer.Option(
        "--photos", help="Folder of source photographs (default: scikit-image / scikit-learn samples).")] = None,
    extra_photos: Annotated[bool, typer.Option(
        "--extra-photos", help="Add the sample photos of matplotlib, PyWavelets and mahotas to the default ones "
        "(they come with forenx's photos extra).")] = False,
    size: Annotated[int, typer.Option("--size", min=32, help="Crop side in pixels.")] = 256,
    real_fraction: Annotated[float, typer.Option(
        "--real-fraction", min=0.0, max=1.0, help="Share of unedited (real) crops.")] = 0.5,
    splits: Annotated[str, typer.Option(
        "--splits", help="Split fractions by source photo, NAME=FRACTION,...")] = "train=0.8,val=0.1,test=0.1",
    families: Annotated[str | None, typer.Option(
        "--families", help="Comma-separated manipulation families (default: all).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Worker processes (default: CPU count); the output does not depend on it.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a previous output in --out.")] = False,
    variations: Annotated[str, typer.Option(
        "--variations", help="Splits whose crops go through random global capture variations (scale, exposure, "
        "blur, noise, JPEG): none, all or split names, e.g. train.")] = "none",
    variation_rate: Annotated[float, typer.Option(
        "--variation-rate", help="Share of the --variations splits' samples that are varied (the rest stay plain "
        "crops); 0.5 mixes both.")] = 1.0,
    split_groups: Annotated[str | None, typer.Option(
        "--split-groups", help="Pin photo groups to splits, SPLIT=GROUP+GROUP,..., e.g. "
        "val=astronaut+coffee,test=camera+flower; the other groups are shared out by --splits.")] = None,
    paired: Annotated[str, typer.Option(
        "--paired", help="Splits whose real samples are the forgeries' untouched originals (same crop and "
        "capture, before the manipulation): none, all or split names, e.g. train.")] = "none",
    procedural: Annotated[int, typer.Option(
        "--procedural", min=0, help="This many more train samples, cropped from procedural dead-leaves images "
        "(never memorised: a detector learns the manipulations, not the photographs); the --n samples stay "
        "as they are.")] = 0,
    procedural_photos: Annotated[int, typer.Option(
        "--procedural-photos", min=1, help="How many dead-leaves images --procedural crops from.")] = 200,
) -> None:
    """Procedural forgeries on real photographs, with exact masks and quadruples."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from forenx.data.synth.generator import synthesize

    console = Console()
    family_list = [f.strip() for f in families.split(",") if f.strip()] if families else None
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("synthesising", total=n + procedural)
            summary = synthesize(out, n, seed, photos=photos, size=size, real_fraction=real_fraction,
                                 splits=splits, families=family_list, workers=workers, overwrite=overwrite,
                                 variations=variations, variation_rate=variation_rate, paired=paired,
                                 pinned_groups=split_groups, extra_photos=extra_photos, procedural=procedural,
                                 procedural_photos=procedural_photos,
                                 progress=lambda done: bar.update(task, completed=done))
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        fail(err)
    for reason in summary.skipped_photos:
        console.print(f"[yellow]skipped photo[/yellow] {escape(reason)}")
    # One row per kind of sample, one column per split: stays narrow with ten families.
    table = Table(title=f"ForgerySynth: {summary.n} samples in {summary.out_dir}")
    splits = list(summary.counts)
    kinds = sorted({key for row in summary.counts.values() for key in row}, key=lambda k: (k != "real", k))
    table.add_column("sample")
    for split in splits:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for kind in kinds:
        cells = [summary.counts[split].get(kind, 0) for split in splits]
        table.add_row(kind, *map(str, cells), str(sum(cells)))
    table.add_row("total", *(str(sum(summary.counts[s].values())) for s in splits), str(summary.n))
    console.print(table)
    console.print(f"{summary.n / summary.seconds:.1f} samples/s with {summary.workers} worker(s); "
                  f"records: {Path(summary.out_dir) / 'records.jsonl'}")

"""`forenx model ...` commands."""

from __future__ import annotations

import typer

from forenx.console import fail

app = typer.Typer(no_args_is_help=True)


@app.command()
def summary(
    preset: str | None = typer.Option(None, help="A reference configuration: fakereasoning-13b, llava-1.5-7b, medium."),
    clip: str | None = typer.Option(None, help="CLIP (vision) Hub id or local folder; only its config is read."),
    dino: str | None = typer.Option(None, help="DINOv2 Hub id or local folder; only its config is read."),
    llm: str | None = typer.Option(None, help="Causal LM Hub id or local folder; only its config is read."),
    fusion_dim: int | None = typer.Option(None, help="Fusion width (default: the CLIP width)."),
) -> None:
    """Parameters per component (clip, dino, fusion, projector, mapper, lm), built on the meta device
    without weights.

        forenx model summary --preset fakereasoning-13b
        forenx model summary --clip openai/clip-vit-large-patch14-336 --dino facebook/dinov2-large --llm lmsys/vicuna-7b-v1.5
    """
    from rich.console import Console
    from rich.table import Table

    from forenx.modeling.presets import component_parameters, meta_model, preset_config

    overrides = {} if fusion_dim is None else {"fusion_dim": fusion_dim}
    if preset is not None:
        if clip or dino or llm:
            raise typer.BadParameter("give either --preset or --clip/--dino/--llm, not both")
        try:
            config = preset_config(preset, **overrides)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
        title = preset
    elif clip and dino and llm:
        from transformers import AutoConfig, CLIPVisionConfig

        from forenx.modeling.configuration import ForenXConfig

        clip_config = CLIPVisionConfig.from_pretrained(clip)
        config = ForenXConfig(clip_config=clip_config.to_dict(), dino_config=AutoConfig.from_pretrained(dino).to_dict(),
                              text_config=AutoConfig.from_pretrained(llm).to_dict(),
                              image_size=clip_config.image_size, **overrides)
        title = f"{clip} + {dino} + {llm}"
    else:
        raise typer.BadParameter("give --preset NAME, or all of --clip, --dino and --llm")

    counts = component_parameters(meta_model(config))
    table = Table(title=f"ForenX parameters: {title}")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    table.add_column("trainable", justify="right")
    table.add_column("share", justify="right")
    grand_total = counts["total"]["total"]
    for name, count in counts.items():
        table.add_row(name, f"{count['total']:,}", f"{count['trainable']:,}",
                      f"{100 * count['total'] / grand_total:.2f}%", end_section=name == "lm")
    console = Console(width=100)
    console.print(table)
    console.print(f"image tokens per image: {config.num_image_tokens} "
                  f"({config.image_size}px, patch {config.vision_config.patch_size}); fusion_dim {config.fusion_dim}")


@app.command()
def calibrate(
    model: str = typer.Argument(..., help="A full ForenX model folder (its config.json gets the calibration)."),
    data_file: str = typer.Option(..., "--data-file", help="JSONL records with real / fake labels."),
    split: str = typer.Option("val", help="Records of this split are used ('' for all): held out from training "
                              "and from the split you report on."),
    data_root: str | None = typer.Option(None, "--data-root", help="Folder the image paths are relative to "
                                         "(default: the data file's folder)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per forward pass."),
    limit: int | None = typer.Option(None, min=2, help="Use only the first N records of the split."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Fit and print, but do not write config.json."),
    sharpening: bool = typer.Option(False, "--sharpening", help="Also fit the weight of the image's unsharp-mask "
                                    "trace (an untrained test) in the verdict (sharpening_evidence_weight; 0 where "
                                    "it does not help on the split)."),
) -> None:
    """Fit P(fake)'s temperature and bias on a held-out split and write them into the model's config
    (mapper_temperature, mapper_bias): the verdict threshold moves too, in explain and eval alike.
    With --sharpening, also the weight of the unsharp-mask trace added to the verdict.

        forenx model calibrate runs/sft --data-file data/records.jsonl --split val
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from forenx.evaluation.calibration import CalibrationError
    from forenx.evaluation.calibration import calibrate as fit

    console = Console()
    try:
        result = fit(model, data_file, split or None, data_root=data_root, batch_size=batch_size, limit=limit,
                     write=not dry_run, sharpening=sharpening)
    except (CalibrationError, FileNotFoundError) as error:
        fail(error)
    for failure in result["failed"]:
        console.print(f"[yellow]skipped[/yellow] {escape(str(failure['id']))}: {escape(str(failure['error']))}")
    table = Table(title=f"{result['n']} records of split {result['split']!r}")
    table.add_column("")
    for name in ("nll", "ece", "accuracy", "real_accuracy", "fake_accuracy"):
        table.add_column(name, justify="right")
    for when in ("before", "after"):
        table.add_row(when, *(f"{result[when][k]:.4f}" for k in ("nll", "ece", "accuracy", "real_accuracy",
                                                                   "fake_accuracy")))
    console.print(table)
    action = "not written (--dry-run)" if dry_run else f"written to {model}/config.json"
    console.print(f"mapper_temperature {result['temperature']:.4f}, mapper_bias {result['bias']:+.4f}, "
                  f"sharpening_evidence_weight {result['sharpening_evidence_weight']:.4f}: {action}")

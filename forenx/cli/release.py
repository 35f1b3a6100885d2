"""`forenx release`: a training checkpoint -> a Hub-ready model folder (merged or adapter), optionally pushed."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from forenx.console import fail


def release_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder: a full model or a PEFT adapter, with its "
                                                    "processor and forenx_run.yaml.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Hub repo to release to, as namespace/name.")],
    merge: Annotated[bool, typer.Option("--merge", help="Merge the LoRA adapter into its unquantised base on the "
                                                        "CPU (the default for adapter checkpoints).")] = False,
    adapter_only: Annotated[bool, typer.Option("--adapter-only", help="Publish the adapter (LoRA + trained fusion, "
                                                                      "projector, mapper) without merging.")] = False,
    push: Annotated[bool, typer.Option("--push", help="Create the repo and upload the folder (token: HF_TOKEN or "
                                                      "`hf auth login`).")] = False,
    private: Annotated[bool, typer.Option("--private", help="Create the repo private (with --push).")] = False,
    eval_results: Annotated[Path | None, typer.Option(
        "--eval-results", help="metrics.json of `forenx eval score` / eval/run_eval.py for the model-index.")] = None,
    eval_dataset: Annotated[str | None, typer.Option(
        "--eval-dataset", help="Hub id (or name) of the data set --eval-results was computed on.")] = None,
    with_code: Annotated[bool, typer.Option("--with-code", help="Bundle the modeling code (trust_remote_code=True "
                                                                "loading without forenx installed).")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Release folder (default: releases/<repo name>); must "
                                                           "be new or empty.")] = None,
    base: Annotated[str | None, typer.Option("--base", help="Base model of an adapter (path or Hub id), when the "
                                                            "checkpoint does not record it.")] = None,
    base_model: Annotated[list[str] | None, typer.Option(
        "--base-model", help="Extra base model Hub id for the card (repeatable).")] = None,
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", help="Training data set Hub id for the card (repeatable).")] = None,
    license: Annotated[str, typer.Option("--license", help="License id for the card.")] = "apache-2.0",
    max_shard_size: Annotated[str, typer.Option("--max-shard-size", help="Largest safetensors shard.")] = "5GB",
    dtype: Annotated[str | None, typer.Option("--dtype", help="Weights dtype (float32, bfloat16, float16); "
                                                              "default: the checkpoint's.")] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Reload the folder and compare its outputs "
                                                                      "with the checkpoint's.")] = True,
) -> None:
    """Release CHECKPOINT as a Hub model: weights, config, processor, model card (and push with --push)."""
    from rich.console import Console
    from rich.markup import escape

    from forenx.hub.errors import ReleaseError
    from forenx.hub.release import release

    console, errors = Console(), Console(stderr=True)
    say = partial(console.print, highlight=False, soft_wrap=True)
    try:
        with console.status("Releasing (load, merge, save, reload-test)..."):
            result = release(checkpoint, repo_id, out=out, merge=merge, adapter_only=adapter_only,
                             with_code=with_code, eval_results=eval_results, eval_dataset=eval_dataset, base=base,
                             base_models=base_model or (), datasets=dataset or (), license=license,
                             max_shard_size=max_shard_size, dtype=dtype, verify=verify, push=push, private=private)
    except ReleaseError as error:
        fail(error, code=1)
    say(f"Released [bold]{escape(repo_id)}[/] ({result.mode}) to {escape(str(result.folder))}: "
        f"{len(result.files)} files.")
    if result.merge_max_abs_diff is not None:
        say(f"Merge check: merging changed the logits by at most {result.merge_max_abs_diff:.2e}.")
    if result.checkpoint_max_abs_diff:
        say(f"Released model vs checkpoint (merge rounding, dtype): largest logit difference "
            f"{result.checkpoint_max_abs_diff:.2e}.")
    if result.reload_max_abs_diff is not None:
        say(f"Reload check: largest logit difference {result.reload_max_abs_diff:.2e}.")
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if result.commit_url:
        say(f"Pushed: {result.commit_url}")
    else:
        say(f"Ready to upload: add --push, or run `hf upload {escape(repo_id)} {escape(str(result.folder))}`.")


def register(app: typer.Typer) -> None:
    """Adds the command to the main app."""
    app.command("release")(release_command)

"""`forenx data push`: the command function, registered by forenx/cli/data.py as
``app.command("push")(push_dataset_command)``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forenx.console import fail


def push_dataset_command(
    folder: Annotated[Path, typer.Argument(help="Data folder: record files (*.jsonl), their images, and a README.md "
                                                "card (written from the records when missing).")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Hub dataset repo, as namespace/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the dataset repo private.")] = False,
) -> None:
    """Publish a ForgerySynth or converted data set as a Hub dataset (records, images, card)."""
    from rich.console import Console
    from rich.markup import escape

    from forenx.hub.dataset import push_dataset
    from forenx.hub.errors import ReleaseError

    try:
        url = push_dataset(folder, repo_id, private=private)
    except ReleaseError as error:
        fail(error, code=1)
    Console().print(f"Pushed {escape(str(folder))} to dataset {escape(repo_id)}: {url}", highlight=False,
                    soft_wrap=True)

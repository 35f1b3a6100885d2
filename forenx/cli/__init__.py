"""The `forenx` command. Each area registers its commands from its own module; heavy imports
(torch, transformers) happen inside the commands so `forenx --help` is instant."""

from __future__ import annotations

import typer

from forenx.cli import data as _data
from forenx.cli import eval as _eval
from forenx.cli import explain as _explain
from forenx.cli import model as _model
from forenx.cli import release as _release

app = typer.Typer(
    name="forenx",
    help="Explainable image forensics with multimodal LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(_data.app, name="data", help="Validate, inspect, convert, synthesise and publish data sets.")
app.add_typer(_eval.app, name="eval", help="Score explanations (SemAP / SemF1) and detections.")
app.add_typer(_model.app, name="model", help="Inspect model configurations.")
_explain.register(app)
_release.register(app)


def main() -> None:
    app()

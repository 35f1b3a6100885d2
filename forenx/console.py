"""The one way a `forenx` command reports a user error and exits.

A top-level module, not part of forenx.cli: importing forenx.cli registers every command, and the
command modules outside it (forenx.hub.cli, forenx.data.synth.cli) are imported from there.
"""

from __future__ import annotations

from typing import NoReturn

import typer

__all__ = ["fail"]


def fail(message: object, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``.

    The message is escaped: a path or value with brackets ("scan[old].jpg", "forenx[photos]") is
    printed as typed, not taken for rich markup.
    """
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(message))}")
    raise typer.Exit(code)

"""`bastion <noun> <verb>`: the command line. Each noun is a typer sub-app in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Bastion: API attack protection gateway.")


def main() -> None:
    app()

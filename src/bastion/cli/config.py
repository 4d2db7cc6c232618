"""`bastion config check FILE`: validate a config the way the gateway will load it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.common import fail_problems
from bastion.config import load_config
from bastion.errors import ConfigError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Check a configuration file; print every setting with its default."
)


@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The YAML config file.")],
    detectors: Annotated[
        bool, typer.Option("--detectors/--no-detectors", help="Also build every enabled detector (rules compile).")
    ] = True,
) -> None:
    """Validate FILE; each mistake is printed as `file:line: field: problem` (exit status 1)."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        fail_problems(exc.problems)
    from bastion.store import check_store_url

    try:
        check_store_url(config.store.url)
    except ConfigError as exc:
        fail_problems([f"{file}: {p}" for p in exc.problems])
    if detectors:
        # What the gateway compiles at start-up (rule files, patterns) fails here, not in production.
        from bastion.engine import build_pipeline

        try:
            pipeline = build_pipeline(config)
        except ConfigError as exc:
            fail_problems([p if p.startswith(str(file)) else f"{file}: {p}" for p in exc.problems])
        except Exception as exc:
            fail_problems([f"{file}: detectors: cannot be built: {type(exc).__name__}: {exc}"])
        names = ", ".join(d.name for d in pipeline.detectors) or "none"
        typer.echo(f"{file}: ok ({config.mode} mode, detectors: {names})")
    else:
        typer.echo(f"{file}: ok ({config.mode} mode)")


@app.command("defaults")
def defaults(
    markdown: Annotated[bool, typer.Option("--markdown", help="The reference tables (docs/configuration.md).")] = False,
) -> None:
    """Print every setting with its default: a YAML file to start from, or the reference tables."""
    from bastion.configdoc import defaults_yaml, reference_markdown

    typer.echo(reference_markdown() if markdown else defaults_yaml(), nl=False)

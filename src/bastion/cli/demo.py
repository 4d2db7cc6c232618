"""`bastion demo`: a sample shop API with the gateway in front of it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bastion.cli.common import fail, load_or_exit
from bastion.cli.proxy import Mode


def demo(
    attack: Annotated[
        bool, typer.Option("--attack", help="Replay benign and attack traffic, print what was blocked, exit.")
    ] = False,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=0, max=65535,
                                 help="Gateway port [default: 8080; a free one with --attack].")
    ] = None,
    upstream_port: Annotated[
        int, typer.Option("--upstream-port", min=0, max=65535, help="Demo shop port [default: a free one].")
    ] = 0,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo's events are stored.")
    ] = Path(".bastion/demo"),
    mode: Annotated[Mode, typer.Option("--mode", help="enforce or observe.")] = Mode.enforce,
    config_file: Annotated[
        Path | None, typer.Option("--config", "-c", help="Start from this config instead of the defaults.")
    ] = None,
) -> None:
    """Start the demo shop behind Bastion; print URLs and curl lines (or, with --attack, a report)."""
    from bastion.demo.run import demo_config, run_demo
    from bastion.demo.upstream import DemoUpstream
    from bastion.errors import ConfigError
    from bastion.logs import configure_logging, unconfigure_logging

    base = load_or_exit(config_file) if config_file is not None else None
    upstream = DemoUpstream(port=upstream_port)
    try:
        upstream.start()
    except (OSError, RuntimeError) as exc:
        fail(f"cannot start the demo shop on port {upstream_port}: {exc}")
    try:
        config = demo_config(upstream.url, port=(0 if attack else 8080) if port is None else port,
                             data_dir=data_dir, mode=mode.value, base=base)
    except ConfigError as exc:
        upstream.stop()
        fail("; ".join(exc.problems))
    # Interactive: one readable line per flagged request. Attack mode: the table says it all.
    config.logging.json_lines = False
    config.logging.events_to_log = not attack
    config.logging.level = "warning" if attack else "info"
    configure_logging(config)
    console = Console()
    try:
        # The plain asyncio loop: the demo is about what is blocked, not about speed.
        code = asyncio.run(run_demo(config, upstream, attack=attack, console=console))
    except KeyboardInterrupt:
        console.print("\nstopped")
        code = 0
    finally:
        unconfigure_logging()
    raise typer.Exit(code)


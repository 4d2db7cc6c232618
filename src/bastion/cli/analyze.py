"""`bastion analyze LOG...`: find attacks that already happened, in access logs."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bastion.clock import ManualClock
from bastion.config import ConfigError, load_config
from bastion.frontends.logs import Replayer, ReplayReport
from bastion.runtime import Runtime


def _lines(paths: list[Path]) -> Iterator[str]:
    for p in paths:
        if str(p) == "-":
            yield from sys.stdin
            continue
        with p.open("r", encoding="utf-8", errors="replace") as fh:
            yield from fh


def analyze(
    logs: Annotated[list[Path], typer.Argument(help="access log files (combined/common or JSON lines); - for stdin")],
    fmt: Annotated[str, typer.Option("--format", help="auto, combined or json")] = "auto",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Bastion config file")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="where events are stored")] = None,
    store: Annotated[bool, typer.Option("--store/--no-store", help="write events to the event store")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Replay access logs through the engine and report what it would have flagged and blocked."""
    if fmt not in ("auto", "combined", "json"):
        raise typer.BadParameter("--format must be auto, combined or json")
    for p in logs:
        if str(p) != "-" and not p.is_file():
            raise typer.BadParameter(f"{p}: no such file")
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if data_dir is not None:
        cfg.data_dir = data_dir
    report = asyncio.run(_run(cfg, logs, fmt, store))
    if as_json:
        typer.echo(orjson.dumps(report.__dict__, option=orjson.OPT_INDENT_2).decode())
    else:
        _print(report)


async def _run(cfg: object, logs: list[Path], fmt: str, store: bool) -> ReplayReport:
    clock = ManualClock(0.0)
    runtime = Runtime.create(cfg, clock=clock, with_store=store)  # type: ignore[arg-type]
    await runtime.start()
    try:
        return await Replayer(runtime.pipeline, clock).replay_lines(_lines(logs), fmt)
    finally:
        await runtime.stop()


def _ts(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print(r: ReplayReport) -> None:
    console = Console()
    console.print(
        f"[bold]{r.exchanges}[/] requests from {_ts(r.first)} to {_ts(r.last)} UTC; "
        f"{r.skipped} unreadable lines skipped; [yellow]{r.flagged}[/] flagged, "
        f"[red]{r.would_block}[/] would have been blocked."
    )
    if r.by_rule:
        t = Table("rule", "findings", title="Findings by rule")
        for rule, n in sorted(r.by_rule.items(), key=lambda kv: -kv[1])[:25]:
            t.add_row(rule, str(n))
        console.print(t)
    if r.symptoms:
        t = Table("time (UTC)", "symptom", "figures", title="Symptoms: what the API went through")
        for s in r.symptoms:
            t.add_row(_ts(s["time"]), s["message"], s["figures"])
        console.print(t)
    if r.by_client:
        t = Table("client", "blocked requests", title="Top offending clients")
        for ip, n in sorted(r.by_client.items(), key=lambda kv: -kv[1])[:15]:
            t.add_row(ip, str(n))
        console.print(t)

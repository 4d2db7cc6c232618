"""`bastion events list`: what the gateway saw and decided, from the event store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bastion.cli.common import fail, load_or_exit, parse_since
from bastion.events import Event
from bastion.store import open_store, sqlite_path

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Inspect stored events.")

_STYLE = {"block": "bold red", "challenge": "red", "throttle": "yellow", "log": "cyan", "allow": "green"}


def events_table(events: list[Event], title: str | None = None) -> Table:
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in ("time", "request id", "client", "method", "path", "status", "action", "score", "rules", "reason"):
        table.add_column(col, overflow="fold" if col in ("path", "rules") else "ellipsis")
    for e in events:
        action = e.action + ("*" if e.would_block else "")
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time)),
            e.request_id,
            e.client_ip,
            e.method,
            e.path,
            str(e.status),
            f"[{_STYLE.get(e.action, '')}]{action}[/]" if e.action in _STYLE else action,
            str(e.score),
            " ".join(e.rule_ids[:8]) + (" …" if len(e.rule_ids) > 8 else ""),
            e.reason,
        )
    return table


@app.command("list")
def list_events(
    since: Annotated[str | None, typer.Option("--since", help="10m, 2h, 1d, or an ISO time.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100_000, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line (newest first).")] = False,
    action: Annotated[str | None, typer.Option("--action", help="Only block, log, throttle, ...")] = None,
    client: Annotated[str | None, typer.Option("--client", help="Only this client IP.")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only events where this rule id fired.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="The gateway's data directory.")] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", "-c", help="Read the store this config names.")
    ] = None,
) -> None:
    """List events, newest first."""
    since_ts = parse_since(since) if since else None
    config = load_or_exit(config_file, {"data_dir": data_dir} if data_dir is not None else None)
    try:
        store = open_store(config, create=False)
    except FileNotFoundError:
        if as_json:
            return
        typer.echo(f"no events yet: {sqlite_path(config)} does not exist (is --data-dir right?)", err=True)
        return
    except Exception as exc:
        fail(f"cannot open the event store: {type(exc).__name__}: {exc}")
    try:
        events = store.query(since=since_ts, limit=limit, action=action, client=client, rule=rule)
    except Exception as exc:
        fail(f"cannot read events: {type(exc).__name__}: {exc}")
    finally:
        store.close()
    if as_json:
        out = typer.get_binary_stream("stdout")
        for e in events:
            out.write(orjson.dumps(e.as_dict()) + b"\n")
        out.flush()
        return
    console = Console()
    if not events:
        console.print("no events" + (f" since {since}" if since else ""))
        return
    console.print(events_table(events))
    blocked = sum(e.blocked for e in events)
    console.print(f"{len(events)} event(s), {blocked} blocked" + ("; * = observe mode, would have blocked"
                                                                  if any(e.would_block for e in events) else ""))

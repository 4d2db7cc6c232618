"""`bastion decisions list|add|delete`: the decisions a gateway enforces, from its data dir or Redis.

With the default embedded state the decisions live in `<data_dir>/decisions.json`; a running
gateway re-reads that file within a second. With `behaviour.decisions.url` (or `state.url`)
set to `redis://...`, the commands act on the shared hash and announce each change on the
channel every instance listens to.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bastion.cli.common import fail, load_or_exit
from bastion.decision import Decision, DecisionAction, KeyKind, Origin, normalise_ip_value
from bastion.detect.behaviour.store import read_decisions, update_decisions
from bastion.entity import hash_key

app = typer.Typer(no_args_is_help=True, add_completion=False, help="List, add and delete decisions.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="config file (for data_dir / redis url)")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="data directory of the gateway")]
UrlOpt = Annotated[str | None, typer.Option("--url", help="redis://... to act on shared decisions")]


class _Target:
    """Where the decisions are: a file or a Redis hash (sync client: this is a CLI)."""

    def __init__(self, config: Path | None, data_dir: Path | None, url: str | None) -> None:
        overrides: dict[str, Any] = {"data_dir": str(data_dir)} if data_dir is not None else {}
        cfg = load_or_exit(config, overrides)
        ds = cfg.behaviour.decisions
        state = getattr(cfg, "state", None)
        self.url = url or ds.url or (getattr(state, "url", "") or "memory://")
        self.prefix = ds.prefix
        self.path = cfg.data_dir / "decisions.json"
        self.redis: Any = None
        if self.url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            try:
                self.redis = redis.Redis.from_url(self.url, socket_timeout=5)
                self.redis.ping()
            except Exception as exc:
                fail(f"cannot reach {self.url}: {exc}")

    def all(self) -> list[Decision]:
        if self.redis is None:
            return read_decisions(self.path)
        out = []
        for body in self.redis.hvals(self.prefix):
            try:
                out.append(Decision.from_dict(orjson.loads(body)))
            except (ValueError, orjson.JSONDecodeError):
                continue
        return out

    def add(self, d: Decision) -> None:
        if self.redis is None:
            update_decisions(self.path, add=[d], now=time.time())
            return
        body = orjson.dumps(d.as_dict())
        self.redis.hset(self.prefix, d.id, body)
        self.redis.publish(self.prefix + ":events", b"+cli " + body)

    def delete(self, decision_id: str) -> bool:
        if self.redis is None:
            before = {d.id for d in read_decisions(self.path)}
            update_decisions(self.path, delete=[decision_id])
            return decision_id in before
        gone = bool(self.redis.hdel(self.prefix, decision_id))
        self.redis.publish(self.prefix + ":events", b"-cli " + decision_id.encode())
        return gone


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: str) -> float | None:
    """'90s', '10m', '4h', '7d' -> seconds; 'permanent' -> None."""
    v = value.strip().lower()
    if v in ("permanent", "forever", "0"):
        return None
    m = _DURATION.match(v)
    if not m:
        raise ValueError(f"bad duration {value!r} (use 30s, 10m, 4h, 7d or permanent)")
    return float(m.group(1)) * _UNITS[m.group(2)]


@app.command("list")
def list_(config: ConfigOpt = None, data_dir: DataDirOpt = None, url: UrlOpt = None,
          as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
          all_: Annotated[bool, typer.Option("--all", help="include expired decisions")] = False) -> None:
    """Show current decisions, newest first."""
    target = _Target(config, data_dir, url)
    now = time.time()
    items = sorted((d for d in target.all() if all_ or d.active(now)), key=lambda d: d.created, reverse=True)
    if as_json:
        for d in items:
            typer.echo(orjson.dumps(d.as_dict()).decode())
        return
    table = Table(header_style="bold")
    for col in ("id", "kind", "value", "action", "origin", "expires in", "reason"):
        table.add_column(col)
    for d in items:
        left = "permanent" if d.until is None else f"{max(0, int(d.until - now))}s"
        table.add_row(d.id, d.kind.value, d.value[:40], d.action.value, d.origin.value, left, d.reason[:60])
    Console().print(table)
    if not items:
        typer.echo("no decisions")


@app.command("add")
def add(value: Annotated[str, typer.Argument(help="an address or CIDR (or a key with --kind)")],
        kind: Annotated[str, typer.Option("--kind", help="ip, api_key, user, session, fp")] = "ip",
        action: Annotated[str, typer.Option("--action", help="deny, allow, challenge, throttle")] = "deny",
        duration: Annotated[str, typer.Option("--duration", "-d", help="30m, 4h, 7d or permanent")] = "4h",
        reason: Annotated[str, typer.Option("--reason")] = "",
        raw: Annotated[bool, typer.Option("--raw", help="the value of an api_key/session is raw: hash it")] = False,
        config: ConfigOpt = None, data_dir: DataDirOpt = None, url: UrlOpt = None) -> None:
    """Add a decision (origin: admin)."""
    try:
        k = KeyKind(kind)
        act = DecisionAction(action)
        seconds = parse_duration(duration)
        v = normalise_ip_value(value) if k == KeyKind.IP else value.strip()
    except ValueError as exc:
        fail(f"cannot add {value!r}: {exc}")
    target = _Target(config, data_dir, url)
    if raw and k in (KeyKind.API_KEY, KeyKind.SESSION):
        v = hash_key(v, load_or_exit(config).behaviour.entity.key_salt)  # as the gateway hashes it
    now = time.time()
    d = Decision(kind=k, value=v, action=act, origin=Origin.ADMIN, until=None if seconds is None else now + seconds,
                 reason=reason or "added from the command line", created=now)
    target.add(d)
    typer.echo(f"added {d.id}: {act.value} {k.value} {v}" + ("" if seconds is None else f" for {int(seconds)}s"))


@app.command("delete")
def delete(ids: Annotated[list[str], typer.Argument(help="decision ids (see `bastion decisions list`)")],
           config: ConfigOpt = None, data_dir: DataDirOpt = None, url: UrlOpt = None) -> None:
    """Delete decisions by id."""
    target = _Target(config, data_dir, url)
    missing = [i for i in ids if not target.delete(i)]
    for i in ids:
        if i not in missing:
            typer.echo(f"deleted {i}")
    if missing:
        fail("no such decision: " + ", ".join(missing))

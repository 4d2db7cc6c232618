"""`bastion demo`: the sample shop with the gateway in front of it, in one process.

The shop runs on uvicorn in a thread; the gateway (the real proxy, with the default detectors and
an embedded SQLite event store) runs on this process's event loop. Interactive mode prints URLs
and curl lines and serves until Ctrl-C; attack mode replays `attack.script()` and prints what was
blocked and why, read back from the event store.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from bastion.config import BastionConfig, parse_config
from bastion.demo.attack import Result, Step, attach_events, run_script
from bastion.demo.upstream import DemoUpstream
from bastion.runtime import Runtime
from bastion.store import open_store


def demo_config(upstream_url: str, *, port: int, data_dir: Path, mode: str = "enforce",
                base: BastionConfig | None = None) -> BastionConfig:
    """The demo's config: the defaults (or `base`), pointed at the demo shop."""
    data: dict[str, Any] = base.model_dump(by_alias=True) if base is not None else {}
    data.setdefault("upstream", {})["url"] = upstream_url
    data.setdefault("server", {})["listen"] = f"127.0.0.1:{port}"
    data["data_dir"] = data_dir
    data["mode"] = mode
    return parse_config(data, "demo")


def curl_lines(gateway: str) -> list[tuple[str, str]]:
    q = gateway + "/api/products?q="
    return [
        ("benign", f"curl -s '{q}lamp'"),
        ("SQL injection", f"curl -s '{q}{quote(chr(39) + ' OR 1=1 UNION SELECT email, password FROM users--')}'"),
        ("XSS", f"curl -s '{q}{quote('<script>alert(document.cookie)</script>')}'"),
        ("login", f"curl -s -X POST {gateway}/api/login -H 'Content-Type: application/json' "
                  "-d '{\"email\": \"alice@example.com\", \"password\": \"wonderland\"}'"),
    ]


def summary_table(results: Sequence[Result], width: int = 200) -> Table:
    """One row per request; the `kind` column is left out on narrow terminals."""
    wide = width >= 110
    table = Table(title="Bastion demo: what the gateway did", header_style="bold")
    cols = ["#", "request", "kind", "status", "outcome", "why (rules, reason)"]
    for col in cols if wide else [c for c in cols if c != "kind"]:
        table.add_column(col, overflow="fold" if col.startswith("why") else "ellipsis")
    for i, r in enumerate(results, 1):
        style = "green" if r.blocked == r.step.attack else ("yellow" if r.outcome == "would block" else "red")
        row = [str(i), r.step.label, r.step.category, str(r.reply.status or "-"), f"[{style}]{r.outcome}[/]",
               r.why or "-"]
        if not wide:
            del row[2]
        table.add_row(*row)
    return table


def score_line(results: Sequence[Result]) -> str:
    attacks = [r for r in results if r.step.attack]
    benign = [r for r in results if not r.step.attack]
    stopped = sum(r.blocked for r in attacks)
    shadow = sum(r.outcome == "would block" for r in attacks)
    passed = sum(not r.blocked and not r.reply.error for r in benign)
    line = f"attacks blocked: {stopped}/{len(attacks)}    benign requests served: {passed}/{len(benign)}"
    return line + (f"    observe mode, would have blocked: {shadow}" if shadow else "")


class Demo:
    """The shop and the gateway, started and stopped together."""

    def __init__(self, config: BastionConfig, upstream: DemoUpstream) -> None:
        self.config = config
        self.upstream = upstream
        self.runtime: Runtime | None = None
        self.server: Any = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}" if self.server is not None else ""

    async def start(self) -> None:
        from bastion.frontends.proxy.server import ProxyServer

        self.runtime = Runtime.create(self.config)
        await self.runtime.start()
        self.server = ProxyServer(self.runtime)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close(grace=2.0)
        if self.runtime is not None:
            await self.runtime.stop()
        await asyncio.to_thread(self.upstream.stop)

    async def attack(self, steps: Sequence[Step] | None = None) -> list[Result]:
        """Replay the script, wait for the events to be stored, and join them to the results."""
        assert self.runtime is not None and self.server is not None
        started = self.runtime.clock.now()
        results = await run_script("127.0.0.1", self.server.port, steps)
        await self.runtime.pipeline.drain()
        writer = self.runtime.events
        if writer is not None:
            await asyncio.to_thread(writer.flush, 10.0)
        try:
            store = open_store(self.config, create=False)
        except FileNotFoundError:
            return results  # nothing was flagged at all
        try:
            events = store.query(limit=10_000, since=started - 1.0)
        finally:
            store.close()
        attach_events(results, events)
        return results


async def run_demo(config: BastionConfig, upstream: DemoUpstream, *, attack: bool, console: Console) -> int:
    demo = Demo(config, upstream)
    try:
        await demo.start()
    except OSError as exc:
        await demo.stop()
        console.print(f"[red]error:[/] cannot listen on {config.server.listen}: {exc.strerror or exc} "
                      "(try --port 0 or another port)")
        return 1
    try:
        gw = demo.gateway_url
        data_dir = Path(config.data_dir)
        console.print(f"[bold]Bastion demo[/] ({config.mode} mode)", highlight=False)
        console.print(f"  gateway:  [bold]{gw}[/]  (send requests here)", highlight=False)
        console.print(f"  shop API: {upstream.url}  (unprotected, for comparison)", highlight=False)
        console.print(f"  events:   bastion events list --data-dir {data_dir}", highlight=False, soft_wrap=True)
        if attack:
            console.print("replaying a short mix of benign and attack traffic...")
            results = await demo.attack()
            console.print(summary_table(results, console.width))
            console.print(score_line(results))
            return 0
        console.print("\nTry these (Ctrl-C to stop):")
        for label, line in curl_lines(gw):
            console.print(f"  [dim]# {label}[/]")
            console.print(f"  {line}", soft_wrap=True, highlight=False, markup=False)
        await _wait_for_stop()
        return 0
    finally:
        await demo.stop()


async def _wait_for_stop() -> None:
    """Serve until SIGTERM or Ctrl-C (asyncio.run turns Ctrl-C into cancelling us)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()

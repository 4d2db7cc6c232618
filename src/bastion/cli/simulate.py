"""`bastion simulate`: benign users and attackers through the real engine on a manual clock."""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
import typer

from bastion.detect.behaviour.simulate import run_simulation


def simulate(
    benign: Annotated[int, typer.Option(help="benign users")] = 400,
    attackers: Annotated[int, typer.Option(help="attackers of each kind")] = 6,
    hours: Annotated[float, typer.Option(help="simulated hours")] = 24.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
    behaviour_only: Annotated[bool, typer.Option("--behaviour-only", help="only decisions/risk/behaviour")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list misses and benign users hit")] = False,
) -> None:
    """Replay generated traffic (browse, search, log in, order; scanners, stuffing from many addresses,
    enumeration, BOLA, scraping, low and slow) and print recall, requests before the block and the
    share of benign users ever throttled or blocked."""
    only = {"decisions", "risk", "behaviour"} if behaviour_only else None
    report = asyncio.run(run_simulation(benign=benign, attackers=attackers, hours=hours, seed=seed, only=only))
    if as_json:
        typer.echo(orjson.dumps({"rows": report.rows, "benign": report.benign, "benign_blocked": report.benign_blocked,
                                 "benign_throttled": report.benign_throttled, "requests": report.requests,
                                 "seconds": report.seconds}).decode())
    else:
        typer.echo(report.text())
    if verbose:
        for a in report.actors:
            if a.kind != "benign" and a.passed_before_block is None:
                typer.echo(f"missed: {a.name} ({a.sent} requests)")
            elif a.kind == "benign" and (a.blocked or a.throttled):
                typer.echo(f"benign hit: {a.name}: {a.why}")
    if not report.ok():
        raise typer.Exit(1)

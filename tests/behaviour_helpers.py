"""Helpers for the behaviour tests: a pipeline with a manual clock and a one-call request driver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from bastion.clock import ManualClock
from bastion.config import BastionConfig
from bastion.engine import build_pipeline
from bastion.engine.pipeline import Pipeline
from bastion.exchange import Client, Exchange, Headers, Response
from bastion.verdict import Action

TOOL = [("Host", "api.test"), ("User-Agent", "python-requests/2.31"), ("Accept", "*/*")]
CHROME = [("Host", "api.test"), ("User-Agent", "Mozilla/5.0 (X11) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"),
          ("Accept", "application/json"), ("Accept-Language", "en-US"), ("Accept-Encoding", "gzip")]
MINE = {"decisions", "risk", "behaviour"}


@dataclass
class Sent:
    ex: Exchange
    action: Action
    status: int

    @property
    def blocked(self) -> bool:
        return self.action >= Action.CHALLENGE

    def rules(self) -> list[str]:
        return [f.rule_id for f in self.ex.findings]


class Harness:
    def __init__(self, config: dict[str, Any] | None = None, only: set[str] | None = None) -> None:
        cfg = dict(config or {})
        cfg.setdefault("behaviour", {}).setdefault("decisions", {}).setdefault("persist", False)
        self.config = BastionConfig.model_validate(cfg)
        self.clock = ManualClock(1_700_000_000.0)
        self.pipeline: Pipeline = build_pipeline(self.config, clock=self.clock, only=MINE if only is None else only)
        self.core = self.pipeline.detectors[0].core if self.pipeline.detectors else None  # type: ignore[attr-defined]

    async def start(self) -> Harness:
        await self.pipeline.startup()
        return self

    async def stop(self) -> None:
        await self.pipeline.shutdown()

    def detector(self, name: str) -> Any:
        return next(d for d in self.pipeline.detectors if d.name == name)

    async def send(self, ip: str, method: str = "GET", target: str = "/", *, status: int = 200,
                   body: bytes | dict[str, Any] = b"", resp_body: bytes = b"{}",
                   headers: list[tuple[str, str]] | None = None, advance: float = 1.0,
                   resp_headers: tuple[tuple[str, str], ...] = ()) -> Sent:
        """One exchange through every phase; the 'API' answers `status` unless Bastion blocked."""
        self.clock.advance(advance)
        h = Headers(list(headers if headers is not None else TOOL))
        raw = orjson.dumps(body) if isinstance(body, dict) else body
        if raw and h.get("content-type") is None:
            h.add("Content-Type", "application/json")
        p = self.pipeline
        ex = p.new_exchange(Client(peer_ip=ip), method, target, h)
        action = Action.ALLOW
        for phase in (p.connection, p.request_headers, p.request_body):
            if phase == p.request_body and raw:
                ex.request.body = raw
                ex.request.body_size = len(raw)
            v = await phase(ex)
            if v is not None:
                action = max(action, v.action)
                if v.action >= Action.CHALLENGE:
                    ex.response = Response(v.status, Headers(), from_bastion=True)
                    p.complete(ex)
                    await p.drain()
                    return Sent(ex, action, v.status)
        ex.response = Response(status, Headers([("Content-Type", "application/json"), *resp_headers]), body=resp_body,
                               body_size=len(resp_body))
        await p.response_headers(ex)
        await p.response_body(ex)
        p.complete(ex)
        await p.drain()
        return Sent(ex, action, status)

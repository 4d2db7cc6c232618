"""A running Bastion: config, clock, pipeline and the sinks behind it (event store, logs).

Every front-end (proxy worker, ASGI middleware, log replay) creates one Runtime and drives
`runtime.pipeline`. `start()`/`stop()` open and flush what the pipeline writes to.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import Any

from bastion.alerts.webhooks import WebhookAlerter
from bastion.clock import Clock, SystemClock
from bastion.config import BastionConfig
from bastion.engine import ExchangeSink, Pipeline, build_pipeline
from bastion.store.writer import EventWriter


@dataclass
class Runtime:
    config: BastionConfig
    pipeline: Pipeline
    clock: Clock
    sinks: list[ExchangeSink] = field(default_factory=list)
    services: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        config: BastionConfig,
        *,
        clock: Clock | None = None,
        with_store: bool = True,
        sinks: list[ExchangeSink] | None = None,
        only: set[str] | None = None,
    ) -> Runtime:
        clock = clock or SystemClock()
        all_sinks: list[ExchangeSink] = list(sinks or [])
        services: dict[str, Any] = {}
        if with_store or config.logging.events_to_log:
            # Flagged and blocked exchanges become events: stored (SQLite in data_dir, or the
            # store.url database) and logged, from a background thread, never on the request path.
            writer = EventWriter.from_config(config, with_store=with_store)
            all_sinks.append(writer)
            services["events"] = writer
            if config.alerts.webhooks:
                # Alerts see exactly what is stored (already masked), from their own thread.
                alerter = WebhookAlerter(config.alerts, clock=clock)
                writer.add_listener(alerter)
                services["alerts"] = alerter
        pipeline = build_pipeline(config, clock=clock, sinks=all_sinks, only=only, services=services)
        return cls(config=config, pipeline=pipeline, clock=clock, sinks=all_sinks, services=services)

    @property
    def events(self) -> EventWriter | None:
        """The event writer, when events are stored or logged (`flush()` it before reading the store)."""
        writer = self.services.get("events")
        return writer if isinstance(writer, EventWriter) else None

    async def start(self) -> None:
        for sink in self.sinks:
            start = getattr(sink, "start", None)
            if start is not None:
                res = start()
                if inspect.isawaitable(res):
                    await res
        await self.pipeline.startup()

    async def stop(self) -> None:
        await self.pipeline.shutdown()
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is None:
                continue
            if isinstance(sink, EventWriter):
                # Joining the writer thread (a last batch to a slow database) must not stall the loop.
                await asyncio.to_thread(close)
                alerter = self.services.get("alerts")
                if alerter is not None:
                    await asyncio.to_thread(alerter.close)
                continue
            res = close()
            if inspect.isawaitable(res):
                await res

"""A running Bastion: config, clock, pipeline and the sinks behind it (event store, logs).

Every front-end (proxy worker, ASGI middleware, log replay) creates one Runtime and drives
`runtime.pipeline`. `start()`/`stop()` open and flush what the pipeline writes to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.clock import Clock, SystemClock
from bastion.config import BastionConfig
from bastion.engine import ExchangeSink, Pipeline, build_pipeline


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
        # The event store and log sinks are attached here (see bastion.events / bastion.store).
        pipeline = build_pipeline(config, clock=clock, sinks=all_sinks, only=only, services=services)
        return cls(config=config, pipeline=pipeline, clock=clock, sinks=all_sinks, services=services)

    async def start(self) -> None:
        await self.pipeline.startup()

    async def stop(self) -> None:
        await self.pipeline.shutdown()
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                res = close()
                if hasattr(res, "__await__"):
                    await res

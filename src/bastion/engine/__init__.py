"""The inspection engine: detectors in phases, one evaluator. See pipeline.py for the data flow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bastion.clock import Clock, SystemClock
from bastion.config import BastionConfig
from bastion.engine.pipeline import ExchangeSink, Pipeline
from bastion.engine.registry import BuildContext, build_detectors


def build_pipeline(
    config: BastionConfig,
    *,
    clock: Clock | None = None,
    sinks: Sequence[ExchangeSink] = (),
    only: set[str] | None = None,
    services: dict[str, Any] | None = None,
) -> Pipeline:
    """Assemble the pipeline every front-end uses, from the config and the detector registry."""
    clock = clock or SystemClock()
    ctx = BuildContext(clock=clock, services=dict(services or {}))
    return Pipeline(config, build_detectors(config, ctx, only=only), clock=clock, sinks=sinks)


__all__ = ["BuildContext", "ExchangeSink", "Pipeline", "build_pipeline"]

"""Detector registry: name -> factory, in pipeline order.

Each entry is imported lazily so a detector's dependencies (hyperscan, redis) load only when it is
enabled. A factory takes (config, context) and returns a detector, or None when its configuration
leaves it nothing to do. Order matters: cheap, decisive detectors (decisions, limits) run first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bastion.clock import Clock, SystemClock
from bastion.config import BastionConfig
from bastion.engine.detector import Detector


@dataclass(slots=True)
class BuildContext:
    """What factories may need besides the config: the clock and shared services."""

    clock: Clock = field(default_factory=SystemClock)
    services: dict[str, Any] = field(default_factory=dict)


Factory = Callable[[BastionConfig, BuildContext], Detector | None]

# (name, "module:function"), in pipeline order.
DETECTORS: list[tuple[str, str]] = [
    ("decisions", "bastion.detect.decisions:make"),
    ("risk", "bastion.detect.risk:make"),
    ("access", "bastion.detect.access:make"),
    ("ratelimit", "bastion.detect.ratelimit:make"),
    ("limits", "bastion.detect.limits:make"),
    ("protocol", "bastion.detect.protocol:make"),
    ("graphql", "bastion.detect.graphql:make"),
    ("uploads", "bastion.detect.uploads:make"),
    ("signatures", "bastion.detect.signatures:make"),
    ("schema", "bastion.detect.schema:make"),
    ("behaviour", "bastion.detect.behaviour.scenarios:make"),
    ("catalog", "bastion.detect.catalog:make"),
    ("symptoms", "bastion.detect.symptoms:make"),  # after catalog: it names the endpoint
]


def factory(spec: str) -> Factory:
    module, _, fn = spec.partition(":")
    made: Factory = getattr(importlib.import_module(module), fn)
    return made


def build_detectors(
    config: BastionConfig, ctx: BuildContext | None = None, only: set[str] | None = None
) -> list[Detector]:
    """Instantiate every enabled detector in order. `only` restricts the set (benchmarks, tests)."""
    ctx = ctx or BuildContext()
    out: list[Detector] = []
    for name, spec in DETECTORS:
        settings = config.detector(name)
        if not settings.enabled or (only is not None and name not in only):
            continue
        det = factory(spec)(config, ctx)
        if det is None:
            continue
        if settings.observe:
            det.observe = True  # type: ignore[attr-defined]
        out.append(det)
    return out

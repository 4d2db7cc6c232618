"""The `symptoms:` config section (kept apart from the detector so config loading stays light)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SymptomThreshold(_Section):
    ratio: float = Field(4.0, gt=1, description="the window must exceed the baseline by this factor")
    floor: float = Field(..., ge=0, description="and reach at least this count in the window")


class SymptomsConfig(_Section):
    """`symptoms:`: per-endpoint baselines of traffic, errors, refusals and latency, with alerts."""

    bucket: float = Field(10.0, gt=0, description="seconds per bucket")
    window: float = Field(60.0, gt=0, description="seconds compared with the baseline")
    baseline_half_life: float = Field(3600.0, gt=0, description="seconds: how fast the baseline forgets")
    warmup: float = Field(600.0, ge=0, description="seconds of history before a scope may alert")
    max_endpoints: int = Field(500, ge=0, description="endpoint scopes tracked (the gateway-wide one always is)")
    traffic: SymptomThreshold = Field(default_factory=lambda: SymptomThreshold(ratio=5.0, floor=300))
    errors: SymptomThreshold = Field(default_factory=lambda: SymptomThreshold(ratio=4.0, floor=20))
    client_errors: SymptomThreshold = Field(default_factory=lambda: SymptomThreshold(ratio=5.0, floor=60))
    auth_failures: SymptomThreshold = Field(default_factory=lambda: SymptomThreshold(ratio=5.0, floor=30))
    blocked: SymptomThreshold = Field(default_factory=lambda: SymptomThreshold(ratio=5.0, floor=30))
    latency: SymptomThreshold = Field(
        default_factory=lambda: SymptomThreshold(ratio=3.0, floor=20),
        description="ratio of p95s; floor: requests in the window (and p95 at least 250 ms above the baseline)",
    )

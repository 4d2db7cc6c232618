"""The `state:` config section: where counters live and what happens when that place fails."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StateConfig(BaseModel):
    """`state: {url: memory://}` (default) or `redis://host:port/db`."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field("memory://", description="memory:// (per process) or redis://host:port/db (shared)")
    prefix: str = Field("bastion:", description="namespace of every key this gateway writes")
    timeout: float = Field(0.1, gt=0, le=10, description="seconds a request waits for the backend at most")
    fail: Literal["open", "closed", "inherit"] = Field(
        "inherit", description="when the backend fails: let requests through, refuse them (503), or follow fail_mode"
    )
    sync_interval: float = Field(0.1, gt=0, le=10, description="seconds between syncs of approximate rules")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v.isascii() or any(c.isspace() for c in v) or len(v) > 64:
            raise ValueError("prefix must be at most 64 printable ASCII characters")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        scheme = v.split("://", 1)[0] if "://" in v else ""
        if scheme not in ("memory", "redis"):
            raise ValueError(f"state url must start with memory:// or redis://, got {v!r}")
        return v

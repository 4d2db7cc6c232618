"""The `alerts:` config section (kept apart from the sender so config loading stays light)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    format: Literal["slack", "generic"] = "generic"
    headers: dict[str, str] = Field(default_factory=dict, description="e.g. an Authorization header")
    timeout: float = Field(5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("a webhook URL starts with http:// or https://")
        return v


class AlertsConfig(BaseModel):
    """`alerts:` section. No webhooks configured: no alerts sent."""

    model_config = ConfigDict(extra="forbid")

    webhooks: list[WebhookConfig] = Field(default_factory=list)
    send_on: Literal["block", "flag"] = Field("block", description="alert on blocks only, or on every flagged event")
    dedup_window: float = Field(300.0, ge=0, description="seconds during which one key alerts once")
    max_per_minute: int = Field(30, ge=1, description="per webhook; beyond this alerts are dropped and counted")
    queue_size: int = Field(1000, ge=10)

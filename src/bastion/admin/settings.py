"""The `admin:` config section (kept apart from the server so config loading stays light)."""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_LISTEN = "127.0.0.1:9090"


class AdminConfig(BaseModel):
    """`admin:` section: the admin API, Prometheus metrics and the console.

    On by default, on loopback only. Every endpoint but `/healthz` needs the admin token."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="serve the admin API, /metrics and the console (off: --no-admin)")
    listen: str = Field(DEFAULT_LISTEN, description="HOST:PORT of the admin listener (never public by default)")
    token: str = Field(
        "", description="bearer token; empty: env BASTION_ADMIN_TOKEN, else generated into data_dir/admin.token"
    )
    totp_secret: str = Field("", description="base32 RFC 6238 secret: the console login then also asks for a code")
    public_metrics: bool = Field(False, description="serve /metrics without the token (loopback scrapers)")
    tls: bool = Field(False, description="serve the admin over HTTPS with server.tls's certificate and key")
    session_ttl: float = Field(8 * 3600.0, gt=60, description="seconds a console login lasts")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT, got {v!r}")
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: str) -> str:
        if v and len(v) < 16:
            raise ValueError("an admin token must be at least 16 characters")
        return v

    @field_validator("totp_secret")
    @classmethod
    def _totp(cls, v: str) -> str:
        if not v:
            return v
        s = v.replace(" ", "").upper()
        try:
            raw = base64.b32decode(s + "=" * (-len(s) % 8))
        except (binascii.Error, ValueError):
            raise ValueError("totp_secret must be base32 (RFC 4648), as authenticator apps use") from None
        if len(raw) < 10:
            raise ValueError("totp_secret must hold at least 80 bits (16 base32 characters)")
        return s

"""The `access:` config section (kept apart from the detector so config loading stays light)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiKeySettings(_Section):
    """One accepted API key. The config holds its SHA-256, or the name of the variable holding it."""

    name: str = Field(..., min_length=1, max_length=64, description="who holds it (shown in events, never the key)")
    sha256: str = Field("", description="hex SHA-256 of the key (`printf %s KEY | sha256sum`)")
    env: str = Field("", description="or: the environment variable holding the key itself")
    scopes: list[str] = Field(default_factory=list, description="what the key may do")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        v = v.strip().lower()
        if v and not _HEX64.match(v):
            raise ValueError("sha256 must be 64 hex digits")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeySettings:
        if bool(self.sha256) == bool(self.env):
            raise ValueError("give exactly one of sha256 and env")
        return self


class AccessRule(_Section):
    """Who may call what: the first rule matching a request's method and path applies."""

    path: str = Field(..., min_length=1, description="glob on the request path: /admin/*, /orders/*/refund")
    methods: list[str] = Field(default_factory=list, description="empty: every method")
    require: Literal["any", "api_key", "jwt", "none"] = Field(
        "any", description="a valid API key or bearer JWT (any), one kind only, or nothing (a public route)"
    )
    scopes: list[str] = Field(default_factory=list, description="scopes the credential must all grant")

    @field_validator("methods")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        return [m.upper() for m in v]


class AccessConfig(_Section):
    """`access:`: authentication and scopes per endpoint. No rules: nothing is required."""

    api_key_header: str = Field("X-API-Key", description="request header carrying an API key")
    api_keys: list[ApiKeySettings] = Field(default_factory=list)
    rules: list[AccessRule] = Field(default_factory=list)
    realm: str = Field("api", description="realm named in WWW-Authenticate")

"""The rule language: typed YAML, validated when loaded (file, line, rule and field in every error).

    - id: login-failures
      description: more than 5 failed logins in a minute from one client
      scope: {paths: [/login, /api/*/login], methods: [POST]}
      match: {status: [401, 403]}
      key: ip                      # or [ip, header.user-agent], api_key, user, network/24 ...
      counter: count               # or {sum: response.size} or {distinct: json.username}
      window: 1m
      algorithm: sliding_window    # token_bucket | fixed_window
      threshold: 5
      actions: {block: 403, cooldown: 10m, risk: 20, tags: [brute-force], alert: true}
      mode: enforce                # observe: report what would happen, change nothing
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.rulespec.units import parse_duration, parse_size

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
KEY_NAMES = ("ip", "network", "api_key", "user", "session", "fingerprint", "entity", "site", "route", "path",
             "method")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Scope(_Model):
    """Where a rule applies. Empty lists mean everywhere; several fields must all hold."""

    sites: list[str] = Field(default_factory=list, description="Host globs: api.example.com, *.example.com")
    groups: list[str] = Field(default_factory=list, description="endpoint groups (rules.groups or exchange tags)")
    routes: list[str] = Field(default_factory=list, description="route templates: /users/{id}")
    paths: list[str] = Field(default_factory=list, description="path globs: /api/* (one segment), /api/** (any)")
    methods: list[str] = Field(default_factory=list)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return [m.upper() for m in v]


class Test(_Model):
    """Tests on one signal; several tests in one mapping must all hold."""

    equals: str | float | bool | None = None
    not_equals: str | float | bool | None = None
    in_: list[str | float] | None = Field(None, alias="in")
    not_in: list[str | float] | None = None
    regex: str | None = None
    cidr: list[str] | None = None
    gt: str | float | None = None
    ge: str | float | None = None
    lt: str | float | None = None
    le: str | float | None = None
    present: bool | None = None

    @field_validator("cidr", mode="before")
    @classmethod
    def _cidr_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _not_empty(self) -> Test:
        if all(getattr(self, f) is None for f in type(self).model_fields):
            raise ValueError("a test needs at least one of equals, not_equals, in, not_in, regex, cidr, "
                             "gt, ge, lt, le, present")
        return self


def _as_test(v: Any) -> Any:
    """Shorthands: `status: 404` is `{equals: 404}`, `status: [401, 403]` is `{in: [...]}`."""
    if isinstance(v, dict):
        return v
    if isinstance(v, list):
        return {"in": v}
    return {"equals": v}


class SumCounter(_Model):
    sum: str


class DistinctCounter(_Model):
    distinct: str


class Actions(_Model):
    """What happens when the threshold is exceeded. Several actions combine."""

    block: Literal[429, 403] | None = Field(
        None, description="429: rate limited (Retry-After, RateLimit headers); 403: refused for the cooldown"
    )
    cooldown: float | None = Field(None, description="how long a block or throttle lasts once triggered")
    throttle: float | None = Field(None, description="delay each request by this long (a tarpit)")
    risk: float | None = Field(None, ge=0, description="risk points added to the entity, once per trigger")
    tags: list[str] = Field(default_factory=list)
    alert: bool = False
    severity: Literal["notice", "warning", "error", "critical"] = "warning"

    @field_validator("cooldown", "throttle", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _something(self) -> Actions:
        if self.block is None and self.throttle is None and self.risk is None and not self.tags and not self.alert:
            raise ValueError("a rule needs at least one action: block, throttle, risk, tags or alert")
        if self.block is not None and self.throttle is not None:
            raise ValueError("block and throttle exclude each other")
        if self.cooldown is not None and self.cooldown <= 0:
            raise ValueError("cooldown must be positive")
        if self.throttle is not None and not 0 < self.throttle <= 30:
            raise ValueError("throttle delay must be between 0 and 30 seconds")
        return self

    @property
    def enforces(self) -> bool:
        return self.block is not None or self.throttle is not None


class RuleSpec(_Model):
    id: str
    description: str = ""
    mode: Literal["enforce", "observe"] = "enforce"
    scope: Scope = Field(default_factory=Scope)
    match: dict[str, Test] = Field(default_factory=dict)
    key: list[str] = Field(default_factory=lambda: ["ip"])
    counter: Literal["count"] | SumCounter | DistinctCounter = "count"
    window: float
    algorithm: Literal["sliding_window", "token_bucket", "fixed_window"] = "sliding_window"
    threshold: float = Field(ge=0, description="the counter may reach this; beyond it, actions fire (0: any match)")
    actions: Actions
    approximate: bool = Field(False, description="count locally, sync with shared state every ~100 ms")
    on_error: Literal["open", "closed", "inherit"] = "inherit"
    include_own_responses: bool | None = Field(
        None,
        description="count exchanges Bastion answered itself (its blocks). Default: not for rules on response "
        "signals (status, latency, response.*), so bans do not feed themselves; yes for the others",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("rule ids are 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @field_validator("match", mode="before")
    @classmethod
    def _match(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: _as_test(t) for k, t in v.items()}
        return v

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: Any) -> float:
        w = parse_duration(v)
        if not 0 < w <= 7 * 86400:
            raise ValueError("window must be between 0 and 7 days")
        return w

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> float:
        return parse_size(v)  # plain numbers, or sizes for sum counters: 200MB

    @model_validator(mode="after")
    def _consistent(self) -> RuleSpec:
        if self.algorithm == "token_bucket" and self.threshold <= 0:
            raise ValueError("a token bucket needs a positive threshold (its capacity)")
        if not self.key:
            raise ValueError("key needs at least one part")
        if isinstance(self.counter, DistinctCounter) and self.algorithm != "sliding_window":
            raise ValueError("a distinct counter has its own exact window; leave algorithm unset")
        if self.approximate and isinstance(self.counter, DistinctCounter):
            raise ValueError("approximate mode applies to count and sum counters only")
        return self


class RulesConfig(_Model):
    """The `rules:` config section: a list of rules, or a mapping with files, starter and groups.

        rules:
          starter: [scan-404-burst]          # shipped rules to switch on ("all" for every one)
          files: [/etc/bastion/rules/*.yaml] # more rule files (globs)
          groups: {auth: [/login, /api/*/token]}
          list: [...]                        # inline rules
    """

    list_: list[RuleSpec] = Field(default_factory=list, alias="list")
    files: list[str] = Field(default_factory=list, alias="rule_files")
    starter: list[str] | Literal["all"] = Field(default_factory=list)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per starter rule id: fields to change (threshold, window, mode...)"
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, v: Any) -> Any:
        if isinstance(v, list):
            return {"list": v}
        return v

    @property
    def empty(self) -> bool:
        return not self.list_ and not self.files and not self.starter

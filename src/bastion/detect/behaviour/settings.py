"""The `behaviour:` config section: entities, risk, decisions storage and the behaviour scenarios.

Every default works without configuration; each scenario can be tuned or switched off by id.
Windows are seconds; `slow_*` fields are the low-and-slow variant of the same scenario over hours.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                  "ES384", "ES512", "ES256K", "EdDSA")


class JwtSettings(_Section):
    """Verification of bearer JWTs before their `sub` becomes the `user` key (see bastion.jwtauth).
    With no secret, public key, JWKS file or JWKS URL, tokens are not verified and their `sub` is only an
    unverified claim: it never links entities and never carries a decision."""

    secrets: list[str] = Field(
        default_factory=list, description="HMAC keys (HS256/384/512); `env:NAME` reads the environment variable"
    )
    public_keys: list[Path] = Field(
        default_factory=list, description="PEM public keys or certificates (RSA: RS*/PS*, EC: ES*, Ed25519/448: EdDSA)"
    )
    jwks_file: Path | None = Field(None, description="a JWKS document (`{\"keys\": [...]}`); `kid` selects the key")
    jwks_url: str = Field(
        "", description="the identity provider's JWKS endpoint (https, or http on a loopback address); fetched at "
        "start, refreshed in the background and when a token names an unknown `kid`; public keys only"
    )
    jwks_refresh: float = Field(300.0, ge=30, le=86_400, description="seconds between JWKS refreshes")
    jwks_timeout: float = Field(5.0, gt=0, le=60, description="seconds allowed for one JWKS fetch")
    algorithms: list[str] = Field(
        default_factory=list, description="accepted `alg` values; empty: every algorithm the keys given can verify"
    )
    issuer: list[str] = Field(default_factory=list, description="accepted `iss` values (required when set)")
    audience: list[str] = Field(default_factory=list, description="accepted `aud` values (required when set)")
    leeway: float = Field(30.0, ge=0, le=3600, description="seconds of clock skew allowed on exp/nbf/iat")
    require: list[str] = Field(default_factory=lambda: ["exp"], description="claims a token must carry")
    subject_claim: str = Field("sub", description="the claim that names the user")
    cache_size: int = Field(10_000, ge=0, le=1_000_000, description="verified tokens remembered (LRU, by hash)")

    @field_validator("issuer", "audience", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("algorithms")
    @classmethod
    def _algs(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in JWT_ALGORITHMS]
        if bad:
            raise ValueError(f"unknown or unsafe algorithm(s) {bad}; use some of {list(JWT_ALGORITHMS)}")
        return v

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, v: str) -> str:
        if not v:
            return v
        u = urlsplit(v)
        if u.scheme not in ("https", "http") or not u.hostname:
            raise ValueError("must be an https:// URL")
        if u.scheme == "http" and not _loopback(u.hostname):
            # keys fetched in clear text could be swapped by anyone on the path: forged tokens would verify
            raise ValueError("plain http is only accepted on a loopback address; use https")
        return v

    @property
    def configured(self) -> bool:
        return bool(self.secrets or self.public_keys or self.jwks_file or self.jwks_url)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class EntitySettings(_Section):
    user_header: str = Field("", description="header carrying the authenticated user, set by a trusted front")
    jwt: JwtSettings = Field(default_factory=lambda: JwtSettings.model_validate({}))
    session_cookies: list[str] = Field(
        default_factory=lambda: ["session", "sessionid", "sid", "connect.sid", "phpsessid", "jsessionid",
                                 "_session", "session_id", "sessid", "laravel_session", "_session_id"],
    )
    session_cookie_pattern: str = Field(
        r"(^|[._-])(sess|session|sid)([._-]|$)",
        description="regex searched in lower-cased cookie names: a match carries a session too (`_app_session`, "
                    "`SESSION`, `.AspNetCore.Session`); '' only the names of `session_cookies`",
    )
    api_key_headers: list[str] = Field(default_factory=lambda: ["x-api-key", "api-key", "x-apikey", "apikey"])
    key_salt: str = Field("", description="mixed into hashed API keys/sessions; the same on every instance")
    max_ips: int = Field(64, ge=1, description="addresses one entity may link")
    max_strong: int = Field(16, ge=1, description="API keys, users and sessions one entity may link")
    idle_ttl: float = Field(24 * 3600.0, gt=0, description="seconds before an idle key is forgotten")
    max_keys: int = Field(
        1_000_000, ge=1000,
        description="keys (addresses, API keys, sessions, users, fingerprints) the entity graph of one process tracks; "
                    "beyond it the least recently seen are evicted, keys with risk last. It sizes behaviour's other "
                    "tables too (activity records: a quarter of it; each scenario's records: a sixteenth): the default "
                    "holds a flood of fresh keys under about 1 GB per process (docs/behaviour.md, Memory); lower it on "
                    "a small container (under 1 KB of RSS per key at worst)",
    )
    popular: int = Field(5, ge=2, description="identities after which a weak key (NAT, browser) is shared")


    @field_validator("session_cookie_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"bad regex {v!r}: {exc}") from None
        return v


def activity_cap(max_keys: int) -> int:
    """Activity records (addresses and identities: request rate, last GET, resources) the behaviour
    scenarios keep: a quarter of the entity graph's `max_keys` (see docs/behaviour.md, "Memory")."""
    return max(1000, max_keys // 4)


def subject_cap(max_keys: int) -> int:
    """Records each behaviour scenario keeps (its subjects' counters, ten tables): a sixteenth of
    `max_keys`. The least recently used go first: a table holds the subjects of the last minutes of
    a busy API, and a low-and-slow subject touches its record every few minutes."""
    return max(1000, max_keys // 16)


class RiskSettings(_Section):
    half_life: float = Field(600.0, gt=0, description="seconds for an entity's risk to halve")
    watch: float = Field(15.0, gt=0, description="risk at which an entity is watched (logged)")
    throttle: float = Field(35.0, gt=0, description="risk at which requests are tarpitted")
    challenge: float = Field(60.0, gt=0, description="risk at which requests get a 401 challenge")
    block: float = Field(90.0, gt=0, description="risk at which the entity is blocked (a decision)")
    throttle_delay: float = Field(1.0, ge=0, le=30, description="tarpit seconds at the throttle threshold")
    block_ttl: float = Field(600.0, gt=0, description="first block, seconds")
    block_growth: float = Field(2.0, ge=1, description="each repeat offence multiplies the block time")
    block_ttl_max: float = Field(7 * 86400.0, gt=0)
    max_points_per_exchange: float = Field(40.0, gt=0, description="cap on risk one exchange can add")
    exploit_share: float = Field(
        0.8, ge=0, le=1,
        description="share of an entity's requests that must carry exploit findings (signatures, protocol) "
                    "before those findings raise its risk past `watch`: a shared address (NAT, load balancer) "
                    "with mostly normal traffic loses only its hostile requests, never all of them",
    )
    exploit_cap: float = Field(
        40.0, ge=0,
        description="the highest risk exploit findings (signatures, protocol) alone raise an entity to: by "
                    "default in the tarpit band, below challenge. A source sending attacks has each one refused "
                    "and is slowed; what it sends that is clean is served (a test harness, a NAT, a user whose "
                    "client misbehaved). Behaviour and rule findings go on to challenge and block. Set it to "
                    "`block` for exploits alone to ban a source",
    )
    challenge_enabled: bool = Field(True, description="false: the challenge band blocks instead")

    @model_validator(mode="after")
    def _ordered(self) -> RiskSettings:
        if not self.watch <= self.throttle <= self.challenge <= self.block:
            raise ValueError("risk thresholds must be ordered: watch <= throttle <= challenge <= block")
        return self


class StepUpSettings(_Section):
    """Step-up verification of the risk challenge: a one-time code the API delivers to its user."""

    enabled: bool = Field(False, description="answer the challenge band with a one-time code (needs a user key)")
    deliver_url: str = Field("", description="the API's webhook that sends the code to the user (email, SMS, push)")
    deliver_secret: str = Field(
        "", description="HMAC-SHA256 key signing each delivery (`X-Bastion-Signature`); 16+ characters"
    )
    deliver_timeout: float = Field(3.0, gt=0, le=30, description="seconds per delivery attempt")
    header: str = Field("X-Bastion-Step-Up", description="request header carrying `<challenge_id>.<code>`")
    code_length: int = Field(6, ge=6, le=8, description="digits of the one-time code")
    ttl: float = Field(300.0, ge=30, le=3600, description="seconds a challenge (and its code) stays valid")
    max_attempts: int = Field(5, ge=1, le=20, description="wrong codes before the challenge turns into a block")
    pass_ttl: float = Field(900.0, gt=0, le=86400, description="seconds a verified user skips the risk challenge")
    fail_risk: float = Field(10.0, ge=0, description="risk points of each wrong, unknown or malformed code")
    max_challenges: int = Field(100_000, ge=100, description="live challenges and passes kept per process")
    max_deliveries_per_minute: int = Field(120, ge=1, description="beyond this, no code is sent (plain 401)")
    queue_size: int = Field(1000, ge=10, description="deliveries waiting for the sender thread")

    @field_validator("header")
    @classmethod
    def _header(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", v):
            raise ValueError("a header name (letters, digits, '-')")
        return v

    @model_validator(mode="after")
    def _usable(self) -> StepUpSettings:
        if self.enabled:
            if not self.deliver_url.startswith(("http://", "https://")):
                raise ValueError("step_up.enabled needs deliver_url (http:// or https://)")
            if len(self.deliver_secret) < 16:
                raise ValueError("step_up.enabled needs deliver_secret (16 characters or more)")
        return self


class LoginSettings(_Section):
    """How a login endpoint and its failures are recognised."""

    routes: list[str] = Field(
        default_factory=lambda: [r"(^|/)(log[-_]?in|sign[-_]?in|sign[-_]?on|auth(enticate|entication)?|sessions?|token"
                                 r"|oauth/token|wp-login\.php|xmlrpc\.php|j_security_check)"
                                 r"(/|$|\.)"],
        description="regexes searched in the lower-cased path of a POST",
    )
    not_routes: list[str] = Field(
        default_factory=lambda: [r"(^|/)(password[-_]?(reset|forgot|recovery|change)|forgot|reset|recover|recovery"
                                 r"|register|registration|sign[-_]?up|log[-_]?out|sign[-_]?out|refresh|revoke|verify"
                                 r"|verification|confirm|activate|callback|mfa|otp|2fa|totp)([-_][a-z]+)?(/|$|\.)"],
        description="regexes that make a path matched by `routes` another account action, not a login: "
                    "/auth/password-reset, /auth/token/refresh, /login/verify (a password reset is a lookup "
                    "of an account, counted by enumeration; a code check is counted by guessing)",
    )
    methods: list[str] = Field(default_factory=lambda: ["POST"])
    failure_statuses: list[int] = Field(default_factory=lambda: [401, 403])
    failure_body_markers: list[str] = Field(
        default_factory=lambda: ["invalid credentials", "invalid password", "incorrect password",
                                 "login failed", "authentication failed", "wrong password",
                                 '"success":false', '"success": false', '"authenticated":false',
                                 '"authenticated": false', "invalid username or password", "invalid_grant",
                                 "bad credentials", "incorrect username or password"],
        description="response body substrings (lower-case) that mean failure with a 200, 400 or 422",
    )
    account_fields: list[str] = Field(
        default_factory=lambda: ["username", "user", "email", "login", "account", "user_name", "userid",
                                 "user_id", "phone", "mobile", "identifier", "name", "log", "j_username"],
    )
    sequence_routes: list[str] = Field(
        default_factory=lambda: [r"(^|/)(checkout|payment|payments|purchase)(/|$)"],
        description="POST routes a real client reaches only after other requests (with the login routes)",
    )

    @field_validator("routes", "not_routes", "sequence_routes")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for r in v:
            try:
                re.compile(r)
            except re.error as exc:
                raise ValueError(f"bad regex {r!r}: {exc}") from None
        return v


class ScenarioSettings(_Section):
    """One behaviour scenario. `threshold` is in the scenario's unit (failures, distinct paths...)."""

    enabled: bool = True
    threshold: float = Field(gt=0)
    window: float = Field(gt=0, description="seconds")
    risk: float = Field(100.0, ge=0, description="risk points when it fires")
    min_share: float = Field(0.0, ge=0, le=1, description="share of bad outcomes required (misses, errors)")
    slow_threshold: float = Field(0.0, ge=0, description="0: no low-and-slow variant")
    slow_window: float = Field(24 * 3600.0, gt=0)
    cooldown: float = Field(30.0, ge=0, description="seconds between two firings on one subject")


def _s(**kw: float) -> ScenarioSettings:
    return ScenarioSettings.model_validate(kw)


class ScenariosSettings(_Section):
    scanning: ScenarioSettings = Field(default_factory=lambda: _s(threshold=12, window=120, min_share=0.5,
                                                                  slow_threshold=40))
    brute_force: ScenarioSettings = Field(default_factory=lambda: _s(threshold=8, window=600, slow_threshold=20))
    stuffing: ScenarioSettings = Field(default_factory=lambda: _s(threshold=5, window=900, slow_threshold=15))
    account_attack: ScenarioSettings = Field(default_factory=lambda: _s(threshold=10, window=900, risk=40))
    # risk well above `challenge` (a takeover is worth a step-up at once) and slow to decay below it
    ato_success: ScenarioSettings = Field(default_factory=lambda: _s(threshold=5, window=1800, risk=75))
    token_spread: ScenarioSettings = Field(default_factory=lambda: _s(threshold=4, window=600))
    enumeration: ScenarioSettings = Field(default_factory=lambda: _s(threshold=15, window=600, min_share=0.5,
                                                                     slow_threshold=30))
    bola: ScenarioSettings = Field(default_factory=lambda: _s(threshold=12, window=600, min_share=0.4,
                                                              slow_threshold=25))
    scraping: ScenarioSettings = Field(default_factory=lambda: _s(threshold=150, window=600))
    sequence: ScenarioSettings = Field(default_factory=lambda: _s(threshold=1, window=1800, risk=25))
    # distinct codes (one-time codes, gift cards, vouchers, PINs) refused on one endpoint: a user
    # mistypes a code two or three times, a guesser sends hundreds
    guessing: ScenarioSettings = Field(default_factory=lambda: _s(threshold=10, window=900, min_share=0.7,
                                                                  slow_threshold=30))


class DecisionsSettings(_Section):
    url: str = Field("", description="'' follows state.url; memory:// (with a file in the data dir) or redis://")
    prefix: str = Field("bastion:decisions", description="Redis key and channel prefix")
    persist: bool = Field(True, description="memory backend: keep decisions in data_dir/decisions.json")
    poll_interval: float = Field(1.0, gt=0, description="seconds between re-reads of the decisions file")


class BehaviourConfig(_Section):
    enabled: bool = True
    entity: EntitySettings = Field(default_factory=lambda: EntitySettings.model_validate({}))
    risk: RiskSettings = Field(default_factory=lambda: RiskSettings.model_validate({}))
    login: LoginSettings = Field(default_factory=lambda: LoginSettings.model_validate({}))
    scenarios: ScenariosSettings = Field(default_factory=lambda: ScenariosSettings.model_validate({}))
    decisions: DecisionsSettings = Field(default_factory=lambda: DecisionsSettings.model_validate({}))
    step_up: StepUpSettings = Field(default_factory=lambda: StepUpSettings.model_validate({}))

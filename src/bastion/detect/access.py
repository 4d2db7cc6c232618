"""The `access` detector: authentication and scopes per endpoint, before the API sees the request.

`access.rules` name path globs (and methods); the first rule that matches a request decides what it
needs: a valid API key (`access.api_keys`, in the `api_key_header`), a bearer JWT verified with the
keys of `behaviour.entity.jwt` (signature, expiry, issuer, audience; the same verifier and cache
the entity keys use), either, or nothing. A rule's `scopes` must all be granted: by the API key's
configuration, or by the token's `scope`/`scp`/`scopes`/`permissions` claim.

    no credential, or one that fails     401 authentication-required, WWW-Authenticate: Bearer ...
    a credential without every scope     403 insufficient-scope

Only digests of API keys are held (the config gives a SHA-256, or names the environment variable
holding the key); a presented key is hashed and looked up, so no comparison ever runs on the key
itself. A failing credential is a finding with risk points (guessing keys raises the entity's
risk); a missing one costs little (browsers and health checks forget). Requests that match no rule
pass untouched: with no rules the detector is not built at all.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass

from bastion.config import BastionConfig
from bastion.detect.access_settings import AccessConfig, AccessRule
from bastion.engine.registry import BuildContext
from bastion.errors import ConfigError
from bastion.exchange import Exchange
from bastion.jwtauth import JwtVerifier, make_verifier
from bastion.verdict import Action, Finding, Severity


@dataclass(frozen=True, slots=True)
class Rule:
    methods: frozenset[str]
    path: re.Pattern[str]
    require: str
    scopes: frozenset[str]
    text: str  # the rule as configured, for messages


def compile_rules(rules: list[AccessRule]) -> list[Rule]:
    return [
        Rule(frozenset(r.methods), re.compile(fnmatch.translate(r.path)), r.require, frozenset(r.scopes),
             f"{','.join(r.methods) or '*'} {r.path}")
        for r in rules
    ]


def key_digests(cfg: AccessConfig) -> dict[str, tuple[str, frozenset[str]]]:
    """SHA-256 hex of every accepted key -> (holder name, scopes)."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for i, k in enumerate(cfg.api_keys):
        digest = k.sha256
        if k.env:
            raw = os.environ.get(k.env, "")
            if len(raw) < 16:
                raise ConfigError([f"access.api_keys[{i}] ({k.name}): environment variable {k.env} is unset or "
                                   "shorter than 16 characters"])
            digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
        out[digest] = (k.name, frozenset(k.scopes))
    return out


class AccessDetector:
    name = "access"

    def __init__(self, cfg: AccessConfig, verifier: JwtVerifier | None) -> None:
        self.rules = compile_rules(cfg.rules)
        self.keys = key_digests(cfg)
        self.header = cfg.api_key_header
        self.verifier = verifier
        self.bearer = f'Bearer realm="{cfg.realm}"'
        self.observe = False

    def _rule(self, method: str, path: str) -> Rule | None:
        for r in self.rules:
            if (not r.methods or method in r.methods) and r.path.match(path):
                return r
        return None

    def request_headers(self, ex: Exchange) -> None:
        req = ex.request
        rule = self._rule(req.method, req.path)
        if rule is None or rule.require == "none":
            return
        holder = ""
        scopes: frozenset[str] = frozenset()
        failed = ""
        if rule.require != "jwt":
            raw = req.headers.get(self.header)
            if raw:
                hit = self.keys.get(hashlib.sha256(raw.strip().encode("utf-8", "surrogateescape")).hexdigest())
                if hit is None:
                    failed = "unknown API key"
                else:
                    holder, scopes = f"api key {hit[0]}", hit[1]
        if not holder and rule.require != "api_key" and self.verifier is not None:
            auth = req.headers.get("authorization") or ""
            if auth[:7].lower() == "bearer ":
                sub, ok, scopes = self.verifier.verify(auth[7:].strip())
                if ok:
                    holder = f"token of {sub}" if sub else "token"
                else:
                    failed = failed or "invalid bearer token"
        if not holder:
            self._refuse(ex, rule, failed)
        elif rule.scopes - scopes:
            missing = " ".join(sorted(rule.scopes - scopes))
            ex.add(Finding(
                rule_id="access-insufficient-scope", detector=self.name, severity=Severity.WARNING,
                message=f"{holder} lacks scope {missing} for {rule.text}"[:200], action=Action.BLOCK, status=403,
                reason="insufficient-scope", risk=5.0, tags=("access",),
                headers=(("WWW-Authenticate", f'{self.bearer}, error="insufficient_scope", scope="{missing}"'),)
                if rule.require != "api_key" else (),
            ))

    def _refuse(self, ex: Exchange, rule: Rule, failed: str) -> None:
        challenge = ""
        if rule.require != "api_key":
            challenge = f'{self.bearer}, error="invalid_token"' if failed else self.bearer
        ex.add(Finding(
            rule_id="access-invalid-credentials" if failed else "access-unauthenticated",
            detector=self.name,
            severity=Severity.WARNING if failed else Severity.NOTICE,
            message=(f"{failed} for {rule.text}" if failed else f"no credential for {rule.text}")[:200],
            action=Action.BLOCK, status=401, reason="authentication-required",
            risk=8.0 if failed else 1.0,  # guessing keys is an attack; forgetting one is not
            tags=("access",),
            headers=(("WWW-Authenticate", challenge),) if challenge else (),
        ))


def make(config: BastionConfig, ctx: BuildContext) -> AccessDetector | None:
    cfg = config.access
    if not cfg.rules:
        return None
    # One verifier for identities and access: a token is checked once, whichever asks first.
    core = ctx.services.get("behaviour")
    verifier = getattr(getattr(core, "key_settings", None), "jwt", None) or make_verifier(config.behaviour.entity.jwt)
    if verifier is None and any(r.require == "jwt" or (r.require == "any" and not cfg.api_keys) for r in cfg.rules):
        raise ConfigError(["access.rules: a rule accepts bearer JWTs but behaviour.entity.jwt has no key to "
                           "verify them (secrets, public_keys, jwks_file or jwks_url)"])
    if not cfg.api_keys and any(r.require == "api_key" for r in cfg.rules):
        raise ConfigError(["access.rules: a rule requires an API key but access.api_keys is empty"])
    return AccessDetector(cfg, verifier)

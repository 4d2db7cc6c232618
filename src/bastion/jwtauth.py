"""Verified identity claims: a bearer JWT's `sub` becomes the `user` entity key only when its
signature, expiry, issuer and audience check out (`behaviour.entity.jwt`).

Keys come from HMAC secrets (HS256/384/512), PEM public keys or certificates (RSA: RS*/PS*,
EC: ES* by curve, Ed25519/Ed448: EdDSA), a JWKS file and a JWKS endpoint kept fresh in the
background (bastion.jwks); a `kid` in the token header selects the key. A token is only tried
against keys of its own `alg` family, and `alg` must be one the keys can verify (never `none`,
never an HMAC check with a public key: no algorithm confusion).

Verification is cached: a bounded LRU keyed by a digest of the token remembers its subject and
expiry, so a client that sends the same token on every request pays one signature check; a failed
token is remembered too, so a flood of one forged token costs one check.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bastion.detect.behaviour.settings import JwtSettings
from bastion.errors import ConfigError
from bastion.jwks import RemoteJwks, jwk_keys, remote_jwks

_HS = ("HS256", "HS384", "HS512")
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}
MAX_TRIES = 4  # keys tried per token (without a matching kid): bounds the cost of a forged token
MAX_TOKEN = 8192
_NO_SCOPES: frozenset[str] = frozenset()


def _algorithms_of(key: object) -> tuple[str, ...]:
    if isinstance(key, bytes):
        return _HS
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _CURVES.get(key.curve.name)
        return (alg,) if alg else ()
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    return ()


def _secret(value: str) -> bytes:
    if value.startswith("env:"):
        got = os.environ.get(value[4:], "")
        if not got:
            raise ConfigError([f"behaviour.entity.jwt.secrets: environment variable {value[4:]} is not set"])
        value = got
    return value.encode("utf-8")


def _pem(path: Any) -> object:
    try:
        data = open(path, "rb").read()  # noqa: SIM115 - read once at start-up
    except OSError as exc:
        raise ConfigError([f"behaviour.entity.jwt.public_keys: cannot read {path}: {exc}"]) from None
    try:
        if b"CERTIFICATE" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError([f"behaviour.entity.jwt.public_keys: {path} is not a PEM public key: {exc}"]) from None


class JwtVerifier:
    """Checks bearer tokens. `check(token)` -> (subject, valid); one instance per pipeline."""

    def __init__(self, s: JwtSettings, now: Callable[[], float] = time.time) -> None:
        self.s = s
        self.now = now
        keys: list[tuple[str, object, tuple[str, ...]]] = []  # (kid, key, algorithms)
        for i, sec in enumerate(s.secrets):
            raw = _secret(sec)
            # RFC 7518 3.2: an HMAC key at least as long as the hash; a shorter one is brute-forced
            # offline from a single token
            algs = tuple(a for a, n in (("HS256", 32), ("HS384", 48), ("HS512", 64)) if len(raw) >= n)
            if not algs:
                raise ConfigError([f"behaviour.entity.jwt.secrets[{i}]: shorter than 32 bytes (RFC 7518 3.2)"])
            keys.append(("", raw, algs))
        for p in s.public_keys:
            key = _pem(p)
            algs = _algorithms_of(key)
            if not algs:
                raise ConfigError([f"behaviour.entity.jwt.public_keys: {p}: unsupported key type"])
            keys.append(("", key, algs))
        if s.jwks_file is not None:
            try:
                text = open(s.jwks_file, encoding="utf-8").read()  # noqa: SIM115
                keys.extend(jwk_keys(text, _algorithms_of, allow_secrets=True))
            except (OSError, ValueError) as exc:
                raise ConfigError([f"behaviour.entity.jwt.jwks_file: {s.jwks_file}: {exc}"]) from None
        self.remote: RemoteJwks | None = None
        if s.jwks_url:
            self.remote = remote_jwks(s.jwks_url, refresh=s.jwks_refresh, timeout=s.jwks_timeout,
                                      algorithms_of=_algorithms_of)
            # the first start waits for the provider's keys (bounded); a reload finds them fetched
            self.remote.wait_ready(s.jwks_timeout + 1.0)
        usable = {a for _, _, algs in keys for a in algs}
        if self.remote is not None:  # whatever the endpoint will serve: public-key algorithms
            usable |= {*_RSA, *_CURVES.values(), "EdDSA"}
        self.algorithms = frozenset(a for a in (s.algorithms or usable) if a in usable)
        if not self.algorithms:
            raise ConfigError(["behaviour.entity.jwt: no key can verify any of the accepted algorithms"])
        self.keys = keys
        self.issuers = frozenset(s.issuer)
        self.audience = list(s.audience) or None
        self.require = list(s.require) + (["iss"] if s.issuer else []) + (["aud"] if s.audience else [])
        self.cache: OrderedDict[bytes, tuple[str, bool, float, frozenset[str]]] = OrderedDict()
        self.checks = 0  # signature checks done (cache misses), for tests and benches

    def check(self, token: str) -> tuple[str, bool]:
        """(subject, valid): the token's verified subject ('' if it has none), or ('', False)."""
        sub, ok, _ = self.verify(token)
        return sub, ok

    def verify(self, token: str) -> tuple[str, bool, frozenset[str]]:
        """(subject, valid, scopes): scopes from `scope` (space-separated, RFC 8693), `scp`,
        `scopes` or `permissions` (a list or a string); empty when the token is not valid."""
        if len(token) > MAX_TOKEN:
            return "", False, _NO_SCOPES
        digest = hashlib.blake2b(token.encode("utf-8", "surrogateescape"), digest_size=16).digest()
        cache = self.cache
        hit = cache.get(digest)
        now = self.now()
        if hit is not None:
            sub, ok, until, scopes = hit
            if now <= until:
                cache.move_to_end(digest)
                return sub, ok, scopes
            del cache[digest]  # expired since it was verified (or a failure worth re-checking)
        sub, ok, until, scopes = self._verify(token, now)
        if self.s.cache_size:
            cache[digest] = (sub, ok, until, scopes)
            if len(cache) > self.s.cache_size:
                cache.popitem(last=False)
        return sub, ok, scopes

    def _verify(self, token: str, now: float) -> tuple[str, bool, float, frozenset[str]]:
        fail = ("", False, now + 3600.0, _NO_SCOPES)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return fail
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return fail
        kid = header.get("kid")
        keys = self.keys if self.remote is None else self.keys + self.remote.keys
        cands = [key for k, key, algs in keys if alg in algs and (not kid or not k or k == kid)]
        if kid:  # a key with that very kid first
            named = [key for k, key, algs in keys if k == kid and alg in algs]
            cands = named or cands
            if not named and self.remote is not None:
                # the provider may have rotated: fetch again, and judge this token again shortly
                self.remote.want_refresh()
                fail = ("", False, now + 5.0, _NO_SCOPES)
        if not cands and self.remote is not None:
            return "", False, now + 5.0, _NO_SCOPES  # no keys yet: not a verdict on the token
        s = self.s
        for key in cands[:MAX_TRIES]:
            self.checks += 1
            try:
                claims = jwt.decode(token, key, algorithms=[alg], audience=self.audience, leeway=s.leeway,  # type: ignore[arg-type]
                                    options={"require": self.require, "verify_aud": self.audience is not None})
            except jwt.ImmatureSignatureError:
                return "", False, now + 5.0, _NO_SCOPES  # not valid yet: may be soon (re-check in a few seconds)
            except jwt.ExpiredSignatureError:
                return fail
            except jwt.InvalidSignatureError:
                continue  # maybe another key (rotation)
            except (jwt.PyJWTError, ValueError, TypeError):
                return fail
            if self.issuers and claims.get("iss") not in self.issuers:
                return fail
            exp = claims.get("exp")
            until = float(exp) + s.leeway if isinstance(exp, int | float) else now + 3600.0
            if now > until:  # expired by our clock (PyJWT reads the wall clock)
                return fail
            sub = claims.get(s.subject_claim)
            sub = str(sub)[:128] if isinstance(sub, str | int) and not isinstance(sub, bool) else ""
            return sub, True, min(until, now + 3600.0), scopes_of(claims)
        return fail


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """The scopes a token grants: OAuth's `scope` string, Azure's `scp`, or a `scopes`/`permissions` list."""
    out: set[str] = set()
    for name in ("scope", "scp", "scopes", "permissions"):
        v = claims.get(name)
        if isinstance(v, str):
            out.update(v.split())
        elif isinstance(v, list):
            out.update(x for x in v if isinstance(x, str))
    return frozenset(list(out)[:256])


def make_verifier(s: JwtSettings) -> JwtVerifier | None:
    """The verifier for a configuration, or None when no key is configured (claims stay unverified)."""
    return JwtVerifier(s) if s.configured else None

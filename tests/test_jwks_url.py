"""JWT keys from an identity provider's JWKS endpoint (`behaviour.entity.jwt.jwks_url`): fetched
for real over a loopback HTTP server, refreshed on rotation, kept through an outage, and never
fetched on the request path."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from bastion import jwks
from bastion.detect.behaviour.settings import JwtSettings
from bastion.jwtauth import JwtVerifier
from bastion.testing import inspect_request, make_pipeline


class Provider:
    """A loopback JWKS endpoint whose document, status and hits the test controls."""

    def __init__(self) -> None:
        self.doc: bytes = b'{"keys": []}'
        self.status = 200
        self.hits = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.hits += 1
                self.send_response(provider.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(provider.doc)))
                self.end_headers()
                self.wfile.write(provider.doc)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, *keys: tuple[str, rsa.RSAPrivateKey]) -> None:
        out = []
        for kid, key in keys:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        self.doc = json.dumps({"keys": out}).encode()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.server.shutdown()
    p.server.server_close()


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (rsa.generate_private_key(public_exponent=65537, key_size=2048),
            rsa.generate_private_key(public_exponent=65537, key_size=2048))


def token(key: rsa.RSAPrivateKey, kid: str, sub: str = "alice", **claims: Any) -> str:
    body = {"sub": sub, "exp": int(time.time()) + 600, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_keys_from_the_endpoint_verify_and_a_rotation_is_fetched(
        provider: Provider, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = keys
    provider.publish(("k1", old))
    clock = Clock()
    v = JwtVerifier(JwtSettings(jwks_url=provider.url, jwks_refresh=3600), now=clock)
    assert v.remote is not None and provider.hits == 1
    assert v.check(token(old, "k1")) == ("alice", True)
    # HS256 is not accepted: the endpoint serves public keys, so no secret could verify it
    assert v.check(jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256",
                              headers={"kid": "k1"})) == ("", False)

    # the provider rotates: a token with the new kid fails for now and asks for a fetch
    monkeypatch.setattr(jwks, "MIN_REFETCH", 0.0)
    provider.publish(("k1", old), ("k2", new))
    assert v.check(token(new, "k2", sub="carol")) == ("", False)
    assert wait_for(lambda: provider.hits == 2 and len(v.remote.keys) == 2)  # type: ignore[union-attr]
    clock.t += 6  # that failure was remembered for a few seconds only
    assert v.check(token(new, "k2", sub="carol")) == ("carol", True)
    # a token signed by a key the provider never published stays refused, however often it comes
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert v.check(token(forged, "k2", sub="mallory")) == ("", False)


def test_made_up_kids_cannot_make_bastion_hammer_the_provider(
        provider: Provider, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    provider.publish(("k1", keys[0]))
    clock = Clock()
    v = JwtVerifier(JwtSettings(jwks_url=provider.url), now=clock)
    for i in range(200):
        clock.t += 10
        assert v.check(token(keys[0], f"kid-{i}")) == ("", False)
    time.sleep(0.2)
    assert provider.hits <= 2  # the first fetch, then at most one per MIN_REFETCH seconds


def test_a_dead_or_broken_endpoint_keeps_the_last_keys_and_never_stops_bastion(
        provider: Provider, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    provider.status = 503
    t0 = time.monotonic()
    v = JwtVerifier(JwtSettings(jwks_url=provider.url, jwks_timeout=1.0))
    assert time.monotonic() - t0 < 3.0 and v.remote is not None
    good = token(keys[0], "k1")
    assert v.check(good) == ("", False) and v.remote.failures >= 1  # no keys yet: unverified, not a crash

    provider.status = 200
    provider.publish(("k1", keys[0]))
    assert v.remote.fetch() and v.verify(good)[1] is False  # the failure above is cached a few seconds
    v.cache.clear()
    assert v.check(good) == ("alice", True)
    # broken documents are refused whole; the keys already held stay
    secret_only = b'{"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}'
    for doc in (b"<html>oops</html>", secret_only,
                b'{"keys": [' + b'{"kty": "RSA"},' * 80_000 + b'{"kty": "RSA"}]}'):
        provider.doc = doc
        assert not v.remote.fetch()
        v.cache.clear()
        assert v.check(good) == ("alice", True)


def test_verifiers_share_one_fetcher_which_ends_with_them(provider: Provider,
                                                          keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    provider.publish(("k1", keys[0]))
    s = JwtSettings(jwks_url=provider.url)
    a, b = JwtVerifier(s), JwtVerifier(s)  # the behaviour detector and access control; or a reload
    assert a.remote is b.remote and provider.hits == 1
    name = f"bastion-jwks-{'127.0.0.1'}"
    assert any(t.name == name for t in threading.enumerate())
    del a, b
    gc.collect()
    assert wait_for(lambda: not any(t.name == name for t in threading.enumerate()))


def test_the_endpoint_must_be_https_unless_on_loopback() -> None:
    for bad in ("http://idp.example.com/jwks", "ftp://127.0.0.1/jwks", "https://", "/etc/jwks.json"):
        with pytest.raises(ValidationError, match="jwks_url"):
            JwtSettings(jwks_url=bad)
    for ok in ("https://idp.example.com/.well-known/jwks.json", "http://127.0.0.1:8080/jwks", "http://[::1]/j",
               "http://localhost/jwks"):
        assert JwtSettings(jwks_url=ok).configured


async def test_access_control_with_keys_from_the_endpoint(provider: Provider,
                                                          keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    provider.publish(("k1", keys[0]))
    pipeline = make_pipeline({"behaviour": {"entity": {"jwt": {"jwks_url": provider.url}}},
                              "access": {"rules": [{"path": "/admin/*", "require": "jwt", "scopes": ["admin"]}]}},
                             only={"access"})
    _, ok = await inspect_request(pipeline, "GET", "/admin/x",
                                  headers={"Authorization": f"Bearer {token(keys[0], 'k1', scope='admin')}"})
    _, denied = await inspect_request(pipeline, "GET", "/admin/x",
                                      headers={"Authorization": f"Bearer {token(keys[1], 'k1', scope='admin')}"})
    assert not ok.blocks and denied.blocks and denied.status == 401

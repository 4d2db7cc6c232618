"""Access control per endpoint: API keys and verified bearer JWTs, scopes, through the engine and the proxy."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt
import pytest
from pydantic import ValidationError

from bastion.config import BastionConfig
from bastion.errors import ConfigError
from bastion.testing import inspect_request, make_pipeline
from proxy_helpers import gateway, get, make_config, request, upstream_server

SECRET = "s3cret-that-is-long-enough-for-hs256!!"
PARTNER_KEY = "pk_live_8f14e45fceea167a5a36dedd4bea2543"
READER_KEY = "pk_live_c9f0f895fb98ab9159f51fd0297e236d"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token(sub: str = "alice", *, scope: str = "orders:read", exp: float | None = None, key: str = SECRET,
          alg: str = "HS256", **claims: Any) -> str:
    payload = {"sub": sub, "scope": scope, "exp": int(exp if exp is not None else time.time() + 600), **claims}
    return jwt.encode(payload, key, algorithm=alg)


CONFIG: dict[str, Any] = {
    "behaviour": {"entity": {"jwt": {"secrets": [SECRET]}}},
    "access": {
        "api_keys": [{"name": "partner", "sha256": sha(PARTNER_KEY), "scopes": ["orders:read", "orders:write"]},
                     {"name": "reader", "sha256": sha(READER_KEY), "scopes": ["orders:read"]}],
        "rules": [
            {"path": "/health", "require": "none"},
            {"path": "/admin/*", "require": "jwt", "scopes": ["admin"]},
            {"path": "/orders*", "methods": ["POST", "PUT", "DELETE"], "scopes": ["orders:write"]},
            {"path": "/orders*", "scopes": ["orders:read"]},
            {"path": "/partner/*", "require": "api_key"},
        ],
    },
}


async def call(method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int | None, list[str], Any]:
    pipeline = make_pipeline(CONFIG, only={"access"})
    ex, verdict = await inspect_request(pipeline, method, path, headers=headers or {})
    return (verdict.status if verdict.blocks else None), [f.rule_id for f in ex.findings], verdict


async def test_api_keys_by_digest_and_their_scopes() -> None:
    assert (await call("GET", "/orders/1", {"X-API-Key": READER_KEY}))[0] is None
    assert (await call("POST", "/orders", {"X-API-Key": PARTNER_KEY}))[0] is None
    status, rules, verdict = await call("POST", "/orders", {"X-API-Key": READER_KEY})
    assert status == 403 and rules == ["access-insufficient-scope"] and verdict.reason == "insufficient-scope"
    status, rules, _ = await call("GET", "/orders/1", {"X-API-Key": "pk_live_guessed"})
    assert status == 401 and rules == ["access-invalid-credentials"]
    status, rules, verdict = await call("GET", "/orders/1")
    assert status == 401 and rules == ["access-unauthenticated"] and verdict.reason == "authentication-required"
    assert ("WWW-Authenticate", 'Bearer realm="api"') in verdict.headers
    # an API-key-only route names no bearer challenge, and a JWT does not open it
    status, _, verdict = await call("GET", "/partner/report", {"Authorization": f"Bearer {token()}"})
    assert status == 401 and not verdict.headers


async def test_bearer_jwts_are_verified_and_their_scopes_read() -> None:
    assert (await call("GET", "/orders/7", {"Authorization": f"Bearer {token()}"}))[0] is None
    assert (await call("GET", "/admin/users", {"Authorization": f"Bearer {token(scope='admin')}"}))[0] is None
    assert (await call("GET", "/admin/users", {"Authorization": f"Bearer {token(scp=['admin'], scope='')}"}))[0] is None
    status, rules, verdict = await call("GET", "/admin/users", {"Authorization": f"Bearer {token()}"})
    assert status == 403 and rules == ["access-insufficient-scope"]
    assert any('error="insufficient_scope", scope="admin"' in v for _, v in verdict.headers)
    for bad in (token(exp=time.time() - 3600), token(key="another-secret-that-is-long-enough!!"),
                jwt.encode({"sub": "alice", "scope": "admin"}, None, algorithm="none"), "not.a.jwt"):
        status, rules, verdict = await call("GET", "/admin/users", {"Authorization": f"Bearer {bad}"})
        assert status == 401 and rules == ["access-invalid-credentials"], bad
        assert any('error="invalid_token"' in v for _, v in verdict.headers)
    # an API key never opens a JWT-only route
    assert (await call("GET", "/admin/users", {"X-API-Key": PARTNER_KEY}))[0] == 401


async def test_first_matching_rule_wins_and_unmatched_routes_pass() -> None:
    assert (await call("GET", "/health"))[0] is None
    assert (await call("GET", "/products/3"))[0] is None
    assert (await call("DELETE", "/orders/3", {"X-API-Key": READER_KEY}))[0] == 403


async def test_a_guessed_key_costs_risk_a_forgotten_one_little() -> None:
    pipeline = make_pipeline(CONFIG, only={"access"})
    ex, _ = await inspect_request(pipeline, "GET", "/orders/1", headers={"X-API-Key": "guess"})
    ex2, _ = await inspect_request(pipeline, "GET", "/orders/1")
    assert ex.findings[0].risk is not None and ex2.findings[0].risk is not None
    assert ex.findings[0].risk > 4 * ex2.findings[0].risk


def test_no_rules_no_detector_and_broken_configs_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "access" not in [d.name for d in make_pipeline().detectors]
    with pytest.raises(ConfigError, match=r"behaviour\.entity\.jwt has no key"):
        make_pipeline({"access": {"rules": [{"path": "/admin/*", "require": "jwt"}]}})
    with pytest.raises(ConfigError, match=r"access\.api_keys is empty"):
        make_pipeline({"access": {"rules": [{"path": "/x", "require": "api_key"}]},
                       "behaviour": {"entity": {"jwt": {"secrets": [SECRET]}}}})
    with pytest.raises((ValidationError, ConfigError)):
        BastionConfig.model_validate({"access": {"api_keys": [{"name": "a", "sha256": "abc"}]}})
    with pytest.raises((ValidationError, ConfigError)):
        BastionConfig.model_validate({"access": {"api_keys": [{"name": "a"}]}})
    keys = {"api_keys": [{"name": "ci", "env": "BASTION_TEST_KEY"}], "rules": [{"path": "/*", "require": "api_key"}]}
    monkeypatch.setenv("BASTION_TEST_KEY", "short")
    with pytest.raises(ConfigError, match="BASTION_TEST_KEY"):
        make_pipeline({"access": keys})
    monkeypatch.setenv("BASTION_TEST_KEY", PARTNER_KEY)
    assert "access" in [d.name for d in make_pipeline({"access": keys}).detectors]


async def test_through_the_real_proxy() -> None:
    async with upstream_server() as up, gateway(make_config(up.url, **CONFIG)) as gw:
        denied = await request(gw.port, get("/orders/1"))
        ok = await request(gw.port, get("/orders/1", extra=f"X-API-Key: {READER_KEY}\r\n"))
        bearer = await request(gw.port, get("/orders/1", extra=f"Authorization: Bearer {token()}\r\n"))
        health = await request(gw.port, get("/health"))
    assert denied.status == 401
    assert denied.header("content-type") == "application/problem+json"
    assert denied.header("www-authenticate") == 'Bearer realm="api"'
    assert denied.json()["type"].endswith("/authentication-required")
    assert ok.status != 401 and bearer.status != 401 and health.status != 401
    assert len([r for r in up.requests if r.target.startswith("/orders")]) == 2  # the refused one never reached it


async def test_in_the_asgi_middleware() -> None:
    import httpx

    from bastion.frontends.asgi import BastionMiddleware

    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    cfg = BastionConfig.model_validate({**CONFIG, "logging": {"events_to_log": False}})
    mw = BastionMiddleware(app, config=cfg, with_store=False)
    transport = httpx.ASGITransport(app=mw, client=("203.0.113.9", 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example") as c:
        denied = await c.get("/admin/users", headers={"Authorization": f"Bearer {token()}"})
        ok = await c.get("/admin/users", headers={"Authorization": f"Bearer {token(scope='admin')}"})
    assert denied.status_code == 403 and denied.headers["content-type"] == "application/problem+json"
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    assert ok.status_code == 200 and calls == ["/admin/users"]

"""Spec diff: shadow, zombie, unused endpoints and drift between traffic and a declared spec."""

from __future__ import annotations

import orjson

from bastion.catalog.diff import diff
from bastion.catalog.learner import Learner
from bastion.catalog.spec import parse_spec
from bastion.exchange import Headers, Response
from bastion.testing import make_exchange

SPEC = parse_spec({
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/users/{userId}": {"get": {
            "parameters": [{"name": "userId", "in": "path", "required": True, "schema": {"type": "integer"}},
                           {"name": "fields", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok"}}}},
        "/users/{userId}/profile": {"put": {
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}}}},
            "responses": {"204": {"description": "ok"}}}},
        "/v1/orders": {"get": {"deprecated": True, "responses": {"200": {"description": "ok"}}}},
        "/reports": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/search": {"get": {"parameters": [{"name": "page", "in": "query", "schema": {"type": "integer"}}],
                            "responses": {"200": {"description": "ok"}}}},
    },
})


def call(lr: Learner, method: str, target: str, status: int = 200, body: object = None) -> None:
    raw = orjson.dumps(body) if body is not None else b""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    ex = make_exchange(method, target, headers=headers, body=raw, host="api.test")
    ex.response = Response(status, Headers())
    lr.observe(ex)


def test_shadow_zombie_unused_and_drift() -> None:
    lr = Learner()
    for i in range(1, 30):
        call(lr, "GET", f"/users/{i}?fields=name&debug=1")
        call(lr, "PUT", f"/users/{i}/profile", 204, {"name": "n", "age": "old", "is_admin": True})
        call(lr, "GET", "/v1/orders")
        call(lr, "GET", "/internal/metrics")
        call(lr, "GET", f"/search?page=p{i}")
    call(lr, "GET", "/users/5", 201)
    d = diff(lr.endpoints(), SPEC)
    assert d.shadow == ["GET /internal/metrics"]
    assert len(d.zombie) == 1 and d.zombie[0].startswith("GET /v1/orders (29 calls")
    assert d.unused == ["GET /reports"]
    drift = {(x.endpoint, x.kind, x.where, x.name) for x in d.drift}
    assert drift == {
        ("GET /users/{id}", "undeclared-param", "query", "debug"),
        ("GET /users/{id}", "undeclared-status", "response", "201"),
        ("PUT /users/{id}/profile", "type", "body", "age"),
        ("PUT /users/{id}/profile", "undeclared-property", "body", "is_admin"),
        ("GET /search", "type", "query", "page"),
    }
    assert d.matched == 4 and not d.clean
    assert orjson.loads(orjson.dumps(d.as_dict()))["unused"] == ["GET /reports"]


def test_traffic_that_follows_the_spec_is_clean() -> None:
    lr = Learner()
    for i in range(1, 10):
        call(lr, "GET", f"/users/{i}?fields=name")
        call(lr, "GET", f"/search?page={i}")
        call(lr, "GET", "/reports")
    d = diff(lr.endpoints(), SPEC)
    assert d.clean and d.shadow == [] and d.zombie == []
    assert sorted(d.unused) == ["GET /v1/orders (deprecated)", "PUT /users/{userId}/profile"]

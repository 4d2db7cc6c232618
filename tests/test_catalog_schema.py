"""The schema detector on a declared (hand-written, OpenAPI 3.0) spec: options, observe mode, responses."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from bastion.catalog.spec import Matcher, load_spec
from bastion.engine import Pipeline
from bastion.errors import ConfigError
from bastion.testing import make_config, make_exchange, make_pipeline, run_exchange, run_request, run_response
from bastion.verdict import Action, Phase

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "shop", "version": "1"},
    "servers": [{"url": "https://shop.test/api"}],
    "paths": {
        "/users/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {"responses": {"200": {"description": "ok", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/User"}}}}}},
            "put": {
                "parameters": [{"name": "X-Tenant", "in": "header", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/UserUpdate"}}}},
                "responses": {"204": {"description": "ok"}},
            },
        },
        "/users/me": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/users": {"get": {
            "parameters": [{"name": "limit", "in": "query", "required": True,
                            "schema": {"type": "integer", "maximum": 100}},
                           {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 20}}],
            "responses": {"200": {"description": "ok"}}}},
        "/legacy/report": {"get": {"deprecated": True, "x-bastion-mode": "observe",
                                   "responses": {"200": {"description": "ok"}}}},
        "/files/{name}": {"get": {"parameters": [{"name": "name", "in": "path", "required": True,
                                                  "schema": {"type": "string"}}],
                                  "responses": {"200": {"description": "ok"}}}},
    },
    "components": {"schemas": {
        "User": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
        "UserUpdate": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": 50}, "nickname": {"type": "string", "nullable": True}}},
    }},
}


def write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "api.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return p


def pipe(tmp_path: Path, **opts: object) -> Pipeline:
    return make_pipeline({"spec": {"path": str(write(tmp_path, SPEC)), **opts}}, only={"schema"})


H = {"Host": "shop.test", "Content-Type": "application/json", "X-Tenant": "t1"}


async def ids(p: Pipeline, method: str, target: str, body: object = None, headers: dict | None = None) -> set[str]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else b""
    ex = make_exchange(method, target, headers=headers or H, body=raw, host=None, pipeline=p)
    await run_exchange(p, ex)
    return {f.rule_id for f in ex.findings}


def test_short_form_config(tmp_path: Path) -> None:
    cfg = make_config({"spec": str(write(tmp_path, SPEC))})
    assert cfg.spec is not None and cfg.spec.path.name == "api.yaml"


def test_loading_resolves_refs_nullable_and_base_path(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, SPEC))
    assert spec.base_path == "/api"
    put = next(o for o in spec.operations if o.method == "PUT")
    assert put.template == "/api/users/{id}"
    assert put.bodies["application/json"]["properties"]["nickname"]["type"] == ["string", "null"]
    m = Matcher(spec)
    found = m.match(["api", "users", "me"])
    assert found is not None and found[0]["GET"].template == "/api/users/me"  # literal before parameter
    found = m.match(["api", "users", "7"])
    assert found is not None and found[1] == {"id": "7"}


async def test_declared_requests_pass(tmp_path: Path) -> None:
    p = pipe(tmp_path)
    assert await ids(p, "GET", "/api/users/7") == set()
    assert await ids(p, "HEAD", "/api/users/7") == set()
    assert await ids(p, "GET", "/api/users/me") == set()
    assert await ids(p, "GET", "/api/users?limit=10&q=bob") == set()
    assert await ids(p, "PUT", "/api/users/7", {"name": "Bob", "nickname": None}) == set()
    assert await ids(p, "GET", "/api/files/report.pdf") == set()


async def test_declared_spec_violations(tmp_path: Path) -> None:
    p = pipe(tmp_path)
    assert await ids(p, "GET", "/api/users?q=bob") == {"schema-missing-param"}
    assert await ids(p, "GET", "/api/users?limit=1000") == {"schema-oversized"}
    assert await ids(p, "GET", "/api/users?limit=5&q=" + "x" * 30) == {"schema-oversized"}
    assert await ids(p, "GET", "/api/users?limit=ten") == {"schema-type"}
    assert await ids(p, "PUT", "/api/users/7", {"nickname": "b"}) == {"schema-missing-param"}
    assert await ids(p, "PUT", "/api/users/7", {"name": 5}) == {"schema-type"}
    assert await ids(p, "PUT", "/api/users/7") == {"schema-missing-param"}
    assert await ids(p, "PUT", "/api/users/7", {"name": "b"}, {"Host": "shop.test",
                                                              "Content-Type": "application/json"}) == {
        "schema-missing-param"}
    assert await ids(p, "POST", "/api/users/7", {"name": "b"}) == {"schema-unknown-method"}
    assert await ids(p, "GET", "/users/7") == {"schema-unknown-endpoint"}  # outside the base path


async def test_extra_properties_follow_the_spec_unless_strict(tmp_path: Path) -> None:
    body = {"name": "Bob", "role": "admin"}
    assert await ids(pipe(tmp_path), "PUT", "/api/users/7", body) == set()  # the schema leaves objects open
    strict = pipe(tmp_path, strict_properties=True)
    assert await ids(strict, "PUT", "/api/users/7", body) == {"schema-extra-property"}


async def test_observe_per_endpoint(tmp_path: Path) -> None:
    p = pipe(tmp_path, observe=["GET /api/users"])
    ex = make_exchange("GET", "/api/users?limit=ten", headers=H, host=None, pipeline=p)
    v = await run_exchange(p, ex)
    assert [f.observe for f in ex.findings] == [True] and not v.blocks
    ex = make_exchange("GET", "/api/legacy/report?x=1", headers=H, host=None, pipeline=p)
    v = await run_exchange(p, ex)  # x-bastion-mode: observe in the spec itself
    assert ex.findings and all(f.observe for f in ex.findings) and not v.blocks
    ex = make_exchange("GET", "/api/users/x", headers=H, host=None, pipeline=p)
    assert (await run_exchange(p, ex)).blocks


async def test_ignore_and_cors_preflight(tmp_path: Path) -> None:
    p = pipe(tmp_path, ignore=["/health", "/static/*"])
    assert await ids(p, "GET", "/health") == set()
    assert await ids(p, "GET", "/static/app.js") == set()
    pre = {"Host": "shop.test", "Origin": "https://x.test", "Access-Control-Request-Method": "PUT"}
    assert await ids(p, "OPTIONS", "/api/users/7", headers=pre) == set()
    assert await ids(p, "OPTIONS", "/api/users/7", headers={"Host": "shop.test"}) == {"schema-unknown-method"}


async def test_max_value_length(tmp_path: Path) -> None:
    p = pipe(tmp_path, max_value_length=16)
    assert await ids(p, "GET", "/api/files/" + "a" * 40) == {"schema-oversized"}
    assert "schema-oversized" in await ids(p, "PUT", "/api/users/7", {"name": "b", "nickname": "n" * 40})


async def test_responses_checked_when_asked(tmp_path: Path) -> None:
    p = pipe(tmp_path, responses=True)
    assert p.wants(Phase.RESPONSE_BODY)
    ex = make_exchange("GET", "/api/users/7", headers=H, host=None, pipeline=p)
    await run_exchange(p, ex)
    leak = orjson.dumps({"id": 7, "name": "Bob", "card": "4111 1111 1111 1111"})
    v = await run_response(p, ex, 200, headers={"Content-Type": "application/json"}, body=leak)
    rules = {f.rule_id for f in ex.findings}
    assert rules == {"schema-response-undeclared", "schema-response-sensitive"}
    assert v.blocks and v.status == 502
    ex = make_exchange("GET", "/api/users/7", headers=H, host=None, pipeline=p)
    await run_exchange(p, ex)
    v = await run_response(p, ex, 200, headers={"Content-Type": "application/json"},
                           body=orjson.dumps({"id": 7, "name": "Bob"}))
    assert not ex.findings and v.action == Action.ALLOW


def test_responses_not_buffered_by_default(tmp_path: Path) -> None:
    assert not pipe(tmp_path).wants(Phase.RESPONSE_BODY)


@pytest.mark.parametrize(
    ("doc", "msg"),
    [
        ({"swagger": "2.0", "paths": {}}, "only OpenAPI 3.0 and 3.1"),
        ({"openapi": "3.1.0"}, "not an OpenAPI document"),
        ({"openapi": "3.1.0", "paths": {"/a": {"get": {"requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Nope"}}}}}}}}, "reference not found"),
        ({"openapi": "3.1.0", "paths": {"/a": {"get": {"parameters": [{"name": "x", "in": "query",
                                                                          "schema": {"type": 5}}]}}}},
         "invalid schema"),
        ({"openapi": "3.1.0", "paths": {"a": {}}}, "must start with '/'"),
    ],
)
def test_bad_specs_fail_loudly(tmp_path: Path, doc: dict, msg: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_pipeline({"spec": str(write(tmp_path, doc))}, only={"schema"})
    assert msg in str(err.value) and "api.yaml" in str(err.value)


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        make_pipeline({"spec": str(tmp_path / "nope.yaml")}, only={"schema"})


async def test_hostile_input_never_crashes(tmp_path: Path) -> None:
    p = pipe(tmp_path, strict_properties=True)
    for target, body in [("/api/users/7", b"{" * 5000), ("/api/users/7", b"[" * 100 + b"]" * 100),
                         ("/api/users/%ff%fe", b""), ("/api/users?limit=" + "9" * 500, b""),
                         ("/" + "a/" * 100, b""), ("/api/users/7", b'{"name": "\\ud800"}')]:
        ex = make_exchange("PUT", target, headers=H, body=body, host=None, pipeline=p)
        await run_request(p, exchange=ex)
        assert not ex.errors


async def test_arrays_objects_patterns_and_wildcards(tmp_path: Path) -> None:
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {
        "/items": {"get": {"parameters": [
            {"name": "id", "in": "query", "schema": {"type": "array", "items": {"type": "integer"}}},
            {"name": "filter", "in": "query", "style": "deepObject", "schema": {"type": "object"}}],
            "responses": {"200": {"description": "ok"}}}},
        "/files/{name}.{ext}": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/upload": {"post": {"requestBody": {"content": {"*/*": {"schema": {"type": "string"}}}},
                             "responses": {"200": {"description": "ok"}}}},
    }}
    p = make_pipeline({"spec": str(write(tmp_path, doc))}, only={"schema"})
    h = {"Host": "x"}
    assert await ids(p, "GET", "/items?id=1&id=2", headers=h) == set()
    assert await ids(p, "GET", "/items?id=1,2,3", headers=h) == set()
    assert await ids(p, "GET", "/items?id=1&id=x", headers=h) == {"schema-type"}
    assert await ids(p, "GET", "/items?filter[color]=red", headers=h) == set()
    assert await ids(p, "GET", "/files/report.pdf", headers=h) == set()
    assert await ids(p, "GET", "/files/report", headers=h) == {"schema-unknown-endpoint"}
    assert await ids(p, "POST", "/upload", b"\x89PNG", headers={"Host": "x", "Content-Type": "image/png"}) == set()


def test_config_typos_fail_loudly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown sensitive kinds"):
        make_config({"spec": {"path": "api.yaml", "block_sensitive": ["cards"]}})
    with pytest.raises(ConfigError, match=r"spec\.strict"):
        make_config({"spec": {"path": "api.yaml", "strict": True}})
    with pytest.raises(ConfigError, match=r"catalog\.flush_interval"):
        make_config({"catalog": {"flush_interval": 0}})


async def test_read_only_properties_are_mass_assignment(tmp_path: Path) -> None:
    user = {"type": "object", "required": ["id", "name"], "properties": {
        "id": {"type": "integer", "readOnly": True}, "name": {"type": "string"},
        "role": {"type": "string", "readOnly": True},
        "tags": {"type": "array", "items": {"type": "object", "properties": {
            "label": {"type": "string"}, "owner": {"type": "integer", "readOnly": True}}}}}}
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
           "components": {"schemas": {"User": user}},
           "paths": {"/users/{id}": {"put": {
               "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/User"}}}},
               "responses": {"200": {"description": "ok"}}}}}}
    p = make_pipeline({"spec": str(write(tmp_path, doc))}, only={"schema"})
    h = {"Host": "x", "Content-Type": "application/json"}
    assert await ids(p, "PUT", "/users/1", {"name": "Ann", "tags": [{"label": "a"}]}, h) == set()
    assert await ids(p, "PUT", "/users/1", {"name": "Ann", "role": "admin"}, h) == {"schema-extra-property"}
    assert await ids(p, "PUT", "/users/1", {"name": "Ann", "tags": [{"label": "a", "owner": 2}]}, h) == {
        "schema-extra-property"}
    assert await ids(p, "PUT", "/users/1", {"id": 5}, h) == {"schema-extra-property", "schema-missing-param"}

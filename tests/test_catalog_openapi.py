"""OpenAPI 3.1 export: it validates, and enforcing it round-trips the traffic it was learned from."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml
from openapi_spec_validator import validate

from bastion.catalog.learner import Learner
from bastion.catalog.openapi import export_openapi
from bastion.engine import Pipeline
from bastion.testing import make_pipeline, run_request
from bastion.verdict import Action
from catalog_traffic import HOST, to_exchange, traffic


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    lr = Learner()
    for i, c in enumerate(traffic(3000, seed=21)):
        lr.observe(to_exchange(c, 1_700_000_000.0 + i))
    doc = export_openapi(lr.endpoints())
    path = tmp_path_factory.mktemp("spec") / "api.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return doc, path


@pytest.fixture
def pipeline(exported: tuple[dict, Path]) -> Pipeline:
    return make_pipeline({"spec": str(exported[1])}, only={"schema"})


def test_export_is_valid_openapi_31(exported: tuple[dict, Path]) -> None:
    doc, path = exported
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    validate(yaml.safe_load(path.read_text()))  # and survives YAML
    op = doc["paths"]["/api/v1/users/{id}"]["get"]
    assert op["parameters"][0] == {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    assert op["x-bastion"]["calls"] > 0
    assert op["x-bastion"]["sensitive"] == {"$.email": {"email": op["x-bastion"]["sensitive"]["$.email"]["email"]}}
    post = doc["paths"]["/api/v1/users"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False and post["requestBody"]["required"] is True


async def test_benign_traffic_passes_its_own_spec(pipeline: Pipeline) -> None:
    # Other traffic from the same API (another seed): nothing the spec would not allow.
    flagged = []
    for c in traffic(1500, seed=22, scanner=0.0):
        v = await run_request(pipeline, c.method, c.target, headers=c.headers, body=c.body, host=None)
        if v.action != Action.ALLOW:
            flagged.append((c.method, c.target, v.rule_ids))
    assert flagged == []


def _body(doc: dict) -> bytes:
    return orjson.dumps(doc)


JSON = {"Host": HOST, "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "target", "body", "rule"),
    [
        ("POST", "/api/v1/users", {"name": "A", "email": "a@b.co", "age": 30, "role": "admin"},
         "schema-extra-property"),
        ("POST", "/api/v1/users", {"name": "A", "email": "a@b.co", "age": "30 OR 1=1"}, "schema-type"),
        ("POST", "/api/v1/users", {"name": "A", "email": "not-an-email", "age": 30}, "schema-type"),
        ("POST", "/api/v1/users", {"name": "A", "age": 30}, "schema-missing-param"),
        ("POST", "/api/v1/users", {"name": "A" * 5000, "email": "a@b.co", "age": 30}, "schema-oversized"),
        ("PATCH", "/api/v1/users/me", {"name": "x", "is_admin": True}, "schema-extra-property"),
        ("GET", "/api/v1/users/abc'--", None, "schema-type"),
        ("GET", "/api/v1/users?page=1%20union%20select", None, "schema-type"),
        ("GET", "/api/v1/users?debug=1", None, "schema-unknown-param"),
        ("GET", "/api/v1/internal/export", None, "schema-unknown-endpoint"),
        ("GET", "/.env", None, "schema-unknown-endpoint"),
        ("DELETE", "/api/v1/orders/550e8400-e29b-41d4-a716-446655440000", None, "schema-unknown-method"),
        ("GET", "/api/v1/users?sort=sideways", None, "schema-type"),
    ],
)
async def test_violations_are_flagged(pipeline: Pipeline, method: str, target: str, body: dict | None,
                                      rule: str) -> None:
    v = await run_request(pipeline, method, target, headers=JSON, body=_body(body) if body else b"", host=None)
    assert rule in v.rule_ids


async def test_unknown_endpoint_blocks(pipeline: Pipeline) -> None:
    v = await run_request(pipeline, "GET", "/api/v1/internal/export", headers={"Host": HOST}, host=None)
    assert v.blocks and v.status == 403


async def test_form_body_round_trips(pipeline: Pipeline) -> None:
    form = {"Host": HOST, "Content-Type": "application/x-www-form-urlencoded"}
    ok = await run_request(pipeline, "POST", "/login", headers=form, body=b"username=garden&password=Xy12345abcde",
                           host=None)
    assert ok.action == Action.ALLOW
    bad = await run_request(pipeline, "POST", "/login", headers=form,
                            body=b"username=garden&password=x&role=admin", host=None)
    assert "schema-extra-property" in bad.rule_ids


async def test_wrong_content_type_is_flagged(pipeline: Pipeline) -> None:
    v = await run_request(pipeline, "POST", "/api/v1/users", headers={"Host": HOST, "Content-Type": "text/xml"},
                          body=b"<user/>", host=None)
    assert "schema-content-type" in v.rule_ids

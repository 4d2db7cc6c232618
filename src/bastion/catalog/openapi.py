"""OpenAPI 3.1 export of the learned catalog.

Every endpoint becomes an operation with its path, query and header parameters (types, formats,
enums, required when always present), request bodies per content type, and response schemas per
status. Objects are closed (`additionalProperties: false`) so that enforcing the exported spec
catches mass assignment; strings get a generous `maxLength` so that oversized values stand out.
What the catalog measured rides along in `x-bastion` (calls, error rate, p95, auth, sensitive data).
"""

from __future__ import annotations

import re
from typing import Any

from bastion.catalog.endpoint import Endpoint
from bastion.catalog.shapes import Shape

_REASONS = {"200": "OK", "201": "Created", "202": "Accepted", "204": "No Content", "301": "Moved Permanently",
            "302": "Found", "304": "Not Modified", "400": "Bad Request", "401": "Unauthorized",
            "403": "Forbidden", "404": "Not Found", "409": "Conflict", "422": "Unprocessable Content",
            "429": "Too Many Requests", "500": "Internal Server Error"}
_AUTH_SCHEMES: dict[str, dict[str, Any]] = {
    "bearer-jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "bearer": {"type": "http", "scheme": "bearer"},
    "basic": {"type": "http", "scheme": "basic"},
    "api-key": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "cookie": {"type": "apiKey", "in": "cookie", "name": "session"},
}
_OP_ID = re.compile(r"[^A-Za-z0-9]+")
MIN_REQUIRED_SAMPLES = 5


def _required(s: Shape, sampled: int) -> bool:
    return sampled >= MIN_REQUIRED_SAMPLES and s.n >= sampled


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": _OP_ID.sub("_", f"{ep.method.lower()}{ep.template}").strip("_")}
    params: list[dict[str, Any]] = []
    for name in re.findall(r"\{([^}]+)\}", ep.template):
        s = ep.path.get(name)
        schema = s.json_schema(text=True) if s is not None and s.n else {"type": "string"}
        schema.pop("enum", None)  # a path parameter seen with few values is still open
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, s in sorted(ep.query.items()):
        params.append({"name": name, "in": "query", "required": _required(s, ep.sampled),
                       "schema": s.json_schema(text=True)})
    for name, s in sorted(ep.headers.items()):
        params.append({"name": name, "in": "header", "required": False, "schema": s.json_schema(text=True)})
    if params:
        op["parameters"] = params
    if ep.body:
        content: dict[str, Any] = {}
        for ct, s in sorted(ep.body.items()):
            if s.props is not None or s.types.get("object") or s.types.get("array"):
                content[ct] = {"schema": s.json_schema()}
            else:
                content[ct] = {}
        total = sum(s.n for s in ep.body.values())
        op["requestBody"] = {"required": _required_n(total, ep.sampled), "content": content}
    responses: dict[str, Any] = {}
    for status in sorted(ep.status):
        if not status.isdigit():
            continue
        resp: dict[str, Any] = {"description": _REASONS.get(status, "Response")}
        s = ep.responses.get(status)
        if s is not None and s.n:
            resp["content"] = {"application/json": {"schema": s.json_schema(strict=False)}}
        responses[status] = resp
    op["responses"] = responses or {"default": {"description": "Response"}}
    auth = ep.main_auth()
    if auth in _AUTH_SCHEMES:
        op["security"] = [{auth: []}]
    op["x-bastion"] = {
        "calls": ep.calls,
        "error_rate": round(ep.error_ratio(), 4),
        "p50_ms": round(ep.latency.quantile(0.5) * 1000, 2),
        "p95_ms": round(ep.latency.quantile(0.95) * 1000, 2),
        "auth": dict(sorted(ep.auth.items())),
        "first_seen": ep.first_seen,
        "last_seen": ep.last_seen,
        "sensitive": {f: dict(sorted(k.items())) for f, k in sorted(ep.sensitive.items())},
    }
    return op


def _required_n(n: int, sampled: int) -> bool:
    return sampled >= MIN_REQUIRED_SAMPLES and n >= sampled


def export_openapi(endpoints: list[Endpoint], *, title: str = "API catalog learned by Bastion",
                   host: str | None = None) -> dict[str, Any]:
    """An OpenAPI 3.1 document of the endpoints (of one host when `host` is given)."""
    eps = [e for e in endpoints if host is None or e.host == host]
    hosts = sorted({e.host for e in eps if e.host})
    paths: dict[str, dict[str, Any]] = {}
    schemes: dict[str, Any] = {}
    for ep in sorted(eps, key=lambda e: (e.template, e.method, e.host)):
        item = paths.setdefault(ep.template, {})
        method = ep.method.lower()
        if method not in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
            continue
        if method in item:
            continue  # the same route on another host: the first one describes it
        op = _operation(ep)
        item[method] = op
        for req in op.get("security", []):
            for name in req:
                schemes[name] = _AUTH_SCHEMES[name]
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0",
                 "description": "Generated from observed traffic; review before enforcing."},
    }
    if hosts:
        doc["servers"] = [{"url": f"https://{h}"} for h in hosts]
    doc["paths"] = paths
    if schemes:
        doc["components"] = {"securitySchemes": dict(sorted(schemes.items()))}
    return doc

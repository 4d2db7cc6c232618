"""The OpenAPI 3.1 description of the admin API itself (served at /api/v1/openapi.json)."""

from __future__ import annotations

from functools import cache
from typing import Any

from bastion.admin.sources import version


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


_ERRORS = {"401": {"$ref": "#/components/responses/Unauthorized"},
           "429": {"$ref": "#/components/responses/TooManyFailures"}}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_NUM = {"type": "number"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_ACTION = {"type": "string", "enum": ["allow", "log", "throttle", "challenge", "block"]}
_KIND = {"type": "string", "enum": ["ip", "net", "api_key", "user", "session", "fp", "tls", "entity"]}
_DACTION = {"type": "string", "enum": ["allow", "deny", "challenge", "throttle"]}


def _schemas() -> dict[str, Any]:
    return {
        "Problem": {"type": "object", "description": "RFC 9457 problem details", "required": ["status", "title"],
                    "properties": {"type": _STR, "title": _STR, "status": _INT, "detail": _STR}},
        "Event": {"type": "object", "required": ["time", "request_id", "client_ip", "action"], "properties": {
            "id": _INT, "time": {**_NUM, "description": "epoch seconds"}, "request_id": _STR, "client_ip": _STR,
            "peer_ip": _STR, "method": _STR, "path": {**_STR, "description": "masked, without the query"},
            "route": _STR, "site": _STR, "status": _INT, "action": _ACTION, "score": _INT,
            "rule_ids": {"type": "array", "items": _STR},
            "findings": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            "reason": _STR, "duration_ms": _NUM, "mode": {"type": "string", "enum": ["enforce", "observe"]},
            "would_block": {"type": "boolean"}, "entity": _STR}},
        "Decision": {"type": "object", "required": ["id", "kind", "value", "action", "origin"], "properties": {
            "id": _STR, "kind": _KIND, "value": _STR, "action": _DACTION,
            "origin": {"type": "string", "enum": ["config", "admin", "risk", "scenario", "rule"]},
            "until": {"type": ["number", "null"], "description": "epoch seconds; null = permanent"},
            "expires_in": {"type": ["integer", "null"]}, "active": {"type": "boolean"},
            "reason": _STR, "explanation": {"type": "array", "items": _STR}, "created": _NUM, "scope": _STR}},
        "NewDecision": {"type": "object", "required": ["value"], "additionalProperties": False, "properties": {
            "kind": {**_KIND, "default": "ip"}, "value": {**_STR, "description": "address, CIDR or key"},
            "action": {**_DACTION, "default": "deny"},
            "duration": {"oneOf": [{"type": "number", "minimum": 0}, {"type": "string"}, {"type": "null"}],
                         "default": "4h", "description": "seconds, or 30s/10m/4h/7d; 0, null or 'permanent'"},
            "reason": _STR}},
        "Endpoint": {"type": "object", "properties": {
            "host": _STR, "method": _STR, "template": _STR, "calls": _INT, "errors": _INT, "error_rate": _NUM,
            "first_seen": _NUM, "last_seen": _NUM, "status": {"type": "object", "additionalProperties": _INT},
            "auth": _STR, "sensitive": {"type": "array", "items": _STR}, "p50_ms": _NUM, "p95_ms": _NUM,
            "parameters": {"type": "object", "additionalProperties": {"type": "array", "items": _STR}},
            "request_types": {"type": "array", "items": _STR}, "response_types": {"type": "array", "items": _STR}}},
        "EntitySummary": {"type": "object", "properties": {
            "id": _STR, "events": _INT, "blocked": _INT, "last_seen": _NUM, "client_ip": _STR,
            "top_rules": {"type": "array", "items": _STR}, "risk": {"type": ["number", "null"]},
            "blocked_until": {"type": ["number", "null"]}, "keys": {"type": "array", "items": _STR}}},
        "Entity": {"type": "object", "properties": {
            "id": _STR, "live": {"type": "boolean", "description": "false: known only from stored events"},
            "keys": {"type": "array", "items": _STR}, "key_count": _INT, "risk": {"type": ["number", "null"]},
            "thresholds": {"type": "object", "additionalProperties": _NUM}, "half_life": _NUM,
            "blocked_until": {"type": ["number", "null"]}, "offenses": _INT, "identified": {"type": "boolean"},
            "last_seen": {"type": ["number", "null"]}, "good_requests": _INT,
            "risk_history": {"type": "array", "items": {"type": "object", "properties": {
                "time": _NUM, "rule": _STR, "points": _NUM, "risk": _NUM}}},
            "decisions": {"type": "array", "items": _ref("Decision")},
            "events": {"type": "array", "items": _ref("Event")}}},
        "Stats": {"type": "object", "additionalProperties": True, "properties": {
            "version": _STR, "mode": _STR, "uptime": _NUM, "workers": _INT, "workers_reporting": _INT,
            "exchanges": _INT,
            "blocked": _INT, "flagged": _INT, "detector_errors": {"type": "object", "additionalProperties": _INT},
            "top_rules": {"type": "array", "items": {"type": "object", "properties": {"rule": _STR, "count": _INT}}},
            "endpoints": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            "events": {"type": "object", "additionalProperties": _INT},
            "alerts": {"type": "object", "additionalProperties": _INT},
            "decisions_active": _INT, "entity_keys": _INT,
            "symptoms": {"type": "array", "items": {"type": "object", "properties": {
                "signal": _STR, "method": _STR, "route": _STR, "since": _NUM}}}}},
        "Session": {"type": "object", "properties": {
            "authenticated": {"type": "boolean"}, "totp": {"type": "boolean"},
            "csrf": {"type": ["string", "null"]}, "expires": _NUM}},
    }


def _get(summary: str, ok: dict[str, Any], params: list[dict[str, Any]] | None = None,
         op_id: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "operationId": op_id, "responses": {"200": ok, **_ERRORS}}
    if params:
        op["parameters"] = params
    return op


@cache
def openapi_spec() -> dict[str, Any]:
    problem400 = _problem("bad parameters")
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Liveness probe (no authentication)", "operationId": "health",
                             "security": [], "responses": {"200": _json({"type": "object", "properties": {
                                 "status": {"type": "string", "enum": ["ok"]}}}, "the gateway is up")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (text exposition 0.0.4)", "operationId": "metrics",
                             "responses": {"200": {"description": "metrics", "content": {
                                 "text/plain": {"schema": _STR}}}, **_ERRORS}}},
        "/api/v1/login": {"get": {
            "summary": "What the console login asks for (no authentication)", "operationId": "loginInfo",
            "security": [], "responses": {"200": _json({"type": "object", "properties": {
                "totp": {"type": "boolean"}}}, "whether a TOTP code is required")}}, "post": {
            "summary": "Console login: exchange the token (and a TOTP code) for a session cookie",
            "operationId": "login", "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["token"], "properties": {"token": _STR, "code": {
                    **_STR, "description": "TOTP code, when admin.totp_secret is set"}}}}}},
            "responses": {"200": {**_json(_ref("Session"), "logged in; the session cookie is set"),
                                  "headers": {"Set-Cookie": {"schema": _STR}}},
                          "400": problem400, "401": _problem("wrong token or code"),
                          "429": {"$ref": "#/components/responses/TooManyFailures"}}}},
        "/api/v1/logout": {"post": {"summary": "End the console session", "operationId": "logout",
                                    "responses": {"204": {"description": "logged out"}, **_ERRORS}}},
        "/api/v1/session": {"get": _get("The current session", _json(_ref("Session"), "session"),
                                        op_id="session")},
        "/api/v1/openapi.json": {"get": _get("This document", _json({"type": "object"}, "OpenAPI 3.1"),
                                             op_id="openapi")},
        "/api/v1/stats": {"get": _get("Gateway counters, top rules and endpoints", _json(_ref("Stats"), "stats"),
                                      op_id="stats")},
        "/api/v1/events": {"get": {**_get(
            "Stored events, newest first",
            _json({"type": "object", "properties": {"events": {"type": "array", "items": _ref("Event")},
                                                    "count": _INT}}, "events"),
            [_q("since", _NUM, "epoch seconds, inclusive"), _q("until", _NUM, "epoch seconds, exclusive"),
             _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "at most this many"),
             _q("action", _ACTION, "only this action"), _q("client", _STR, "only this client address"),
             _q("rule", _STR, "only events where this rule fired")], "listEvents"),
            "responses": {"200": _json({"type": "object", "properties": {
                "events": {"type": "array", "items": _ref("Event")}, "count": _INT}}, "events"),
                "400": problem400, **_ERRORS, "503": _problem("the event store cannot be read")}}},
        "/api/v1/catalog": {"get": _get(
            "The API catalog learned from traffic",
            _json({"type": "object", "properties": {"endpoints": {"type": "array", "items": _ref("Endpoint")},
                                                    "count": _INT, "total": _INT,
                                                    "source": {"type": "string", "enum": ["live", "file"]}}},
                  "endpoints, busiest first"),
            [_q("host", _STR, "only this host"), _q("limit", {"type": "integer", "minimum": 1, "maximum": 2000},
                                                    "at most this many")], "listCatalog")},
        "/api/v1/decisions": {
            "get": _get("Current decisions, newest first", _json({"type": "object", "properties": {
                "decisions": {"type": "array", "items": _ref("Decision")}, "count": _INT}}, "decisions"),
                [_q("all", {"type": "string", "enum": ["1", "true"]}, "include expired ones")], "listDecisions"),
            "post": {"summary": "Add a decision (origin admin), enforced at once", "operationId": "addDecision",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(
                         "NewDecision")}}},
                     "responses": {"201": {**_json(_ref("Decision"), "created"),
                                           "headers": {"Location": {"schema": _STR}}},
                                   "400": problem400, **_ERRORS,
                                   "403": _problem("cookie session without the X-Bastion-CSRF header"),
                                   "415": _problem("not JSON")}}},
        "/api/v1/decisions/{id}": {"delete": {
            "summary": "Revoke a decision", "operationId": "deleteDecision",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": _STR}],
            "responses": {"204": {"description": "revoked"}, **_ERRORS, "404": _problem("no such decision"),
                          "409": _problem("a decision from the config file")}}},
        "/api/v1/entities": {"get": _get(
            "Attackers: entities behind recent events, riskiest first",
            _json({"type": "object", "properties": {"entities": {"type": "array", "items": _ref("EntitySummary")},
                                                    "count": _INT, "scope": _STR}}, "entities"),
            [_q("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "at most this many")],
            "listEntities")},
        "/api/v1/entities/{id}": {"get": {
            "summary": "One entity: keys, risk, risk history, decisions, recent events", "operationId": "getEntity",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": _STR,
                            "description": "an entity key such as ip:203.0.113.7 or user:alice, or a bare address"}],
            "responses": {"200": _json(_ref("Entity"), "the entity"), **_ERRORS,
                          "404": _problem("unknown entity")}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Bastion admin API", "version": version(),
                 "description": "Events, statistics, the learned API catalog, decisions and entities of a "
                                "running Bastion gateway. Every operation but /healthz and the console login "
                                "needs the admin token (Bearer) or a console session cookie."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the admin token"},
                "session": {"type": "apiKey", "in": "cookie", "name": "bastion_session",
                            "description": "console session; writes also need the X-Bastion-CSRF header"},
            },
            "responses": {
                "Unauthorized": _problem("no or wrong credentials"),
                "TooManyFailures": {**_problem("too many failed attempts from this address"),
                                    "headers": {"Retry-After": {"schema": _INT}}},
            },
        },
    }

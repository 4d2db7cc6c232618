"""Signals: the named values a rule can match on, key on or count (`status`, `header.x-api-key`...).

Each signal is resolved at compile time to a getter `(Exchange) -> value | None` plus the earliest
phase in which it is known and the kind of its values (which decides how `gt: 2s` or `gt: 1MB`
parses). None means "absent": `present: false` matches it, every other test fails on it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import orjson

from bastion.exchange import Exchange
from bastion.verdict import Phase

Value = str | float | frozenset[str] | None
Getter = Callable[[Exchange], Value]


class Kind(enum.Enum):
    TEXT = "text"
    NUMBER = "number"
    DURATION = "duration"
    SIZE = "size"
    STATUS = "status"  # a number that also matches classes such as 4xx
    IP = "ip"
    SET = "set"  # several values (tags): a test holds if it holds for any of them


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    get: Getter
    phase: Phase
    kind: Kind
    doc: str = ""


def _path(ex: Exchange) -> str:
    return unquote(ex.request.path, errors="surrogateescape")


def _status(ex: Exchange) -> float | None:
    return float(ex.response.status) if ex.response is not None else None


def _resp_size(ex: Exchange) -> float | None:
    if ex.response is None:
        return None
    r = ex.response
    return float(max(r.body_size, len(r.body)))


def _req_size(ex: Exchange) -> float:
    r = ex.request
    if r.body_size or r.body:
        return float(max(r.body_size, len(r.body)))
    cl = r.headers.get("content-length")
    return float(cl) if cl and cl.isdigit() else 0.0


def _finding_tags(ex: Exchange) -> frozenset[str]:
    return frozenset(t for f in ex.findings if not f.observe for t in f.tags)


def _finding_rules(ex: Exchange) -> frozenset[str]:
    return frozenset(f.rule_id for f in ex.findings if not f.observe)


BASE: dict[str, Signal] = {
    s.name: s
    for s in (
        Signal("method", lambda ex: ex.request.method.upper(), Phase.REQUEST_HEADERS, Kind.TEXT, "request method"),
        Signal("path", _path, Phase.REQUEST_HEADERS, Kind.TEXT, "request path, percent-decoded, no query"),
        Signal("route", lambda ex: ex.route or _path(ex), Phase.REQUEST_HEADERS, Kind.TEXT,
               "route template such as /users/{id} when known, else the path"),
        Signal("site", lambda ex: ex.site, Phase.REQUEST_HEADERS, Kind.TEXT, "Host without port, lower case"),
        Signal("ip", lambda ex: ex.client.ip, Phase.REQUEST_HEADERS, Kind.IP, "resolved client IP"),
        Signal("query", lambda ex: ex.request.query or None, Phase.REQUEST_HEADERS, Kind.TEXT, "raw query string"),
        Signal("request.size", _req_size, Phase.REQUEST_BODY, Kind.SIZE, "request body bytes"),
        Signal("status", _status, Phase.COMPLETE, Kind.STATUS, "response status (also 4xx, 5xx classes)"),
        Signal("latency", lambda ex: ex.duration, Phase.COMPLETE, Kind.DURATION, "seconds from request to response"),
        Signal("response.size", _resp_size, Phase.COMPLETE, Kind.SIZE, "response body bytes"),
        Signal("findings.tags", _finding_tags, Phase.COMPLETE, Kind.SET, "tags of other detectors' findings"),
        Signal("findings.rules", _finding_rules, Phase.COMPLETE, Kind.SET, "rule ids of other findings"),
        Signal("score", lambda ex: float(ex.score), Phase.COMPLETE, Kind.NUMBER, "anomaly score of the exchange"),
        Signal("risk", lambda ex: ex.risk, Phase.REQUEST_HEADERS, Kind.NUMBER, "the entity's current risk"),
        Signal("tags", lambda ex: frozenset(ex.tags), Phase.COMPLETE, Kind.SET, "tags set on the exchange"),
    )
}

PREFIXES = {
    "query.": "a query argument (first value, decoded)",
    "header.": "a request header",
    "cookie.": "a request cookie",
    "json.": "a field of a JSON request body: json.user.email, json.items.0.id",
    "response.header.": "a response header",
    "key.": "an entity key set by the engine (ip, net, api_key, user, session, fp)",
}


def _query_arg(name: str) -> Getter:
    def get(ex: Exchange) -> str | None:
        if "?" not in ex.request.target:
            return None
        for k, v in ex.request.query_args():
            if k == name:
                return v
        return None

    return get


def _header(name: str) -> Getter:
    return lambda ex: ex.request.headers.get(name)


def _response_header(name: str) -> Getter:
    return lambda ex: ex.response.headers.get(name) if ex.response is not None else None


def cookies(ex: Exchange) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in ex.request.headers.get_all("cookie"):
        for part in line.split(";"):
            k, eq, v = part.partition("=")
            if eq:
                out.setdefault(k.strip(), v.strip())
    return out


def _cookie(name: str) -> Getter:
    return lambda ex: cookies(ex).get(name)


_NO_JSON = object()


class _JsonCache:
    """The last parsed body: every json.* signal of one exchange shares one parse."""

    __slots__ = ("body", "value")

    def __init__(self) -> None:
        self.body: bytes | None = None
        self.value: object = _NO_JSON


_json_cache = _JsonCache()


def json_body(ex: Exchange) -> object:
    """The parsed JSON request body (parsed once per body), or a sentinel when it is not JSON."""
    req = ex.request
    body = req.body
    if not body or req.body_truncated or "json" not in req.content_type:
        return _NO_JSON
    c = _json_cache
    if c.body is body:
        return c.value
    try:
        value: object = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = _NO_JSON
    c.body, c.value = body, value
    return value


def _json_field(dotted: str) -> Getter:
    parts = dotted.split(".")

    def get(ex: Exchange) -> Value:
        node = json_body(ex)
        for p in parts:
            if isinstance(node, dict):
                node = node.get(p, _NO_JSON)
            elif isinstance(node, list) and p.isdigit() and int(p) < len(node):
                node = node[int(p)]
            else:
                return None
            if node is _NO_JSON:
                return None
        if node is None or isinstance(node, dict | list):
            return None if node is None else orjson.dumps(node).decode()
        if isinstance(node, bool):
            return "true" if node else "false"
        if isinstance(node, int | float):
            return float(node)
        return str(node)

    return get


def _key(name: str) -> Getter:
    return lambda ex: ex.keys.get(name)


def resolve(name: str) -> Signal:
    """The signal called `name`; ValueError naming the known signals otherwise."""
    if name in BASE:
        return BASE[name]
    if name.startswith("response.header.") and len(name) > 16:
        return Signal(name, _response_header(name[16:]), Phase.COMPLETE, Kind.TEXT)
    prefix, dot, rest = name.partition(".")
    if dot and rest:
        if prefix == "query":
            return Signal(name, _query_arg(rest), Phase.REQUEST_HEADERS, Kind.TEXT)
        if prefix == "header":
            return Signal(name, _header(rest.lower()), Phase.REQUEST_HEADERS, Kind.TEXT)
        if prefix == "cookie":
            return Signal(name, _cookie(rest), Phase.REQUEST_HEADERS, Kind.TEXT)
        if prefix == "json":
            return Signal(name, _json_field(rest), Phase.REQUEST_BODY, Kind.TEXT)
        if prefix == "key":
            return Signal(name, _key(rest), Phase.REQUEST_HEADERS, Kind.TEXT)
    known = ", ".join(sorted(BASE)) + ", " + ", ".join(p + "NAME" for p in PREFIXES)
    raise ValueError(f"unknown signal {name!r}; known: {known}")

"""Catalog versus declared spec: what the traffic shows that the documentation does not.

- shadow: endpoints called in traffic that the spec does not declare (forgotten, undocumented,
  or an attacker's find);
- zombie: operations the spec marks `deprecated: true` that are still called;
- unused: declared operations nobody called;
- drift: on endpoints both know, parameters and body properties seen but not declared, declared
  types the traffic does not follow, and response status codes the spec does not list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.catalog.endpoint import Endpoint
from bastion.catalog.paths import split_path
from bastion.catalog.shapes import Shape
from bastion.catalog.spec import ApiSpec, Matcher, Operation, _Seg


@dataclass(slots=True)
class Drift:
    endpoint: str  # "GET /users/{id}"
    kind: str  # undeclared-param, type, undeclared-property, undeclared-status
    where: str  # query, header, body, response
    name: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"endpoint": self.endpoint, "kind": self.kind, "where": self.where, "name": self.name,
                "detail": self.detail}


@dataclass(slots=True)
class SpecDiff:
    shadow: list[str] = field(default_factory=list)
    zombie: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    matched: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"shadow": self.shadow, "zombie": self.zombie, "unused": self.unused,
                "drift": [d.as_dict() for d in self.drift], "matched": self.matched}

    @property
    def clean(self) -> bool:
        return not (self.shadow or self.zombie or self.drift)


def _walk(node: _Seg, segs: list[str], i: int) -> dict[str, Operation] | None:
    """Match a catalog template: its {parameters} only match spec parameters; words match either."""
    if i == len(segs):
        return node.ops or None
    seg = segs[i]
    if not (seg.startswith("{") and seg.endswith("}")):
        child = node.lits.get(seg)
        if child is not None:
            r = _walk(child, segs, i + 1)
            if r is not None:
                return r
    for rx, child in node.patterns.values():
        if seg.startswith("{") or rx.fullmatch(seg):
            r = _walk(child, segs, i + 1)
            if r is not None:
                return r
    for _, child in node.params:
        r = _walk(child, segs, i + 1)
        if r is not None:
            return r
    return None


def _types_ok(seen: str, declared: Any) -> bool:
    if declared is None:
        return True
    types = {declared} if isinstance(declared, str) else set(declared)
    if seen in types:
        return True
    if seen == "integer" and "number" in types:
        return True
    # Text parameters that happen to look numeric are fine where strings are declared.
    return seen in ("integer", "number", "boolean") and "string" in types


def _seen(schema: dict[str, Any], s: Shape) -> str:
    return f"declared {schema.get('type')}, seen {s.main_type()}"


def _compare_props(d: SpecDiff, key: str, where: str, shape: Shape, schema: dict[str, Any]) -> None:
    props = schema.get("properties")
    if not isinstance(props, dict) or shape.props is None:
        return
    for name, s in sorted(shape.props.items()):
        decl = props.get(name)
        if decl is None:
            if schema.get("additionalProperties") is not True:
                d.drift.append(Drift(key, "undeclared-property", where, name))
            continue
        if isinstance(decl, dict) and s.n and not _types_ok(s.main_type(), decl.get("type")):
            d.drift.append(Drift(key, "type", where, name, f"declared {decl.get('type')}, seen {s.main_type()}"))


def diff(endpoints: list[Endpoint], spec: ApiSpec) -> SpecDiff:
    d = SpecDiff()
    matcher = Matcher(spec)
    used: set[str] = set()
    for ep in sorted(endpoints, key=lambda e: (e.template, e.method)):
        key = f"{ep.method} {ep.template}"
        segs = split_path(ep.template) or []
        ops = _walk(matcher.root, segs, 0)
        op = None
        if ops is not None:
            op = ops.get(ep.method) or (ops.get("GET") if ep.method == "HEAD" else None)
        if op is None:
            if ep.method != "OPTIONS":
                d.shadow.append(key)
            continue
        d.matched += 1
        used.add(op.key)
        if op.deprecated:
            d.zombie.append(f"{key} ({ep.calls} calls, last {ep.last_seen:.0f})")
        declared = {(p.location, p.name.lower() if p.location == "header" else p.name): p for p in op.params}
        for name, s in sorted(ep.query.items()):
            p = declared.get(("query", name))
            if p is None:
                d.drift.append(Drift(key, "undeclared-param", "query", name))
            elif s.n and not _types_ok(s.main_type(), p.schema.get("type")):
                d.drift.append(Drift(key, "type", "query", name, _seen(p.schema, s)))
        for name in sorted(ep.path):
            p = declared.get(("path", name))
            s = ep.path[name]
            if p is not None and s.n and not _types_ok(s.main_type(), p.schema.get("type")):
                d.drift.append(Drift(key, "type", "path", name, _seen(p.schema, s)))
        for ct, s in sorted(ep.body.items()):
            schema = op.bodies.get(ct)
            if schema is None and op.bodies:
                d.drift.append(Drift(key, "undeclared-content-type", "body", ct))
            elif schema:
                _compare_props(d, key, "body", s, schema)
        for status in sorted(ep.status):
            if status in op.responses or f"{status[:1]}XX" in op.responses or "DEFAULT" in op.responses:
                continue
            if status.isdigit() and int(status) >= 400:
                continue  # error statuses are rarely all documented; only successes count as drift
            d.drift.append(Drift(key, "undeclared-status", "response", status))
    for op in spec.operations:
        if op.key not in used:
            d.unused.append(op.key + (" (deprecated)" if op.deprecated else ""))
    return d

"""Positive security: every request checked against an OpenAPI spec (`spec: api.yaml`).

A declared spec, or one exported from the catalog, says what the API accepts; anything else is
suspect: an unknown endpoint or method (probing, shadow APIs), an undeclared or missing parameter,
a value of the wrong type or format (injection usually is), a body property the schema does not
allow (mass assignment: `"role": "admin"` in a profile update), an oversized value. Optionally the
JSON responses too: undeclared fields and leaked sensitive data.

Every schema is compiled with fastjsonschema when the detector is built; a request only runs
compiled code. Endpoints listed in `spec.observe` (or with `x-bastion-mode: observe`) report
without counting towards blocks.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import fastjsonschema
import orjson

from bastion.catalog import sensitive
from bastion.catalog.paths import split_path
from bastion.catalog.settings import SpecConfig
from bastion.catalog.spec import ApiSpec, Matcher, Operation, load_spec
from bastion.config import BastionConfig
from bastion.engine.registry import BuildContext
from bastion.errors import ConfigError
from bastion.exchange import Exchange
from bastion.verdict import Finding, Severity

log = logging.getLogger("bastion.schema")

Validator = Callable[[Any], Any]

FORMATS = {
    "uuid": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z",
    "date": r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\Z",
}

_INTEGER = re.compile(r"-?[0-9]{1,40}")
_NUMBER = re.compile(r"-?(?:[0-9]{1,40}(?:\.[0-9]{0,40})?|\.[0-9]{1,40})(?:[eE][-+]?[0-9]{1,3})?")

R_UNKNOWN_ENDPOINT = "schema-unknown-endpoint"
R_UNKNOWN_METHOD = "schema-unknown-method"
R_UNKNOWN_PARAM = "schema-unknown-param"
R_MISSING = "schema-missing-param"
R_TYPE = "schema-type"
R_EXTRA = "schema-extra-property"
R_OVERSIZED = "schema-oversized"
R_CONTENT_TYPE = "schema-content-type"
R_RESP_UNDECLARED = "schema-response-undeclared"
R_RESP_SENSITIVE = "schema-response-sensitive"

_OVERSIZE_RULES = frozenset({"maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties"})
_EXTRA_RULES = frozenset({"additionalProperties", "unevaluatedProperties"})
_SEVERITY = {R_UNKNOWN_ENDPOINT: Severity.CRITICAL, R_UNKNOWN_METHOD: Severity.CRITICAL,
             R_UNKNOWN_PARAM: Severity.ERROR, R_MISSING: Severity.ERROR, R_TYPE: Severity.CRITICAL,
             R_EXTRA: Severity.CRITICAL, R_OVERSIZED: Severity.CRITICAL, R_CONTENT_TYPE: Severity.ERROR,
             R_RESP_UNDECLARED: Severity.NOTICE, R_RESP_SENSITIVE: Severity.CRITICAL}
_MESSAGES = {R_UNKNOWN_ENDPOINT: "path not declared in the API spec", R_UNKNOWN_METHOD: "method not declared for path",
             R_UNKNOWN_PARAM: "parameter not declared in the API spec", R_MISSING: "required parameter missing",
             R_TYPE: "value does not match the declared type or format",
             R_EXTRA: "property not allowed by the schema (mass assignment)",
             R_OVERSIZED: "value larger than the spec allows", R_CONTENT_TYPE: "content type not declared",
             R_RESP_UNDECLARED: "response field not declared", R_RESP_SENSITIVE: "sensitive data in response"}


def _close(schema: Any) -> Any:
    """Objects that list properties but say nothing about others become closed (strict mode)."""
    if isinstance(schema, list):
        return [_close(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _close(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out and "patternProperties" not in out
            and not any(k in out for k in ("allOf", "anyOf", "oneOf", "unevaluatedProperties"))):
        out["additionalProperties"] = False
    return out


def _types(schema: dict[str, Any]) -> tuple[str, ...]:
    t = schema.get("type")
    if isinstance(t, str):
        return (t,)
    if isinstance(t, list):
        return tuple(str(x) for x in t)
    return ()


def coerce(text: str, types: tuple[str, ...]) -> Any:
    """A textual value (query, path, header, form) as the type the schema declares, when it reads as one."""
    if not types or "string" in types:
        return text
    # Plain ASCII numerals only: int() and float() would also take " 5", "1_000", "١٢" or "nan".
    if "integer" in types and _INTEGER.fullmatch(text):
        return int(text)
    if "number" in types and _NUMBER.fullmatch(text):
        return float(text)
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    if "null" in types and text in ("", "null"):
        return None
    return text


@dataclass(slots=True)
class _Check:
    name: str
    types: tuple[str, ...]
    validate: Validator
    required: bool
    items: tuple[str, ...] = ()  # item types of an array parameter (`?id=1&id=2` or `?id=1,2`)


@dataclass(slots=True)
class CompiledOp:
    op: Operation
    observe: bool
    path: list[_Check] = field(default_factory=list)
    query: dict[str, _Check] = field(default_factory=dict)
    headers: list[_Check] = field(default_factory=list)
    # media type -> (validator, property types for form coercion, paths of readOnly properties)
    bodies: dict[str, tuple[Validator, dict[str, tuple[str, ...]], list[tuple[str, ...]]]] = field(
        default_factory=dict)
    any_body: bool = False
    responses: dict[str, Validator] = field(default_factory=dict)


class SchemaDetector:
    name = "schema"

    def __init__(self, spec: ApiSpec, cfg: SpecConfig, *, inspect_responses: bool | None = None) -> None:
        self.spec = spec
        self.cfg = cfg
        self.observe = False
        self.matcher = Matcher(spec)
        self._cache: dict[bytes, Validator] = {}
        self.ops: dict[tuple[str, str], CompiledOp] = {}
        for op in spec.operations:
            self.ops[(op.method, op.template)] = self._compile(op)
        self._cache.clear()
        if inspect_responses if inspect_responses is not None else cfg.responses:
            self.response_body = self._response_body  # only then do front-ends buffer responses for us
        self.block_sensitive = frozenset(cfg.block_sensitive)

    # --- compiling ------------------------------------------------------------------------------

    def _validator(self, schema: dict[str, Any], where: str, strict: bool) -> Validator:
        if strict:
            schema = _close(schema)
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        v = self._cache.get(key)
        if v is None:
            try:
                v = fastjsonschema.compile(schema, formats=FORMATS)
            except (fastjsonschema.JsonSchemaDefinitionException, TypeError, ValueError, RecursionError) as exc:
                raise ConfigError([f"{self.spec.source}: {where}: invalid schema: {exc}"]) from None
            self._cache[key] = v
        return v

    def _observe_op(self, op: Operation) -> bool:
        if op.extensions.get("x-bastion-mode") == "observe":
            return True
        for pat in self.cfg.observe:
            method, _, path = pat.partition(" ") if " " in pat else ("", "", pat)
            if method and method.upper() != op.method:
                continue
            if fnmatch.fnmatchcase(op.template, path):
                return True
        return False

    def _compile(self, op: Operation) -> CompiledOp:
        c = CompiledOp(op, self._observe_op(op))
        where = f"paths.{op.template}.{op.method.lower()}"
        for p in op.params:
            chk = _Check(p.name, _types(p.schema), self._validator(p.schema, f"{where}.{p.name}", False), p.required)
            items = p.schema.get("items")
            if isinstance(items, dict):
                chk.items = _types(items)
            if p.location == "path":
                c.path.append(chk)
            elif p.location == "query":
                c.query[p.name] = chk
            elif p.location == "header" and p.required:
                chk.name = p.name.lower()
                c.headers.append(chk)
        strict = self.cfg.strict_properties
        for media, schema in op.bodies.items():
            if not schema:
                c.any_body = c.any_body or media in ("*/*", "application/*")
                c.bodies[media] = (_accept, {}, [])
                continue
            readonly: list[tuple[str, ...]] = []
            schema = _request_view(schema, (), readonly)
            props = {k: _types(v) for k, v in (schema.get("properties") or {}).items() if isinstance(v, dict)}
            c.bodies[media] = (self._validator(schema, f"{where}.requestBody", strict), props, readonly)
        for status, schema in op.responses.items():
            if schema:
                c.responses[status] = self._validator(schema, f"{where}.responses.{status}", True)
        return c

    # --- request checks -------------------------------------------------------------------------

    def _ignored(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pat) for pat in self.cfg.ignore)

    def _find(self, ex: Exchange, rule: str, observe: bool, zone: str = "", name: str = "",
              evidence: str = "", tags: tuple[str, ...] = ()) -> None:
        sev = _SEVERITY[rule]
        ex.add(Finding(rule_id=rule, detector=self.name, message=_MESSAGES[rule], severity=sev, score=int(sev),
                       zone=zone, name=name[:128], evidence=evidence[:128],
                       tags=("positive-security", *tags), observe=observe))

    def _lookup(self, ex: Exchange) -> CompiledOp | None:
        req = ex.request
        c = self.ops.get((req.method, ex.route)) if ex.route else None
        if c is not None:
            return c
        segs = split_path(req.path)
        m = self.matcher.match(segs) if segs is not None else None
        if m is None:
            return None
        ops, _ = m
        op = ops.get(req.method) or (ops.get("GET") if req.method == "HEAD" else None)
        return self.ops.get((op.method, op.template)) if op is not None else None

    def request_headers(self, ex: Exchange) -> None:
        req = ex.request
        path = req.path
        if self.cfg.ignore and self._ignored(path):
            return
        segs = split_path(path)
        m = self.matcher.match(segs) if segs is not None else None
        if m is None:
            self._find(ex, R_UNKNOWN_ENDPOINT, False, "path", evidence=f"{req.method} {_clip(path)}",
                       tags=("shadow-api",))
            return
        ops, values = m
        op = ops.get(req.method) or (ops.get("GET") if req.method == "HEAD" else None)
        if op is None:
            if req.method == "OPTIONS" and "access-control-request-method" in req.headers:
                return  # a CORS preflight: the browser asks before the declared call
            self._find(ex, R_UNKNOWN_METHOD, False, "method", evidence=req.method[:16])
            return
        c = self.ops[(op.method, op.template)]
        ex.route = op.template
        obs = c.observe
        for chk in c.path:
            raw = values.get(chk.name)
            if raw is not None:
                self._value(ex, chk, raw, "path", obs)
        if req.query or c.query:
            grouped: dict[str, list[str]] = {}
            for k, v in req.query_args():
                grouped.setdefault(k, []).append(v)
            for k, vals in grouped.items():
                chk2 = c.query.get(k)
                if chk2 is None:
                    base = k.split("[", 1)[0]  # deepObject style: filter[color]=red for `filter`
                    if self.cfg.unknown_params and not (base != k and base in c.query):
                        self._find(ex, R_UNKNOWN_PARAM, obs, "query", k)
                    continue
                if "array" in chk2.types:
                    self._array(ex, chk2, vals if len(vals) > 1 else vals[0].split(","), obs)
                elif "object" not in chk2.types:
                    for v in vals:
                        self._value(ex, chk2, v, "query", obs)
            for name, chk2 in c.query.items():
                if chk2.required and name not in grouped and not any(k.startswith(name + "[") for k in grouped):
                    self._find(ex, R_MISSING, obs, "query", name)
        for chk in c.headers:
            hv = req.headers.get(chk.name)
            if hv is None:
                self._find(ex, R_MISSING, obs, "header", chk.name)
            else:
                self._value(ex, chk, hv, "header", obs)

    def _array(self, ex: Exchange, chk: _Check, raws: list[str], obs: bool) -> None:
        try:
            chk.validate([coerce(v, chk.items) for v in raws])
        except fastjsonschema.JsonSchemaValueException as exc:
            rule = R_OVERSIZED if exc.rule in _OVERSIZE_RULES else R_TYPE
            self._find(ex, rule, obs, "query", chk.name, evidence=str(exc.rule or ""))

    def _value(self, ex: Exchange, chk: _Check, raw: str, zone: str, obs: bool) -> None:
        limit = self.cfg.max_value_length
        if limit and len(raw) > limit:
            self._find(ex, R_OVERSIZED, obs, zone, chk.name, evidence=f"{len(raw)} bytes")
            return
        try:
            chk.validate(coerce(raw, chk.types))
        except fastjsonschema.JsonSchemaValueException as exc:
            rule = R_OVERSIZED if exc.rule in _OVERSIZE_RULES else R_TYPE
            self._find(ex, rule, obs, zone, chk.name, evidence=str(exc.rule or ""))

    def request_body(self, ex: Exchange) -> None:
        req = ex.request
        if ex.findings and any(f.rule_id in (R_UNKNOWN_ENDPOINT, R_UNKNOWN_METHOD) for f in ex.findings):
            return
        c = self._lookup(ex)
        if c is None:
            return
        obs = c.observe
        has_body = req.body_size > 0 or bool(req.body)
        if not has_body:
            if c.op.body_required:
                self._find(ex, R_MISSING, obs, "body", "(body)")
            return
        if not c.bodies:
            return
        ct = req.content_type
        entry = c.bodies.get(ct) or c.bodies.get(ct.split("/", 1)[0] + "/*") or c.bodies.get("*/*")
        if entry is None:
            if not c.any_body:
                self._find(ex, R_CONTENT_TYPE, obs, "body", evidence=ct[:64])
            return
        validate, props, readonly = entry
        if validate is _accept or req.body_truncated:
            return
        doc: Any
        if ct == "application/json" or ct.endswith("+json"):
            try:
                doc = orjson.loads(req.body)
            except orjson.JSONDecodeError:
                self._find(ex, R_TYPE, obs, "body", "(body)", evidence="invalid JSON")
                return
        elif ct == "application/x-www-form-urlencoded":
            doc = {}
            for k, v in parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=512):
                doc.setdefault(k, coerce(v, props.get(k, ())))
        else:
            return
        limit = self.cfg.max_value_length
        if limit and _longest(doc) > limit:
            self._find(ex, R_OVERSIZED, obs, "body", evidence="value over max_value_length")
        for path in readonly:
            if _present(doc, path):
                # OpenAPI readOnly: sent by the server, never accepted from clients (`id`, `role`, `balance`).
                self._find(ex, R_EXTRA, obs, "body", ".".join(path), evidence="readOnly", tags=("mass-assignment",))
        try:
            validate(doc)
        except fastjsonschema.JsonSchemaValueException as exc:
            name = _field(exc)
            if exc.rule in _EXTRA_RULES:
                extra = _extra_keys(exc.value, exc.definition)
                self._find(ex, R_EXTRA, obs, "body", name, evidence=",".join(extra)[:128],
                           tags=("mass-assignment",))
            elif exc.rule == "required":
                self._find(ex, R_MISSING, obs, "body", name)
            elif exc.rule in _OVERSIZE_RULES:
                self._find(ex, R_OVERSIZED, obs, "body", name, evidence=str(exc.rule))
            else:
                self._find(ex, R_TYPE, obs, "body", name, evidence=str(exc.rule or ""))

    # --- responses ------------------------------------------------------------------------------

    def _response_body(self, ex: Exchange) -> None:
        resp = ex.response
        if resp is None or resp.from_bastion or not resp.body or resp.body_size > len(resp.body):
            return
        ct = (resp.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if "json" not in ct or (resp.headers.get("content-encoding") or "identity").lower() != "identity":
            return
        c = self._lookup(ex)
        if c is None:
            return
        try:
            doc = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            return
        status = str(resp.status)
        validate = c.responses.get(status) or c.responses.get(status[0] + "XX") or c.responses.get("DEFAULT")
        if validate is not None:
            try:
                validate(doc)
            except fastjsonschema.JsonSchemaValueException as exc:
                name = _field(exc)
                if exc.rule in _EXTRA_RULES:
                    self._find(ex, R_RESP_UNDECLARED, c.observe, "response", name,
                               evidence=",".join(_extra_keys(exc.value, exc.definition))[:128])
        if self.block_sensitive:
            kinds = sorted({k for _, k in sensitive.scan_json(doc) if k in self.block_sensitive})
            if kinds:
                self._find(ex, R_RESP_SENSITIVE, c.observe, "response", evidence=",".join(kinds),
                           tags=("data-leak",))


def _request_view(schema: Any, path: tuple[str, ...], readonly: list[tuple[str, ...]], depth: int = 0) -> Any:
    """The schema as requests see it: readOnly properties are not required (OpenAPI 3), and their
    paths are collected so that a client sending one is caught."""
    if not isinstance(schema, dict) or depth > 16:
        return schema
    out = dict(schema)
    props = schema.get("properties")
    if isinstance(props, dict):
        new_props = {}
        for name, sub in props.items():
            if isinstance(sub, dict) and sub.get("readOnly") is True:
                readonly.append((*path, str(name)))
            new_props[name] = _request_view(sub, (*path, str(name)), readonly, depth + 1)
        out["properties"] = new_props
        req = schema.get("required")
        if isinstance(req, list):
            ro = {p[-1] for p in readonly if p[:-1] == path}
            out["required"] = [r for r in req if r not in ro]
            if not out["required"]:
                del out["required"]
    items = schema.get("items")
    if isinstance(items, dict):
        out["items"] = _request_view(items, (*path, "[]"), readonly, depth + 1)
    for key in ("allOf", "anyOf", "oneOf"):
        subs = schema.get(key)
        if isinstance(subs, list):
            out[key] = [_request_view(s, path, readonly, depth + 1) for s in subs]
    return out


def _present(doc: Any, path: tuple[str, ...]) -> bool:
    if not path:
        return True
    head, rest = path[0], path[1:]
    if head == "[]":
        return isinstance(doc, list) and any(_present(x, rest) for x in doc[:100])
    return isinstance(doc, dict) and head in doc and _present(doc[head], rest)


def _field(exc: fastjsonschema.JsonSchemaValueException) -> str:
    name = str(exc.name or "")
    return name[5:] if name.startswith("data.") else name


def _accept(_doc: Any) -> Any:
    return None


def _clip(s: str) -> str:
    return s if len(s) <= 96 else s[:96] + "..."


def _extra_keys(value: Any, definition: Any) -> list[str]:
    if not isinstance(value, dict) or not isinstance(definition, dict):
        return []
    allowed = set((definition.get("properties") or {}).keys())
    return sorted(str(k)[:32] for k in value if k not in allowed)[:8]


def _longest(doc: Any, depth: int = 0) -> int:
    if isinstance(doc, str):
        return len(doc)
    if depth > 16:
        return 0
    if isinstance(doc, dict):
        return max((_longest(v, depth + 1) for v in doc.values()), default=0)
    if isinstance(doc, list):
        return max((_longest(v, depth + 1) for v in doc), default=0)
    return 0


def make(config: BastionConfig, ctx: BuildContext) -> SchemaDetector | None:
    cfg = config.spec
    if cfg is None:
        return None
    spec = load_spec(cfg.path, cfg.base_path)
    log.info("schema: %d operations from %s", len(spec.operations), cfg.path)
    return SchemaDetector(spec, cfg)

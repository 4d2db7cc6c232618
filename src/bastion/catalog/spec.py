"""Reading an OpenAPI 3.0/3.1 document into operations, and matching request paths to them.

Loading resolves local `$ref`s, turns 3.0 `nullable` into 3.1 type lists and prefixes paths with
the servers' base path. Mistakes fail loudly with the file and the place (`paths./users.get`).
The matcher is a segment tree built once: literal segments win over parameters, as in OpenAPI
("/users/me" before "/users/{id}").
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import yaml

from bastion.errors import ConfigError

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM = re.compile(r"\{([^{}/]+)\}")
_MAX_REF_DEPTH = 24


@dataclass(slots=True)
class Param:
    name: str
    location: str  # path, query, header, cookie
    required: bool
    schema: dict[str, Any]


@dataclass(slots=True)
class Operation:
    method: str  # upper case
    template: str  # full path template, base path included
    params: list[Param] = field(default_factory=list)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # media type -> schema
    body_required: bool = False
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)  # status or "2XX"/"default" -> schema
    deprecated: bool = False
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


@dataclass(slots=True)
class ApiSpec:
    source: str
    operations: list[Operation]
    base_path: str = ""

    def by_path(self) -> dict[str, dict[str, Operation]]:
        out: dict[str, dict[str, Operation]] = {}
        for op in self.operations:
            out.setdefault(op.template, {})[op.method] = op
        return out


def read_document(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read the API spec: {exc}"]) from None
    try:
        doc = orjson.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([f"{p}: invalid YAML/JSON: {exc}"]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise ConfigError([f"{p}: not an OpenAPI document (no `paths` mapping)"])
    ver = str(doc.get("openapi", ""))
    if not ver.startswith("3."):
        raise ConfigError([f"{p}: openapi: {ver or '(missing)'}: only OpenAPI 3.0 and 3.1 are supported"])
    return doc


def _resolve(doc: dict[str, Any], node: Any, source: str, depth: int = 0) -> Any:
    """Inline local $refs (cycles are cut to an open schema) and normalise 3.0 `nullable`."""
    if depth > _MAX_REF_DEPTH:
        return {}
    if isinstance(node, list):
        return [_resolve(doc, x, source, depth) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#/"):
            raise ConfigError([f"{source}: {ref}: only local references (#/...) are supported"])
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ConfigError([f"{source}: {ref}: reference not found"])
            target = target[part]
        merged = {k: v for k, v in node.items() if k != "$ref"}
        out = _resolve(doc, target, source, depth + 1)
        if isinstance(out, dict) and merged:
            out = {**out, **_resolve(doc, merged, source, depth + 1)}
        return out
    out = {k: _resolve(doc, v, source, depth) for k, v in node.items()}
    if out.pop("nullable", False) is True and "type" in out:
        t = out["type"]
        out["type"] = [*t, "null"] if isinstance(t, list) else [t, "null"]
    return out


def _base_path(doc: dict[str, Any]) -> str:
    servers = doc.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], dict):
        url = str(servers[0].get("url", ""))
        path = urlsplit(url).path if "://" in url else url
        if "{" not in path:
            return path.rstrip("/")
    return ""


def _params(raw: Any, where: str) -> list[Param]:
    out: list[Param] = []
    for i, p in enumerate(raw or []):
        if not isinstance(p, dict) or "name" not in p or "in" not in p:
            raise ConfigError([f"{where}.parameters[{i}]: a parameter needs `name` and `in`"])
        loc = str(p["in"])
        schema = p.get("schema")
        if not isinstance(schema, dict):
            content = p.get("content")
            first: Any = next(iter(content.values()), {}) if isinstance(content, dict) else {}
            schema = first.get("schema", {}) if isinstance(first, dict) else {}
        out.append(Param(str(p["name"]), loc, bool(p.get("required")) or loc == "path", dict(schema or {})))
    return out


def parse_spec(raw: dict[str, Any], source: str = "<spec>", base_path: str | None = None) -> ApiSpec:
    doc = copy.deepcopy(raw)
    base = _base_path(doc) if base_path is None else base_path.rstrip("/")
    ops: list[Operation] = []
    for path, item in doc["paths"].items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError([f"{source}: paths.{path}: a path must start with '/'"])
        if not isinstance(item, dict):
            raise ConfigError([f"{source}: paths.{path}: must be a mapping"])
        item = _resolve(doc, item, source)
        shared = _params(item.get("parameters"), f"{source}: paths.{path}")
        for method in METHODS:
            raw_op = item.get(method)
            if raw_op is None:
                continue
            where = f"{source}: paths.{path}.{method}"
            if not isinstance(raw_op, dict):
                raise ConfigError([f"{where}: must be a mapping"])
            own = _params(raw_op.get("parameters"), where)
            names = {(p.name, p.location) for p in own}
            params = own + [p for p in shared if (p.name, p.location) not in names]
            op = Operation(method.upper(), (base + path) if path != "/" or not base else base, params)
            body = raw_op.get("requestBody")
            if isinstance(body, dict):
                op.body_required = bool(body.get("required"))
                for media, mt in (body.get("content") or {}).items():
                    op.bodies[str(media).split(";")[0].strip().lower()] = dict((mt or {}).get("schema") or {})
            for status, resp in (raw_op.get("responses") or {}).items():
                content = (resp or {}).get("content") if isinstance(resp, dict) else None
                schema: dict[str, Any] = {}
                if isinstance(content, dict):
                    for media, mt in content.items():
                        if "json" in str(media):
                            schema = dict((mt or {}).get("schema") or {})
                            break
                op.responses[str(status).upper()] = schema
            op.deprecated = bool(raw_op.get("deprecated"))
            op.extensions = {k: v for k, v in raw_op.items() if isinstance(k, str) and k.startswith("x-")}
            ops.append(op)
    return ApiSpec(source, ops, base)


def load_spec(path: str | Path, base_path: str | None = None) -> ApiSpec:
    return parse_spec(read_document(path), str(path), base_path)


# --- matching -------------------------------------------------------------------------------------


class _Seg:
    __slots__ = ("lits", "ops", "params", "patterns")

    def __init__(self) -> None:
        self.lits: dict[str, _Seg] = {}
        self.params: list[tuple[str, _Seg]] = []  # (parameter name, child)
        self.patterns: dict[str, tuple[re.Pattern[str], _Seg]] = {}  # "{name}.{ext}" -> (regex, child)
        self.ops: dict[str, Operation] = {}


def _segment_regex(seg: str) -> re.Pattern[str]:
    """A segment mixing text and parameters (`{name}.{ext}`, `v{version}`) as a regex with named groups."""
    out, pos = [], 0
    for m in _PARAM.finditer(seg):
        out.append(re.escape(seg[pos:m.start()]))
        name = re.sub(r"\W", "_", m.group(1))
        out.append(f"(?P<{name}>.+?)" if name.isidentifier() and f"(?P<{name}>" not in "".join(out) else "(?:.+?)")
        pos = m.end()
    out.append(re.escape(seg[pos:]))
    return re.compile("".join(out))


class Matcher:
    """Finds the operation of a request path: literal segments first, then parameters."""

    def __init__(self, spec: ApiSpec) -> None:
        self.root = _Seg()
        for op in spec.operations:
            node = self.root
            for seg in [s for s in op.template.split("/") if s]:
                m = _PARAM.fullmatch(seg)
                if m:
                    for name, child in node.params:
                        if name == m.group(1):
                            node = child
                            break
                    else:
                        child = _Seg()
                        node.params.append((m.group(1), child))
                        node = child
                elif "{" in seg:
                    entry = node.patterns.get(seg)
                    if entry is None:
                        entry = node.patterns[seg] = (_segment_regex(seg), _Seg())
                    node = entry[1]
                else:
                    node = node.lits.setdefault(seg, _Seg())
            node.ops[op.method] = op

    def match(self, segs: list[str]) -> tuple[dict[str, Operation], dict[str, str]] | None:
        """The operations of the path (by method) and its path-parameter values; None: unknown path."""
        params: dict[str, str] = {}
        found = self._walk(self.root, segs, 0, params)
        return (found, params) if found is not None else None

    def _walk(self, node: _Seg, segs: list[str], i: int, params: dict[str, str]) -> dict[str, Operation] | None:
        if i == len(segs):
            return node.ops or None
        seg = segs[i]
        child = node.lits.get(seg)
        if child is not None:
            r = self._walk(child, segs, i + 1, params)
            if r is not None:
                return r
        for rx, child in node.patterns.values():
            m = rx.fullmatch(seg)
            if m is not None:
                saved = dict(params)
                params.update(m.groupdict())
                r = self._walk(child, segs, i + 1, params)
                if r is not None:
                    return r
                params.clear()
                params.update(saved)
        for name, child in node.params:
            params[name] = seg
            r = self._walk(child, segs, i + 1, params)
            if r is not None:
                return r
            del params[name]
        return None

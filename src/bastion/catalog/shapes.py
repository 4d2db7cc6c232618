"""Schema inference: a Shape summarises every value seen at one place (a parameter, a body field).

It counts JSON types, string formats and lengths, a few enum values when the field is a small
closed set (never for secret-looking names), object properties with how often each is present,
and array items. Memory is bounded: depth, properties per object and enum values are capped; an
object with too many distinct keys (a map keyed by ids) stops listing them and becomes open.
"""

from __future__ import annotations

from typing import Any

from bastion.catalog import sensitive
from bastion.catalog.values import is_enum_candidate, scalar_type, secret_name, string_format

MAX_DEPTH = 6
MAX_PROPS = 64
MAX_ENUM = 8
ENUM_MAX_EXPORT = 6


class Budget:
    """How many more shapes may be created: per endpoint, and under the learner's global one."""

    __slots__ = ("left", "parent")

    def __init__(self, left: int, parent: Budget | None = None) -> None:
        self.left = left
        self.parent = parent

    def spend(self) -> bool:
        p = self.parent
        if self.left <= 0 or (p is not None and p.left <= 0):
            return False
        self.left -= 1
        if p is not None:
            p.left -= 1
        return True


def _spend(budget: Budget | None) -> bool:
    return budget is None or budget.spend()


def size(s: Shape) -> int:
    """Shapes in a tree (for budgets)."""
    return 1 + sum(size(c) for c in (s.props or {}).values()) + (size(s.items) if s.items is not None else 0)


def _next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


class Shape:
    __slots__ = ("enum", "formats", "items", "max_items", "max_len", "n", "nmax", "nmin", "obj_n",
                 "open", "props", "secret", "types")

    def __init__(self, secret: bool = False) -> None:
        self.n = 0
        self.types: dict[str, int] = {}
        self.formats: dict[str, int] = {}
        self.max_len = 0
        self.enum: set[str] | None = None if secret else set()
        self.secret = secret
        self.nmin: float | None = None
        self.nmax: float | None = None
        self.props: dict[str, Shape] | None = None
        self.obj_n = 0
        self.open = False
        self.items: Shape | None = None
        self.max_items = 0

    # --- observing ---------------------------------------------------------------------------

    def _count(self, t: str) -> None:
        self.n += 1
        self.types[t] = self.types.get(t, 0) + 1

    def _string(self, v: str) -> None:
        self._count("string")
        n = len(v)
        if n > self.max_len:
            self.max_len = n
        f = string_format(v)
        self.formats[f] = self.formats.get(f, 0) + 1
        e = self.enum
        if e is not None and v not in e:
            if len(e) >= MAX_ENUM or not is_enum_candidate(v) or f or sensitive.classify(v):
                self.enum = None  # an open set (or values we must not keep): no enum, ever
            else:
                e.add(v)

    def _num(self, t: str, x: float) -> None:
        self._count(t)
        if self.secret or not -1e9 < x < 1e9:
            return  # a card or phone number sent as a number is a value too: not kept
        if self.nmin is None or x < self.nmin:
            self.nmin = x
        if self.nmax is None or x > self.nmax:
            self.nmax = x

    def observe_text(self, v: str) -> None:
        """A value that arrived as text (query, form, path, header): its type is read from its shape."""
        t = scalar_type(v)
        if t == "string":
            self._string(v)
        elif t == "boolean":
            self._count("boolean")
        else:
            try:
                self._num(t, float(v))
            except ValueError:
                self._string(v)

    def observe_fields(self, fields: list[tuple[str, str]], budget: Budget | None = None) -> None:
        """A form body: an object whose values arrived as text."""
        self._count("object")
        self.obj_n += 1
        if self.open:
            return
        props = self.props
        if props is None:
            props = self.props = {}
        seen: set[str] = set()
        for k, v in fields:
            if k in seen:
                continue
            seen.add(k)
            s = props.get(k)
            if s is None:
                if len(props) >= MAX_PROPS or not _spend(budget):
                    self.open, self.props = True, {}
                    return
                s = props[k] = Shape(secret=secret_name(k))
            s.observe_text(v)

    def observe(self, v: Any, depth: int = 0, budget: Budget | None = None) -> None:
        """A decoded JSON value. `budget` caps the shapes this call may create
        across the whole document tree, so nested junk cannot grow an endpoint without bound."""
        if isinstance(v, str):
            self._string(v)
        elif isinstance(v, bool):
            self._count("boolean")
        elif isinstance(v, int):
            self._num("integer", float(v))
        elif isinstance(v, float):
            self._num("number", v)
        elif v is None:
            self._count("null")
        elif isinstance(v, dict):
            self._count("object")
            self.obj_n += 1
            if depth >= MAX_DEPTH or self.open:
                return
            props = self.props
            if props is None:
                props = self.props = {}
            for k, sub in v.items():
                s = props.get(k)
                if s is None:
                    if len(props) >= MAX_PROPS or not _spend(budget):
                        # A map keyed by ids or user data, not a record: stop listing keys.
                        self.open = True
                        self.props = {}
                        return
                    s = props[k] = Shape(secret=secret_name(k))
                s.observe(sub, depth + 1, budget)
        elif isinstance(v, list):
            self._count("array")
            if len(v) > self.max_items:
                self.max_items = len(v)
            if depth >= MAX_DEPTH:
                return
            if self.items is None:
                if not _spend(budget):
                    return
                self.items = Shape(secret=self.secret)
            # The first few elements tell the item shape; walking a 10k-element list would not.
            for sub in v[:8]:
                self.items.observe(sub, depth + 1, budget)

    # --- merging and storage -----------------------------------------------------------------

    def merge(self, o: Shape) -> None:
        self.n += o.n
        for t, c in o.types.items():
            self.types[t] = self.types.get(t, 0) + c
        for f, c in o.formats.items():
            self.formats[f] = self.formats.get(f, 0) + c
        self.max_len = max(self.max_len, o.max_len)
        if self.enum is not None and o.enum is not None:
            u = self.enum | o.enum
            self.enum = u if len(u) <= MAX_ENUM else None
        else:
            self.enum = None
        self.secret = self.secret or o.secret
        if o.nmin is not None:
            self.nmin = o.nmin if self.nmin is None else min(self.nmin, o.nmin)
        if o.nmax is not None:
            self.nmax = o.nmax if self.nmax is None else max(self.nmax, o.nmax)
        self.obj_n += o.obj_n
        self.open = self.open or o.open
        if self.open:
            self.props = {} if (self.props is not None or o.props is not None) else None
        elif o.props is not None:
            if self.props is None:
                self.props = {}
            for k, s in o.props.items():
                mine = self.props.get(k)
                if mine is None:
                    if len(self.props) >= MAX_PROPS:
                        self.open, self.props = True, {}
                        break
                    self.props[k] = mine = Shape(secret=s.secret)
                mine.merge(s)
        self.max_items = max(self.max_items, o.max_items)
        if o.items is not None:
            if self.items is None:
                self.items = Shape(secret=o.secret)
            self.items.merge(o.items)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"n": self.n, "t": self.types}
        if self.formats:
            d["f"] = self.formats
        if self.max_len:
            d["ml"] = self.max_len
        d["e"] = sorted(self.enum) if self.enum is not None else None
        if self.secret:
            d["s"] = 1
        if self.nmin is not None:
            d["min"], d["max"] = self.nmin, self.nmax
        if self.props is not None:
            d["p"] = {k: s.to_dict() for k, s in self.props.items()}
            d["on"] = self.obj_n
        if self.open:
            d["open"] = 1
        if self.items is not None:
            d["i"] = self.items.to_dict()
            d["mi"] = self.max_items
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Shape:
        s = cls(secret=bool(d.get("s")))
        s.n = int(d.get("n", 0))
        s.types = {str(k): int(v) for k, v in d.get("t", {}).items()}
        s.formats = {str(k): int(v) for k, v in d.get("f", {}).items()}
        s.max_len = int(d.get("ml", 0))
        e = d.get("e")
        s.enum = None if e is None or s.secret else {str(x) for x in e}
        if "min" in d:
            s.nmin, s.nmax = d["min"], d["max"]
        if "p" in d:
            s.props = {str(k): cls.from_dict(v) for k, v in d["p"].items()}
            s.obj_n = int(d.get("on", 0))
        s.open = bool(d.get("open"))
        if "i" in d:
            s.items = cls.from_dict(d["i"])
            s.max_items = int(d.get("mi", 0))
        return s

    # --- JSON schema ---------------------------------------------------------------------------

    def main_type(self) -> str:
        """The dominant non-null type ('string' when nothing was seen)."""
        ts = {t: c for t, c in self.types.items() if t != "null"}
        if not ts:
            return "string"
        if "integer" in ts and "number" in ts:
            ts["number"] += ts.pop("integer")
        return max(sorted(ts), key=lambda t: ts[t])

    def format(self) -> str:
        """A format every string value matched, or ''."""
        strings = self.types.get("string", 0)
        if not strings:
            return ""
        for f, c in self.formats.items():
            if f and c == strings:
                return f
        return ""

    def json_schema(self, *, strict: bool = True, text: bool = False) -> dict[str, Any]:
        """The JSON schema of everything seen. `strict` closes objects (additionalProperties: false)
        so that enforcing the schema catches mass assignment; `text` marks values that arrived as text."""
        types = [t for t in self.types if t != "null"]
        if "integer" in types and "number" in types:
            types.remove("integer")
        types = sorted(types) or ["string"]
        sch: dict[str, Any] = {}
        if "null" in self.types:
            types.append("null")
        sch["type"] = types[0] if len(types) == 1 else types
        if "string" in types:
            fmt = self.format()
            if fmt:
                sch["format"] = fmt
            strings = self.types.get("string", 0)
            if (self.enum is not None and not self.secret and 0 < len(self.enum) <= ENUM_MAX_EXPORT
                    and len(types) == 1 and strings >= 10 * len(self.enum) and not fmt):
                sch["enum"] = sorted(self.enum)
            elif not fmt:
                # Room for values longer than any seen, yet a bound: a 1 MB "name" is an attack.
                sch["maxLength"] = max(64, _next_pow2(self.max_len) * 4)
        if "object" in types:
            props = self.props or {}
            sch["properties"] = {k: s.json_schema(strict=strict) for k, s in sorted(props.items())}
            req = sorted(k for k, s in props.items() if s.n >= self.obj_n and self.obj_n >= 3)
            if req:
                sch["required"] = req
            if strict and not self.open:
                sch["additionalProperties"] = False
        if "array" in types and self.items is not None and self.items.n:
            sch["items"] = self.items.json_schema(strict=strict)
        return sch

"""What the catalog knows about one endpoint (host, method, template): counts, shapes, auth, latency.

Plain data with `merge` (two templates folded into one, or two workers' rows read together) and
dict round-trips for the catalog store. Values are never kept, except short enum-like tokens of
non-secret fields (see Shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.catalog.shapes import Budget, Shape, size
from bastion.catalog.sketch import DecayedRate, Distinct, LatencySketch, TopK

MAX_PARAMS = 64  # per location (query, header, cookie): beyond this new names are only counted
MAX_KEYS = 16  # content types, auth kinds, status codes kept per endpoint
MAX_SHAPES = 512  # body and response shapes (fields at any depth) per endpoint (~0.5 KB each)

_SHAPE_MAPS = ("path", "query", "headers", "cookies", "body", "responses")


def add_count(d: dict[str, int], key: str, n: int = 1, cap: int = MAX_KEYS) -> None:
    """Count `key`, keeping at most `cap` keys (attackers choose content types and auth schemes)."""
    if key in d:
        d[key] += n
    elif len(d) < cap:
        d[key] = n
    else:
        d["other"] = d.get("other", 0) + n


@dataclass(slots=True)
class Endpoint:
    host: str
    method: str
    template: str
    calls: int = 0
    errors: int = 0  # responses >= 400 (and exchanges with no response)
    first_seen: float = 0.0
    last_seen: float = 0.0
    status: dict[str, int] = field(default_factory=dict)
    req_types: dict[str, int] = field(default_factory=dict)
    resp_types: dict[str, int] = field(default_factory=dict)
    auth: dict[str, int] = field(default_factory=dict)
    latency: LatencySketch = field(default_factory=LatencySketch)
    rate: DecayedRate = field(default_factory=DecayedRate)
    error_rate: DecayedRate = field(default_factory=DecayedRate)
    sampled: int = 0  # exchanges whose parameters and bodies were inspected (presence ratios use this)
    body_sampled: int = 0
    path: dict[str, Shape] = field(default_factory=dict)
    query: dict[str, Shape] = field(default_factory=dict)
    headers: dict[str, Shape] = field(default_factory=dict)
    cookies: dict[str, Shape] = field(default_factory=dict)
    body: dict[str, Shape] = field(default_factory=dict)  # request content type -> body shape
    responses: dict[str, Shape] = field(default_factory=dict)  # status code -> JSON response shape
    overflow: int = 0  # parameters not recorded because an endpoint had too many names
    sensitive: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> kind -> count
    entities: TopK = field(default_factory=TopK)
    distinct_entities: Distinct = field(default_factory=Distinct)
    dirty: bool = True
    last_who: str = ""  # not stored: skips re-hashing the same client
    budget: Budget = field(default_factory=lambda: Budget(MAX_SHAPES))  # shapes it may still create

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.host, self.method, self.template)

    def seen(self, now: float) -> None:
        if not self.first_seen or now < self.first_seen:
            self.first_seen = now
        if now > self.last_seen:
            self.last_seen = now

    def shape(self, where: dict[str, Shape], name: str, secret: bool = False) -> Shape | None:
        name = name[:64]
        s = where.get(name)
        if s is None:
            if len(where) >= MAX_PARAMS or not self.budget.spend():
                self.overflow += 1
                return None
            s = where[name] = Shape(secret=secret)
        return s

    def add_sensitive(self, fieldname: str, kind: str, n: int = 1) -> None:
        kinds = self.sensitive.get(fieldname)
        if kinds is None:
            if len(self.sensitive) >= MAX_PARAMS:
                fieldname = "(other)"
                kinds = self.sensitive.setdefault(fieldname, {})
            else:
                kinds = self.sensitive[fieldname] = {}
        kinds[kind] = kinds.get(kind, 0) + n

    # --- summaries ----------------------------------------------------------------------------

    def sensitive_kinds(self) -> list[str]:
        return sorted({k for kinds in self.sensitive.values() for k in kinds})

    def error_ratio(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def main_auth(self) -> str:
        if not self.auth:
            return "none"
        return max(sorted(self.auth), key=lambda k: self.auth[k])

    # --- merging and storage -----------------------------------------------------------------

    def merge(self, o: Endpoint) -> None:
        self.calls += o.calls
        self.errors += o.errors
        if o.first_seen:
            self.seen(o.first_seen)
        self.seen(o.last_seen)
        for mine, theirs in ((self.status, o.status), (self.req_types, o.req_types),
                             (self.resp_types, o.resp_types), (self.auth, o.auth)):
            for k, n in theirs.items():
                add_count(mine, k, n)
        self.latency.merge(o.latency)
        self.rate.merge(o.rate)
        self.error_rate.merge(o.error_rate)
        self.sampled += o.sampled
        self.body_sampled += o.body_sampled
        for attr in _SHAPE_MAPS:
            mine_s: dict[str, Shape] = getattr(self, attr)
            for name, s in getattr(o, attr).items():
                m = mine_s.get(name)
                if m is None:
                    if len(mine_s) >= MAX_PARAMS:
                        self.overflow += s.n
                        continue
                    m = mine_s[name] = Shape(secret=s.secret)
                m.merge(s)
        self.overflow += o.overflow
        for fname, kinds in o.sensitive.items():
            for kind, n in kinds.items():
                self.add_sensitive(fname, kind, n)
        self.entities.merge(o.entities)
        self.distinct_entities.merge(o.distinct_entities)
        self.dirty = True

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "host": self.host, "method": self.method, "template": self.template,
            "calls": self.calls, "errors": self.errors,
            "first_seen": self.first_seen, "last_seen": self.last_seen,
            "status": self.status, "req_types": self.req_types, "resp_types": self.resp_types,
            "auth": self.auth, "latency": self.latency.to_dict(),
            "rate": self.rate.to_dict(), "error_rate": self.error_rate.to_dict(),
            "sampled": self.sampled, "body_sampled": self.body_sampled, "overflow": self.overflow,
            "sensitive": self.sensitive, "entities": self.entities.to_dict(),
            "distinct_entities": self.distinct_entities.to_dict(),
        }
        for attr in _SHAPE_MAPS:
            d[attr] = {k: s.to_dict() for k, s in getattr(self, attr).items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Endpoint:
        e = cls(str(d["host"]), str(d["method"]), str(d["template"]))
        e.calls = int(d.get("calls", 0))
        e.errors = int(d.get("errors", 0))
        e.first_seen = float(d.get("first_seen", 0.0))
        e.last_seen = float(d.get("last_seen", 0.0))
        e.status = {str(k): int(v) for k, v in d.get("status", {}).items()}
        e.req_types = {str(k): int(v) for k, v in d.get("req_types", {}).items()}
        e.resp_types = {str(k): int(v) for k, v in d.get("resp_types", {}).items()}
        e.auth = {str(k): int(v) for k, v in d.get("auth", {}).items()}
        e.latency = LatencySketch.from_dict(d.get("latency", {}))
        e.rate = DecayedRate.from_dict(d.get("rate", {}))
        e.error_rate = DecayedRate.from_dict(d.get("error_rate", {}))
        e.sampled = int(d.get("sampled", 0))
        e.body_sampled = int(d.get("body_sampled", 0))
        e.overflow = int(d.get("overflow", 0))
        e.sensitive = {str(f): {str(k): int(n) for k, n in kinds.items()}
                       for f, kinds in d.get("sensitive", {}).items()}
        e.entities = TopK.from_dict(d.get("entities", {}))
        e.distinct_entities = Distinct.from_dict(d.get("distinct_entities", ""))
        used = 0
        for attr in _SHAPE_MAPS:
            shapes = {str(k): Shape.from_dict(v) for k, v in d.get(attr, {}).items()}
            setattr(e, attr, shapes)
            used += sum(size(s) for s in shapes.values())
        e.budget.left = max(0, MAX_SHAPES - used)
        e.dirty = False
        return e

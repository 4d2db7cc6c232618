"""Matching: every pattern of every enabled rule in one hyperscan database, one scan per phase.

How a phase is matched:
1. The distinct views (raw, decode, sql, ...) of every value are joined with newlines into one
   buffer and scanned once. Patterns are compiled with SINGLEMATCH (one callback per pattern at
   most: a hostile value repeating a keyword costs nothing extra) and MULTILINE (so ^/$ hold at
   value boundaries). Patterns hyperscan refuses (lookarounds, backreferences) are compiled with
   PREFILTER, which over-approximates them.
2. The hyperscan hit is only a candidate. Each candidate rule is confirmed with Python `re` on
   the rule's own views of the values in the rule's zones (starting with the value the hit ended
   in), then by the rule's `unless` patterns and its confirm step. This pass also names the value.

Since the buffer holds every view of every value and newlines never join two values for `.`,
the scan is a superset of the per-value `re` search, and step 2 makes the result exact.
Without hyperscan (no wheel for the platform) every rule is a candidate: same results, slower.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bastion.detect.signatures.confirm import Confirm
from bastion.detect.signatures.rules import Rule
from bastion.detect.signatures.zones import Value
from bastion.errors import ConfigError

log = logging.getLogger("bastion.signatures")

try:  # pragma: no cover - depends on the platform
    import hyperscan as _hs
except ImportError:  # pragma: no cover
    _hs = None

HYPERSCAN_AVAILABLE = _hs is not None

# Compiled databases by (expressions, flags). Scanning from one thread (the event loop) only.
_DB_CACHE: dict[tuple[tuple[bytes, ...], tuple[int, ...]], object] = {}

Excluded = Callable[["CompiledRule", Value], bool]


_BOUNDED = re.compile(r"(?<!\\)\{(\d+),(\d+)\}")
_NEEDS_PREFILTER = re.compile(r"\\[1-9]|\(\?<?[=!]")


def hyperscan_form(pattern: str) -> tuple[str, bool]:
    """The pattern as given to hyperscan, and whether it must be a prefilter.

    Wide bounded repeats (`[^}]{0,200}`) make hyperscan databases slow to build and large;
    they become open repeats (a superset: `re` applies the bound when confirming).
    Backreferences and lookarounds are prefilter-only in hyperscan.
    """
    widened = _BOUNDED.sub(lambda m: m.group(0) if int(m.group(2)) < 16 else "{%s,}" % m.group(1), pattern)
    return widened, bool(_NEEDS_PREFILTER.search(pattern))


@dataclass(slots=True)
class CompiledRule:
    rule: Rule
    index: int
    regexes: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...]
    views: tuple[str, ...]
    zones: frozenset[str]  # zone groups without a header filter
    header_names: frozenset[str]  # headers:<name> filters
    confirm: Confirm | None
    observe: bool = False

    def wants(self, v: Value) -> bool:
        if v.zone in self.zones:
            return True
        return v.zone == "headers" and v.name in self.header_names

    def check(self, v: Value) -> str | None:
        """The evidence when this rule matches value `v` (precise, per value), else None."""
        for view in self.views:
            text = v.view(view)
            for rx in self.regexes:
                m = rx.search(text)
                if m is None:
                    continue
                if self.unless and any(u.search(text) for u in self.unless):
                    return None
                if self.confirm is not None:
                    confirmed = self.confirm(text)
                    if confirmed is None:
                        continue
                    return f"{m.group(0)} [{confirmed}]"
                return m.group(0)
        return None


@dataclass(slots=True)
class Hit:
    rule: CompiledRule
    value: Value
    evidence: str


def compile_rule(rule: Rule, index: int, confirm: Confirm | None, observe: bool = False) -> CompiledRule:
    flags = re.ASCII | (re.IGNORECASE if rule.caseless else 0)
    zones, headers = set(), set()
    for z in rule.zones:
        base, _, name = z.partition(":")
        if name:
            headers.add(name.lower())
        else:
            zones.add(base)
    return CompiledRule(
        rule=rule,
        index=index,
        regexes=tuple(re.compile(p, flags) for p in rule.patterns),
        unless=tuple(re.compile(p, flags) for p in rule.unless),
        views=tuple(rule.transforms),
        zones=frozenset(zones),
        header_names=frozenset(headers),
        confirm=confirm,
        observe=observe,
    )


class Matcher:
    """All rules of one side (request or response), compiled once at start-up."""

    def __init__(self, rules: Sequence[CompiledRule], engine: str = "auto") -> None:
        self.rules = list(rules)
        self.views = tuple(dict.fromkeys(v for r in self.rules for v in r.views)) or ("raw",)
        self._pattern_rule: list[int] = []
        self._db: object | None = None
        self.engine = "python"
        if engine not in ("auto", "hyperscan", "python"):
            raise ConfigError([f"signatures.engine: unknown engine {engine!r}"])
        if engine == "hyperscan" and _hs is None:
            raise ConfigError(["signatures.engine: hyperscan is not installed on this platform"])
        if engine != "python" and _hs is not None and self.rules:
            self._compile_hyperscan()
            self.engine = "hyperscan"

    # --- build ---------------------------------------------------------------------------------

    def _compile_hyperscan(self) -> None:
        assert _hs is not None
        exprs: list[bytes] = []
        flags: list[int] = []
        base = _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_MULTILINE
        for i, cr in enumerate(self.rules):
            f = base | (_hs.HS_FLAG_CASELESS if cr.rule.caseless else 0)
            for p in cr.rule.patterns:
                hs_pattern, needs_prefilter = hyperscan_form(p)
                exprs.append(hs_pattern.encode("utf-8"))
                flags.append(f | (_hs.HS_FLAG_PREFILTER if needs_prefilter else 0))
                self._pattern_rule.append(i)
        try:
            self._db = self._hs_db(exprs, flags)
            return
        except _hs.error:
            pass
        # Find the patterns hyperscan refuses as written and compile those as prefilters.
        for j, (e, f) in enumerate(zip(exprs, flags, strict=True)):
            try:
                self._hs_db([e], [f])
            except _hs.error:
                try:
                    self._hs_db([e], [f | _hs.HS_FLAG_PREFILTER])
                    flags[j] = f | _hs.HS_FLAG_PREFILTER
                except _hs.error as exc:
                    rule = self.rules[self._pattern_rule[j]].rule
                    raise ConfigError(
                        [f"rule {rule.id}: pattern {e.decode()!r} cannot be compiled: {exc}"]
                    ) from None
        self._db = self._hs_db(exprs, flags)

    @staticmethod
    def _hs_db(exprs: list[bytes], flags: list[int]) -> object:
        """Compile (or reuse: pipelines rebuilt with the same rules share the database)."""
        assert _hs is not None
        key = (tuple(exprs), tuple(flags))
        db = _DB_CACHE.get(key)
        if db is None:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
            if len(_DB_CACHE) >= 16:
                _DB_CACHE.pop(next(iter(_DB_CACHE)))
            _DB_CACHE[key] = db
        return db

    # --- per request ---------------------------------------------------------------------------

    def candidates(self, values: Sequence[Value]) -> list[tuple[int, int]]:
        """(rule index, hinted value index) for every rule hyperscan saw somewhere; sorted by rule."""
        if self._db is None:
            return [(i, -1) for i in range(len(self.rules))]
        chunks: list[bytes] = []
        ends: list[int] = []
        owners: list[int] = []
        pos = 0
        views = self.views
        for vi, v in enumerate(values):
            seen: list[str] = []
            for name in views:
                text = v.view(name)
                if text in seen:
                    continue
                seen.append(text)
                try:
                    b = text.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:
                    b = text.encode("utf-8", "replace")
                chunks.append(b)
                pos += len(b)
                ends.append(pos)
                owners.append(vi)
                pos += 1  # the newline separator
        if not chunks:
            return []
        found: dict[int, int] = {}
        pattern_rule = self._pattern_rule

        def on_match(pid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
            ri = pattern_rule[pid]
            if ri not in found:
                k = bisect.bisect_left(ends, to)
                found[ri] = owners[k] if k < len(owners) else -1

        self._db.scan(b"\n".join(chunks), match_event_handler=on_match)  # type: ignore[attr-defined]
        return sorted(found.items())

    def match(self, values: Sequence[Value], excluded: Excluded | None = None) -> list[Hit]:
        """At most one hit per rule: the first value (hinted value first) the rule confirms on."""
        if not values or not self.rules:
            return []
        hits: list[Hit] = []
        for ri, hint in self.candidates(values):
            cr = self.rules[ri]
            order: Sequence[Value] = values
            if hint >= 0:
                order = [values[hint], *values[:hint], *values[hint + 1 :]]
            for v in order:
                if not cr.wants(v):
                    continue
                if excluded is not None and excluded(cr, v):
                    continue
                evidence = cr.check(v)
                if evidence is not None:
                    hits.append(Hit(cr, v, evidence))
                    break
        return hits

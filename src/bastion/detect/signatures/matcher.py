"""Matching: every pattern of every enabled rule in one hyperscan database, one scan per phase.

How a phase is matched:
1. The distinct views (raw, decode, sql, ...) of every value are joined with newlines into one
   buffer and scanned once, with MULTILINE (so ^/$ hold at value boundaries). Each match event
   names the value it ended in, so a rule is only confirmed on the values it may match; past
   MAX_EVENTS events (a hostile value repeating a keyword) the scan stops and every rule is
   checked on every value instead. Patterns hyperscan refuses (lookarounds, backreferences) are
   compiled with PREFILTER, which over-approximates them.
2. The hyperscan hit is only a candidate. Each candidate rule is confirmed with Python `re` on
   the rule's own views of the candidate values in the rule's zones, then by the rule's `unless`
   patterns and its confirm step. This pass also names the value.

Since the buffer holds every view of every value and newlines never join two values for `.`,
the scan is a superset of the per-value `re` search, and step 2 makes the result exact.
Without hyperscan (no wheel for the platform) every rule is a candidate: same results, slower.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import operator
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bastion.detect.signatures.confirm import AS_SENT_IF_HTML_ESCAPED, Confirm, html_escaped_text
from bastion.detect.signatures.rules import Rule
from bastion.detect.signatures.zones import DERIVED_VIEWS, ZONES, Value
from bastion.errors import ConfigError
from bastion.verdict import Severity

log = logging.getLogger("bastion.signatures")

try:  # pragma: no cover - depends on the platform
    import hyperscan as _hs
except ImportError:  # pragma: no cover
    _hs = None  # type: ignore[assignment]

HYPERSCAN_AVAILABLE = _hs is not None

# Match events of the first scan of a phase. Ordinary requests stay far below it; past it the
# buffer is scanned again with EVENT_BUDGET (see Matcher.candidates).
MAX_EVENTS = 512

# Match events a phase may cost in all (each one a Python callback, ~0.4 us): a bulk import or a
# JSON body cut at the inspection limit (inspected as text: every `",` starts a SQL trigger) sets
# off thousands, and each is still attributed to its value, so the request is inspected like any
# other. Only past this (a value built to set off patterns at every character) does the matcher
# give up attribution and check every rule on every value within CONFIRM_BUDGET.
EVENT_BUDGET = 65_536

# Characters that Python `re` may read per request when hyperscan could not say which values a rule
# may match (no hyperscan, or past MAX_EVENTS). Without a cap, a body of thousands of quotes costs
# every rule a full regex pass over it: ~250 ms of CPU per 80 KB request, a denial-of-service lever.
# Past the cap the request is refused as uninspectable (see SignaturesDetector), never let through
# half-read. Ordinary API bodies stay far below it.
CONFIRM_BUDGET = 1_000_000

# Recurring values (header lines and cookies seen on earlier requests) whose scan results a Matcher keeps.
RECURRING_KEPT = 4096

# Value names whose `names` check a rule keeps (parameter names recur from request to request).
NAME_CHECKS_KEPT = 4096

# Compiled databases by (expressions, flags). Scanning from one thread (the event loop) only.
_DB_CACHE: dict[tuple[tuple[bytes, ...], tuple[int, ...]], object] = {}



def _cache_path(key: tuple[tuple[bytes, ...], tuple[int, ...]]) -> Path | None:
    """Where a compiled database for `key` is kept between runs (compiling takes seconds)."""
    if os.environ.get("BASTION_HS_CACHE") == "off":
        return None
    root = Path(os.environ.get("BASTION_HS_CACHE") or Path(tempfile.gettempdir()) / "bastion-hs-cache")
    h = hashlib.sha256()
    h.update(str(getattr(_hs, "__version__", "")).encode())
    for e, f in zip(*key, strict=True):
        h.update(e + b"\x00" + str(f).encode() + b"\x00")
    return root / f"{h.hexdigest()[:32]}.hsdb"


def _load_serialized(key: tuple[tuple[bytes, ...], tuple[int, ...]]) -> object | None:
    path = _cache_path(key)
    if path is None or _hs is None:
        return None
    try:
        db = _hs.loadb(path.read_bytes(), mode=_hs.HS_MODE_BLOCK)
        db.scratch = _hs.Scratch(db)  # a deserialized database comes without scratch space
        return db
    except (OSError, TypeError, ValueError, AttributeError, _hs.error):
        return None


def _store_serialized(key: tuple[tuple[bytes, ...], tuple[int, ...]], db: object) -> None:
    path = _cache_path(key)
    if path is None or _hs is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(_hs.dumpb(db))  # type: ignore[arg-type]
        os.replace(tmp, path)  # atomic: concurrent workers never read half a file
    except (OSError, TypeError, ValueError, _hs.error) as exc:
        log.debug("cannot cache the compiled signature database: %s", exc)


Excluded = Callable[["CompiledRule", Value], bool]


_BOUNDED = re.compile(r"(?<!\\)\{(\d+),(\d+)\}")
_NEEDS_PREFILTER = re.compile(r"\\[1-9]|\(\?<?[=!]")


def hyperscan_form(pattern: str) -> tuple[str, bool]:
    """The pattern as given to hyperscan, and whether it must be a prefilter.

    Wide bounded repeats (`[^}]{0,200}`) make hyperscan databases slow to build and large;
    they become open repeats (a superset: `re` applies the bound when confirming).
    Backreferences and lookarounds are prefilter-only in hyperscan.
    """
    widened = _BOUNDED.sub(lambda m: m.group(0) if int(m.group(2)) < 16 else f"{{{m.group(1)},}}", pattern)
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
    header_skip: frozenset[str]  # headers:!<name>: every inspected header but these
    confirm: Confirm | None
    observe: bool = False
    names: re.Pattern[str] | None = None  # the value's name must contain a match (rule.names)
    severity: Severity = Severity.CRITICAL  # of its findings: Severity(rule.score)
    finding_tags: tuple[str, ...] = ()  # of its findings: attack class, paranoia level, rule tags
    name_checks: dict[str, bool] = field(default_factory=dict)  # value name -> what `names` said of it
    confirm_as_sent: bool = False  # the confirm step judges HTML-escaped text as sent (confirm.py)

    def wants(self, v: Value) -> bool:
        """Whether the rule reads value `v`: its zone first (set lookups), then its name."""
        zone = v.zone
        if zone in self.zones:
            if zone == "headers" and v.name in self.header_skip:
                return False
        elif zone != "headers" or v.name not in self.header_names:
            return False
        return self.names is None or self._name_matches(v.name)

    def _name_matches(self, name: str) -> bool:
        """`names` searched in a value's name, kept per name: the regexes are written to be read in
        any name (lookaheads, alternations of dozens of words), and names recur."""
        ok = self.name_checks.get(name)
        if ok is None:
            assert self.names is not None
            ok = self.names.search(name) is not None
            if len(self.name_checks) >= NAME_CHECKS_KEPT:
                self.name_checks.clear()
            self.name_checks[name] = ok
        return ok

    def check(self, v: Value) -> str | None:
        """The evidence when this rule matches value `v` (precise, per value), else None."""
        refuted: str | None = None  # a text the confirm step said no to (confirm steps are pure)
        for view in self.views:
            text = v.view(view)
            if text == refuted:
                continue  # a view that changed nothing: same text, same answer
            for rx in self.regexes:
                m = rx.search(text)
                if m is None:
                    continue
                if self.unless and any(u.search(text) for u in self.unless):
                    return None
                if self.confirm is not None:
                    judged = text
                    if self.confirm_as_sent and text is not v.raw and "&" in v.raw and html_escaped_text(v.raw):
                        judged = v.raw
                    try:
                        confirmed = self.confirm(judged)
                    except Exception as exc:  # one broken checker must not blind the other rules
                        log.warning("confirm step of rule %s failed: %r", self.rule.id, exc)
                        confirmed = None
                    if confirmed is None:
                        refuted = text  # another pattern matching this text would ask the same question
                        break
                    return f"{m.group(0)} [{confirmed}]"
                return m.group(0)
        return None


@dataclass(slots=True)
class Hit:
    rule: CompiledRule
    value: Value
    evidence: str


def bounded(pattern: str, limit: int = 64) -> str:
    """The pattern for Python `re`, with every repeated single atom (`[^x]*`, `.*`, `\\s+`, `\\(*`)
    capped at `limit` characters.

    An open repeat after a prefix that occurs everywhere in a hostile value (`((((...` against
    `[(]\\s*\\(*\\s*sleep`, `<a <a <a ...` against `<[a-z][^>]*on\\w+=`) makes backtracking
    quadratic; a cap keeps it linear. Decoding collapses long whitespace runs, so the cap is no
    padding evasion. Hyperscan keeps the open form: its scan stays a superset of what `re` confirms.
    Character classes are read as one atom (a `.*` inside `[...]` is not a repeat).
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            atom = pattern[i : i + 2]
            i += 2
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1  # a literal ] first in the class
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            atom = pattern[i : j + 1]
            i = j + 1
        elif c == ".":
            atom = c
            i += 1
        else:
            out.append(c)
            i += 1
            continue
        if i < n and pattern[i] in "*+":
            out.append(f"{atom}{{{0 if pattern[i] == '*' else 1},{limit}}}")
            i += 1
        else:
            out.append(atom)
    return "".join(out)


def compile_rule(rule: Rule, index: int, confirm: Confirm | None, observe: bool = False) -> CompiledRule:
    flags = re.ASCII | (re.IGNORECASE if rule.caseless else 0)
    zones, headers, skip = set(), set(), set()
    for z in rule.zones:
        base, _, name = z.partition(":")
        if name.startswith("!"):
            zones.add(base)
            skip.add(name[1:].lower())
        elif name:
            headers.add(name.lower())
        else:
            zones.add(base)
    return CompiledRule(
        rule=rule,
        index=index,
        regexes=tuple(re.compile(bounded(p), flags) for p in rule.patterns),
        unless=tuple(re.compile(p, flags) for p in rule.unless),
        views=tuple(rule.transforms),
        zones=frozenset(zones),
        header_names=frozenset(headers),
        header_skip=frozenset(skip),
        confirm=confirm,
        observe=observe,
        names=re.compile(rule.names, re.ASCII | re.IGNORECASE) if rule.names else None,
        severity=Severity(rule.score),
        finding_tags=(rule.attack_class, f"paranoia-level/{rule.paranoia}", *rule.tags),
        confirm_as_sent=rule.confirm in AS_SENT_IF_HTML_ESCAPED,
    )


def _encode(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate from %uD800 that surrogateescape cannot carry
        return text.encode("utf-8", "replace")


def _split_overflow(values: Sequence[Value]) -> list[Value]:
    """`values` with the overflow value (the values past zones.max_values, joined by newlines: see
    Collector.finish) back as one value per line. Joined, a value past the 1,024th lost its own start
    and end: a rule anchored there (`; cat /etc/passwd`, `sleep(5)` as the whole value) did not see
    it, and 6,000 strings were one text to confirm. A line costs ~1 us here, and a body is at most
    `limits.inspect_body_bytes` (64 KB by default) of them. (A string of several lines comes back
    as its lines: the joined text does not say where one value ended.)"""
    over = values[-1]
    return [*values[:-1], *(Value(over.zone, over.source, over.name, line) for line in over.raw.split("\n") if line)]


class Matcher:
    """All rules of one side (request or response), compiled once at start-up."""

    def __init__(self, rules: Sequence[CompiledRule], engine: str = "auto") -> None:
        self.rules = list(rules)
        self.exhausted = False  # the last match() ran out of CONFIRM_BUDGET before finishing
        self.views = tuple(dict.fromkeys(v for r in self.rules for v in r.views)) or ("raw",)
        self._derived_views = tuple(v for v in self.views if v in DERIVED_VIEWS)  # what all_views computes
        # Per zone group, the derived views of the rules that may select a value there: a view no such
        # rule reads is neither computed nor scanned (raw XML and unparsable bodies, `body`, are read by
        # rules on decode and jndi only, and a cmd, sql or path view of a kilobyte of text is not free).
        self._zone_views: dict[str, tuple[str, ...]] = {}
        for zone in ZONES:
            wanted = {v for r in self.rules if zone in r.zones or (zone == "headers" and r.header_names)
                      for v in r.views}
            self._zone_views[zone] = tuple(v for v in self._derived_views if v in wanted)
        self._pattern_rule: list[int] = []
        self._db: object | None = None
        # (zone, text) of a recurring value -> the rules its scan set off. The zone too: a zone group's
        # rules decide which views of a text are scanned (_zone_views), and a header and a cookie may
        # hold the same text.
        self._recurring_hits: dict[tuple[str, str], tuple[int, ...]] = {}
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
        base = _hs.HS_FLAG_MULTILINE
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
            db = _load_serialized(key)
        if db is None:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
            if len(exprs) > 1:
                _store_serialized(key, db)
        if len(_DB_CACHE) >= 16:
            _DB_CACHE.pop(next(iter(_DB_CACHE)))
        _DB_CACHE[key] = db
        return db

    # --- per request ---------------------------------------------------------------------------

    def candidates(self, values: Sequence[Value]) -> list[tuple[int, list[int] | None]]:
        """(rule index, indices of the values it may match, in value order) for every rule hyperscan
        saw, by rule.

        None instead of a list means "any value": no hyperscan, or a value so hostile that it
        produced more than MAX_EVENTS match events (then every rule is checked on every value,
        which is slower but bounded by the `re` checks, never by the attacker's repetitions).
        A recurring value (a header line or cookie seen before) is scanned once: what the scan found
        in it is kept (by its zone and text, which alone decide the scan) and reused on the next
        requests.
        """
        if self._db is None:
            return [(i, None) for i in range(len(self.rules))]
        found: dict[int, list[int]] = {}
        texts: list[str] = []
        owners: list[int] = []
        known_hits = self._recurring_hits
        scanned_recurring: list[int] = []
        all_views = self._derived_views
        zone_views = self._zone_views
        for vi, v in enumerate(values):
            if v.recurring:
                known = known_hits.get((v.zone, v.raw))
                if known is not None:
                    for ri in known:
                        seen_values = found.get(ri)
                        if seen_values is None:
                            found[ri] = [vi]
                        else:
                            seen_values.append(vi)
                    continue
                scanned_recurring.append(vi)
            if v.plain:  # every view is the raw value
                texts.append(v.raw)
                owners.append(vi)
                continue
            for text in v.all_views(zone_views.get(v.zone, all_views)):
                texts.append(text)
                owners.append(vi)
        if texts:
            if not self._scan(texts, owners, found, MAX_EVENTS) and not self._scan(
                texts, owners, found, EVENT_BUDGET
            ):
                return [(i, None) for i in range(len(self.rules))]
            if scanned_recurring:
                self._remember(values, scanned_recurring, found)
        out = sorted(found.items())
        for _, where in out:
            if len(where) > 1:
                where.sort()  # a kept result comes first: back to value order
        return out

    def _scan(self, texts: list[str], owners: list[int], found: dict[int, list[int]], limit: int) -> bool:
        """Scan `texts` (joined by newlines) and add to `found` which rules set off patterns in which
        values (`owners` names the value of each text). False past `limit` match events (`found`
        then holds part of the answer: a scan again with a higher limit completes it)."""
        joined = "\n".join(texts)
        ascii_only = joined.isascii()
        data = joined.encode("ascii") if ascii_only else _encode(joined)
        events: list[tuple[int, int]] = []  # (pattern id, end offset): attributed after the scan

        def on_match(pid: int, _from: int, to: int, _flags: int, _ctx: object) -> bool | None:
            events.append((pid, to))
            return True if len(events) > limit else None  # True stops the scan

        try:
            self._db.scan(data, on_match)  # type: ignore[attr-defined]  # (positional: no keyword parsing)
        except _hs.ScanTerminated:
            pass  # on_match stopped the scan: too many events
        if len(events) > limit:
            return False
        if len(events) > MAX_EVENTS:
            self._attribute_many(texts, owners, found, events, ascii_only)
            return True
        if events:
            # End offset (exclusive) of each text in `data`; a match belongs to the text it ends in.
            # (bytes: only the non-ASCII texts of a non-ASCII buffer need encoding to be measured)
            lengths = map(len, texts) if ascii_only else [len(t) if t.isascii() else len(_encode(t)) for t in texts]
            # text k ends where the lengths up to it and the k newlines before it do (C-level loops)
            ends = list(map(operator.add, itertools.accumulate(lengths), itertools.count()))
            last = len(owners) - 1
            pattern_rule = self._pattern_rule
            for pid, to in events:
                ri = pattern_rule[pid]
                k = bisect.bisect_left(ends, to)
                vi = owners[k if k <= last else last]
                seen_values = found.get(ri)
                if seen_values is None:
                    found[ri] = [vi]
                elif vi not in seen_values:
                    seen_values.append(vi)
        return True

    def _attribute_many(self, texts: list[str], owners: list[int], found: dict[int, list[int]],
                        events: list[tuple[int, int]], ascii_only: bool) -> None:
        """_scan's attribution for thousands of events: a pattern firing at every `",` of a bulk
        body names the same (rule, value) pair again and again, which a set settles at once where
        the per-rule list scan of the ordinary path would grow quadratic."""
        lengths = map(len, texts) if ascii_only else [len(t) if t.isascii() else len(_encode(t)) for t in texts]
        ends = list(map(operator.add, itertools.accumulate(lengths), itertools.count()))
        last = len(owners) - 1
        pattern_rule = self._pattern_rule
        seen = {(ri, vi) for ri, where in found.items() for vi in where}
        for pid, to in events:
            k = bisect.bisect_left(ends, to)
            pair = (pattern_rule[pid], owners[k if k <= last else last])
            if pair not in seen:
                seen.add(pair)
                seen_values = found.get(pair[0])
                if seen_values is None:
                    found[pair[0]] = [pair[1]]
                else:
                    seen_values.append(pair[1])

    def _remember(self, values: Sequence[Value], indices: list[int], found: dict[int, list[int]]) -> None:
        """Keep the rules the scan found in the recurring values `indices` (a match that began in the
        value before is kept too: a superset, which the `re` check settles)."""
        rules_of: dict[int, list[int]] = {vi: [] for vi in indices}
        for ri, where in found.items():
            for vi in where:
                hit = rules_of.get(vi)
                if hit is not None:
                    hit.append(ri)
        known_hits = self._recurring_hits
        if len(known_hits) + len(indices) > RECURRING_KEPT:
            known_hits.clear()
        for vi, rules in rules_of.items():
            v = values[vi]
            known_hits[(v.zone, v.raw)] = tuple(rules)

    def match(self, values: Sequence[Value], excluded: Excluded | None = None) -> list[Hit]:
        """At most one hit per rule: the first candidate value the rule confirms on."""
        self.exhausted = False
        if not values or not self.rules:
            return []
        if values[-1].source == "overflow":
            values = _split_overflow(values)
        hits: list[Hit] = []
        budget = CONFIRM_BUDGET
        for ri, where in self.candidates(values):
            cr = self.rules[ri]
            order: Sequence[Value] = values if where is None else [values[i] for i in where]
            for v in order:
                if not cr.wants(v):
                    continue
                if excluded is not None and excluded(cr, v):
                    continue
                if where is None and self._db is not None:  # without hyperscan every request is this slow path
                    budget -= len(v.raw) * len(cr.views) * len(cr.regexes)
                    if budget < 0:
                        self.exhausted = True
                        return hits
                evidence = cr.check(v)
                if evidence is not None:
                    hits.append(Hit(cr, v, evidence))
                    break
        return hits

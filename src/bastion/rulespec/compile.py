"""Rules compiled once at load time into plain predicates and getters: per request, only look-ups.

A compiled rule knows the phase in which it counts (the latest phase among its signals: a rule on
`status` counts in the complete phase, after the response was sent) and, when it blocks or
throttles, the phase in which its cooldown is enforced on the entity's next requests.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from bastion.exchange import Exchange
from bastion.rulespec.model import KEY_NAMES, DistinctCounter, RuleSpec, Scope, SumCounter, Test
from bastion.rulespec.signals import Kind, Signal, resolve
from bastion.rulespec.units import parse_duration, parse_size
from bastion.state.base import ALGO_NAMES, Algo
from bastion.verdict import Phase, Severity

Pred = Callable[[Exchange], bool]
KeyFn = Callable[[Exchange], str | None]


class RuleError(ValueError):
    """A rule that cannot be compiled; the message names the field."""


@dataclass(slots=True)
class CompiledRule:
    spec: RuleSpec
    id: str
    phase: Phase  # where the counter is hit
    check_phase: Phase | None  # where a triggered cooldown is enforced (rules acting on next requests)
    in_scope: Pred
    tests: tuple[Pred, ...]
    key: KeyFn
    cost: Callable[[Exchange], float | None]
    member: KeyFn | None
    algo: Algo
    limit: float
    window: float
    cooldown: float
    consume: bool
    observe: bool
    severity: Severity
    skip_own: bool
    approximate: bool = False

    def matches(self, ex: Exchange) -> bool:
        if self.skip_own and ex.response is not None and ex.response.from_bastion:
            return False
        return all(t(ex) for t in self.tests)


# --- scope ---------------------------------------------------------------------------------------


def glob_regex(pattern: str, *, path: bool = True) -> str:
    """`*` matches within one path segment, `**` across segments, `?` one character."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*" if path else ".*")
        elif c == "?":
            out.append("[^/]" if path else ".")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _alternation(patterns: list[str], *, path: bool = True, flags: int = 0) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("(?:" + "|".join(glob_regex(p, path=path) for p in patterns) + r")\Z", flags)


def _route_alternation(templates: list[str]) -> re.Pattern[str] | None:
    """Route templates match the catalog's route (`/users/{id}` itself) or, before the catalog
    has named the route, any path of that shape (`{id}` is one path segment)."""
    if not templates:
        return None
    alts = []
    for t in templates:
        alts.append(re.escape(t))
        shape = re.sub(r"\{[^/{}]*\}", "\x00", t)
        alts.append(glob_regex(shape).replace("\x00", "[^/]+"))
    return re.compile("(?:" + "|".join(alts) + r")\Z")


def compile_scope(scope: Scope, groups: dict[str, list[str]]) -> Pred:
    preds: list[Pred] = []
    if scope.methods:
        methods = frozenset(scope.methods)
        preds.append(lambda ex: ex.request.method.upper() in methods)
    sites = _alternation(scope.sites, path=False, flags=re.IGNORECASE)
    if sites is not None:
        preds.append(lambda ex: sites.match(ex.site) is not None)
    paths = _alternation(scope.paths)
    routes = _route_alternation(scope.routes)
    resolve_path = resolve("path").get
    if paths is not None or routes is not None:
        def where(ex: Exchange) -> bool:
            p = resolve_path(ex)
            assert isinstance(p, str)
            if paths is not None and paths.match(p):
                return True
            if routes is None:
                return False
            return routes.match(p) is not None or (bool(ex.route) and routes.match(ex.route) is not None)

        preds.append(where)
    if scope.groups:
        missing = [g for g in scope.groups if g not in groups]
        names = frozenset(scope.groups)
        pat = _alternation([p for g in scope.groups for p in groups.get(g, [])])
        if missing and pat is None:
            # Groups only known as tags (set by the catalog or another detector at run time).
            preds.append(lambda ex: not names.isdisjoint(ex.tags))
        else:
            def in_group(ex: Exchange) -> bool:
                if pat is not None:
                    p = resolve_path(ex)
                    if pat.match(p if isinstance(p, str) else "") or pat.match(ex.route or ""):
                        return True
                return not names.isdisjoint(ex.tags)

            preds.append(in_group)
    if not preds:
        return lambda ex: True
    if len(preds) == 1:
        return preds[0]
    all_preds = tuple(preds)
    return lambda ex: all(p(ex) for p in all_preds)


# --- tests ---------------------------------------------------------------------------------------


def _number(kind: Kind, v: object) -> float:
    if kind is Kind.DURATION:
        return parse_duration(v)
    if kind is Kind.SIZE:
        return parse_size(v)
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


def _text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _equals_fn(sig: Signal, want: object) -> Callable[[object], bool]:
    """Equality in the signal's terms: 404 == '404', status 404 matches '4xx', sizes parse units."""
    if sig.kind is Kind.STATUS and isinstance(want, str) and re.fullmatch(r"[1-5]xx", want.lower()):
        cls = int(want[0])
        return lambda v: isinstance(v, float) and int(v) // 100 == cls
    if sig.kind in (Kind.NUMBER, Kind.DURATION, Kind.SIZE, Kind.STATUS):
        n = _number(sig.kind, want)
        return lambda v: isinstance(v, float) and v == n
    s = _text(want).upper() if sig.name == "method" else _text(want)
    return lambda v: _text(v) == s


def _any(fn: Callable[[object], bool]) -> Callable[[object], bool]:
    """For set-valued signals (tags): a test holds when it holds for one member."""
    return lambda v: any(fn(x) for x in v) if isinstance(v, frozenset) else fn(v)


def compile_test(sig: Signal, t: Test) -> Pred:
    checks: list[Callable[[object], bool]] = []
    if t.equals is not None:
        checks.append(_any(_equals_fn(sig, t.equals)))
    if t.not_equals is not None:
        eq = _any(_equals_fn(sig, t.not_equals))
        checks.append(lambda v: not eq(v))
    if t.in_ is not None:
        fns = [_any(_equals_fn(sig, w)) for w in t.in_]
        checks.append(lambda v: any(f(v) for f in fns))
    if t.not_in is not None:
        nfns = [_any(_equals_fn(sig, w)) for w in t.not_in]
        checks.append(lambda v: not any(f(v) for f in nfns))
    if t.regex is not None:
        try:
            rx = re.compile(t.regex)
        except re.error as exc:
            raise ValueError(f"invalid regex {t.regex!r}: {exc}") from None
        checks.append(_any(lambda v: rx.search(_text(v)) is not None))
    if t.cidr is not None:
        nets = [ipaddress.ip_network(c, strict=False) for c in t.cidr]

        def in_cidr(v: object) -> bool:
            try:
                addr = ipaddress.ip_address(_text(v))
            except ValueError:
                return False
            return any(addr in n for n in nets)

        checks.append(_any(in_cidr))
    for op in ("gt", "ge", "lt", "le"):
        bound = getattr(t, op)
        if bound is None:
            continue
        if sig.kind in (Kind.TEXT, Kind.SET, Kind.IP) and not sig.name.startswith("json."):
            num_kind = Kind.NUMBER
        else:
            num_kind = sig.kind
        n = _number(num_kind, bound)
        cmp: Callable[[float], bool] = {
            "gt": lambda x, n=n: x > n, "ge": lambda x, n=n: x >= n,
            "lt": lambda x, n=n: x < n, "le": lambda x, n=n: x <= n,
        }[op]
        checks.append(_any(lambda v, cmp=cmp: _as_float(v) is not None and cmp(_as_float(v))))  # type: ignore[misc]
    get = sig.get
    present = t.present
    if present is False:
        return lambda ex: _absent(get(ex))
    all_checks = tuple(checks)

    def pred(ex: Exchange) -> bool:
        v = get(ex)
        if _absent(v):
            return False
        return all(c(v) for c in all_checks)

    return pred


def _absent(v: object) -> bool:
    return v is None or (isinstance(v, frozenset) and not v)


def _as_float(v: object) -> float | None:
    if isinstance(v, float):
        return v
    try:
        return float(str(v))
    except ValueError:
        return None


# --- keys ----------------------------------------------------------------------------------------


def _entity_key(kind: str) -> KeyFn:
    """An entity key; the behaviour engine may have set it already, else it is extracted here once."""

    def get(ex: Exchange) -> str | None:
        keys = ex.keys
        if kind not in keys and "fp" not in keys:
            from bastion.entity import KeySettings, extract_keys

            for k, v in extract_keys(ex, KeySettings()).items():
                keys.setdefault(k, v)
        return keys.get(kind)

    return get


def _network(bits4: int) -> KeyFn:
    bits6 = min(128, bits4 + 40)

    def get(ex: Exchange) -> str | None:
        ip = ex.client.ip
        if bits4 == 24 and "." in ip and ":" not in ip:
            head, sep, _ = ip.rpartition(".")
            return head + ".0/24" if sep else None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        bits = bits4 if addr.version == 4 else bits6
        return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))

    return get


def _key_part(name: str) -> tuple[KeyFn, Phase]:
    if name == "ip":
        return (lambda ex: ex.client.ip or None), Phase.REQUEST_HEADERS
    if name == "network" or name.startswith("network/"):
        bits = 24
        if "/" in name:
            tail = name.split("/", 1)[1]
            if not tail.isdigit() or not 1 <= int(tail) <= 32:
                raise ValueError(f"network prefix must be network/1..32 (IPv4 bits), got {name!r}")
            bits = int(tail)
        return _network(bits), Phase.REQUEST_HEADERS
    if name == "entity":
        # The attacker as the behaviour engine linked it (IPs, keys, sessions seen together).
        return (lambda ex: ex.entity or None), Phase.REQUEST_HEADERS
    if name in ("api_key", "user", "session", "fingerprint"):
        return _entity_key("fp" if name == "fingerprint" else name), Phase.REQUEST_HEADERS
    try:
        sig = resolve(name)
    except ValueError:
        raise ValueError(f"unknown key {name!r}; use {', '.join(KEY_NAMES)} or a signal such as header.NAME, "
                         "cookie.NAME, query.NAME, json.FIELD") from None
    get = sig.get
    return (lambda ex: None if (v := get(ex)) is None else _text(v)), sig.phase


def compile_key(parts: list[str]) -> tuple[KeyFn, Phase]:
    fns = []
    phase = Phase.REQUEST_HEADERS
    for p in parts:
        fn, ph = _key_part(p)
        fns.append(fn)
        phase = max(phase, ph)
    if len(fns) == 1:
        return fns[0], phase
    all_fns = tuple(fns)

    def tuple_key(ex: Exchange) -> str | None:
        vals = []
        for fn in all_fns:
            v = fn(ex)
            if v is None:
                return None
            vals.append(v)
        return "\x1f".join(vals)

    return tuple_key, phase


# --- the rule ------------------------------------------------------------------------------------

_RESPONSE_SIGNALS = frozenset({"status", "latency"})
_SEVERITY = {"notice": Severity.NOTICE, "warning": Severity.WARNING, "error": Severity.ERROR,
             "critical": Severity.CRITICAL}


def compile_rule(spec: RuleSpec, groups: dict[str, list[str]] | None = None) -> CompiledRule:
    """Compile one validated rule; RuleError names the field at fault."""
    groups = groups or {}
    phase = Phase.REQUEST_HEADERS
    tests: list[Pred] = []
    counted = ""
    if isinstance(spec.counter, SumCounter):
        counted = spec.counter.sum
    elif isinstance(spec.counter, DistinctCounter):
        counted = spec.counter.distinct
    # Rules on what the upstream answered skip Bastion's own answers (a ban must not feed itself).
    on_response = any(n in _RESPONSE_SIGNALS or n.startswith("response.") for n in (*spec.match, counted))
    for name, test in spec.match.items():
        try:
            sig = resolve(name)
            tests.append(compile_test(sig, test))
        except ValueError as exc:
            raise RuleError(f"match.{name}: {exc}") from None
        phase = max(phase, sig.phase)
    try:
        key, key_phase = compile_key(spec.key)
    except ValueError as exc:
        raise RuleError(f"key: {exc}") from None
    phase = max(phase, key_phase)
    cost: Callable[[Exchange], float | None]
    member: KeyFn | None = None
    algo = ALGO_NAMES[spec.algorithm]
    if isinstance(spec.counter, SumCounter):
        try:
            sig = resolve(spec.counter.sum)
        except ValueError as exc:
            raise RuleError(f"counter.sum: {exc}") from None
        get = sig.get
        cost = lambda ex: _as_float(v) if (v := get(ex)) is not None else None  # noqa: E731
        phase = max(phase, sig.phase)
    elif isinstance(spec.counter, DistinctCounter):
        try:
            sig = resolve(spec.counter.distinct)
        except ValueError as exc:
            raise RuleError(f"counter.distinct: {exc}") from None
        dget = sig.get
        member = lambda ex: None if (v := dget(ex)) is None else _text(v)  # noqa: E731
        cost = _one
        algo = Algo.DISTINCT
        phase = max(phase, sig.phase)
    else:
        cost = _one
    acts = spec.actions
    check_phase: Phase | None = None
    cooldown = acts.cooldown or 0.0
    if phase == Phase.COMPLETE:
        consume = True
        if acts.enforces:
            if key_phase == Phase.COMPLETE:
                raise RuleError("key: a rule that blocks or throttles needs a key known before the response")
            cooldown = cooldown or spec.window  # it acts on the next requests, for a while
    else:
        # A refused request does not use up quota; a request that is only scored, tagged or
        # slowed down is served and counts.
        consume = acts.block is None
    if acts.enforces and cooldown > 0:
        # Once triggered, every request of the key within the scope is refused (or slowed) for the
        # cooldown, not only the requests the rule counts.
        check_phase = key_phase
    return CompiledRule(
        spec=spec,
        id=spec.id,
        phase=phase,
        check_phase=check_phase,
        in_scope=compile_scope(spec.scope, groups),
        tests=tuple(tests),
        key=key,
        cost=cost,
        member=member,
        algo=algo,
        limit=spec.threshold,
        window=spec.window,
        cooldown=cooldown,
        consume=consume,
        observe=spec.mode == "observe",
        severity=_SEVERITY[acts.severity],
        skip_own=(not spec.include_own_responses) if spec.include_own_responses is not None else on_response,
        approximate=spec.approximate,
    )


def one(ex: Exchange) -> float:
    """The cost of a plain count (the detector recognises it to skip per-request work)."""
    return 1.0


_one = one

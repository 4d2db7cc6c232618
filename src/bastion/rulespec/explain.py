"""A rule in words (`bastion rules explain ID`): what it looks at, what it counts, what it does."""

from __future__ import annotations

from bastion.rulespec.compile import compile_rule
from bastion.rulespec.model import DistinctCounter, RuleSpec, SumCounter, Test
from bastion.rulespec.units import format_duration
from bastion.verdict import Phase

_KEYS = {
    "ip": "client IP",
    "network": "client network (/24 for IPv4, /64 for IPv6)",
    "api_key": "API key (hashed)",
    "user": "user",
    "session": "session (hashed)",
    "fingerprint": "client fingerprint",
    "entity": "linked entity (behaviour engine)",
    "site": "site",
    "route": "route",
    "path": "path",
    "method": "method",
}
_ALGOS = {
    "sliding_window": "sliding window",
    "token_bucket": "token bucket (bursts up to the threshold, refilled evenly over the window)",
    "fixed_window": "fixed window",
}


def _v(x: object) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _test_words(name: str, t: Test) -> str:
    parts = []
    if t.equals is not None:
        parts.append(f"is {_v(t.equals)}")
    if t.not_equals is not None:
        parts.append(f"is not {_v(t.not_equals)}")
    if t.in_ is not None:
        parts.append("is one of " + ", ".join(_v(x) for x in t.in_))
    if t.not_in is not None:
        parts.append("is none of " + ", ".join(_v(x) for x in t.not_in))
    if t.regex is not None:
        parts.append(f"matches /{t.regex}/")
    if t.cidr is not None:
        parts.append("is in " + ", ".join(t.cidr))
    for op, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        v = getattr(t, op)
        if v is not None:
            parts.append(f"{word} {_v(v)}")
    if t.present is True:
        parts.append("is present")
    if t.present is False:
        parts.append("is absent")
    return f"{name} " + " and ".join(parts)


def _key_words(parts: list[str]) -> str:
    return " + ".join(_KEYS.get(p, p) for p in parts)


def explain(spec: RuleSpec, groups: dict[str, list[str]] | None = None) -> str:
    """Plain sentences describing `spec` (compiled too, so the phase shown is the real one)."""
    rule = compile_rule(spec, groups)
    lines = [f"{spec.id}: {spec.description or '(no description)'}".rstrip()]
    sc = spec.scope
    where = []
    if sc.methods:
        where.append("methods " + ", ".join(sc.methods))
    if sc.sites:
        where.append("sites " + ", ".join(sc.sites))
    if sc.paths:
        where.append("paths " + ", ".join(sc.paths))
    if sc.routes:
        where.append("routes " + ", ".join(sc.routes))
    if sc.groups:
        where.append("endpoint groups " + ", ".join(sc.groups))
    lines.append("Applies to: " + ("; ".join(where) if where else "every request") + ".")
    what = " and ".join(_test_words(n, t) for n, t in spec.match.items()) or "every request in scope"
    when = {
        Phase.REQUEST_HEADERS: "when the request headers arrive",
        Phase.REQUEST_BODY: "when the request body has arrived",
        Phase.COMPLETE: "after the response was sent (acts on the next requests)",
    }[rule.phase]
    lines.append(f"Counts: {what}, {when}.")
    lines.append(f"Per: {_key_words(spec.key)} (requests without one are not counted).")
    c = spec.counter
    window = format_duration(spec.window)
    if isinstance(c, DistinctCounter):
        counter = f"distinct values of {c.distinct} within the last {window}"
    elif isinstance(c, SumCounter):
        counter = f"sum of {c.sum} over a {window} {_ALGOS[spec.algorithm]}"
    else:
        counter = f"number of matching requests over a {window} {_ALGOS[spec.algorithm]}"
    lines.append(f"Counter: {counter}.")
    lines.append(f"Triggers: when the counter goes above {spec.threshold:g}.")
    a = spec.actions
    acts = []
    cooldown = format_duration(rule.cooldown) if rule.cooldown else ""
    if a.block == 429:
        acts.append("refuses the request with 429 Too Many Requests, Retry-After and RateLimit headers"
                    + (f", and every request of the key in scope for {cooldown}" if cooldown else ""))
    elif a.block == 403:
        acts.append("refuses " + ("the key's next requests in scope" if rule.phase == Phase.COMPLETE
                                  else "the request and the key's next requests in scope")
                    + f" with 403 for {cooldown or window}")
    if a.throttle is not None:
        acts.append(f"delays requests by {format_duration(a.throttle)}" + (f" for {cooldown}" if cooldown else ""))
    if a.risk:
        acts.append(f"adds {a.risk:g} risk points to the entity" + (" (once per cooldown)" if rule.cooldown else ""))
    if a.tags:
        acts.append("tags the exchange " + ", ".join(a.tags))
    if a.alert:
        acts.append("raises an alert")
    lines.append("Then: " + "; ".join(acts) + ".")
    if spec.mode == "observe":
        lines.append("Mode: observe (reports what it would do, changes nothing).")
    else:
        lines.append("Mode: enforce.")
    if spec.approximate:
        lines.append("Approximate: counted locally and synchronised with shared state periodically.")
    return "\n".join(lines)

"""Rate and behaviour rules (the `rules:` config): counters keyed on any signal, shared through state.

Per request phase, every rule in scope that matches contributes one op (check-and-count), and all
of them go to the state backend in ONE call: memory answers inline, Redis in one pipelined script
call. Rules on response signals count in the complete phase (after the response was sent) and act
on the key's next requests through a cooldown kept in state. Findings only ask: the evaluator
decides (429 with Retry-After and RateLimit headers, 403, throttle), observe rules change nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable
from typing import Any

from bastion.clock import Clock
from bastion.config import BastionConfig
from bastion.engine.registry import BuildContext
from bastion.errors import ConfigError
from bastion.exchange import Exchange
from bastion.rulespec.compile import CompiledRule, one
from bastion.rulespec.loader import load_rules
from bastion.rulespec.model import DistinctCounter, SumCounter
from bastion.rulespec.units import format_duration
from bastion.state import Algo, Op, Outcome, Storage, StorageError, hash_value, make_key, open_storage
from bastion.state.approx import ApproxStorage
from bastion.verdict import Action, Finding, Phase, Severity

log = logging.getLogger("bastion.ratelimit")

_HIT, _CHECK = 0, 1
_SCOPE_CACHE_MAX = 4096
_KEY_CACHE_MAX = 65536
_HOOKS = {Phase.REQUEST_HEADERS: "request_headers", Phase.REQUEST_BODY: "request_body", Phase.COMPLETE: "complete"}
_VISIBLE_KEYS = frozenset({"ip", "network", "site", "route", "method"})

Plan = list[tuple[CompiledRule, int, str]]


class RateLimitDetector:
    """Evaluates compiled rules against one storage. Hooks exist only for phases that have rules."""

    name = "ratelimit"

    def __init__(
        self,
        rules: list[CompiledRule],
        storage: Storage,
        clock: Clock,
        *,
        prefix: str = "bastion:",
        fail_closed: bool = False,
        approx: ApproxStorage | None = None,
        owns_storage: bool = True,
    ) -> None:
        self.rules = rules
        self.storage = storage
        self.approx = approx
        self.owns_storage = owns_storage
        self.clock = clock
        self.prefix = prefix + "rl:"
        self.fail_closed = fail_closed
        self.observe = False
        self.failures = 0
        self.by_phase: dict[Phase, list[CompiledRule]] = {}
        for phase in _HOOKS:
            rs = [r for r in rules if r.phase == phase or r.check_phase == phase]
            if rs:
                self.by_phase[phase] = rs
                setattr(self, _HOOKS[phase], self._hook(phase))
        self._ops: dict[tuple[str, str, bool], Op] = {}
        self._scope_cache: dict[tuple[Phase, str, str, str, str, frozenset[str]], tuple[CompiledRule, ...]] = {}

    def _hook(self, phase: Phase) -> Any:
        def hook(ex: Exchange) -> Awaitable[None] | None:
            return self.run(ex, phase)

        return hook

    # --- per request -----------------------------------------------------------------------

    def _candidates(self, ex: Exchange, phase: Phase) -> tuple[CompiledRule, ...]:
        """Rules whose scope holds: scope depends only on these fields, so it is cached."""
        ck = (phase, ex.site, ex.request.method, ex.request.path, ex.route, frozenset(ex.tags) if ex.tags else _NO_TAGS)
        hit = self._scope_cache.get(ck)
        if hit is None:
            hit = tuple(r for r in self.by_phase[phase] if r.in_scope(ex))
            if len(self._scope_cache) >= _SCOPE_CACHE_MAX:
                self._scope_cache.clear()
            self._scope_cache[ck] = hit
        return hit

    def _op(self, r: CompiledRule, key: str, check: bool) -> Op:
        """The op of rule `r` for `key`, memoised: a count rule's op never changes, and hashing
        the key is the costliest step of a counter op in memory."""
        ck = (r.id, key, check)
        op = self._ops.get(ck)
        if op is None:
            if len(self._ops) >= _KEY_CACHE_MAX:
                self._ops.clear()
            skey = make_key(self.prefix, r.id, key)
            if check:
                op = Op(skey, Algo.COOLDOWN, r.limit, r.window, 0.0, "", skey + ":cd")
            else:
                op = Op(skey, r.algo, r.limit, r.window, 1.0, "", skey + ":cd" if r.cooldown else "",
                        r.cooldown, r.consume)
            self._ops[ck] = op
        return op

    def run(self, ex: Exchange, phase: Phase) -> Awaitable[None] | None:
        cands = self._candidates(ex, phase)
        if not cands:
            return None
        ops: list[Op] = []
        plan: Plan = []
        aops: list[Op] = []
        aplan: Plan = []
        approx = self.approx is not None
        for r in cands:
            if r.phase is phase and r.matches(ex):
                key = r.key(ex)
                if key is None:
                    continue
                op = self._op(r, key, False)
                if r.member is not None or r.cost is not one:
                    cost = r.cost(ex)
                    if cost is None or cost < 0 or math.isnan(cost):
                        continue
                    member = ""
                    if r.member is not None:
                        m = r.member(ex)
                        if m is None:
                            continue
                        member = hash_value(m, r.id)
                    op = Op(op.key, op.algo, op.limit, op.window, cost, member, op.block_key, op.cooldown,
                            op.consume)
                kind = _HIT
            elif r.check_phase is phase:
                key = r.key(ex)
                if key is None:
                    continue
                op = self._op(r, key, True)
                kind = _CHECK
            else:
                continue
            if approx and r.approximate:
                aops.append(op)
                aplan.append((r, kind, key))
            else:
                ops.append(op)
                plan.append((r, kind, key))
        now = self.clock.now()
        if aops and self.approx is not None:
            self._apply(ex, phase, aplan, self.approx.hit_sync(aops, now))
        if not ops:
            return None
        if self.storage.sync:
            self._apply(ex, phase, plan, self.storage.hit_sync(ops, now))
            return None
        return self._remote(ex, phase, plan, ops, now)

    async def _remote(self, ex: Exchange, phase: Phase, plan: Plan, ops: list[Op], now: float) -> None:
        try:
            outs = await self.storage.hit(ops, now)
        except StorageError:
            self._failed(ex, phase, plan)
            return
        self._apply(ex, phase, plan, outs)

    def _failed(self, ex: Exchange, phase: Phase, plan: Plan) -> None:
        """The backend failed (the client logs it once per interval): follow each rule's fail mode."""
        self.failures += 1
        if phase == Phase.COMPLETE:
            return
        for r, _, _ in plan:
            closed = self.fail_closed if r.spec.on_error == "inherit" else r.spec.on_error == "closed"
            if closed and r.spec.actions.enforces:
                ex.add(Finding(rule_id=r.id, detector=self.name, message="rate-limit state unavailable (fail closed)",
                               severity=Severity.CRITICAL, action=Action.BLOCK, status=503,
                               reason="inspection-failed", risk=0.0, observe=r.observe, tags=("ratelimit",)))
                return

    def _apply(self, ex: Exchange, phase: Phase, plan: Plan, outs: list[Outcome]) -> None:
        for (r, kind, key), o in zip(plan, outs, strict=True):
            if kind == _CHECK:
                if o.cooling > 0:
                    ex.add(self._finding(r, o, phase, key, fired=False))
            elif o.exceeded:  # most outcomes are not: this loop stays cheap
                fired = o.newly or o.cooling <= 0
                if not fired and phase == Phase.COMPLETE:
                    continue
                ex.add(self._finding(r, o, phase, key, fired=fired))
                if fired and r.spec.actions.tags:
                    ex.tags.update(r.spec.actions.tags)

    def _finding(self, r: CompiledRule, o: Outcome, phase: Phase, key: str, *, fired: bool) -> Finding:
        acts = r.spec.actions
        action: Action | None = None
        status: int | None = None
        reason = ""
        headers: tuple[tuple[str, str], ...] = ()
        retry: int | None = None
        delay = 0.0
        if phase != Phase.COMPLETE and acts.enforces:
            retry = max(1, math.ceil(max(o.reset, o.cooling)))
            if acts.block is not None:
                action, status = Action.BLOCK, acts.block
                if acts.block == 429:
                    reason = "rate-limited"
                    # draft-ietf-httpapi-ratelimit-headers: the policy (quota q per window w) and
                    # the state of the key (r remaining, t seconds until it resets).
                    headers = (
                        ("RateLimit-Policy", f'"{r.id}";q={r.limit:g};w={math.ceil(r.window)}'),
                        ("RateLimit", f'"{r.id}";r={int(o.remaining)};t={retry}'),
                    )
                else:
                    reason = "access-denied"
            else:
                action, delay = Action.THROTTLE, acts.throttle or 0.0
                retry = None
        tags = ("ratelimit", *acts.tags)
        if fired and acts.alert:
            tags = (*tags, "alert")
        if fired:
            message = f"{r.id}: {_counter_words(r)} {o.count:g} > {r.limit:g} within {format_duration(r.window)}"
        else:
            message = f"{r.id}: in cooldown for {o.cooling:.0f}s more"
        return Finding(
            rule_id=r.id,
            detector=self.name,
            message=message,
            severity=r.severity if fired else Severity.NOTICE,
            score=0,
            zone="rate",
            name=",".join(r.spec.key),
            evidence=_describe_key(r.spec.key, key),
            tags=tags,
            action=action,
            status=status,
            reason=reason,
            retry_after=retry,
            delay=delay,
            risk=(acts.risk or 0.0) if fired else 0.0,
            headers=headers,
            observe=r.observe,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def startup(self, pipeline: object = None) -> None:
        if self.owns_storage:
            await self.storage.start()
        if self.approx is not None:
            await self.approx.start()

    async def shutdown(self) -> None:
        if self.approx is not None:
            await self.approx.close()
        if self.owns_storage:
            await self.storage.close()


_NO_TAGS: frozenset[str] = frozenset()


def _counter_words(r: CompiledRule) -> str:
    c = r.spec.counter
    if isinstance(c, SumCounter):
        return f"sum of {c.sum}"
    if isinstance(c, DistinctCounter):
        return f"distinct {c.distinct}"
    return "count"


def _describe_key(parts: list[str], value: str) -> str:
    """Evidence names the key without leaking it: addresses are shown, anything else is hashed."""
    vals = value.split("\x1f")
    out = []
    for p, v in zip(parts, vals, strict=False):
        shown = v if (p in _VISIBLE_KEYS or p.startswith("network")) else "#" + hash_value(v)[:10]
        out.append(f"{p}={shown[:64]}")
    return " ".join(out)


def make(config: BastionConfig, ctx: BuildContext) -> RateLimitDetector | None:
    """The detector for the config's `rules:` (None when there are none). Raises ConfigError."""
    if config.rules.empty:
        return None
    rules = load_rules(config.rules)
    if not rules:
        return None
    st = config.state
    shared = ctx.services.get("state")
    owns = shared is None
    if shared is None:
        try:
            shared = open_storage(st.url, timeout=st.timeout)
        except ValueError as exc:
            raise ConfigError([f"state.url: {exc}"]) from None
        ctx.services["state"] = shared
    approx = None
    if not shared.sync and any(r.spec.approximate for r in rules):
        approx = ApproxStorage(shared, ctx.clock, st.sync_interval)
    fail_closed = (st.fail == "closed") or (st.fail == "inherit" and config.fail_mode == "closed")
    return RateLimitDetector(rules, shared, ctx.clock, prefix=st.prefix, fail_closed=fail_closed, approx=approx,
                             owns_storage=owns)

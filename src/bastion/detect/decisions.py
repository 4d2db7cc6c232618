"""The `decisions` detector: enforce allow/deny/challenge/throttle decisions, first in the pipeline.

At the connection phase only the address is known: a deny on it (or on a network containing it)
stops the exchange before anything is read. At request headers the exchange's keys are read and
linked into an entity (see bastion.entity), and decisions on any of its keys (API key, user,
session, fingerprint) apply too. A manual allow marks the exchange allow-listed: no detector runs.

Findings made here carry `risk=0`: a ban's own 403s must never feed the risk that made the ban.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bastion.config import BastionConfig
from bastion.decision import MANUAL_ORIGINS, Decision, DecisionAction, KeyKind, strongest
from bastion.detect.behaviour.core import BehaviourCore, get_core
from bastion.engine.pipeline import Pipeline
from bastion.engine.registry import BuildContext
from bastion.entity import Entity
from bastion.exchange import Exchange
from bastion.verdict import Action, Finding, Severity

_CHECKED = "decisions:ip"
_SOFTWARE = ("fp", "tls", "net")  # weak keys: their automatic decisions spare established users
# (kind, its key name): an enum member's `.value` is a property, costly on every request
_STRONG = tuple((k, k.value) for k in (KeyKind.API_KEY, KeyKind.USER, KeyKind.SESSION))
_KINDS = {k.value: k for k in KeyKind}
_SOFTWARE_KINDS = tuple((name, _KINDS[name]) for name in _SOFTWARE)


class DecisionsDetector:
    name = "decisions"

    def __init__(self, core: BehaviourCore, link: bool) -> None:
        self.core = core
        self.index = core.store.index
        self.clock = core.clock
        self.link = link  # behaviour on: read keys and link entities here, first of all detectors
        self.observe = False
        self._next_purge = 0.0
        # The risk detector's request-time check (RiskDetector.check), when it runs right after this
        # detector: it unhooks its own step and is called from here (see RiskDetector.startup).
        self.then: Callable[[Exchange, Entity, float], Awaitable[None] | None] | None = None

    def connection(self, ex: Exchange) -> None:
        ex.tags.add(_CHECKED)
        d = self.index.lookup_ip(ex.client.ip, self.clock.now())
        if d is not None:
            self._apply(ex, d)

    def request_headers(self, ex: Exchange) -> Awaitable[None] | None:
        now = self.clock.now()
        if now >= self._next_purge:  # expired decisions are ignored on lookup; free them now and then
            self._next_purge = now + 10.0
            self.index.purge(now)
        then = self.then
        if self.link:
            ent = self.core.observe(ex, now)
            if then is None:
                self.core.current = ex  # for the risk detector's own step, next (see RiskDetector)
        if _CHECKED not in ex.tags:
            d = self.index.lookup_ip(ex.client.ip, now)
            if d is not None:
                self._apply(ex, d)
                if ex.allowlisted:
                    return None  # (the pipeline runs no further detector)
                if d.action == DecisionAction.DENY:
                    return then(ex, ent, now) if then is not None else None
        if self.index.exact and len(ex.keys) > 1:
            keys = ex.keys
            d = None
            for kind, name in _STRONG:
                v = keys.get(name)
                if v:
                    found = self.index.lookup_key(kind, v, now)
                    if found is not None and (d is None or strongest((d, found)) is found):
                        d = found
            if d is None:
                d = self._software(ex, now)
            if d is not None:
                self._apply(ex, d)
        if then is not None and not ex.allowlisted:
            return then(ex, ent, now)
        return None

    def _software(self, ex: Exchange, now: float) -> Decision | None:
        """Decisions on client software (fingerprints): manual ones apply to everyone; automatic
        ones only to anonymous requesters without a normal history (see EntityGraph.follows_software)."""
        found = None
        for name, kind in _SOFTWARE_KINDS:
            v = ex.keys.get(name)
            if not v:
                continue
            d = self.index.lookup_key(kind, v, now)
            if d is None:
                continue
            if d.scope and d.scope != self.core.request_class(ex):
                continue
            if d.origin not in MANUAL_ORIGINS:
                ent = self.core.resolve(ex.keys)
                if ent is not None and not self.core.graph.follows_software(ent, ex.keys):
                    continue
            found = d
        return found

    def _apply(self, ex: Exchange, d: Decision) -> None:
        if d.action == DecisionAction.ALLOW:
            ex.allowlisted = True
            ex.tags.add("allowlisted")
            return
        now = self.clock.now()
        retry = d.remaining(now)
        if d.action == DecisionAction.DENY:
            action, reason, status = Action.BLOCK, "access-denied", 403
        elif d.action == DecisionAction.CHALLENGE:
            action, reason, status = Action.CHALLENGE, "challenge-required", 401
        else:
            action, reason, status = Action.THROTTLE, "", None
        ex.add(Finding(
            rule_id=f"decision-{d.origin.value}",
            detector=self.name,
            message=f"{d.action.value} decision on {d.kind.value} ({d.origin.value}): {d.reason}"[:200],
            severity=Severity.CRITICAL,
            action=action,
            status=status,
            reason=reason,
            retry_after=retry if action != Action.THROTTLE else None,
            delay=self.core.settings.risk.throttle_delay if action == Action.THROTTLE else 0.0,
            evidence=f"decision {d.id}",
            tags=("decision", d.origin.value),
            risk=0.0,
        ))

    def startup(self, pipeline: Pipeline) -> object:
        return self.core.start()

    def shutdown(self) -> object:
        return self.core.stop()


def make(config: BastionConfig, ctx: BuildContext) -> DecisionsDetector:
    core = get_core(config, ctx)
    return DecisionsDetector(core, link=config.behaviour.enabled)

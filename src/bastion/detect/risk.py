"""Entity risk: one decaying score per entity, fed by every finding, acted on in grades.

Every finding of a finished exchange adds risk points to the exchange's entity (`Finding.risk`
when the detector set it, otherwise derived from its anomaly score and severity). Risk decays
exponentially with `behaviour.risk.half_life`. At request time the entity's current risk maps to
an action: watch (a logged finding), throttle (a tarpit delay), challenge (401 problem+json), and
at `block` a Decision with an expiry that grows for repeat offenders (Fail2ban's increment).

A ban must not feed itself: findings of the `decisions` and `risk` detectors carry no points,
and an entity that is currently blocked gains no risk from the requests it keeps sending.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from bastion.config import BastionConfig
from bastion.decision import Decision, DecisionAction, KeyKind, Origin
from bastion.detect.stepup import Answer, Outcome
from bastion.entity import CLAIM, STRONG_KINDS, WEAK_KINDS, Entity, decayed
from bastion.exchange import Exchange
from bastion.verdict import Action, Finding, Phase, Severity

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from bastion.detect.behaviour.core import BehaviourCore
    from bastion.engine.pipeline import Pipeline
    from bastion.engine.registry import BuildContext

log = logging.getLogger("bastion.risk")
_SILENT = frozenset({"decisions", "risk"})
_DECIDABLE = frozenset({"ip", "fp", "tls", "net"}) | STRONG_KINDS
# Keys a risk delta names for the other instances: identities and addresses, never the software
# or network keys that many people share (another instance would raise them all).
_SHARED_KINDS = frozenset({"ip"}) | STRONG_KINDS
HISTORY = 16


_LOGIN_RULES = ("bhv-stuffing", "bhv-brute-force", "bhv-account-attack", "bhv-sequence", "bhv-ato-success")


def software_scope(ent: Entity) -> str:
    """What a fingerprint entity's risk is about: its block covers only those requests, so users
    who share the client software keep browsing while its logins (or lookups) are refused."""
    if ent.scope:
        return ent.scope
    rules = {r for _, r, _ in ent.history or ()}
    if rules and all(r.startswith(_LOGIN_RULES) for r in rules):
        return "login"
    if rules and all(r.startswith("bhv-enumeration") for r in rules):
        return "lookup"
    return ""


def subject_of(f: Finding) -> str:
    """The key a behaviour finding is about ('fp:ab12...'), from its `subject=` tag; '' if none."""
    for t in f.tags:
        if t.startswith("subject="):
            return t[8:]
    return ""


# Normal answers after which an entity with a clean record is not blocked by one behaviour firing
SEASONED = 1000


class RiskModel:
    """Decay, points, thresholds and blocks. Shared by the risk detector and the simulator."""

    def __init__(self, core: BehaviourCore) -> None:
        self.core = core
        self.s = core.settings.risk
        self.blocks = 0
        # Whether any client software or network (a weak key's entity: fp, tls, net) was ever given
        # risk or a block. Their risk and blocks come only through add() and block(): until then, the
        # request-time check has nothing to look for on them (see RiskDetector.check).
        self.soft = False

    def current(self, ent: Entity, now: float) -> float:
        return decayed(ent.risk, now - ent.risk_t, self.s.half_life)

    def add(self, ent: Entity, points: float, rule_id: str, now: float, *, share: bool = True) -> float:
        """Raise an entity's risk; other instances learn it too (a shared decisions store) unless
        the points came from one of them (`share=False`)."""
        if share and points > 0:
            keys = [m.key for m in ent.members if m.key.partition(":")[0] in _SHARED_KINDS][:8]
            if keys:
                self.core.store.share_risk(keys, points, rule_id, now)
        if not self.soft and ent.id.partition(":")[0] in WEAK_KINDS:
            self.soft = True
        r = self.current(ent, now) + points
        ent.risk = r
        ent.risk_t = now
        h = ent.history
        if h is None:
            h = ent.history = []
        h.append((now, rule_id, round(points, 1)))
        if len(h) > HISTORY:
            del h[0]
        return r

    def points(self, f: Finding) -> float:
        if f.risk is not None:
            return max(0.0, f.risk)
        if f.score > 0:
            return 2.0 * f.score
        if f.action is not None and f.action >= Action.CHALLENGE:
            return 2.0 * int(f.severity)
        return int(f.severity) / 2.0

    def feed(self, ex: Exchange) -> None:
        """Add the points of a finished exchange's findings to its entity (and to behaviour subjects)."""
        if not ex.findings:
            return
        core = self.core
        now = core.clock.now()
        ent = core.entity_of(ex)
        if ent is None:
            return
        cap = self.s.max_points_per_exchange
        derived = 0.0
        explicit: list[tuple[Finding, float]] = []
        top = ""
        for f in ex.findings:
            if f.observe or f.detector in _SILENT:
                continue
            p = self.points(f)
            if p <= 0:
                continue
            if f.risk is not None:
                explicit.append((f, p))
            else:
                derived += p
                top = top or f.rule_id
        if ent.blocked_until <= now and derived > 0:
            total = min(derived, cap)
            ent.hostile += 1
            if ent.hostile < self.s.exploit_share * (ent.hostile + ent.good):
                # Mixed traffic: each hostile request is refused by the detectors that flagged it,
                # and the source is watched, but its normal requests keep flowing. Only a source
                # whose traffic is mostly attacks (a tool, a bot) climbs to throttle and block.
                total = min(total, max(0.0, self.s.watch - self.current(ent, now)))
            else:
                # Exploits alone raise a source to the tarpit at most (risk.exploit_cap): every attack is
                # refused by the detectors that flagged it anyway, and the clean requests the source
                # sends next (a harness done with its attack list) are served, slowed
                total = min(total, max(0.0, self.s.exploit_cap - self.current(ent, now)))
            if total > 0:
                self.add(ent, total, top, now)
        touched: dict[int, Entity] = {id(ent): ent}
        # A finding raises the entity its subject belongs to. A fingerprint subject raises only the
        # fingerprint (never the user whose request happened to tip the count); one scenario
        # firing on several subjects raises the exchange's entity once.
        own: dict[str, float] = {}
        graph = core.graph
        # an unverified user (a forgeable claim) is no one's identity: its findings raise the requester
        claimed = f"user:{ex.keys.get('user')}" if ex.keys.get(CLAIM) == "unverified" else ""
        for f, p in explicit:
            subject = subject_of(f)
            node = graph.nodes.get(subject) if subject and subject != claimed else None
            if node is None or node.entity is ent:
                own[f.rule_id] = max(own.get(f.rule_id, 0.0), p)
                continue
            kind = subject.partition(":")[0]
            if kind in WEAK_KINDS:
                if not graph.popular(node):
                    t = node.entity
                    touched[id(t)] = t
                    if t.blocked_until <= now:
                        self.add(t, p, f.rule_id, now)
            elif kind == "ip":
                if not graph.popular(node):  # an address shared by identities is no one's
                    own[f.rule_id] = max(own.get(f.rule_id, 0.0), p)
            else:
                t = node.entity
                touched[id(t)] = t
                if t.blocked_until <= now:
                    self.add(t, p, f.rule_id, now)
        if ent.blocked_until <= now:
            seasoned = ent.good >= SEASONED and self.current(ent, now) < self.s.watch
            for rule, p in own.items():
                if seasoned and rule.startswith("bhv-"):
                    # an entity with a long normal history and a clean record (an integration's key)
                    # is tarpitted by one behaviour firing, not blocked outright: a repeat blocks
                    p = min(p, self.s.throttle)
                    seasoned = False
                self.add(ent, p, rule, now)
        if any(f.detector == "decisions" and f.action is not None and f.action >= Action.BLOCK for f in ex.findings):
            return  # a decision (perhaps another instance's, for this same risk) refused it already
        for t in touched.values():
            if t.blocked_until <= now and self.current(t, now) >= self.s.block:
                self.block(t, now)

    def block(self, ent: Entity, now: float, reason: str = "") -> list[Decision]:
        """Turn an entity's risk into deny decisions on its keys, for a time that grows per offence."""
        s = self.s
        ttl = min(s.block_ttl * s.block_growth ** ent.offenses, s.block_ttl_max)
        until = now + ttl
        if not self.soft and ent.id.partition(":")[0] in WEAK_KINDS:
            self.soft = True
        ent.offenses += 1
        ent.blocked_until = until
        explanation = tuple(explain(ent))
        cause = reason or (ent.history[-1][1] if ent.history else "risk")
        ent.risk = min(self.current(ent, now), s.watch)  # the block is the sanction; history stays
        ent.risk_t = now
        graph = self.core.graph
        out: list[Decision] = []
        scope = software_scope(ent) if ent.id.startswith(("fp:", "tls:", "net:")) else ""
        ent.scope = scope
        for m in ent.members[:96]:
            kind, _, value = m.key.partition(":")
            if kind not in _DECIDABLE or graph.popular(m):
                continue
            d = Decision(kind=KeyKind(kind), value=value, action=DecisionAction.DENY, origin=Origin.RISK,
                         until=until, reason=f"risk >= {s.block:g} ({cause}); offence {ent.offenses}",
                         explanation=explanation, created=now, scope=scope)
            self.core.store.add(d)
            out.append(d)
        self.blocks += 1
        return out


def explain(ent: Entity) -> list[str]:
    """The events that raised an entity's risk, oldest first: 'HH:MM:SS rule +points'."""
    return [f"{time.strftime('%H:%M:%S', time.gmtime(t))} {rule} +{pts:g}" for t, rule, pts in ent.history or ()]


class RiskDetector:
    """Request time: set ex.risk and act on it. After the response: feed the findings into risk."""

    name = "risk"

    def __init__(self, core: BehaviourCore) -> None:
        self.core = core
        self.model = core.risk
        self.s = core.settings.risk
        self.clock = core.clock
        self.observe = False
        self._sink = False

    def request_headers(self, ex: Exchange) -> Awaitable[None] | None:
        """The pipeline's hook, when the check is not chained to the decisions detector (see startup)."""
        core = self.core
        now = self.clock.now()
        if core.current is ex:  # linked by the decisions detector just now
            ent = ex.links.entity
            core.current = None
        else:
            ent = (core.resolve(ex.keys) if ex.entity else None) or core.observe(ex)
        return self.check(ex, ent, now)

    def check(self, ex: Exchange, ent: Entity, now: float) -> Awaitable[None] | None:
        """Request time: set ex.risk from the entity's risk (and its software's) and act on it."""
        if ent.blocked_until > now:
            self._act(ex, Action.BLOCK, "access-denied", 403, ent, "entity blocked",
                      retry=int(ent.blocked_until - now + 0.999))
            return None
        for f in ex.findings:
            if f.detector == "decisions" and f.action is not None and f.action >= Action.BLOCK:
                return None  # a decision refuses it already (perhaps another instance's, for this risk)
        risk = ent.risk if ent.risk <= 0.0 else self.model.current(ent, now)  # nothing to decay: no call
        if self.model.soft:  # (else no software or network was ever given risk: nothing to find)
            core = self.core
            graph = core.graph
            links = ex.links
            for node in links.soft if links is not None and links.epoch == graph.epoch else core.soft_nodes(ex):
                # weak keys (client software, network): their risk reaches only fresh anonymous
                # requesters, and only the kind of request it is about (logins, lookups)
                other = node.entity
                if other.risk <= 0.0 and other.blocked_until <= now:
                    continue  # the common case: nothing known against this software or network
                if (other is ent or graph.popular(node)
                        or not graph.follows_software(ent, ex.keys)
                        or software_scope(node.entity) not in ("", core.request_class(ex))):
                    continue
                if node.entity.blocked_until > now:
                    self._act(ex, Action.BLOCK, "access-denied", 403, node.entity,
                              "client fingerprint blocked" if node.key.startswith("fp:") else "network blocked",
                              retry=int(node.entity.blocked_until - now + 0.999))
                    return None
                risk = max(risk, self.model.current(node.entity, now))
        ex.risk = risk
        s = self.s
        if risk < s.watch:
            return None
        if risk >= s.block:
            self.model.block(ent, now)
            self._act(ex, Action.BLOCK, "access-denied", 403, ent, "risk over the block threshold",
                      retry=int(ent.blocked_until - now + 0.999))
        elif risk >= s.throttle and self.core.step_up is not None and self._passed(ex, now):
            # a user who answered a step-up code: watched, neither tarpitted nor challenged again
            self._act(ex, Action.LOG, "", None, ent, "step-up pass: risk over the throttle threshold")
        elif risk >= s.challenge:
            if s.challenge_enabled:
                return self._challenge(ex, ent, now)
            self._act(ex, Action.BLOCK, "access-denied", 403, ent, "risk over the challenge threshold")
        elif risk >= s.throttle:
            # the tarpit grows with risk: from throttle_delay at the threshold to 3x below challenge
            span = max(1e-9, s.challenge - s.throttle)
            delay = s.throttle_delay * (1.0 + 2.0 * (risk - s.throttle) / span)
            self._act(ex, Action.THROTTLE, "", None, ent, "risk over the throttle threshold", delay=delay)
        else:
            self._act(ex, Action.LOG, "", None, ent, "watched: risk over the watch threshold")
        return None

    def _passed(self, ex: Exchange, now: float) -> bool:
        su = self.core.step_up
        user = ex.keys.get("user")
        return su is not None and user is not None and CLAIM not in ex.keys and su.store.has_pass(user, now)

    def _challenge(self, ex: Exchange, ent: Entity, now: float) -> Awaitable[None] | None:
        """The challenge band: a step-up code for a verified user (see bastion.detect.stepup); a
        plain 401 without step-up, without a user key or with an unverified one (a Basic-auth name, a
        JWT `sub` without `entity.jwt` keys: a code must not go to whoever a client claims to be), or
        in observe mode (no code is sent). With the Redis store the answer is awaited (returned to
        the pipeline as an awaitable)."""
        su = self.core.step_up
        user = ex.keys.get("user")
        if su is None or not user or CLAIM in ex.keys or self.observe or self.core.config.mode == "observe":
            self._act(ex, Action.CHALLENGE, "challenge-required", 401, ent, "risk over the challenge threshold")
            return None
        value = ex.request.headers.get(su.header)
        if su.remote is not None:
            return self._challenge_remote(ex, ent, now, user, value)
        self._answered(ex, ent, now, su.answer(user, value, now, ex.id))
        return None

    async def _challenge_remote(self, ex: Exchange, ent: Entity, now: float, user: str, value: str | None) -> None:
        su = self.core.step_up
        assert su is not None
        self._answered(ex, ent, now, await su.answer_async(user, value, now, ex.id))

    def _answered(self, ex: Exchange, ent: Entity, now: float, ans: Answer) -> None:
        su = self.core.step_up
        assert su is not None
        outcome, ch = ans.outcome, ans.challenge
        if outcome is Outcome.PASSED:
            assert ch is not None
            self._step_up_finding(ex, "step-up-passed", 0.0, f"step-up code verified: pass for {su.s.pass_ttl:g} s",
                                  ch.id, Action.LOG)
            log.info("step-up challenge %s verified; pass for %g s", ch.id, su.s.pass_ttl)
            return
        if ans.passed:  # a pass this instance learnt from the shared store
            self._act(ex, Action.LOG, "", None, ent, "step-up pass: risk over the challenge threshold")
            return
        if outcome is not None:
            points = 0.0 if outcome is Outcome.EXPIRED else su.s.fail_risk
            self._step_up_finding(ex, f"step-up-{outcome.value}", points, f"step-up code refused ({outcome.value})",
                                  ch.id if ch is not None else "")
            if outcome is Outcome.EXHAUSTED:
                self.model.block(ent, now, reason="step-up-exhausted")
                self._act(ex, Action.BLOCK, "access-denied", 403, ent, "step-up attempts exhausted",
                          retry=int(ent.blocked_until - now + 0.999))
                return
        if ch is None:  # no code could be sent now (rate cap, store down): the plain challenge
            self._act(ex, Action.CHALLENGE, "challenge-required", 401, ent, "risk over the challenge threshold")
            return
        self._act(ex, Action.CHALLENGE, "challenge-required", 401, ent,
                  "risk over the challenge threshold; step-up challenge", extra=su.problem(ch, now),
                  headers=(("WWW-Authenticate", f'Bastion-Step-Up challenge_id="{ch.id}", header="{su.header}"'),))

    @staticmethod
    def _step_up_finding(ex: Exchange, rule: str, points: float, message: str, cid: str,
                         action: Action | None = None) -> None:
        """A step-up event. Its detector is not `risk`, so a refused code's points count."""
        ex.add(Finding(rule_id=rule, detector="step_up", message=message,
                       severity=Severity.NOTICE if points == 0 else Severity.WARNING, action=action,
                       evidence=f"challenge {cid}" if cid else "", tags=("step-up",), risk=points))

    def _act(self, ex: Exchange, action: Action, reason: str, status: int | None, ent: Entity, why: str,
             retry: int | None = None, delay: float = 0.0, extra: tuple[tuple[str, str | int], ...] = (),
             headers: tuple[tuple[str, str], ...] = ()) -> None:
        trail = "; ".join(explain(ent)[-4:])
        ex.add(Finding(
            rule_id=f"risk-{action.name.lower()}",
            detector=self.name,
            message=f"{why}: entity {ent.id[:40]} risk {ex.risk:.0f}"[:200],
            severity=Severity.WARNING if action <= Action.THROTTLE else Severity.CRITICAL,
            action=action,
            status=status,
            reason=reason,
            retry_after=retry,
            delay=delay,
            evidence=trail[:300],
            tags=("risk",),
            risk=0.0,
            extra=extra,
            headers=headers,
        ))

    def complete(self, ex: Exchange) -> None:
        if not self._sink:  # no pipeline sink (startup not run): feed what is known now
            self.model.feed(ex)

    def exchange_done(self, ex: Exchange) -> None:
        """As a pipeline sink: runs after every complete hook, so it sees every finding."""
        if ex.findings and not ex.allowlisted:  # (feed has nothing to add without findings)
            self.model.feed(ex)

    def startup(self, pipeline: Pipeline) -> object:
        sinks: list[object] = pipeline.sinks  # type: ignore[assignment]  # duck-typed: exchange_done(ex)
        if self not in sinks:
            sinks.append(self)
        self._sink = True
        pipeline.unhook(self.name, Phase.COMPLETE)  # the sink feeds: the complete hook would only return
        self._chain(pipeline)
        return self.core.start()

    def _chain(self, pipeline: Pipeline) -> None:
        """Run the request-time check from the decisions detector's hook instead of a step of its own,
        when that detector links this core's entities and runs right before this one (no other
        request-headers hook between them) with the same observe mode: its findings are then stamped
        alike, and the pipeline runs one step less per request. The decisions detector calls the
        check exactly when the pipeline would have run this step (not for an allow-listed exchange)."""
        from bastion.detect.decisions import DecisionsDetector

        dets = pipeline.detectors
        me = next((i for i, d in enumerate(dets) if d is self), -1)
        for i in range(me - 1, -1, -1):
            d = dets[i]
            if isinstance(d, DecisionsDetector):
                if (d.link and d.core is self.core and d.then is None
                        and bool(getattr(d, "observe", False)) == bool(self.observe)):
                    d.then = self.check
                    pipeline.unhook(self.name, Phase.REQUEST_HEADERS)
                return
            if getattr(d, "request_headers", None) is not None:
                return  # another detector's hook runs between them: keep the order of the steps

    def shutdown(self) -> object:
        return self.core.stop()


def make(config: BastionConfig, ctx: BuildContext) -> RiskDetector | None:
    if not config.behaviour.enabled:
        return None
    from bastion.detect.behaviour.core import get_core

    return RiskDetector(get_core(config, ctx))

"""The one evaluator: findings in, verdict out.

Detectors only report. This module alone decides, so that every block has one explanation:
the non-observe findings of the exchange, their actions and their anomaly points.
"""

from __future__ import annotations

from bastion.config import BastionConfig
from bastion.errors import problem_for
from bastion.exchange import Exchange
from bastion.verdict import Action, Finding, Phase, Verdict

_RESPONSE_PHASES = (Phase.RESPONSE_HEADERS, Phase.RESPONSE_BODY)
_ALLOW = Action.ALLOW  # (a module global: an enum member read costs ~1.5k instructions on Python 3.11)


class Evaluator:
    def __init__(self, config: BastionConfig) -> None:
        self.inbound_threshold = config.scoring.inbound_threshold
        self.outbound_threshold = config.scoring.outbound_threshold
        self.observe = config.mode == "observe"
        # The ALLOW verdict of a clean exchange, one per response status: built once and shared
        # (verdicts are never changed once made), not once per exchange.
        self._allow: dict[int, Verdict] = {}

    def evaluate(self, ex: Exchange) -> Verdict | None:
        """Return a verdict if the exchange must be stopped (or would be, in observe mode)."""
        strongest: Finding | None = None
        inbound = outbound = 0
        for f in ex.findings:
            if f.observe:
                continue
            if f.phase in _RESPONSE_PHASES:
                outbound += f.score
            else:
                inbound += f.score
            if f.action is not None and (strongest is None or f.action > (strongest.action or 0)):
                strongest = f
        verdict: Verdict | None = None
        action = strongest.action if strongest is not None and strongest.action is not None else Action.ALLOW
        if strongest is not None and action >= Action.CHALLENGE and not (
                action == Action.CHALLENGE and inbound >= self.inbound_threshold):
            # (a request that is itself an attack is refused as one: no step-up code makes it fine)
            verdict = self._explicit(strongest, ex, inbound + outbound)
        elif inbound >= self.inbound_threshold:
            verdict = self._scored("request-blocked", 403, ex, inbound, response=False)
        elif outbound >= self.outbound_threshold:
            verdict = self._scored("response-blocked", 502, ex, outbound, response=True)
        elif strongest is not None and action == Action.THROTTLE:
            # Slowed down, then served: a tarpit for a client that is suspicious, not proven hostile.
            verdict = Verdict(Action.THROTTLE, delay=strongest.delay, score=inbound,
                              rule_ids=(strongest.rule_id,))
        if verdict is None:
            return None
        if self.observe and verdict.action >= Action.THROTTLE:
            # Observe mode never changes what the client gets; the event says what would have happened.
            return Verdict(
                Action.LOG,
                status=verdict.status,
                reason=verdict.reason,
                title=verdict.title,
                score=verdict.score,
                rule_ids=verdict.rule_ids,
                would_block=True,
            )
        return verdict

    def final(self, ex: Exchange) -> Verdict:
        """The verdict recorded for an exchange that was not stopped."""
        if ex.verdict is not None:
            return ex.verdict
        status = ex.response.status if ex.response else 0
        if ex.findings:
            return Verdict(Action.LOG, status=status, score=ex.score, rule_ids=tuple(f.rule_id for f in ex.findings))
        allow = self._allow.get(status)
        if allow is None:
            if len(self._allow) >= 1024:  # statuses are the upstream's to choose: keep the memo bounded
                self._allow.clear()
            allow = self._allow[status] = Verdict(_ALLOW, status=status)
        return allow

    @staticmethod
    def _explicit(f: Finding, ex: Exchange, score: int) -> Verdict:
        assert f.action is not None
        reason = f.reason or ("challenge-required" if f.action == Action.CHALLENGE else "request-blocked")
        status, title = problem_for(reason, f.status)
        return Verdict(
            f.action,
            status=status,
            reason=reason,
            title=title,
            score=score,
            rule_ids=tuple(x.rule_id for x in ex.findings if not x.observe),
            retry_after=f.retry_after,
            headers=f.headers,
            close=status in (400, 408, 413, 414, 431),
            extra=f.extra,
        )

    @staticmethod
    def _scored(reason: str, status: int, ex: Exchange, score: int, response: bool) -> Verdict:
        status, title = problem_for(reason, status)
        rule_ids = tuple(
            f.rule_id for f in ex.findings if not f.observe and (f.phase in _RESPONSE_PHASES) == response
        )
        return Verdict(Action.BLOCK, status=status, reason=reason, title=title, score=score, rule_ids=rule_ids)

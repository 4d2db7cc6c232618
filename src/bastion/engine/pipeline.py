"""The pipeline: ordered detectors, run phase by phase over one Exchange, then one evaluator.

Front-ends (proxy, ASGI middleware, log replay) drive an exchange through the phases in order and
stop early when a phase returns a blocking verdict. `complete()` runs after the response was sent;
its awaitable work is scheduled, never awaited on the request path.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion.clock import Clock, SystemClock
from bastion.config import BastionConfig
from bastion.engine.detector import HOOKS, Detector
from bastion.engine.scoring import Evaluator
from bastion.exchange import Client, Exchange, Headers, Request
from bastion.verdict import Action, Finding, Phase, Severity, Verdict

log = logging.getLogger("bastion.engine")

Hook = Callable[[Exchange], Awaitable[None] | None]

# Enum members read on every exchange, as module constants: on Python 3.11 `Phase.COMPLETE` goes
# through EnumType's __getattr__ hook (~1.5k instructions per read), a module global does not.
_COMPLETE = Phase.COMPLETE
_THROTTLE = Action.THROTTLE
_CHALLENGE = Action.CHALLENGE
PhaseTail = Coroutine[Any, Any, "Verdict | None"]  # the rest of a phase, after a hook went async


@dataclass(slots=True)
class _Step:
    detector: str
    hook: Hook
    observe: bool


@dataclass(slots=True)
class Counters:
    """Process-local engine counters, read by the metrics endpoint."""

    exchanges: int = 0
    blocked: int = 0
    logged: int = 0
    detector_errors: dict[str, int] = field(default_factory=dict)
    findings_by_rule: dict[str, int] = field(default_factory=dict)


class ExchangeSink:
    """Receives every finished exchange (events, logs, metrics). Must not block."""

    def exchange_done(self, ex: Exchange) -> None:  # pragma: no cover - protocol
        raise NotImplementedError


class Pipeline:
    def __init__(
        self,
        config: BastionConfig,
        detectors: Sequence[Detector],
        *,
        clock: Clock | None = None,
        sinks: Sequence[ExchangeSink] = (),
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        # The clock's readers, bound once; SystemClock's are time.time/time.monotonic themselves
        # (a Python method call fewer per read, three reads per exchange).
        if type(self.clock) is SystemClock:
            self._now: Callable[[], float] = time.time
            self._monotonic: Callable[[], float] = time.monotonic
        else:
            self._now, self._monotonic = self.clock.now, self.clock.monotonic
        self.detectors = list(detectors)
        self.evaluator = Evaluator(config)
        self.fail_closed = config.fail_mode == "closed"
        self.sinks = list(sinks)
        self.counters = Counters()
        self._background: set[asyncio.Task[None]] = set()
        self._steps: dict[Phase, list[_Step]] = {p: [] for p in Phase}
        for det in self.detectors:
            observe = bool(getattr(det, "observe", False))
            for phase, hook_name in HOOKS.items():
                hook = getattr(det, hook_name, None)
                if hook is not None:
                    self._steps[phase].append(_Step(det.name, hook, observe))

    def unhook(self, detector: str, phase: Phase) -> None:
        """Stop calling a detector's hook for one phase (it does that work elsewhere now, e.g. as a sink)."""
        self._steps[phase] = [s for s in self._steps[phase] if s.detector != detector]

    def wants(self, phase: Phase) -> bool:
        """Whether any detector hooks this phase (front-ends skip buffering for phases nobody reads)."""
        return bool(self._steps[phase])

    # --- building exchanges ------------------------------------------------------------------

    def new_exchange(
        self,
        client: Client,
        method: str,
        target: str,
        headers: Headers,
        http_version: str = "1.1",
        request_id: str | None = None,
        host: str | None = None,
    ) -> Exchange:
        """`host`: the (one) Host value, stripped, when the caller has it already; else looked up."""
        if host is None:
            host = (headers.get("host") or "").strip()
        # Positional arguments, in field order (tests/test_pipeline.py checks them against the
        # keyword form): a class called with keywords has them packed into a dict by type_call and
        # unpacked again for __init__, ~40 % more instructions for the two objects on Python 3.11.
        req = Request(method, target, headers, http_version, b"", 0, False, host)
        return Exchange(
            request_id or new_request_id(), client, req, self._now(), self._monotonic(), None, None, "",
            host.rsplit(":", 1)[0].lower() if host and not host.endswith("]") else host.lower(),
            {"ip": client.ip},
        )

    # --- phases ------------------------------------------------------------------------------

    async def run(self, phase: Phase, ex: Exchange) -> Verdict | None:
        """Run one blocking phase; return a verdict when the exchange must be stopped or throttled."""
        result = self.run_now(phase, ex)
        if result is None or isinstance(result, Verdict):
            return result
        return await result

    def run_now(self, phase: Phase, ex: Exchange) -> Verdict | PhaseTail | None:
        """Run a phase synchronously as far as its hooks allow.

        Most hooks are synchronous; running them without a coroutine saves the proxy a task per
        phase per request. When a hook returns an awaitable, the rest of the phase continues in the
        returned coroutine, which the caller awaits (or schedules).
        """
        if ex.allowlisted or not self._steps[phase]:
            return None
        return self._advance(phase, ex, 0, len(ex.findings))

    def _advance(self, phase: Phase, ex: Exchange, i: int, before: int) -> Verdict | PhaseTail | None:
        """Run the steps of `phase` from the i-th on; `before` is where this phase's findings start."""
        steps = self._steps[phase]
        findings = ex.findings  # (the list object: detectors append to it, never replace it)
        while i < len(steps):
            step = steps[i]
            mark = len(findings)
            try:
                result = step.hook(ex)
            except Exception as exc:
                self._detector_failed(step, ex, phase, exc)
                result = None
            if result is not None:
                return self._after_await(phase, ex, i, result, before, mark)
            if len(findings) > mark:
                self._stamp(findings, mark, phase, step.observe)
            if ex.allowlisted:
                return None
            i += 1
        if len(findings) == before:  # nothing found: no _conclude call (the usual case)
            return None
        return self._conclude(ex, before)

    async def _after_await(
        self, phase: Phase, ex: Exchange, i: int, pending: Awaitable[None], before: int, mark: int
    ) -> Verdict | None:
        step = self._steps[phase][i]
        try:
            await pending
        except Exception as exc:
            self._detector_failed(step, ex, phase, exc)
        if len(ex.findings) > mark:
            self._stamp(ex.findings, mark, phase, step.observe)
        if ex.allowlisted:
            return None
        rest = self._advance(phase, ex, i + 1, before)
        if rest is None or isinstance(rest, Verdict):
            return rest
        return await rest

    def _conclude(self, ex: Exchange, before: int) -> Verdict | None:
        if len(ex.findings) == before:
            return None
        verdict = self.evaluator.evaluate(ex)
        if verdict is None:
            return None
        ex.verdict = verdict  # LOG verdicts (observe mode) are recorded and served
        return verdict if verdict.action >= _THROTTLE else None

    async def connection(self, ex: Exchange) -> Verdict | None:
        return await self.run(Phase.CONNECTION, ex)

    async def request_headers(self, ex: Exchange) -> Verdict | None:
        return await self.run(Phase.REQUEST_HEADERS, ex)

    async def request_body(self, ex: Exchange) -> Verdict | None:
        return await self.run(Phase.REQUEST_BODY, ex)

    async def response_headers(self, ex: Exchange) -> Verdict | None:
        return await self.run(Phase.RESPONSE_HEADERS, ex)

    async def response_body(self, ex: Exchange) -> Verdict | None:
        return await self.run(Phase.RESPONSE_BODY, ex)

    def block(self, ex: Exchange, finding: Finding) -> Verdict:
        """Record a refusal decided by the front-end itself (malformed HTTP, limits, timeouts)."""
        ex.add(finding)
        verdict = self.evaluator.evaluate(ex) or Verdict(Action.BLOCK, status=finding.status or 400)
        if verdict.action < Action.THROTTLE and finding.action == Action.BLOCK:
            # Protocol errors are not optional: even observe mode cannot forward a request
            # whose framing is broken (that would be request smuggling by the gateway itself).
            verdict = Evaluator._explicit(finding, ex, ex.score)
        ex.verdict = verdict
        return verdict

    def complete(self, ex: Exchange) -> None:
        """After the response: run complete hooks, then hand the exchange to the sinks."""
        if ex.duration is None:
            ex.duration = max(0.0, self._monotonic() - ex.started_mono)
        steps = self._steps[_COMPLETE]
        if not steps or ex.allowlisted:  # nothing to run: no list, no loop
            self._finish(ex)
            return
        pending: list[Awaitable[None]] = []
        for step in steps:
            mark = len(ex.findings)
            try:
                result = step.hook(ex)
                if result is not None:
                    pending.append(result)
            except Exception as exc:
                self._detector_failed(step, ex, _COMPLETE, exc)
            if len(ex.findings) > mark:
                self._stamp(ex.findings, mark, _COMPLETE, step.observe)
        if pending:
            task = asyncio.ensure_future(self._finish_later(ex, pending))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            self._finish(ex)

    async def _finish_later(self, ex: Exchange, pending: list[Awaitable[None]]) -> None:
        for aw in pending:
            try:
                await aw
            except Exception as exc:
                log.warning("complete-phase work failed: %s", type(exc).__name__)
        self._finish(ex)

    def _finish(self, ex: Exchange) -> None:
        verdict = ex.verdict
        if verdict is None:
            verdict = ex.verdict = self.evaluator.final(ex)
        c = self.counters
        c.exchanges += 1
        findings = ex.findings
        if verdict.action >= _CHALLENGE:  # Verdict.blocks, without the property call
            c.blocked += 1
        elif findings:
            c.logged += 1
        if findings:
            by_rule = c.findings_by_rule
            for f in findings:
                by_rule[f.rule_id] = by_rule.get(f.rule_id, 0) + 1
        for sink in self.sinks:
            try:
                sink.exchange_done(ex)
            except Exception as exc:  # a sink must never take the gateway down
                log.warning("sink %s failed: %s", type(sink).__name__, type(exc).__name__)

    async def drain(self) -> None:
        """Wait for scheduled complete-phase work (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def startup(self) -> None:
        for det in self.detectors:
            fn = getattr(det, "startup", None)
            if fn is not None:
                res = fn(self)
                if inspect.isawaitable(res):
                    await res

    async def shutdown(self) -> None:
        await self.drain()
        for det in self.detectors:
            fn = getattr(det, "shutdown", None)
            if fn is not None:
                try:
                    res = fn()
                    if inspect.isawaitable(res):
                        await res
                except Exception as exc:
                    log.warning("detector %s shutdown failed: %s", det.name, exc)

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _stamp(findings: list[Finding], start: int, phase: Phase, observe: bool) -> None:
        for i in range(start, len(findings)):
            f = findings[i]
            f.phase = phase
            if observe:
                f.observe = True

    def _detector_failed(self, step: _Step, ex: Exchange, phase: Phase, exc: BaseException) -> None:
        n = self.counters.detector_errors.get(step.detector, 0) + 1
        self.counters.detector_errors[step.detector] = n
        ex.errors.append(step.detector)
        if n == 1 or n % 1000 == 0:  # log the first failure and then every thousandth, not a flood
            log.error("detector %s failed in %s (%d so far): %r", step.detector, phase.name.lower(), n, exc)
        if self.fail_closed and phase != Phase.COMPLETE:
            ex.add(
                Finding(
                    rule_id="bastion-fail-closed",
                    detector=step.detector,
                    message="inspection failed and fail_mode is closed",
                    severity=Severity.CRITICAL,
                    action=Action.BLOCK,
                    reason="inspection-failed",
                    status=503,
                    observe=step.observe,
                )
            )


def new_request_id() -> str:
    return secrets.token_hex(8)


def valid_request_id(value: str | None) -> bool:
    """A client-supplied X-Request-Id is kept only if it is short and plain (no log injection)."""
    if not value or len(value) > 64:
        return False
    return value.isascii() and all(c.isalnum() or c in "-_.:" for c in value)



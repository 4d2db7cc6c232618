"""The engine's contract: phases in order, detectors report, one evaluator decides."""

from __future__ import annotations

import asyncio

from bastion.clock import ManualClock
from bastion.config import BastionConfig, DetectorSettings
from bastion.engine.pipeline import Pipeline
from bastion.exchange import Client, Exchange, Headers, Response
from bastion.verdict import Action, Finding, Phase, Severity


class HeaderFlag:
    """Adds critical points when the request carries x-evil."""

    name = "flag"

    def request_headers(self, ex: Exchange) -> None:
        if "x-evil" in ex.request.headers:
            ex.add(Finding("t-1", self.name, "evil header", Severity.CRITICAL, score=5))


class Warn:
    name = "warn"

    def request_headers(self, ex: Exchange) -> None:
        ex.add(Finding("t-2", self.name, "odd", Severity.WARNING, score=3))


class AsyncDeny:
    name = "async-deny"

    async def request_body(self, ex: Exchange) -> None:
        await asyncio.sleep(0)
        if ex.request.body == b"deny":
            ex.add(Finding("t-3", self.name, "denied", action=Action.BLOCK, reason="access-denied"))


class Boom:
    name = "boom"

    def request_headers(self, ex: Exchange) -> None:
        raise RuntimeError("bug in a detector")


class Recorder:
    def __init__(self) -> None:
        self.done: list[Exchange] = []

    def exchange_done(self, ex: Exchange) -> None:
        self.done.append(ex)


class Learner:
    name = "learner"

    def __init__(self) -> None:
        self.seen = 0

    async def complete(self, ex: Exchange) -> None:
        await asyncio.sleep(0)
        self.seen += 1


def make(pipeline: Pipeline, headers: list[tuple[str, str]] | None = None) -> Exchange:
    return pipeline.new_exchange(Client("127.0.0.9"), "GET", "/a?b=1", Headers(headers or [("Host", "api")]))


async def test_scored_block_and_clean_pass() -> None:
    p = Pipeline(BastionConfig(), [HeaderFlag()], clock=ManualClock())
    clean = make(p)
    assert await p.request_headers(clean) is None
    evil = make(p, [("Host", "api"), ("X-Evil", "1")])
    verdict = await p.request_headers(evil)
    assert verdict is not None and verdict.action == Action.BLOCK
    assert verdict.status == 403 and verdict.reason == "request-blocked" and verdict.rule_ids == ("t-1",)


async def test_points_accumulate_to_threshold() -> None:
    p = Pipeline(BastionConfig(), [Warn()], clock=ManualClock())
    assert await p.request_headers(make(p)) is None  # 3 < 5
    p2 = Pipeline(BastionConfig(), [Warn(), Warn()], clock=ManualClock())
    verdict = await p2.request_headers(make(p2))
    assert verdict is not None and verdict.score == 6


async def test_observe_mode_never_blocks_but_records() -> None:
    cfg = BastionConfig(mode="observe")
    p = Pipeline(cfg, [HeaderFlag()], clock=ManualClock())
    ex = make(p, [("Host", "api"), ("X-Evil", "1")])
    assert await p.request_headers(ex) is None
    assert ex.verdict is not None and ex.verdict.action == Action.LOG and ex.verdict.would_block


async def test_observe_detector_findings_do_not_count() -> None:
    det = HeaderFlag()
    det.observe = True  # type: ignore[attr-defined]
    p = Pipeline(BastionConfig(), [det], clock=ManualClock())
    ex = make(p, [("Host", "api"), ("X-Evil", "1")])
    assert await p.request_headers(ex) is None
    assert ex.findings and ex.findings[0].observe


async def test_async_hook_and_explicit_action() -> None:
    p = Pipeline(BastionConfig(), [AsyncDeny()], clock=ManualClock())
    ex = make(p)
    ex.request.body = b"deny"
    verdict = await p.request_body(ex)
    assert verdict is not None and verdict.status == 403 and verdict.reason == "access-denied"


async def test_failing_detector_fail_open_and_closed() -> None:
    p = Pipeline(BastionConfig(fail_mode="open"), [Boom(), HeaderFlag()], clock=ManualClock())
    ex = make(p)
    assert await p.request_headers(ex) is None
    assert ex.errors == ["boom"] and p.counters.detector_errors == {"boom": 1}
    closed = Pipeline(BastionConfig(fail_mode="closed"), [Boom()], clock=ManualClock())
    verdict = await closed.request_headers(make(closed))
    assert verdict is not None and verdict.status == 503 and verdict.reason == "inspection-failed"


async def test_allowlisted_exchange_skips_detectors() -> None:
    class Allow:
        name = "allow"

        def request_headers(self, ex: Exchange) -> None:
            ex.allowlisted = True

    p = Pipeline(BastionConfig(), [Allow(), HeaderFlag()], clock=ManualClock())
    ex = make(p, [("Host", "api"), ("X-Evil", "1")])
    assert await p.request_headers(ex) is None and not ex.findings


async def test_complete_runs_after_response_and_reaches_sinks() -> None:
    clock = ManualClock()
    rec, learner = Recorder(), Learner()
    p = Pipeline(BastionConfig(), [learner], clock=clock, sinks=[rec])
    ex = make(p)
    clock.advance(0.25)
    ex.response = Response(200, Headers([]))
    p.complete(ex)
    assert rec.done == []  # async complete work is scheduled, not awaited inline
    await p.drain()
    assert learner.seen == 1 and rec.done == [ex]
    assert ex.duration == 0.25 and ex.verdict is not None and ex.verdict.action == Action.ALLOW


async def test_response_side_points_use_outbound_threshold() -> None:
    class Leak:
        name = "leak"

        def response_body(self, ex: Exchange) -> None:
            ex.add(Finding("t-950", self.name, "stack trace", Severity.ERROR, score=4))

    p = Pipeline(BastionConfig(), [Leak()], clock=ManualClock())
    ex = make(p)
    verdict = await p.response_body(ex)
    assert verdict is not None and verdict.reason == "response-blocked" and verdict.status == 502
    assert ex.findings[0].phase == Phase.RESPONSE_BODY


async def test_throttle_is_a_delay_not_a_block() -> None:
    class Slow:
        name = "slow"

        def request_headers(self, ex: Exchange) -> None:
            ex.add(Finding("t-slow", self.name, "tarpit", action=Action.THROTTLE, delay=0.5))

    p = Pipeline(BastionConfig(), [Slow()], clock=ManualClock())
    verdict = await p.request_headers(make(p))
    assert verdict is not None and verdict.action == Action.THROTTLE and verdict.delay == 0.5
    assert not verdict.blocks


def test_detector_settings_default() -> None:
    cfg = BastionConfig(detectors={"limits": DetectorSettings(observe=True)})
    assert cfg.detector("limits").observe and cfg.detector("other").enabled


async def test_run_now_is_synchronous_until_a_hook_awaits() -> None:
    p = Pipeline(BastionConfig(), [Warn(), HeaderFlag()], clock=ManualClock())
    evil = make(p, [("Host", "api"), ("X-Evil", "1")])
    verdict = p.run_now(Phase.REQUEST_HEADERS, evil)
    assert verdict is not None and not asyncio.iscoroutine(verdict) and verdict.score == 8

    class AsyncWarn:
        name = "async-warn"

        async def request_headers(self, ex: Exchange) -> None:
            await asyncio.sleep(0)
            ex.add(Finding("t-4", self.name, "odd", Severity.WARNING, score=3))

    p2 = Pipeline(BastionConfig(), [AsyncWarn(), Warn(), Boom()], clock=ManualClock())
    tail = p2.run_now(Phase.REQUEST_HEADERS, make(p2))
    assert asyncio.iscoroutine(tail)
    verdict = await tail  # the sync hooks after the async one still run, the failing one is counted
    assert verdict is not None and verdict.rule_ids == ("t-4", "t-2") and p2.counters.detector_errors == {"boom": 1}


def test_client_request_ids_are_plain_ascii() -> None:
    # H11: str.isalnum() accepts non-ASCII letters and digits ('µ', '²', 'é'), which were echoed back
    # and forwarded upstream as raw latin-1 bytes.
    from bastion.engine.pipeline import valid_request_id

    assert valid_request_id("client-id_1.2:3")
    for bad in ("idµ", "id²", "café", "a b", "a\r\nb", "", "x" * 65):
        assert not valid_request_id(bad), bad


def test_new_exchange_fills_every_field_as_the_keyword_form() -> None:
    """new_exchange builds Request and Exchange positionally (cheaper on Python 3.11): a field added
    or moved in either dataclass must not shift a value into the wrong field."""
    from bastion.exchange import Request

    clock = ManualClock(1_700_000_000.0)
    p = Pipeline(BastionConfig(), [], clock=clock)
    client = Client("203.0.113.7")
    headers = Headers([("Host", " Shop.Example:8443 "), ("Accept", "*/*")])
    for host in (None, "Shop.Example:8443"):
        ex = p.new_exchange(client, "POST", "/cart?id=1", headers, "1.0", "rid-1", host=host)
        req = Request(method="POST", target="/cart?id=1", headers=headers, http_version="1.0",
                      host="Shop.Example:8443")
        expected = Exchange(id="rid-1", client=client, request=req, started=clock.now(),
                            started_mono=clock.monotonic(), site="shop.example", keys={"ip": "203.0.113.7"})
        assert ex == expected
    ex = p.new_exchange(client, "GET", "/", Headers([("Host", "[::1]")]))
    assert (ex.request.host, ex.site, len(ex.id)) == ("[::1]", "[::1]", 16)


def test_allow_verdicts_are_shared_per_status_and_findings_still_log() -> None:
    p = Pipeline(BastionConfig(), [], clock=ManualClock())
    a, b = make(p), make(p)
    for ex in (a, b):
        ex.response = Response(200, Headers())
        p.complete(ex)
    assert a.verdict is b.verdict and a.verdict is not None
    assert (a.verdict.action, a.verdict.status) == (Action.ALLOW, 200)
    c = make(p)
    c.response = Response(404, Headers())
    c.add(Finding("t-9", "x", "noted", Severity.NOTICE, score=2, observe=True))
    p.complete(c)
    assert c.verdict is not None
    assert (c.verdict.action, c.verdict.status, c.verdict.rule_ids) == (Action.LOG, 404, ("t-9",))
    assert p.counters.exchanges == 3 and p.counters.logged == 1 and p.counters.findings_by_rule == {"t-9": 1}

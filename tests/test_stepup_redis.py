"""Step-up with the decisions in Redis: two instances share challenges, attempts and passes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from bastion.detect.behaviour.settings import StepUpSettings
from bastion.detect.stepup import Outcome, RedisChallenges
from behaviour_helpers import TOOL, Harness
from state_backends import REDIS_URL, redis_up

ON = {"enabled": True, "deliver_url": "http://127.0.0.1:9/deliver", "deliver_secret": "s3cret-s3cret-s3cret"}


pytestmark = [pytest.mark.redis,
              pytest.mark.skipif(not redis_up(), reason="needs Redis on 127.0.0.1:6379 (db 13)")]


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"test-stepup-{uuid.uuid4().hex[:8]}:decisions"
    yield p
    r = redis.Redis.from_url(REDIS_URL)
    for k in r.scan_iter(match=p + "*"):
        r.delete(k)
    r.close()


class Outbox:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, s: StepUpSettings, body: bytes, signature: str) -> None:
        self.sent.append(orjson.loads(body))


async def instance(prefix: str, box: Outbox) -> Harness:
    h = Harness({"behaviour": {"decisions": {"url": REDIS_URL, "prefix": prefix}, "step_up": ON,
                               "entity": {"user_header": "X-User"}}})
    await h.start()
    assert h.core.step_up is not None and h.core.step_up.remote is not None
    h.core.step_up.deliverer.sender = box
    return h


def challenged(h: Harness, ip: str, user: str) -> None:
    ent = h.core.graph.observe({"ip": ip, "user": user}, h.clock.now()).entity
    ent.risk, ent.risk_t = 70.0, h.clock.now() + 5.0


async def test_two_instances_share_the_challenge_the_attempts_and_the_pass(prefix: str) -> None:
    box_a, box_b = Outbox(), Outbox()
    a, b = await instance(prefix, box_a), await instance(prefix, box_b)
    try:
        ip, hdr = "127.22.0.1", [*TOOL, ("X-User", "alice")]
        challenged(a, ip, "alice")
        challenged(b, ip, "alice")
        first = await a.send(ip, headers=hdr)
        assert first.status == 401
        extra = dict(first.ex.verdict.extra)  # type: ignore[union-attr]
        cid = extra["challenge_id"]
        a.core.step_up.deliverer.flush()
        code = box_a.sent[0]["code"]
        # the other instance presents the same challenge and sends no second code
        other = await b.send(ip, headers=hdr)
        assert other.status == 401 and dict(other.ex.verdict.extra)["challenge_id"] == cid  # type: ignore[union-attr]
        b.core.step_up.deliverer.flush()
        assert box_b.sent == []
        # attempts are counted once for both
        wrong = "000000" if code != "000000" else "111111"
        w1 = await b.send(ip, headers=[*hdr, ("X-Bastion-Step-Up", f"{cid}.{wrong}")])
        w2 = await a.send(ip, headers=[*hdr, ("X-Bastion-Step-Up", f"{cid}.{wrong}")])
        assert [dict(w.ex.verdict.extra)["attempts_left"] for w in (w1, w2)] == [4, 3]  # type: ignore[union-attr]
        # the code issued by A is accepted by B; A learns the pass from Redis
        ok = await b.send(ip, headers=[*hdr, ("X-Bastion-Step-Up", f"{cid}.{code}")])
        assert not ok.blocked and "step-up-passed" in ok.rules()
        later = await a.send(ip, headers=hdr)
        assert not later.blocked
    finally:
        await a.stop()
        await b.stop()


async def test_store_consumes_once_and_exhausts(prefix: str) -> None:
    s = StepUpSettings.model_validate({**ON, "max_attempts": 2})
    one, two = RedisChallenges(s, REDIS_URL, prefix + ":step-up"), RedisChallenges(s, REDIS_URL, prefix + ":step-up")
    try:
        ch, code = await one.issue("bob", 1000.0)
        assert code is not None
        again, none = await two.issue("bob", 1001.0)
        assert again.id == ch.id and none is None  # one live challenge per user, for every instance
        assert (await two.verify("bob", f"{ch.id}.{code}", 1002.0))[0] is Outcome.PASSED
        assert (await one.verify("bob", f"{ch.id}.{code}", 1003.0))[0] is Outcome.UNKNOWN  # replay
        assert await one.has_pass("bob", 1003.0) and not await one.has_pass("carol", 1003.0)
        ch, code = await one.issue("carol", 1000.0)
        assert code is not None
        wrong = "000000" if code != "000000" else "111111"
        assert (await one.verify("mallory", f"{ch.id}.{code}", 1001.0))[0] is Outcome.OTHER_USER
        assert (await one.verify("carol", f"{ch.id}.{wrong}", 1001.0))[0] is Outcome.WRONG
        assert (await two.verify("carol", f"{ch.id}.{wrong}", 1001.0))[0] is Outcome.EXHAUSTED
        assert (await one.verify("carol", f"{ch.id}.{code}", 1002.0))[0] is Outcome.UNKNOWN
        ch, code = await one.issue("dave", 1000.0)
        assert (await two.verify("dave", f"{ch.id}.{code}", 1000.0 + s.ttl))[0] is Outcome.EXPIRED
        assert (await two.verify("dave", "nonsense", 1000.0))[0] is Outcome.MALFORMED
    finally:
        await one.close()
        await two.close()

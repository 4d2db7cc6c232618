"""Step-up: the challenge store (codes, expiry, attempts, replay), delivery, and the risk detector's use of it."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import orjson
import pytest

from bastion.config import parse_config
from bastion.detect.behaviour.settings import StepUpSettings
from bastion.detect.stepup import ChallengeStore, Deliverer, Outcome, sign, verify_signature
from bastion.errors import ConfigError
from bastion.verdict import Action
from behaviour_helpers import TOOL, Harness

SECRET = "s3cret-s3cret-s3cret"
ON = {"enabled": True, "deliver_url": "http://127.0.0.1:9/deliver", "deliver_secret": SECRET}


def settings(**kw: Any) -> StepUpSettings:
    return StepUpSettings.model_validate({**ON, **kw})


def code_of(store: ChallengeStore, user: str, now: float) -> tuple[str, str]:
    ch, code = store.issue(user, now)
    return ch.id, code


# --- the store ---------------------------------------------------------------------------------


def test_right_code_passes_once_and_grants_a_pass() -> None:
    st = ChallengeStore(settings(pass_ttl=60))
    cid, code = code_of(st, "alice", 1000.0)
    assert len(code) == 6 and code.isdigit() and "." not in cid
    assert not st.has_pass("alice", 1000.0)
    assert st.verify("alice", f"{cid}.{code}", 1001.0)[0] is Outcome.PASSED
    assert st.has_pass("alice", 1001.0) and not st.has_pass("bob", 1001.0)
    # replay of a used code: the challenge is consumed
    assert st.verify("alice", f"{cid}.{code}", 1002.0)[0] is Outcome.UNKNOWN
    assert not st.has_pass("alice", 1062.0)  # the pass ends after pass_ttl
    assert len(st) == 0


def test_wrong_codes_count_down_then_exhaust() -> None:
    st = ChallengeStore(settings(max_attempts=3))
    cid, code = code_of(st, "alice", 0.0)
    wrong = "000000" if code != "000000" else "111111"
    out = []
    for _ in range(3):
        o, ch = st.verify("alice", f"{cid}.{wrong}", 1.0)
        out.append((o, ch.attempts_left if ch else None))
    assert out == [(Outcome.WRONG, 2), (Outcome.WRONG, 1), (Outcome.EXHAUSTED, 0)]
    # the challenge is gone: not even the right code works now
    assert st.verify("alice", f"{cid}.{code}", 2.0)[0] is Outcome.UNKNOWN
    assert not st.has_pass("alice", 2.0)


def test_expiry() -> None:
    st = ChallengeStore(settings(ttl=60))
    cid, code = code_of(st, "alice", 0.0)
    assert st.live("alice", 59.0) is not None and st.live("alice", 60.0) is None
    assert st.verify("alice", f"{cid}.{code}", 60.0)[0] is Outcome.EXPIRED
    assert not st.has_pass("alice", 60.0)


def test_wrong_challenge_id_and_other_user() -> None:
    st = ChallengeStore(settings())
    cid, code = code_of(st, "alice", 0.0)
    bid, bcode = code_of(st, "bob", 0.0)
    assert st.verify("alice", f"nope{cid}.{code}", 1.0)[0] is Outcome.UNKNOWN
    # bob cannot use alice's challenge, even with the right code, and spends none of her attempts
    assert st.verify("bob", f"{cid}.{code}", 1.0)[0] is Outcome.OTHER_USER
    assert st.live("alice", 1.0).attempts_left == 5  # type: ignore[union-attr]
    assert st.verify("alice", f"{bid}.{bcode}", 1.0)[0] is Outcome.OTHER_USER
    assert st.verify("alice", f"{cid}.{code}", 1.0)[0] is Outcome.PASSED
    assert not st.has_pass("bob", 1.0)


@pytest.mark.parametrize("value", ["", "abc", "abc.", ".123456", "abc.12x456", "é.123456", "a" * 200 + ".123456",
                                   "abc.\uff11\uff12\uff13\uff14\uff15\uff16"])
def test_malformed_values(value: str) -> None:
    st = ChallengeStore(settings())
    code_of(st, "alice", 0.0)
    assert st.verify("alice", value, 1.0)[0] is Outcome.MALFORMED


def test_one_live_challenge_per_user_and_bounded_memory() -> None:
    st = ChallengeStore(settings(max_challenges=100))
    first = st.issue("alice", 0.0)[0]
    assert st.live("alice", 1.0) is first
    second = st.issue("alice", 2.0)[0]  # a new one replaces the old
    assert st.verify("alice", f"{first.id}.123456", 3.0)[0] is Outcome.UNKNOWN
    assert st.live("alice", 3.0) is second
    for i in range(500):
        st.issue(f"user{i}", 3.0)
    assert len(st) == 100 and len(st._by_user) == 100
    assert st.live("user499", 3.0) is not None and st.live("user0", 3.0) is None


def test_codes_are_random_with_the_configured_length() -> None:
    st = ChallengeStore(settings(code_length=8))
    codes = {st.issue(f"u{i}", 0.0)[1] for i in range(200)}
    assert len(codes) > 190 and all(len(c) == 8 and c.isdigit() for c in codes)


def test_config_requires_url_and_secret_when_enabled() -> None:
    assert not StepUpSettings().enabled  # off by default
    for bad in ({"enabled": True}, {**ON, "deliver_secret": "short"}, {**ON, "deliver_url": "ftp://x"},
                {**ON, "header": "Bad Header"}, {**ON, "code_length": 4}):
        with pytest.raises(ConfigError):
            parse_config({"behaviour": {"step_up": bad}})
    parse_config({"behaviour": {"step_up": ON}})


# --- delivery ----------------------------------------------------------------------------------


def test_signature_round_trip() -> None:
    body = b'{"code":"123456"}'
    now = int(time.time())
    sig = sign(SECRET, body, now)
    assert verify_signature(SECRET, sig, body)
    assert not verify_signature(SECRET, sig, body + b" ")
    assert not verify_signature("other-secret-xxxxxx", sig, body)
    assert not verify_signature(SECRET, sign(SECRET, body, now - 3600), body)
    assert not verify_signature(SECRET, "garbage", body)


def test_delivery_rate_cap_and_failures_never_log_the_code(caplog: pytest.LogCaptureFixture) -> None:
    def dead(s: StepUpSettings, body: bytes, signature: str) -> None:
        raise ConnectionRefusedError("down")

    d = Deliverer(settings(max_deliveries_per_minute=2), sender=dead)
    with caplog.at_level(logging.DEBUG):
        assert d.submit({"code": "987654", "user": "alice"}, 0.0)
        assert d.submit({"code": "987655", "user": "alice"}, 1.0)
        assert not d.submit({"code": "987656", "user": "alice"}, 2.0)  # over the cap
        assert d.submit({"code": "987657", "user": "alice"}, 61.0)  # the window moved on
        d.flush()
    d.close()
    assert d.stats.failed == 3 and d.stats.dropped == 1
    assert "9876" not in caplog.text and "alice" not in caplog.text
    assert "step-up delivery failed" in caplog.text


# --- through the pipeline ----------------------------------------------------------------------


def basic(user: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:pw".encode()).decode())


def front(user: str) -> tuple[str, str]:
    """The user as an authenticating front sets it (`entity.user_header`): a verified identity."""
    return ("X-User", user)


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], str]] = []

    def __call__(self, s: StepUpSettings, body: bytes, signature: str) -> None:
        assert verify_signature(s.deliver_secret, signature, body)
        self.sent.append((orjson.loads(body), signature))


async def stepup_harness(**kw: Any) -> tuple[Harness, Outbox]:
    cfg: dict[str, Any] = {"behaviour": {"step_up": {**ON, **kw}, "entity": {"user_header": "X-User"}}}
    h = await Harness(cfg).start()
    assert h.core.step_up is not None
    box = Outbox()
    h.core.step_up.deliverer.sender = box
    return h, box


def raise_risk(h: Harness, ip: str, user: str, level: float) -> Any:
    ent = h.core.graph.observe({"ip": ip, "user": user}, h.clock.now()).entity
    ent.risk, ent.risk_t = level, h.clock.now() + 5.0
    return ent


async def test_challenge_code_retry_and_pass() -> None:
    h, box = await stepup_harness()
    ip, headers = "127.21.0.1", [*TOOL, front("alice")]
    raise_risk(h, ip, "alice", 70.0)
    s = await h.send(ip, headers=headers)
    assert s.status == 401 and s.action == Action.CHALLENGE
    v = s.ex.verdict
    assert v is not None and v.reason == "challenge-required"
    extra = dict(v.extra)
    assert set(extra) == {"challenge_id", "step_up_header", "expires_in", "attempts_left"}
    assert extra["step_up_header"] == "X-Bastion-Step-Up" and extra["expires_in"] == 300
    assert any(k == "WWW-Authenticate" for k, _ in v.headers)
    h.core.step_up.deliverer.flush()
    assert len(box.sent) == 1
    doc = box.sent[0][0]
    assert doc["user"] == "alice" and doc["challenge_id"] == extra["challenge_id"]
    code = doc["code"]
    assert code not in repr(v) and "alice" not in repr(extra)
    # a second request without the code: the same challenge, no second delivery
    s2 = await h.send(ip, headers=headers)
    assert s2.status == 401 and dict(s2.ex.verdict.extra)["challenge_id"] == extra["challenge_id"]  # type: ignore[union-attr]
    h.core.step_up.deliverer.flush()
    assert len(box.sent) == 1
    # the retry with the code is served, and so are the next requests (the pass)
    ok = await h.send(ip, headers=[*headers, ("X-Bastion-Step-Up", f"{extra['challenge_id']}.{code}")])
    assert not ok.blocked and "step-up-passed" in ok.rules()
    later = await h.send(ip, headers=headers)
    assert not later.blocked and later.ex.risk >= 60  # risk is not erased
    st = h.core.step_up.stats
    assert (st.issued, st.passed, st.refused, st.exhausted) == (1, 1, 0, 0)
    # block-level risk still blocks
    raise_risk(h, ip, "alice", 95.0)
    assert (await h.send(ip, headers=headers)).status == 403
    await h.stop()


async def test_wrong_codes_add_risk_and_end_in_a_block() -> None:
    h, box = await stepup_harness(fail_risk=0.0, max_attempts=3)
    ip, headers = "127.21.0.2", [*TOOL, front("mallory")]
    ent = raise_risk(h, ip, "mallory", 70.0)
    s = await h.send(ip, headers=headers)
    cid = dict(s.ex.verdict.extra)["challenge_id"]  # type: ignore[union-attr]
    h.core.step_up.deliverer.flush()
    code = box.sent[0][0]["code"]
    wrong = "000000" if code != "000000" else "111111"
    statuses = []
    for _ in range(3):
        r = await h.send(ip, headers=[*headers, ("X-Bastion-Step-Up", f"{cid}.{wrong}")])
        statuses.append(r.status)
    assert statuses == [401, 401, 403]
    assert ent.blocked_until > h.clock.now()
    assert any(d.reason.startswith("risk") and "step-up-exhausted" in d.reason for d in h.core.store.index)
    await h.stop()


async def test_a_refused_code_adds_risk() -> None:
    h, _ = await stepup_harness(fail_risk=10.0)
    ip, headers = "127.21.0.3", [*TOOL, front("carol")]
    ent = raise_risk(h, ip, "carol", 65.0)
    before = h.core.risk.current(ent, h.clock.now() + 1.0)
    await h.send(ip, headers=[*headers, ("X-Bastion-Step-Up", "garbage")])
    assert h.core.risk.current(ent, h.clock.now()) > before + 9.0
    await h.stop()


async def test_without_a_user_or_in_observe_mode_no_code_is_sent() -> None:
    h, box = await stepup_harness()
    ip = "127.21.0.4"
    ent = h.core.graph.observe({"ip": ip}, h.clock.now()).entity
    ent.risk, ent.risk_t = 70.0, h.clock.now() + 5.0
    s = await h.send(ip)
    assert s.status == 401 and s.ex.verdict is not None and s.ex.verdict.extra == ()
    await h.stop()
    h2 = await Harness({"mode": "observe", "behaviour": {"step_up": ON, "entity": {"user_header": "X-User"}}}).start()
    h2.core.step_up.deliverer.sender = box
    raise_risk(h2, "127.21.0.5", "dave", 70.0)
    s = await h2.send("127.21.0.5", headers=[*TOOL, front("dave")])
    assert not s.blocked
    h2.core.step_up.deliverer.flush()
    assert box.sent == []
    await h2.stop()


async def test_step_up_off_by_default() -> None:
    h = await Harness({"behaviour": {"entity": {"user_header": "X-User"}}}).start()
    assert h.core.step_up is None
    raise_risk(h, "127.21.0.6", "erin", 70.0)
    s = await h.send("127.21.0.6", headers=[*TOOL, front("erin")])
    assert s.status == 401 and s.ex.verdict is not None and s.ex.verdict.extra == ()
    await h.stop()


async def test_an_unverified_user_gets_no_code() -> None:
    # a Basic-auth name is only a claim (the API checks the password): a code must not be sent to
    # whoever a client says it is, nor a pass be usable by anyone who says the same
    h, box = await stepup_harness()
    ip = "127.21.0.7"
    ent = h.core.graph.observe({"ip": ip}, h.clock.now()).entity
    ent.risk, ent.risk_t = 70.0, h.clock.now() + 5.0
    s = await h.send(ip, headers=[*TOOL, basic("victim")])
    assert s.status == 401 and s.ex.verdict is not None and s.ex.verdict.extra == ()
    h.core.step_up.deliverer.flush()
    assert box.sent == []
    await h.stop()


async def test_a_failed_delivery_is_withdrawn_and_the_next_request_gets_a_new_code() -> None:
    h, box = await stepup_harness()
    calls: list[str] = []

    def flaky(s: StepUpSettings, body: bytes, signature: str) -> None:
        calls.append(orjson.loads(body)["challenge_id"])
        if len(calls) == 1:
            raise TimeoutError("webhook down")
        box(s, body, signature)

    h.core.step_up.deliverer.sender = flaky
    ip, headers = "127.21.0.8", [*TOOL, front("frank")]
    raise_risk(h, ip, "frank", 70.0)
    first = await h.send(ip, headers=headers)
    h.core.step_up.deliverer.flush()
    second = await h.send(ip, headers=headers)
    h.core.step_up.deliverer.flush()
    ids = [dict(s.ex.verdict.extra)["challenge_id"] for s in (first, second)]  # type: ignore[union-attr]
    assert ids[0] != ids[1] and calls == ids and len(box.sent) == 1
    code = box.sent[0][0]["code"]
    ok = await h.send(ip, headers=[*headers, ("X-Bastion-Step-Up", f"{ids[1]}.{code}")])
    assert not ok.blocked
    await h.stop()


def test_metrics_expose_step_up_counters() -> None:
    from bastion.admin.metrics import render, snapshot
    from bastion.runtime import Runtime

    cfg = parse_config({"behaviour": {"step_up": ON, "decisions": {"persist": False}}})
    runtime = Runtime.create(cfg, with_store=False, only={"decisions", "risk", "behaviour"})
    text = render(snapshot(runtime, None, 0.0))
    assert "bastion_step_up_issued_total 0" in text
    assert "# HELP bastion_step_up_deliveries_failed_total Step-up deliveries" in text

"""Sequence: a login or checkout POST from a subject that never made a GET before it."""

from __future__ import annotations

from behaviour_helpers import CHROME, Harness


async def test_cold_login_post_is_flagged_but_not_blocked_alone() -> None:
    h = await Harness().start()
    s = await h.send("127.70.0.1", "POST", "/login", body={"username": "a", "password": "b"}, status=200)
    assert "bhv-sequence" in s.rules()
    nxt = await h.send("127.70.0.1", "GET", "/home")
    assert not nxt.blocked and 0 < nxt.ex.risk < h.core.settings.risk.throttle
    await h.stop()


async def test_login_after_browsing_is_not_flagged() -> None:
    h = await Harness().start()
    await h.send("127.70.0.2", "GET", "/login", headers=CHROME)
    s = await h.send("127.70.0.2", "POST", "/login", body={"username": "a", "password": "b"}, headers=CHROME)
    assert "bhv-sequence" not in s.rules()
    c = await h.send("127.70.0.2", "POST", "/api/checkout", body={"items": [1]}, headers=CHROME)
    assert "bhv-sequence" not in c.rules()
    await h.stop()


async def test_cold_checkout_is_flagged() -> None:
    h = await Harness().start()
    s = await h.send("127.70.0.3", "POST", "/api/checkout", body={"items": [1]}, status=201)
    assert "bhv-sequence" in s.rules()
    await h.stop()

"""Scanning: bursts of 4xx over distinct paths; low and slow over hours; never Bastion's own 403s."""

from __future__ import annotations

from behaviour_helpers import CHROME, Harness


async def test_scanner_is_blocked_within_twenty_requests() -> None:
    h = await Harness().start()
    sent = [await h.send("127.30.0.1", target=f"/probe{i}", status=404, advance=0.3) for i in range(40)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 20
    assert any("bhv-scanning" in s.rules() for s in sent[:first])
    await h.stop()


async def test_user_with_a_few_404s_and_a_broken_asset_is_not_flagged() -> None:
    h = await Harness().start()
    for i in range(60):
        target = "/missing.png" if i % 3 == 0 else f"/products/{i}"  # one broken asset on every page
        s = await h.send("127.30.0.2", target=target, status=404 if i % 3 == 0 else 200, headers=CHROME, advance=2)
        assert not s.blocked and not s.ex.findings, s.rules()
    for i in range(5):  # five stale links
        s = await h.send("127.30.0.2", target=f"/old/{i}", status=404, headers=CHROME)
    assert not s.blocked and s.ex.risk == 0
    await h.stop()


async def test_low_and_slow_scanner_over_hours() -> None:
    h = await Harness().start()
    blocked_at = None
    for i in range(80):
        s = await h.send("127.30.0.3", target=f"/slow/{i}.php", status=404, advance=300)  # one every 5 minutes
        if s.blocked:
            blocked_at = i
            break
    assert blocked_at is not None and blocked_at <= 45
    await h.stop()


async def test_bastion_refusals_do_not_count_as_scanning() -> None:
    h = await Harness({"decisions": [{"action": "deny", "cidr": "127.30.0.4"}]}).start()
    for i in range(50):
        await h.send("127.30.0.4", target=f"/x{i}")
    det = h.detector("behaviour")
    assert not det.fired and det.tracks["scanning"].peek("ip:127.30.0.4") is None
    await h.stop()

"""Risk: decay, points from findings, graded actions, growing blocks, no self-feeding bans."""

from __future__ import annotations

from bastion.exchange import Exchange
from bastion.verdict import Action, Finding, Severity
from behaviour_helpers import Harness


class Flagger:
    """A test detector: flags every request whose path contains '/attack' with one finding."""

    name = "flagger"
    observe = False

    def __init__(self, score: int = 5, risk: float | None = None, observe: bool = False) -> None:
        self.score = score
        self.risk = risk
        self.observe = observe

    def request_headers(self, ex: Exchange) -> None:
        if "/attack" in ex.request.target:
            ex.add(Finding(rule_id="test-attack", detector=self.name, message="attack", severity=Severity.CRITICAL,
                           score=self.score, risk=self.risk))


async def harness(**risk: float) -> Harness:
    h = Harness({"behaviour": {"risk": risk}} if risk else None)
    return await h.start()


def add_flagger(h: Harness, det: Flagger) -> None:
    from bastion.engine.pipeline import _Step
    from bastion.verdict import Phase

    h.pipeline.detectors.append(det)  # type: ignore[arg-type]
    h.pipeline._steps[Phase.REQUEST_HEADERS].append(_Step(det.name, det.request_headers, det.observe))


async def test_risk_decays_with_half_life() -> None:
    h = await harness(half_life=100.0)
    ent = h.core.graph.observe({"ip": "127.20.0.1"}, h.clock.now()).entity
    h.core.risk.add(ent, 80.0, "x", h.clock.now())
    h.clock.advance(100.0)
    assert abs(h.core.risk.current(ent, h.clock.now()) - 40.0) < 1e-6
    h.clock.advance(200.0)
    assert abs(h.core.risk.current(ent, h.clock.now()) - 10.0) < 1e-6
    await h.stop()


async def test_graded_actions_watch_throttle_challenge_block() -> None:
    h = await harness()
    ip = "127.20.0.2"
    ent = h.core.graph.observe({"ip": ip}, h.clock.now()).entity
    expected = [(20.0, Action.LOG), (40.0, Action.THROTTLE), (65.0, Action.CHALLENGE), (95.0, Action.BLOCK)]
    for level, action in expected:
        ent.risk, ent.risk_t = level, h.clock.now() + 1.0
        s = await h.send(ip, advance=1.0)
        got = [f.action for f in s.ex.findings if f.detector == "risk"]
        assert got == [action], (level, got)
        assert abs(s.ex.risk - level) < 1e-6
    assert s.status == 403 and s.ex.verdict is not None and s.ex.verdict.reason == "access-denied"
    challenge = h.core.settings.risk.challenge
    assert challenge == 60.0
    await h.stop()


async def test_findings_feed_risk_and_block_with_an_explanation() -> None:
    h = await harness(exploit_cap=90.0)  # exploits alone may ban (by default they tarpit: see below)
    add_flagger(h, Flagger(score=5))
    ip = "127.20.0.3"
    risks = [(await h.send(ip, target="/attack")).ex.risk for _ in range(12)]
    assert risks[1] > risks[0] > -1  # risk accumulates from request to request
    ent = h.core.graph.entity_of(f"ip:{ip}")
    assert ent is not None and ent.offenses == 1
    decisions = [d for d in h.core.store.index if d.value == ip]
    assert decisions and decisions[0].explanation and "test-attack" in decisions[0].explanation[0]
    assert (await h.send(ip, target="/fine")).blocked  # the decision applies to every request
    await h.stop()


async def test_observe_findings_add_no_risk() -> None:
    h = await harness()
    add_flagger(h, Flagger(score=5, observe=True))
    for _ in range(20):
        s = await h.send("127.20.0.4", target="/attack")
    assert s.ex.risk == 0.0
    await h.stop()


async def test_ban_does_not_feed_itself_and_repeat_offenders_get_longer_bans() -> None:
    h = await harness(block_ttl=100.0, block_growth=2.0)
    add_flagger(h, Flagger(score=0, risk=100.0))
    ip = "127.20.0.5"
    await h.send(ip, target="/attack")
    first = h.core.graph.entity_of(f"ip:{ip}")
    assert first is not None and first.offenses == 1
    until1 = first.blocked_until
    assert abs(until1 - h.clock.now() - 100.0) < 1e-6
    # while banned: hundreds of refused requests (Bastion's own 403s) add nothing
    for _ in range(200):
        s = await h.send(ip, target="/attack", advance=0.2)
        assert s.blocked
    assert first.offenses == 1 and first.blocked_until == until1
    h.clock.set(until1 + 1.0)
    # the ban ended: normal requests pass, nothing re-bans by itself
    for _ in range(5):
        assert not (await h.send(ip, target="/fine")).blocked
    # attacking again: the second ban is twice as long
    await h.send(ip, target="/attack")
    assert first.offenses == 2
    assert abs(first.blocked_until - h.clock.now() - 200.0) < 1e-6
    await h.stop()


async def test_challenge_disabled_blocks_instead() -> None:
    h = await Harness({"behaviour": {"risk": {"challenge_enabled": False}}}).start()
    ent = h.core.graph.observe({"ip": "127.20.0.6"}, h.clock.now()).entity
    ent.risk, ent.risk_t = 70.0, h.clock.now() + 1.0
    s = await h.send("127.20.0.6")
    assert s.action == Action.BLOCK and s.status == 403
    await h.stop()


async def test_observe_mode_never_blocks_but_records() -> None:
    h = await Harness({"mode": "observe"}).start()
    ent = h.core.graph.observe({"ip": "127.20.0.7"}, h.clock.now()).entity
    ent.risk, ent.risk_t = 95.0, h.clock.now() + 1.0
    s = await h.send("127.20.0.7")
    assert not s.blocked
    assert s.ex.verdict is not None and s.ex.verdict.would_block
    await h.stop()


def test_config_mistakes_are_reported_with_their_field() -> None:
    import pytest

    from bastion.config import parse_config
    from bastion.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        parse_config({"behaviour": {"risk": {"watch": 100, "block": 50}}})
    assert "behaviour.risk" in str(exc.value)
    with pytest.raises(ConfigError) as exc2:
        parse_config({"behaviour": {"scenarios": {"scanning": {"treshold": 5}}}})
    assert "treshold" in str(exc2.value)
    with pytest.raises(ConfigError):
        parse_config({"behaviour": {"login": {"routes": ["(unclosed"]}}})


async def test_mixed_traffic_source_is_watched_not_banned() -> None:
    """A shared address (NAT, load balancer, one test harness) sending mostly normal requests loses
    only its hostile ones; a source whose traffic is mostly attacks is blocked as a whole when exploits
    alone may ban (risk.exploit_cap at block)."""
    h = await harness(exploit_cap=90.0)
    add_flagger(h, Flagger())
    mixed, tool = "127.20.1.1", "127.20.1.2"
    for _ in range(40):
        await h.send(mixed, target="/products", advance=0.5)
        await h.send(mixed, target="/attack", advance=0.5)
        await h.send(tool, target="/attack", advance=0.5)
    clean = await h.send(mixed, target="/products", advance=0.5)
    assert clean.status == 200
    assert not [f for f in clean.ex.findings if f.action is not None and f.action >= Action.THROTTLE]
    assert (await h.send(tool, target="/products", advance=0.5)).status == 403
    await h.stop()


async def test_exploits_alone_tarpit_a_source_and_its_clean_requests_are_served() -> None:
    """By default (risk.exploit_cap 40) a source sending only attacks is slowed, each attack refused,
    never banned: a harness that runs its attack list and then its normal requests gets them served."""
    h = await harness()
    add_flagger(h, Flagger())
    tool = "127.20.1.3"
    for _ in range(60):
        s = await h.send(tool, target="/attack", advance=0.5)
        assert s.blocked  # (each attack, by the detector that flagged it)
    assert h.core.graph.entity_of(f"ip:{tool}").risk <= 40.0
    assert not [d for d in h.core.store.index if d.value == tool]  # no ban
    clean = await h.send(tool, target="/products", advance=0.5)
    assert clean.status == 200
    assert [f for f in clean.ex.findings if f.action == Action.THROTTLE]  # slowed, served
    # behaviour findings still escalate past the cap: a scanner's 404 burst bans it
    for i in range(20):
        await h.send(tool, target=f"/probe-{i}", status=404, advance=0.5)
    assert [d for d in h.core.store.index if d.value == tool]
    await h.stop()

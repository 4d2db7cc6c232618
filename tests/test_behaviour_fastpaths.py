"""The behaviour analytics' shortcuts have the effects of the long way round.

The complete phase takes a short path for common exchanges (a 2xx/3xx answer on a target no login,
sequence or lookup scenario concerns), and the request and complete phases reuse the graph nodes a
client's request linked while no key left the graph. Here one traffic mix goes through a normal
pipeline and through one forced onto the general path with every node looked up again; findings,
risk, verdicts and the analytics' state must come out the same.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from bastion.decision import Decision, DecisionAction, KeyKind, Origin
from bastion.detect.behaviour.counters import Distinct, Fired, Spread, Track
from bastion.detect.behaviour.scenarios import Route
from bastion.entity import EntityGraph, GraphLimits, KeyView
from bastion.verdict import Phase
from behaviour_helpers import CHROME, TOOL, Harness


def traffic(n: int, seed: int) -> list[dict[str, Any]]:
    """Browsing, id walks, searches, logins (many failing), lookups, 404 probes, checkouts, sessions
    and API keys, from a few busy addresses (one NAT shared by identities) and many occasional ones."""
    rng = random.Random(seed)
    ips = [f"127.70.{i // 250}.{i % 250 + 1}" for i in range(60)]
    out = []
    for i in range(n):
        ip = ips[0] if rng.random() < 0.25 else rng.choice(ips)
        headers = list(CHROME if rng.random() < 0.6 else TOOL)
        x = rng.random()
        method, status, body, resp = "GET", 200, b"", b"{}"
        if x < 0.35:
            target = f"/api/items/{rng.randint(1, 40) if rng.random() < 0.5 else i}"
            status = rng.choice((200, 200, 200, 304, 403, 404))
        elif x < 0.45:
            target = f"/api/search?q=w{rng.randint(1, 30)}"
        elif x < 0.58:
            method, target = "POST", "/api/login"
            body = orjson.dumps({"username": f"u{rng.randint(1, 30)}@x.test", "password": "p"})
            status = rng.choice((200, 401, 401))
        elif x < 0.66:
            target = f"/api/users/lookup?email=u{rng.randint(1, 400)}%40x.test"
            status = rng.choice((200, 404))
            resp = b'{"found":false}' if status == 200 and rng.random() < 0.5 else b"{}"
        elif x < 0.72:
            target = f"/.{rng.choice(('env', 'git/config', 'aws/credentials'))}{rng.randint(1, 30)}"
            status = 404
        elif x < 0.76:
            method, target, status = "POST", "/api/checkout", 201
        elif x < 0.80:
            method, target = rng.choice(("PUT", "DELETE")), f"/api/orders/{rng.randint(1, 60)}"
            status = rng.choice((200, 204, 403))
        else:
            target = f"/api/orders/{rng.randint(1, 300)}"
            status = rng.choice((200, 200, 404))
        if rng.random() < 0.15:
            headers.append(("Cookie", f"sid=s{rng.randint(1, 12)}"))
        elif rng.random() < 0.05:
            headers.append(("X-Api-Key", f"k{rng.randint(1, 3)}"))
        out.append({"ip": ip, "method": method, "target": target, "status": status, "body": body,
                    "resp_body": resp, "headers": headers, "advance": rng.choice((0.2, 1.0, 5.0, 60.0))})
    return out


def force_long_way(h: Harness) -> None:
    """Every complete phase on the general path, and no node reused: the graph's epoch moves before
    each phase that could take a shortcut (as if a key had left the graph). The risk check runs as
    a pipeline step of its own (not chained to the decisions detector), looks at the client
    software and network of every request (as if some had risk), and the decisions detector reads
    every key afresh (no memo)."""
    det = h.detector("behaviour")
    core = det.core
    graph = core.graph
    make_route = det._route

    def general(raw: str) -> Route:
        route = make_route(raw)
        route.plain = False
        return route

    def bumped(fn: Any) -> Any:
        def call(ex: Any) -> Any:
            graph.epoch += 1
            return fn(ex)
        return call

    det._route = general
    # the risk check unchained: its own step right after the decisions detector's, as built
    decisions, risk = h.detector("decisions"), h.detector("risk")
    assert decisions.then is not None, "the risk check is chained to the decisions detector"
    decisions.then = None
    steps = h.pipeline._steps[Phase.REQUEST_HEADERS]
    at = next(i for i, st in enumerate(steps) if st.detector == "decisions")
    steps.insert(at + 1, type(steps[at])("risk", risk.request_headers, False))
    core.risk.soft = True
    make_keys = core._keys

    def fresh_keys(ex: Any) -> Any:
        core._memo.clear()
        core._header_memo.clear()
        return make_keys(ex)

    core._memo = _Forgetful()  # observe() never finds a memo: every view is made by _keys
    core._keys = fresh_keys
    for phase, name in ((Phase.REQUEST_HEADERS, "risk"), (Phase.COMPLETE, "behaviour")):
        for step in h.pipeline._steps[phase]:  # hooks are bound when the pipeline is built
            if step.detector == name:
                step.hook = bumped(step.hook)


class _Forgetful(dict[Any, Any]):
    """A memo that never hits (the general way of BehaviourCore._keys every time)."""

    def get(self, key: Any, default: Any = None) -> Any:
        return default


def state(h: Harness) -> dict[str, Any]:
    det = h.detector("behaviour")
    graph = det.core.graph
    return {
        "fired": dict(det.fired),
        "activity": {k: (a.last, a.last_get, a.clean, a.failed, a.total_v, sorted(a.paths.items()) if a.paths else [],
                         a.bola_id, a.bola_t)
                     for k, a in det.activity.items()},
        "tracks": {name: {k: track_state(t) for k, t in tr.by_subject.items()} for name, tr in det.tracks.items()},
        "population": {k: len(d) for k, d in det.population.items()},
        "nodes": {k: (n.shared, n.bad, n.seen, n.entity.last_get, n.entity.id, n.entity.good, round(n.entity.risk, 9))
                  for k, n in graph.nodes.items()},
    }


def track_state(t: Fired) -> tuple[Any, ...]:
    if isinstance(t, Track):
        return t.bad.v, t.total.v, t.fired, sorted(t.fast.items())
    if isinstance(t, Spread):
        return (t.fired, t.ip, t.net, sorted(t.ips.items()) if t.ips else [],
                sorted(t.nets.items()) if t.nets else [])
    return (t.fired,)


async def run(long_way: bool, seed: int) -> tuple[list[Any], dict[str, Any]]:
    h = await Harness().start()
    if long_way:
        force_long_way(h)
    seen = []
    for r in traffic(1500, seed):
        s = await h.send(r["ip"], r["method"], r["target"], status=r["status"], body=r["body"],
                         resp_body=r["resp_body"], headers=r["headers"], advance=r["advance"])
        seen.append((s.action, s.status, round(s.ex.risk, 9), s.ex.entity,
                     [(f.rule_id, f.message, f.evidence, f.risk) for f in s.ex.findings]))
    out = state(h)
    await h.stop()
    return seen, out


async def test_shortcuts_have_the_effects_of_the_general_path() -> None:
    for seed in (1, 2):
        short, short_state = await run(False, seed)
        long, long_state = await run(True, seed)
        assert any(f for *_, f in short), "the mix must make scenarios fire"
        for i, (a, b) in enumerate(zip(short, long, strict=True)):
            assert a == b, f"exchange {i} differs"
        assert short_state == long_state


def reference_add(seen: dict[str, float], member: str, now: float, window: float, cap: int) -> int:
    """Distinct.add as first written: re-insert, then trim from the front."""
    seen.pop(member, None)
    seen[member] = now
    while seen:
        first = next(iter(seen))
        if seen[first] >= now - window and len(seen) <= cap:
            break
        del seen[first]
    return len(seen)


def test_distinct_counts_exactly_as_the_plain_trim() -> None:
    rng = random.Random(3)
    for _ in range(40):
        d, ref = Distinct(), dict[str, float]()
        window, cap = rng.choice((5.0, 30.0, 600.0)), rng.randint(2, 12)
        now = 0.0
        for _ in range(400):
            # mostly forward, sometimes a burst at one instant, sometimes the clock steps back
            now += rng.choice((0.0, 0.5, 1.0, 3.0, 20.0, -2.0))
            member = f"m{rng.randint(1, 15)}"
            assert d.add(member, now, window, cap) == reference_add(ref, member, now, window, cap)
            assert d.items() == list(ref.items())
            if rng.random() < 0.05:
                assert d.count(now, window, cap) == len(d)


async def test_same_headers_from_another_address_get_its_own_address_keys() -> None:
    h = await Harness().start()
    a = await h.send("127.71.0.1", headers=[*CHROME, ("Cookie", "sid=abc")])
    b = await h.send("127.71.9.2", headers=[*CHROME, ("Cookie", "sid=abc")])
    assert a.ex.keys["ip"] == "127.71.0.1" and a.ex.keys["net"] == "127.71.0.0/24"
    assert b.ex.keys["ip"] == "127.71.9.2" and b.ex.keys["net"] == "127.71.9.0/24"
    assert {k: v for k, v in a.ex.keys.items() if k not in ("ip", "net")} == \
        {k: v for k, v in b.ex.keys.items() if k not in ("ip", "net")}
    assert list(a.ex.keys) == list(b.ex.keys)  # the order extract_keys gives
    assert a.ex.entity == b.ex.entity  # one session from two addresses: one entity
    await h.stop()


async def test_a_dropped_node_is_not_reused() -> None:
    h = await Harness().start()
    graph = h.detector("behaviour").core.graph
    first = await h.send("127.72.0.1", target="/a")
    graph._drop("ip:127.72.0.1")  # as an idle sweep or an eviction would
    again = await h.send("127.72.0.1", target="/b")
    assert "ip:127.72.0.1" in graph.nodes
    assert again.ex.links.nodes["ip"] is graph.nodes["ip:127.72.0.1"]
    assert again.ex.links.nodes["ip"] is not first.ex.links.nodes["ip"]
    await h.stop()


async def test_the_risk_check_runs_from_the_decisions_step_only_when_it_would_run_right_after_it() -> None:
    h = await Harness().start()
    steps = [st.detector for st in h.pipeline._steps[Phase.REQUEST_HEADERS]]
    assert "risk" not in steps and h.detector("decisions").then is not None  # chained: one step less
    await h.stop()
    # a different observe mode would stamp its findings differently: its own step
    h = await Harness({"detectors": {"risk": {"observe": True}}}).start()
    assert "risk" in [st.detector for st in h.pipeline._steps[Phase.REQUEST_HEADERS]]
    assert h.detector("decisions").then is None
    s = await h.send("127.73.0.1")
    assert s.ex.risk == 0.0 and h.core.current is None  # the step took the entity the decisions step linked
    await h.stop()
    # without the decisions detector, the risk detector links the entity itself
    h = await Harness(only={"risk", "behaviour"}).start()
    s = await h.send("127.73.0.2")
    assert s.ex.entity == "ip:127.73.0.2"
    await h.stop()


async def test_an_allowlisted_exchange_gets_no_risk_check() -> None:
    h = await Harness().start()
    h.detector("decisions").index.add(Decision(kind=KeyKind.IP, value="127.73.1.0/24", action=DecisionAction.ALLOW,
                                               origin=Origin.ADMIN, reason="test", created=h.clock.now(), id="a1"))
    graph = h.detector("behaviour").core.graph
    graph.observe({"ip": "127.73.1.5"}, h.clock.now()).entity.risk = 1000.0
    s = await h.send("127.73.1.5")
    assert s.ex.allowlisted and not s.blocked and s.ex.risk == 0.0
    assert not any(f.detector == "risk" for f in s.ex.findings)
    await h.stop()


async def test_software_risk_is_looked_for_once_some_software_has_risk() -> None:
    """The request-time check skips client software and networks until one of them is given risk
    (RiskModel.soft); from then on a blocked tool fingerprint reaches its fresh addresses."""
    h = await Harness().start()
    model = h.detector("risk").model
    for i in range(30):  # browsing: nobody's software has risk
        await h.send(f"127.74.0.{i + 1}", target=f"/api/items/{i}", headers=CHROME)
    assert not model.soft
    blocked = []
    for i in range(120):  # distributed stuffing with one tool (as in test_behaviour_login)
        ip = f"127.74.{1 + i % 60}.{7 + i // 60}"
        s = await h.send(ip, "POST", "/signin", body={"username": f"leak{i}@x.test", "password": "p"},
                         status=401, advance=0.2)
        blocked.append(s.blocked)
    assert model.soft
    assert any(blocked[:20]) and sum(blocked) > 80  # the shared tool fingerprint is blocked early
    await h.stop()


def test_sweep_slices_run_exactly_when_due() -> None:
    """EntityGraph._sweep_at only skips the sweeper's own test when no slice can be due."""
    rng = random.Random(5)
    for base in (0.0, 1_700_000_000.0):
        g = EntityGraph(GraphLimits(idle_ttl=30.0))
        ref = EntityGraph(GraphLimits(idle_ttl=30.0))
        view, ref_view = KeyView({"ip": "10.0.0.1"}), KeyView({"ip": "10.0.0.1"})
        now = base
        for i in range(3000):
            now += rng.choice((0.001, 0.5, 3.0, 59.999999, 60.0, 60.000001))
            if rng.random() < 0.3:
                g.observe({"ip": f"10.1.{i // 250}.{i % 250}"}, now)
                ref.observe({"ip": f"10.1.{i // 250}.{i % 250}"}, now)
            g.link(view, now)
            ref._sweep_at = -1e300  # the reference tests the sweeper itself on every request
            ref.link(ref_view, now)
            assert (g._sweeper.started, g._sweeper.pos, len(g.nodes)) == \
                (ref._sweeper.started, ref._sweeper.pos, len(ref.nodes))


def test_token_spread_counts_as_two_distinct_sets() -> None:
    """Spread keeps a token's one address and network inline until a second comes: the same counts
    as the two Distinct sets it stands for."""
    rng = random.Random(4)
    for _ in range(40):
        spread, ips, nets = Spread(), Distinct(), Distinct()
        window, ip_cap, net_cap = rng.choice((5.0, 60.0, 600.0)), rng.randint(1, 9), rng.randint(1, 5)
        now = prev = 0.0
        for _ in range(300):
            now += rng.choice((0.0, 0.5, 3.0, 30.0, 700.0))
            ip = f"10.0.{rng.randint(0, 2)}.{rng.randint(1, 3)}" if rng.random() < 0.7 else "10.0.0.1"
            net = ip.rsplit(".", 1)[0]
            got = spread.count(ip, net, prev, now, window, ip_cap, net_cap)
            assert got == (ips.add(ip, now, window, ip_cap), nets.add(net, now, window, net_cap))
            prev = now

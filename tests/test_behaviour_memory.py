"""Behaviour's memory stays bounded under floods of fresh keys, and eviction spares risky entities.

An attacker can invent API keys, session cookies, user names, login accounts and (with many
addresses) addresses for free; every per-key table of behaviour (the entity graph, activity records,
each scenario's records, the per-address and per-template tables) must stop growing at its cap, and
making room must push out idle clean keys before the record of an attacker's own risk.
"""

from __future__ import annotations

import base64
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson

from bastion.decision import Decision, DecisionAction, KeyKind, Origin
from bastion.detect.behaviour.counters import make_room
from bastion.detect.behaviour.settings import activity_cap, subject_cap
from bastion.detect.behaviour.store import MemoryStore
from bastion.entity import EntityGraph, GraphLimits, hash_key
from bastion.testing import behaviour_state_bytes
from behaviour_helpers import Harness

MAX_KEYS = 1000  # the smallest the setting allows: every cap is 1000 entries


def tables(h: Harness) -> dict[str, int]:
    det = h.detector("behaviour")
    out = {"graph": len(det.core.graph.nodes), "activity": len(det.activity),
           "population templates": len(det.population), "logins_by_ip": len(det._logins_by_ip)}
    out.update({f"tracks.{name}": len(t) for name, t in det.tracks.items()})
    out["population ids"] = max((len(d) for d in det.population.values()), default=0)
    return out


def one_address(i: int) -> tuple[str, str, str, list[tuple[str, str]], bytes, int, bytes]:
    """(a) one address, a fresh API key, session and Basic user on every request."""
    user = base64.b64encode(f"user{i}:pw".encode()).decode()
    return ("GET", f"/api/items/{i:08x}a1/detail?ref={i}", "127.80.0.1",
            [("Host", "api.test"), ("User-Agent", "tool/1.0"), ("X-API-Key", f"key-{i}"),
             ("Authorization", f"Basic {user}"), ("Cookie", f"session=s{i}")], b"", 200, b'{"id": 1}')


def many_addresses(i: int) -> tuple[str, str, str, list[tuple[str, str]], bytes, int, bytes]:
    """(b) a fresh address, API key, session and User-Agent per client (a botnet or proxy pool)."""
    return ("GET", f"/api/items/{i:08x}b2/detail?ref={i}", f"10.81.{i >> 8 & 255}.{i & 255}",
            [("Host", "api.test"), ("User-Agent", f"client-{i}/1.0"), ("X-API-Key", f"key-{i}"),
             ("Cookie", f"session=s{i}")], b"", 200, b'{"id": 1}')


def stuffing(i: int) -> tuple[str, str, str, list[tuple[str, str]], bytes, int, bytes]:
    """(c) credential stuffing: a fresh account per attempt, from rotating addresses (each of another
    network: a residential proxy pool) and User-Agents."""
    body = orjson.dumps({"username": f"victim{i}@mail.test", "password": "hunter2"})
    return ("POST", "/api/login", f"10.{i % 250}.{i // 250 % 250}.82",  # a network of its own, each
            [("Host", "api.test"), ("User-Agent", f"agent-{i}"), ("Content-Type", "application/json")], body, 401,
            b'{"error": "invalid credentials"}')


def logins(i: int) -> tuple[str, str, str, list[tuple[str, str]], bytes, int, bytes]:
    """(c') accounts logging in successfully (an API that answers 200 to anything), a few addresses."""
    body = orjson.dumps({"username": f"acct{i}@mail.test", "password": "x"})
    return ("POST", "/api/login", f"10.83.0.{i % 50 + 1}",
            [("Host", "api.test"), ("User-Agent", f"agent-{i}"), ("Content-Type", "application/json")], body, 200,
            b'{"token": "t"}')


async def flood(h: Harness, shape: Callable[[int], Any], start: int, n: int) -> None:
    for i in range(start, start + n):
        method, target, ip, headers, body, status, resp = shape(i)
        await h.send(ip, method, target, status=status, body=body, resp_body=resp, headers=headers, advance=0.01)


async def check_bounded(shape: Callable[[int], Any]) -> None:
    h = await Harness({"behaviour": {"entity": {"max_keys": MAX_KEYS}}}).start()
    det = h.detector("behaviour")

    def state() -> int:
        return behaviour_state_bytes(det)

    tracemalloc.start()  # (only what is allocated from now on is traced: from the start)
    try:
        await flood(h, shape, 0, 2 * MAX_KEYS)  # every table at its cap by now
        full = state()
        await flood(h, shape, 2 * MAX_KEYS, 2 * MAX_KEYS)
        grown = state() - full
    finally:
        tracemalloc.stop()
    sizes = tables(h)
    assert sizes["graph"] <= MAX_KEYS, sizes
    assert sizes["activity"] <= activity_cap(MAX_KEYS), sizes
    for name, n in sizes.items():
        if name.startswith("tracks."):
            assert n <= subject_cap(MAX_KEYS), sizes
    assert sizes["population ids"] <= det._population_cap, sizes
    # 2000 more fresh clients once full: the state no longer grows (noise, not the ~2 KB per client
    # an unbounded table would add)
    assert grown < 20 * MAX_KEYS, (grown, full, sizes)
    await h.stop()


async def test_one_address_inventing_keys_sessions_and_users_stays_bounded() -> None:
    await check_bounded(one_address)


async def test_many_addresses_with_fresh_keys_stay_bounded() -> None:
    await check_bounded(many_addresses)


async def test_credential_stuffing_over_fresh_accounts_stays_bounded() -> None:
    await check_bounded(stuffing)


async def test_successful_logins_over_fresh_accounts_stay_bounded() -> None:
    await check_bounded(logins)
    h = await Harness().start()
    await flood(h, logins, 0, 500)
    det = h.detector("behaviour")
    # an address counts the accounts logging in from it only until it is shared (`popular`)
    assert max(len(d) for d in det._logins_by_ip.values()) <= det.core.graph.limits.popular + 1
    assert det.core.graph.popular(det.core.graph.nodes["ip:10.83.0.1"])
    await h.stop()


async def test_a_risky_entity_survives_a_flood_of_fresh_keys() -> None:
    """An attacker with risk below the block, then silent, floods fresh keys from other addresses to
    push his record out of the graph: idle clean keys go, his risk stays."""
    h = await Harness({"behaviour": {"entity": {"max_keys": MAX_KEYS}}}).start()
    core = h.detector("behaviour").core
    graph = core.graph
    attacker_keys = {"ip": "127.84.0.1", "api_key": hash_key("attacker-key", h.config.behaviour.entity.key_salt)}
    await h.send("127.84.0.1", headers=[("Host", "api.test"), ("X-API-Key", "attacker-key")])
    await h.send("127.84.0.2", headers=[("Host", "api.test"), ("X-API-Key", "bystander-key")])
    attacker = core.resolve(attacker_keys)
    assert attacker is not None
    core.risk.add(attacker, 60.0, "test", h.clock.now())  # challenged, not blocked
    await flood(h, many_addresses, 0, 3 * MAX_KEYS)
    assert len(graph.nodes) <= MAX_KEYS
    assert graph.nodes.get("ip:127.84.0.1") is not None, "the attacker's address was evicted"
    assert core.resolve(attacker_keys) is attacker and core.risk.current(attacker, h.clock.now()) > 50.0
    assert graph.nodes.get("ip:127.84.0.2") is None, "an idle clean key of the same age should have gone first"
    # back from the same address with the same key: his risk was not flushed
    s = await h.send("127.84.0.1", headers=[("Host", "api.test"), ("X-API-Key", "attacker-key")])
    assert s.ex.entity == attacker.id and s.ex.risk > 50.0
    await h.stop()


def test_graph_eviction_prefers_idle_clean_keys_over_risky_and_recent_ones() -> None:
    g = EntityGraph(GraphLimits(max_keys=1000))
    risky = g.observe({"ip": "10.85.0.1", "session": "attacker"}, 0.0).entity
    risky.risk, risky.risk_t = 50.0, 0.0
    repeat = g.observe({"ip": "10.85.0.2"}, 0.0).entity
    repeat.offenses = 2  # blocked twice before (its block is over): the next block is longer
    g.observe({"ip": "10.85.0.3"}, 0.0)  # clean, idle
    for i in range(5000):
        g.observe({"ip": f"10.86.{i >> 8}.{i & 255}"}, 1.0 + i * 0.01)
        if i % 100 == 0:
            g.observe({"ip": "10.85.0.4"}, 1.0 + i * 0.01)  # clean, but active all along
    assert len(g) <= 1000
    assert g.get("ip:10.85.0.1") is not None and g.get("session:attacker") is not None
    assert g.get("ip:10.85.0.2") is not None
    assert g.get("ip:10.85.0.4") is not None
    assert g.get("ip:10.85.0.3") is None


def test_graph_eviction_still_bounds_a_flood_of_risky_keys() -> None:
    """Keys that all earn risk cannot pin the table: the least recently seen risky ones go."""
    g = EntityGraph(GraphLimits(max_keys=1000))
    for i in range(5000):
        ent = g.observe({"ip": f"10.87.{i >> 8}.{i & 255}"}, float(i)).entity
        ent.risk, ent.risk_t = 80.0, float(i)
    assert len(g) <= 1000
    assert g.get("ip:10.87.19.135") is not None  # the newest stays


def test_make_room_drops_the_least_recently_used_and_gives_the_others_a_second_chance() -> None:
    class Rec:
        def __init__(self, last: float) -> None:
            self.last = last

    table = {f"k{i}": Rec(float(i)) for i in range(1000)}
    for i in range(0, 100, 10):
        table[f"k{i}"].last = 5000.0  # old entries used again lately
    dropped = make_room(table, 50)
    assert dropped == 50 and len(table) == 950
    assert all(f"k{i}" in table for i in range(0, 100, 10))
    gone = [i for i in range(1000) if f"k{i}" not in table]
    assert len(gone) == 50 and max(gone) < 264  # from the window at the front (4 x 50 + 64 entries)
    # the survivors of the window went to the back: the next pass looks at the next entries
    assert next(iter(table)) == "k264"


def test_automatic_decisions_are_capped_and_the_soonest_to_expire_go_first() -> None:
    store = MemoryStore()  # (no file)
    store.max_automatic = 100
    store.add(Decision(kind=KeyKind.IP, value="10.88.0.1", action=DecisionAction.DENY, origin=Origin.ADMIN,
                       until=1.0, reason="an operator's", id="manual"))
    for i in range(300):  # a block per fresh key, expiring in turn
        store.add(Decision(kind=KeyKind.SESSION, value=f"s{i}", action=DecisionAction.DENY, origin=Origin.RISK,
                           until=1000.0 + i, reason="risk", id=f"auto{i}"))
    assert len(store.index) == 101 and store.shed == 200
    assert "manual" in store.index.by_id  # never shed, however soon it expires
    assert "auto299" in store.index.by_id and "auto199" not in store.index.by_id

"""The EventStore contract, run against every backend (tests/test_store_*.py)."""

from __future__ import annotations

from bastion.events import Event
from bastion.store import EventStore

T0 = 1_700_000_000.0


def sample(i: int, **kw: object) -> Event:
    base: dict[str, object] = {
        "time": T0 + i,
        "request_id": f"r{i}",
        "client_ip": f"10.0.0.{i % 3}",
        "peer_ip": "10.0.0.254",
        "method": "GET",
        "path": f"/api/items/{i}",
        "route": "/api/items/{id}",
        "site": "shop.example",
        "status": 403 if i % 2 else 200,
        "action": "block" if i % 2 else "log",
        "score": i,
        "rule_ids": ("942100", "942200") if i % 2 else ("920170",),
        "findings": [{"rule_id": "942100", "detector": "signatures", "message": "SQLi", "evidence": "' OR 1=1"}],
        "reason": "request-blocked" if i % 2 else "",
        "duration_ms": 1.5,
        "mode": "enforce",
        "would_block": False,
        "entity": "",
    }
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def check_contract(store: EventStore) -> None:
    assert store.count() == 0
    assert store.write_many([]) == 0
    events = [sample(i) for i in range(10)]
    assert store.write_many(events) == 10
    assert store.count() == 10

    got = store.query(limit=3)
    assert [e.request_id for e in got] == ["r9", "r8", "r7"]  # newest first
    first = got[0]
    assert first.id is not None
    first.id = None
    assert first == events[9]  # every field round-trips

    assert [e.request_id for e in store.query(since=T0 + 3, until=T0 + 6)] == ["r5", "r4", "r3"]
    assert store.count(since=T0 + 3, until=T0 + 6) == 3
    assert {e.request_id for e in store.query(action="block")} == {"r1", "r3", "r5", "r7", "r9"}
    assert store.count(client="10.0.0.1") == len([i for i in range(10) if i % 3 == 1])
    assert store.count(rule="942100") == 5
    assert store.count(rule="9421") == 0  # whole rule ids only
    assert store.count(rule="920170", action="log") == 5
    assert store.query(limit=0) == []

    # Strings that would break naive SQL stay data.
    store.write_many([sample(100, path="/x'; DROP TABLE events;--", rule_ids=("a b", "c'd"))])
    assert store.count() == 11
    odd = store.query(limit=1)[0]
    assert odd.path == "/x'; DROP TABLE events;--"

    assert store.prune(retention=5.0, now=T0 + 10) == 5  # r0..r4 are older than T0+5
    assert store.count() == 6
    assert store.prune(retention=1e9, now=T0 + 10) == 0

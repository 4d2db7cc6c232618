"""Entity keys and linking: what is read from a request, what links, what must never merge."""

from __future__ import annotations

import base64
import gc
import tracemalloc

from bastion.entity import (
    EntityGraph,
    GraphLimits,
    KeySettings,
    extract_keys,
    fingerprint,
    jwt_subject,
    network_of,
    ua_family,
)
from bastion.exchange import Client, Exchange, Headers, Request

CHROME = [("Host", "a"), ("User-Agent", "Mozilla/5.0 (X11) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"),
          ("Accept", "application/json"), ("Accept-Language", "en")]


def ex(headers: list[tuple[str, str]], ip: str = "127.1.1.1", target: str = "/") -> Exchange:
    return Exchange(id="x", client=Client(peer_ip=ip), request=Request("GET", target, Headers(headers)), started=0.0)


def jwt(sub: str) -> str:
    body = base64.urlsafe_b64encode(f'{{"sub":"{sub}"}}'.encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{body}.sig"


def test_keys_from_a_request() -> None:
    s = KeySettings()
    headers = [*CHROME, ("Authorization", f"Bearer {jwt('alice')}"), ("Cookie", "theme=dark; sid=abc123")]
    k = extract_keys(ex(headers), s)
    assert k["ip"] == "127.1.1.1" and k["net"] == "127.1.1.0/24"
    assert k["user"] == "alice"
    assert k["session"] != "abc123" and len(k["session"]) == 16  # hashed, never raw
    assert "fp" in k
    k2 = extract_keys(ex([("X-API-Key", "secret-key-1")]), s)
    assert k2["api_key"] != "secret-key-1"
    k3 = extract_keys(ex([("Authorization", "Bearer opaque-token")]), s)
    assert "api_key" in k3 and "user" not in k3
    k4 = extract_keys(ex([("Authorization", "Basic " + base64.b64encode(b"bob:pw").decode())]), s)
    assert k4["user"] == "bob"
    k5 = extract_keys(ex([("X-User", "carol")]), KeySettings(user_header="x-user"))
    assert k5["user"] == "carol"
    assert extract_keys(ex([], target="/x?api_key=zz"), s)["api_key"]


def test_hostile_values_do_not_crash() -> None:
    s = KeySettings()
    for bad in ["Bearer a.b.c", "Bearer ..", "Basic %%%", "Bearer " + "A" * 10000 + ".x.y", "Basic", "Digest x"]:
        extract_keys(ex([("Authorization", bad), ("Cookie", "=;;sid=;=x")]), s)
    assert jwt_subject("a.!!!.c") == ""
    assert network_of("garbage") == ""
    assert network_of("2001:db8::1") == "2001:db8::/64"


def test_fingerprint_is_stable_across_login_and_differs_between_clients() -> None:
    before = fingerprint(ex(CHROME))
    after = fingerprint(ex([*CHROME, ("Cookie", "sid=1"), ("Authorization", "Bearer x")]))
    assert before == after  # cookies and credentials appear after login: same client software
    tool = fingerprint(ex([("Host", "a"), ("User-Agent", "python-requests/2.31"), ("Accept", "*/*")]))
    reordered = fingerprint(ex([CHROME[1], CHROME[0], CHROME[2], CHROME[3]]))
    assert tool != before and reordered != before
    assert ua_family(CHROME[1][1]) == "chrome"
    assert ua_family("curl/8.5") == "curl"


def test_session_links_addresses_so_risk_follows_the_attacker() -> None:
    g = EntityGraph()
    a = g.observe({"ip": "127.0.0.1", "session": "s1"}, 0.0).entity
    a.risk = 50.0
    b = g.observe({"ip": "127.0.0.2", "session": "s1"}, 1.0).entity
    assert a is b and sorted(b.keys()) == ["ip:127.0.0.1", "ip:127.0.0.2", "session:s1"]
    # an anonymous request from the second address now belongs to the same entity
    assert g.observe({"ip": "127.0.0.2"}, 2.0).entity is a


def test_nat_address_never_merges_two_identities() -> None:
    g = EntityGraph(GraphLimits(popular=3))
    users = [g.observe({"ip": "127.0.0.9", "user": f"u{i}"}, float(i)).entity for i in range(10)]
    assert len({id(u) for u in users}) == 10
    nat = g.get("ip:127.0.0.9")
    assert nat is not None and g.popular(nat)


def test_caps_bound_an_entity() -> None:
    g = EntityGraph(GraphLimits(max_ips=8))
    for i in range(50):
        g.observe({"ip": f"127.0.1.{i}", "api_key": "k"}, float(i))
    ent = g.entity_of("api_key:k")
    assert ent is not None and ent.n_ip == 8
    assert g.refused > 0


def test_fingerprints_are_never_linked() -> None:
    g = EntityGraph()
    a = g.observe({"ip": "127.0.2.1", "fp": "same"}, 0.0).entity
    b = g.observe({"ip": "127.0.2.2", "fp": "same"}, 0.0).entity
    assert a is not b


def test_idle_keys_expire() -> None:
    g = EntityGraph(GraphLimits(idle_ttl=100.0))
    g.observe({"ip": "127.0.3.1"}, 0.0)
    g.observe({"ip": "127.0.3.2"}, 90.0)
    assert g.sweep(150.0) == 1
    assert g.get("ip:127.0.3.1") is None and g.get("ip:127.0.3.2") is not None


def test_max_keys_evicts_oldest() -> None:
    g = EntityGraph(GraphLimits(max_keys=1000))
    for i in range(3000):
        g.observe({"ip": f"10.0.{i >> 8}.{i & 255}"}, float(i))
    assert len(g) <= 1000
    assert g.get("ip:10.0.11.183") is not None  # the newest is kept


def test_memory_per_entity_under_one_kilobyte() -> None:
    # Measured on 20k entities of three keys each (address, fingerprint shared by 100, session);
    # bench/behaviour.py measures 1M the same way (by RSS, without tracemalloc's slowness).
    gc.collect()
    tracemalloc.start()
    g = EntityGraph()
    base = tracemalloc.get_traced_memory()[0]
    n = 20_000
    for i in range(n):
        g.observe({"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "fp": f"{i % 100:012x}",
                   "session": f"{i:016x}"}, float(i))
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per = used / n
    assert per < 1024, per


def test_idle_keys_expire_incrementally_without_a_full_scan() -> None:
    g = EntityGraph(GraphLimits(idle_ttl=100.0))
    for i in range(5000):
        g.observe({"ip": f"10.1.{i >> 8}.{i & 255}"}, 0.0)
    # later traffic: each observe checks a bounded slice, until every idle key is gone
    for i in range(10):
        g.observe({"ip": "127.0.9.9"}, 200.0 + i)
    assert len(g) == 1

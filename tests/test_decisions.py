"""Decisions: the index (prefix matching, precedence, expiry), the detector, the file store, the CLI."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.decision import Decision, DecisionAction, DecisionIndex, KeyKind, Origin, normalise_ip_value
from bastion.detect.behaviour.store import MemoryStore, read_decisions, update_decisions
from bastion.entity import hash_key
from bastion.verdict import Action
from behaviour_helpers import TOOL, Harness


def deny(value: str, origin: Origin = Origin.ADMIN, until: float | None = None, kind: KeyKind = KeyKind.IP,
         action: DecisionAction = DecisionAction.DENY) -> Decision:
    return Decision(kind=kind, value=normalise_ip_value(value) if kind == KeyKind.IP else value, action=action,
                    origin=origin, until=until)


def test_prefix_index_most_specific_wins() -> None:
    idx = DecisionIndex()
    idx.add(deny("10.0.0.0/8"))
    idx.add(deny("10.1.2.0/24", action=DecisionAction.ALLOW))
    idx.add(deny("2001:db8::/32"))
    now = 1.0
    assert idx.lookup_ip("10.9.9.9", now).action == DecisionAction.DENY  # type: ignore[union-attr]
    assert idx.lookup_ip("10.1.2.3", now).action == DecisionAction.ALLOW  # type: ignore[union-attr]
    assert idx.lookup_ip("11.0.0.1", now) is None
    assert idx.lookup_ip("2001:db8::5", now) is not None
    assert idx.lookup_ip("::ffff:10.9.9.9", now) is not None  # IPv4-mapped is the IPv4 address
    assert idx.lookup_ip("not-an-ip", now) is None
    assert idx.lookup_ip("1.2.3.²", now) is None  # a unicode digit is not an address digit


def test_manual_allow_beats_automatic_deny_and_deny_beats_allow_at_equal_rank() -> None:
    idx = DecisionIndex()
    idx.add(deny("127.0.0.5", origin=Origin.RISK))
    idx.add(deny("127.0.0.0/24", action=DecisionAction.ALLOW, origin=Origin.CONFIG))
    assert idx.lookup_ip("127.0.0.5", 0).action == DecisionAction.ALLOW  # type: ignore[union-attr]
    idx2 = DecisionIndex()
    idx2.add(deny("127.0.0.5", action=DecisionAction.ALLOW))
    idx2.add(deny("127.0.0.5"))
    assert idx2.lookup_ip("127.0.0.5", 0).action == DecisionAction.DENY  # type: ignore[union-attr]


def test_expiry_and_purge() -> None:
    idx = DecisionIndex()
    d = deny("127.0.0.9", until=100.0)
    idx.add(d)
    assert idx.lookup_ip("127.0.0.9", 99.0) is not None
    assert idx.lookup_ip("127.0.0.9", 100.0) is None  # lazily ignored once expired
    assert idx.purge(100.0) == [d]
    assert len(idx) == 0


def test_prefix_lookup_is_not_a_scan() -> None:
    # 100k single-address decisions and a few networks: a lookup stays a handful of dict gets
    idx = DecisionIndex()
    for i in range(100_000):
        idx.add(Decision(KeyKind.IP, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", DecisionAction.DENY,
                         Origin.RISK))
    idx.add(deny("192.168.0.0/16"))
    t0 = time.perf_counter()
    for _ in range(10_000):
        idx.lookup_ip("192.168.4.4", 0.0)
    per = (time.perf_counter() - t0) / 10_000
    assert per < 50e-6, per


def test_bad_records_are_rejected_clearly() -> None:
    with pytest.raises(ValueError):
        Decision.from_dict({"kind": "ip", "value": "300.1.1.1", "action": "deny"})
    with pytest.raises(ValueError):
        Decision.from_dict({"kind": "nope", "value": "x", "action": "deny"})
    with pytest.raises(ValueError):
        Decision.from_dict({"value": "1.2.3.4"})


async def test_config_deny_blocks_at_connection_and_allow_skips_detectors() -> None:
    h = await Harness({"decisions": [{"action": "deny", "cidr": "127.66.0.0/16", "reason": "abuse"},
                                     {"action": "allow", "cidr": "127.77.0.1"}]}).start()
    s = await h.send("127.66.3.4", target="/anything")
    assert s.blocked and s.status == 403
    assert s.ex.verdict is not None and s.ex.verdict.reason == "access-denied"
    assert s.ex.findings[0].rule_id == "decision-config"
    ok = await h.send("127.5.0.1", target="/anything")
    assert not ok.blocked
    allowed = await h.send("127.77.0.1", target="/anything")
    assert allowed.ex.allowlisted
    await h.stop()


async def test_config_decision_with_ttl_expires_on_the_clock() -> None:
    h = await Harness({"decisions": [{"action": "deny", "cidr": "127.8.8.8", "ttl": 60}]}).start()
    assert (await h.send("127.8.8.8")).blocked
    h.clock.advance(61)
    assert not (await h.send("127.8.8.8")).blocked
    await h.stop()


async def test_decisions_on_other_keys_than_ip() -> None:
    h = await Harness().start()
    h.core.store.add(Decision(KeyKind.API_KEY, hash_key("stolen-key"), DecisionAction.DENY, Origin.ADMIN))
    blocked = await h.send("127.3.0.1", headers=[*TOOL, ("X-API-Key", "stolen-key")])
    assert blocked.blocked and blocked.status == 403
    assert not (await h.send("127.3.0.1", headers=[*TOOL, ("X-API-Key", "other")])).blocked
    h.core.store.add(Decision(KeyKind.USER, "mallory", DecisionAction.CHALLENGE, Origin.ADMIN))
    jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.x"  # {"sub":"mallory"}
    ch = await h.send("127.3.0.2", headers=[*TOOL, ("Authorization", f"Bearer {jwt}")])
    assert ch.action == Action.CHALLENGE and ch.status == 401
    await h.stop()


async def test_automatic_fingerprint_decision_is_scoped_and_spares_established_users() -> None:
    h = await Harness().start()
    # an established user with the tool's fingerprint: several normal answers first
    for i in range(6):
        await h.send("127.4.0.1", target=f"/products/{i}")
    fp = (await h.send("127.4.0.1", target="/products/1")).ex.keys["fp"]
    h.core.store.add(Decision(KeyKind.FINGERPRINT, fp, DecisionAction.DENY, Origin.RISK, scope="login"))
    login = {"username": "a@b.test", "password": "x"}
    assert not (await h.send("127.4.0.1", "POST", "/api/login", body=login, status=401)).blocked
    # a fresh anonymous address with the same software: its logins are refused, its browsing is not
    assert (await h.send("127.4.0.2", "POST", "/api/login", body=login, status=401)).blocked
    assert not (await h.send("127.4.0.3", target="/products/2")).blocked
    await h.stop()


def test_file_store_roundtrip_and_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.json"
    d = deny("127.9.0.0/16")
    update_decisions(path, add=[d])
    assert [x.id for x in read_decisions(path)] == [d.id]
    update_decisions(path, delete=[d.id])
    assert read_decisions(path) == []
    path.write_text("{not json")
    assert read_decisions(path) == []  # logged, not fatal


async def test_memory_store_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.json"
    store = MemoryStore(path, poll_interval=0.02)
    await store.start()
    other = deny("127.10.0.1")
    update_decisions(path, add=[other])  # another process (the CLI) adds one
    import asyncio

    for _ in range(100):
        if store.index.lookup_ip("127.10.0.1", 0.0):
            break
        await asyncio.sleep(0.02)
    assert store.index.lookup_ip("127.10.0.1", 0.0) is not None
    mine = deny("127.11.0.1", origin=Origin.RISK)
    store.add(mine)
    await store.flush()
    assert mine.id in {x.id for x in read_decisions(path)}
    update_decisions(path, delete=[other.id])
    for _ in range(100):
        if store.index.lookup_ip("127.10.0.1", 0.0) is None:
            break
        await asyncio.sleep(0.02)
    assert store.index.lookup_ip("127.10.0.1", 0.0) is None
    await store.stop()


def test_cli_add_list_delete(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["decisions"]
    res = runner.invoke(app, [*base, "add", "127.12.0.0/24", "--data-dir", str(tmp_path), "--duration", "1h",
                              "--reason", "test"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*base, "list", "--data-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert "127.12.0.0/24" in res.output
    did = read_decisions(tmp_path / "decisions.json")[0].id
    res = runner.invoke(app, [*base, "delete", did, "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert read_decisions(tmp_path / "decisions.json") == []
    bad = runner.invoke(app, [*base, "add", "999.1.1.1", "--data-dir", str(tmp_path)])
    assert bad.exit_code != 0 and "999.1.1.1" in bad.output


async def test_unreachable_redis_does_not_stop_the_gateway() -> None:
    # nothing listens on port 1: start-up logs the problem and enforcement goes on locally
    h = Harness({"behaviour": {"decisions": {"url": "redis://127.0.0.1:1/13", "prefix": "test-h7-down"}},
                 "decisions": [{"action": "deny", "cidr": "127.84.0.1"}]})
    await h.start()
    try:
        assert (await h.send("127.84.0.1")).blocked
        assert not (await h.send("127.84.0.2")).blocked
        h.core.store.add(Decision(KeyKind.IP, "127.84.0.3", DecisionAction.DENY, Origin.ADMIN))
        assert (await h.send("127.84.0.3")).blocked
    finally:
        await h.stop()


async def test_redis_password_never_logged_when_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    # H11: RedisStore logged its URL, password included, when Redis was unreachable at start.
    import socket

    from bastion.detect.behaviour.store import RedisStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    store = RedisStore(f"redis://:hunter2secret@127.0.0.1:{port}/13", prefix="h11-test-decisions")
    with caplog.at_level(logging.ERROR, logger="bastion"):
        await store.start()
    await store.stop()
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "cannot load" in text and "hunter2secret" not in text


async def test_risk_sharing_with_redis_gone_counts_losses_and_logs_once(caplog) -> None:
    import logging

    from bastion.detect.behaviour.store import RedisStore

    class Down:
        async def publish(self, *a: object) -> None:
            raise ConnectionError("redis is down")

    store = RedisStore("redis://127.0.0.1:1/0")
    store._redis = Down()
    with caplog.at_level(logging.WARNING, logger="bastion.decisions"):
        for i in range(3):
            store.share_risk(["ip:198.51.100.7"], 10.0, "942100", float(i))
            await store.flush()  # one batch each (they are 50 ms apart)
    assert store.risk_lost == 3
    assert sum("risk to redis failed" in r.getMessage() for r in caplog.records) == 1

"""Two gateway instances sharing decisions through Redis: one decides, both enforce at once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
import pytest
import redis
from typer.testing import CliRunner

from bastion.cli import app
from bastion.decision import Decision, DecisionAction, KeyKind, Origin
from behaviour_helpers import MINE, Harness
from state_backends import REDIS_URL, redis_up

pytestmark = [pytest.mark.redis,
              pytest.mark.skipif(not redis_up(), reason="needs Redis on 127.0.0.1:6379 (db 13)")]


@pytest.fixture
def prefix() -> object:
    p = f"test-h7-{uuid.uuid4().hex[:8]}:decisions"
    yield p
    r = redis.Redis.from_url(REDIS_URL)
    r.delete(p)
    r.close()


async def instance(prefix: str) -> Harness:
    h = Harness({"behaviour": {"decisions": {"url": REDIS_URL, "prefix": prefix}}})
    return await h.start()


async def wait_for(pred: object, seconds: float = 3.0) -> bool:
    for _ in range(int(seconds / 0.01)):
        if pred():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.01)
    return False


async def test_risk_block_on_one_instance_is_enforced_by_the_other(prefix: str) -> None:
    a, b = await instance(prefix), await instance(prefix)
    try:
        ip = "127.80.0.1"
        assert not (await b.send(ip, target="/x")).blocked
        # instance A sees a scanner and bans it
        for i in range(30):
            s = await a.send(ip, target=f"/scan{i}", status=404, advance=0.2)
            if s.blocked:
                break
        assert s.blocked
        await a.core.store.flush()
        assert await wait_for(lambda: b.core.store.index.lookup_ip(ip, b.clock.now()) is not None)
        sb = await b.send(ip, target="/innocent")  # B never saw the scan
        assert sb.blocked and sb.status == 403
        # revoked on B: A stops enforcing too
        for d in list(b.core.store.index):
            b.core.store.delete(d.id)
        await b.core.store.flush()
        assert await wait_for(lambda: a.core.store.index.lookup_ip(ip, a.clock.now()) is None)
        assert not (await a.send(ip, target="/y")).blocked
    finally:
        await a.stop()
        await b.stop()


async def test_admin_decision_from_the_cli_reaches_running_instances(prefix: str, tmp_path: Path) -> None:
    a, b = await instance(prefix), await instance(prefix)
    cfg = tmp_path / "bastion.yaml"
    cfg.write_text(f"data_dir: {tmp_path}\nbehaviour:\n  decisions:\n    url: {REDIS_URL}\n    prefix: '{prefix}'\n")
    try:
        runner = CliRunner()
        res = runner.invoke(app, ["decisions", "add", "127.82.0.0/16", "--config", str(cfg), "--duration", "10m"])
        assert res.exit_code == 0, res.output
        assert await wait_for(lambda: a.core.store.index.lookup_ip("127.82.3.4", 0.0) is not None)
        assert await wait_for(lambda: b.core.store.index.lookup_ip("127.82.3.4", 0.0) is not None)
        assert (await a.send("127.82.3.4")).blocked and (await b.send("127.82.9.9")).blocked
        listed = runner.invoke(app, ["decisions", "list", "--config", str(cfg), "--json"])
        assert "127.82.0.0/16" in listed.output
        did = orjson.loads(listed.output.splitlines()[0])["id"]
        assert runner.invoke(app, ["decisions", "delete", did, "--config", str(cfg)]).exit_code == 0
        assert await wait_for(lambda: b.core.store.index.lookup_ip("127.82.3.4", 0.0) is None)
        assert not (await b.send("127.82.3.4")).blocked
    finally:
        await a.stop()
        await b.stop()


async def test_a_late_instance_loads_existing_decisions(prefix: str) -> None:
    a = await instance(prefix)
    try:
        a.core.store.add(Decision(KeyKind.IP, "127.83.0.1", DecisionAction.DENY, Origin.ADMIN))
        await a.core.store.flush()
        c = await instance(prefix)
        try:
            assert (await c.send("127.83.0.1")).blocked
        finally:
            await c.stop()
    finally:
        await a.stop()


async def test_risk_scored_on_two_instances_adds_up(prefix: str) -> None:
    # An attacker alternating between two instances: each one alone would need about six attacks to
    # ban it (tests/test_risk.py), but they share the risk they score, so the ban comes as early as
    # on one instance.
    cfg = {"behaviour": {"decisions": {"url": REDIS_URL, "prefix": prefix}, "risk": {"exploit_cap": 90.0}}}
    a = await Harness(cfg, only=MINE | {"signatures"}).start()
    b = await Harness(cfg, only=MINE | {"signatures"}).start()
    try:
        ip = "127.83.0.1"
        first = None
        for i in range(12):
            h, other = (a, b) if i % 2 == 0 else (b, a)
            seen = other.core.remote_deltas
            s = await h.send(ip, target=f"/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--%20{i}")
            if s.blocked and "decision-risk" in s.rules():
                first = i + 1
                break
            await h.core.store.flush()  # the delta published (one message per 50 ms batch)
            assert await wait_for(lambda o=other, n=seen: o.core.remote_deltas > n)
        assert first is not None and first <= 8, first
        # the explanation on the instance that banned names risk scored on the other one
        ent = (a if first % 2 else b).core.resolve({"ip": ip})
        assert ent is not None and ent.history and len(ent.history) >= 4
    finally:
        await a.stop()
        await b.stop()

"""Behaviour through the real proxy: real sockets, distinct loopback source addresses as clients."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from bastion.cli import app
from proxy_helpers import gateway, get, make_config, request, upstream_server

MINE = {"decisions", "risk", "behaviour"}


def post(path: str, body: dict[str, str]) -> bytes:
    raw = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: stuffer/1.0\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n").encode() + raw


async def test_scanner_blocked_with_problem_json_others_served(tmp_path: Path) -> None:
    async with upstream_server() as up:
        cfg = make_config(up.url, data_dir=str(tmp_path))
        async with gateway(cfg, only=MINE) as gw:
            statuses = []
            for i in range(30):
                r = await request(gw.port, get(f"/status/probe{i}/404"), local_ip="127.90.0.1")
                statuses.append(r.status)
                if r.status == 403:
                    assert r.header("content-type", ).startswith("application/problem+json")  # type: ignore[union-attr]
                    assert r.json()["type"].endswith("access-denied")
                    break
            assert statuses[-1] == 403 and len(statuses) <= 20
            seen = len(up.requests)
            again = await request(gw.port, get("/hello"), local_ip="127.90.0.1")
            assert again.status == 403 and len(up.requests) == seen  # the ban holds; the API never sees it
            other = await request(gw.port, get("/hello"), local_ip="127.90.0.2")
            assert other.status == 200


async def test_config_deny_and_cli_decision_reach_the_running_proxy(tmp_path: Path) -> None:
    async with upstream_server() as up:
        cfg = make_config(up.url, data_dir=str(tmp_path), decisions=[{"action": "deny", "cidr": "127.91.0.0/24"}],
                          behaviour={"decisions": {"poll_interval": 0.05}})
        async with gateway(cfg, only=MINE) as gw:
            r = await request(gw.port, get("/hello"), local_ip="127.91.0.7")
            assert r.status == 403 and not up.requests
            assert (await request(gw.port, get("/hello"), local_ip="127.92.0.1")).status == 200
            res = CliRunner().invoke(app, ["decisions", "add", "127.92.0.1", "--data-dir", str(tmp_path)])
            assert res.exit_code == 0, res.output
            status = 200
            for _ in range(100):
                status = (await request(gw.port, get("/hello"), local_ip="127.92.0.1")).status
                if status == 403:
                    break
                await asyncio.sleep(0.05)
            assert status == 403


async def test_distributed_stuffing_over_many_addresses(tmp_path: Path) -> None:
    async with upstream_server() as up:
        cfg = make_config(up.url, data_dir=str(tmp_path))
        async with gateway(cfg, only=MINE) as gw:
            codes = []
            for i in range(60):
                ip = f"127.93.{i % 30}.{1 + i // 30}"  # 30 addresses, one client software
                r = await request(gw.port, post("/status/login/401", {"username": f"u{i}@x.test", "password": "p"}),
                                  local_ip=ip)
                codes.append(r.status)
            first = codes.index(403)
            assert first <= 20
            assert codes[-20:].count(403) == 20  # every later attempt, from any address, is refused


async def test_with_every_default_detector(tmp_path: Path) -> None:
    # the whole default pipeline: behaviour works alongside signatures, limits and rate limits
    async with upstream_server() as up:
        cfg = make_config(up.url, data_dir=str(tmp_path))
        async with gateway(cfg) as gw:
            codes = []
            for i in range(40):
                r = await request(gw.port, post("/status/login/401", {"username": f"x{i}@x.test", "password": "p"}),
                                  local_ip=f"127.94.{i % 20}.1")
                codes.append(r.status)
            assert 403 in codes[:20]
            assert codes[-10:].count(403) == 10
            assert (await request(gw.port, get("/hello"), local_ip="127.95.0.1")).status == 200

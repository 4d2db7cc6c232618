"""Rules end to end: the real proxy, a real upstream, clients from distinct loopback addresses;
two `bastion proxy` processes sharing one Redis enforce one limit together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bastion.clock import ManualClock
from bastion.config import BastionConfig, load_config
from bastion.frontends.proxy.server import ProxyServer
from bastion.runtime import Runtime
from proxy_helpers import get, read_response, request, upstream_server
from state_backends import REDIS_URL, redis_up, wipe

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
T0 = 1_700_000_000.0


@contextlib.asynccontextmanager
async def proxy(config: BastionConfig, clock: ManualClock) -> AsyncIterator[tuple[ProxyServer, Runtime]]:
    runtime = Runtime.create(config, clock=clock, with_store=False, only={"ratelimit"})
    await runtime.start()
    server = ProxyServer(runtime)
    await server.start()
    try:
        yield server, runtime
    finally:
        await server.close(grace=1.0)
        await runtime.stop()


def configure(example: str, upstream_url: str, backend: str, prefix: str) -> BastionConfig:
    cfg = load_config(EXAMPLES / example)
    cfg.upstream.url = upstream_url
    cfg.server.listen = "127.0.0.1:0"
    cfg.state.prefix = prefix
    if backend == "redis":
        if not redis_up():
            pytest.skip("Redis is not reachable at 127.0.0.1:6379 (CI runs these tests against a real Redis)")
        cfg.state.url = REDIS_URL
        cfg.state.timeout = 2.0
    return cfg


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own (the Redis tests wipe it at the end)."""
    return f"bastion-test-h6:{uuid.uuid4().hex[:8]}:"


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_per_ip_limit_through_the_proxy(backend, prefix):
    clock = ManualClock(T0)
    async with upstream_server() as up:
        cfg = configure("per-ip-limit.yaml", up.url, backend, prefix)
        async with proxy(cfg, clock) as (gw, _):
            statuses = [(await request(gw.port, get("/hello"), local_ip="127.0.9.1")).status for _ in range(20)]
            assert statuses == [200] * 20
            r = await request(gw.port, get("/hello"), local_ip="127.0.9.1")
            assert r.status == 429
            assert r.header("content-type") == "application/problem+json"
            assert json.loads(r.body)["type"].endswith("/rate-limited")
            assert int(r.header("retry-after") or 0) >= 1
            assert r.header("ratelimit-policy") == '"per-ip-limit";q=20;w=10'
            assert (r.header("ratelimit") or "").startswith('"per-ip-limit";r=0;t=')
            assert (await request(gw.port, get("/hello"), local_ip="127.0.9.2")).status == 200
            clock.advance(20)
            assert (await request(gw.port, get("/hello"), local_ip="127.0.9.1")).status == 200
    assert len(up.requests) == 22  # the refused request never reached the API
    if backend == "redis":
        await wipe(prefix)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_eleven_404s_block_that_ip_until_the_cooldown_ends(backend, prefix):
    clock = ManualClock(T0)
    async with upstream_server() as up:
        cfg = configure("scanner-404.yaml", up.url, backend, prefix)
        async with proxy(cfg, clock) as (gw, rt):
            for i in range(11):
                r = await request(gw.port, get(f"/wp-admin/{i}.php"), local_ip="127.0.9.3")
                assert r.status == 404  # the API answered; the rule counts after the response
                await rt.pipeline.drain()
            r = await request(gw.port, get("/hello"), local_ip="127.0.9.3")
            assert r.status == 403 and json.loads(r.body)["status"] == 403
            assert (await request(gw.port, get("/hello"), local_ip="127.0.9.4")).status == 200
            clock.advance(5 * 60 + 1)
            assert (await request(gw.port, get("/hello"), local_ip="127.0.9.3")).status == 200
    if backend == "redis":
        await wipe(prefix)


async def test_two_gateways_in_one_process_share_one_limit(prefix):
    """Two proxies with their own runtimes and Redis connections, hammered concurrently."""
    clock = ManualClock(T0)
    async with upstream_server() as up:
        cfgs = [configure("per-ip-limit.yaml", up.url, "redis", prefix) for _ in range(2)]
        async with proxy(cfgs[0], clock) as (a, _), proxy(cfgs[1], clock) as (b, _):
            tasks = [_hammer((a, b)[i % 2].port, "127.0.11.1", 10) for i in range(6)]
            statuses = [s for batch in await asyncio.gather(*tasks) for s in batch]
    assert statuses.count(200) == 20 and statuses.count(429) == 40
    await wipe(prefix)


# --- two gateway processes, one Redis --------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn_proxy(upstream: str, port: int, conf: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from bastion.cli import main; main()", "proxy", "--upstream", upstream,
         "--listen", f"127.0.0.1:{port}", "--config", str(conf), "--state", REDIS_URL,
         "--data-dir", str(log.parent / f"d{port}")],
        # A file, not a pipe: nobody reads a pipe here, and a full one stalls the gateway.
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env,
    )


def _exited(proc: subprocess.Popen[bytes], log: Path) -> str:
    return f"bastion proxy exited: {log.read_text(errors='replace')[-3000:]}"


async def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(_exited(proc, log))
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("bastion proxy did not start listening")


async def _hammer(port: int, ip: str, n: int) -> list[int]:
    """n keep-alive requests from one address, as fast as the gateway answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0))
    out = []
    try:
        for _ in range(n):
            writer.write(get("/hello"))
            await writer.drain()
            out.append((await read_response(reader)).status)
    finally:
        writer.close()
    return out


async def test_two_proxy_processes_share_one_limit(tmp_path):
    if not redis_up():
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (CI runs these tests against a real Redis)")
    prefix = f"bastion-test-h6:{uuid.uuid4().hex[:8]}:"
    limit = 30
    conf = tmp_path / "limit.yaml"
    conf.write_text(
        "rules:\n"
        f"  - {{id: shared-limit, key: ip, window: 1m, threshold: {limit}, actions: {{block: 429}}}}\n"
        f"state: {{prefix: '{prefix}', timeout: 2}}\n"
        "detectors: {signatures: {enabled: false}, behaviour: {enabled: false}}\n"
    )
    async with upstream_server() as up:
        ports = [_free_port(), _free_port()]
        env = dict(os.environ, BASTION_DATA_DIR=str(tmp_path))
        procs = [_spawn_proxy(up.url, port, conf, tmp_path / f"gw{port}.log", env) for port in ports]
        try:
            for port, proc in zip(ports, procs, strict=True):
                await _wait_listening(port, proc, tmp_path / f"gw{port}.log")
            # One client, 8 connections spread over both gateways, 100 requests in all, concurrently.
            tasks = [_hammer(ports[i % 2], "127.0.10.1", 25) for i in range(4)] + \
                    [_hammer(ports[i % 2], "127.0.10.1", 0) for i in range(4)]
            statuses = [s for batch in await asyncio.gather(*tasks) for s in batch]
            assert statuses.count(200) == limit, statuses
            assert statuses.count(429) == 100 - limit
            # Another client has its own quota on both gateways.
            assert (await request(ports[0], get("/hello"), local_ip="127.0.10.2")).status == 200
            assert (await request(ports[1], get("/hello"), local_ip="127.0.10.2")).status == 200
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            await wipe(prefix)


async def test_scanner_rule_with_every_default_detector():
    """The rule among all the default detectors: its risk reaches the behaviour engine too."""
    from proxy_helpers import Sink

    clock = ManualClock(T0)
    sink = Sink()
    async with upstream_server() as up:
        cfg = load_config(EXAMPLES / "scanner-404.yaml")
        cfg.upstream.url, cfg.server.listen = up.url, "127.0.0.1:0"
        runtime = Runtime.create(cfg, clock=clock, with_store=False, sinks=[sink])
        assert "ratelimit" in [d.name for d in runtime.pipeline.detectors]
        await runtime.start()
        gw = ProxyServer(runtime)
        await gw.start()
        try:
            for i in range(11):
                await request(gw.port, get(f"/nothing/{i}"), local_ip="127.0.16.1")
                await runtime.pipeline.drain()
                clock.advance(0.1)
            r = await request(gw.port, get("/hello"), local_ip="127.0.16.1")
            assert r.status == 403
            assert (await request(gw.port, get("/hello"), local_ip="127.0.16.2")).status == 200
            await runtime.pipeline.drain()
        finally:
            await gw.close(grace=1.0)
            await runtime.stop()
    fired = [f for ex in sink.exchanges for f in ex.findings if f.rule_id == "scanner-404" and f.risk]
    assert len(fired) == 1 and fired[0].risk == 40
    assert "scanner-404" in sink.exchanges[-2].verdict.rule_ids


@pytest.mark.parametrize(("fail", "status"), [("open", 200), ("closed", 503)])
async def test_a_silent_redis_never_hangs_requests(fail, status):
    """Redis accepts connections but never answers: each request waits the state timeout at most,
    then follows the fail mode; the gateway keeps serving."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        async with upstream_server() as up:
            cfg = configure("per-ip-limit.yaml", up.url, "memory", "bastion-test-h6:silent:")
            cfg.state.url, cfg.state.timeout, cfg.state.fail = f"redis://127.0.0.1:{port}/0", 0.05, fail
            async with proxy(cfg, ManualClock(T0)) as (gw, _):
                for _ in range(5):
                    t = time.monotonic()
                    r = await request(gw.port, get("/hello"), local_ip="127.0.19.1")
                    assert r.status == status
                    assert time.monotonic() - t < 1.0
    finally:
        silent.close()

"""Per-request cost of rules, memory:// and Redis, and the gateway's req/s with 20 rules on Redis.

    .venv/bin/python bench/rules.py [--seconds 2] [--redis redis://127.0.0.1:6379/13] [--no-gateway]

Engine part: one pipeline with only the ratelimit detector, driven in-process through the
request-headers and complete phases; µs per request (median of 5 runs) for 0, 10 and 100 rules.
Two rule mixes: "scoped" (each rule applies to one endpoint group, 10% to everything: a request
touches ~10% of the rules) and "all" (every rule counts every request: the worst case).
Client part: the Redis client alone (µs of CPU per pipelined script call).
Gateway part: the real proxy (rules detector only) in front of a small upstream, driven by wrk
(keep-alive, 32 then 256 connections), no rules vs 20 scoped rules on memory:// and on Redis, alternated,
medians of 3 (bounded in time). Needs wrk (`apt-get install -y wrk`).
Keys under `bench-h6:` in the given Redis database are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from bastion.clock import SystemClock
from bastion.config import parse_config
from bastion.engine import build_pipeline
from bastion.exchange import Client, Headers, Response


def rules(n: int, mix: str) -> list[dict]:
    out = []
    for i in range(n):
        r: dict = {"id": f"r{i}", "window": "1m", "threshold": 1_000_000_000, "actions": {"block": 429}}
        if mix == "scoped" and i % 10:
            r["scope"] = {"paths": [f"/api/g{i % 10}/**"]}
        kind = i % 4
        if kind == 1:
            r["key"] = ["ip", "method"]
        elif kind == 2:
            r["algorithm"] = "token_bucket"
        elif kind == 3:
            r["match"] = {"status": "5xx"}
            r["actions"] = {"risk": 5, "cooldown": "1m"}
        out.append(r)
    return out


async def engine_cost(n: int, mix: str, url: str, seconds: float) -> tuple[float, float]:
    prefix = f"bench-h6:{uuid.uuid4().hex[:6]}:"
    cfg = parse_config({"rules": rules(n, mix), "state": {"url": url, "prefix": prefix, "timeout": 2}})
    p = build_pipeline(cfg, clock=SystemClock(), only={"ratelimit"})
    await p.startup()
    ips = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(1000)]
    paths = [f"/api/g{i}/items/{i * 7}" for i in range(10)]
    runs = []
    conc = 1 if url.startswith("memory") else 100  # Redis: concurrent requests share round trips

    async def one(ip: str, path: str) -> None:
        ex = p.new_exchange(Client(ip), "GET", path, Headers([("Host", "api.test")]))
        await p.request_headers(ex)
        ex.response = Response(200, Headers(), body_size=100)
        p.complete(ex)

    cpu = []
    for _ in range(5):
        count, t_end = 0, time.perf_counter() + seconds / 5
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() < t_end:
            if conc == 1:
                for j in range(200):
                    await one(ips[(count + j) % 1000], paths[j % 10])
            else:
                await asyncio.gather(*(one(ips[(count + j) % 1000], paths[j % 10]) for j in range(200)))
            await p.drain()
            count += 200
        runs.append((time.perf_counter() - t0) / count * 1e6)
        cpu.append((time.process_time() - c0) / count * 1e6)
    await p.shutdown()
    if url.startswith("redis"):
        from state_cleanup import wipe_prefix

        await wipe_prefix(url, prefix)
    return statistics.median(runs), statistics.median(cpu)


async def client_cost(url: str, seconds: float) -> None:
    """The Redis client alone: one script call with 2 counters, 100 concurrent callers."""
    from bastion.state import Algo, Op, make_key
    from bastion.state.redis import RedisStorage

    prefix = f"bench-h6:{uuid.uuid4().hex[:6]}:"
    st = RedisStorage(url.split("?")[0] + "?timeout=2")
    ops = [Op(make_key(prefix, "r", str(i)), Algo.SLIDING_WINDOW, 1e9, 60) for i in range(2)]
    await st.hit(ops, time.time())
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        await asyncio.gather(*(st.hit(ops, time.time()) for _ in range(100)))
        n += 100
    wall, cpu = (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6
    print(f"redis client: one script call (2 counters), 100 concurrent callers: {cpu:.1f} µs CPU here, "
          f"{wall:.1f} µs wall per call (Redis's own CPU included in wall)")
    await st.close()
    from state_cleanup import wipe_prefix

    await wipe_prefix(url, prefix)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    ap.add_argument("--no-gateway", action="store_true")
    ap.add_argument("--connections", type=int, nargs="+", default=[32, 256], help="wrk connections (each a run)")
    a = ap.parse_args()
    print("engine: µs per request (request headers + complete), wall / this process's CPU, median of 5")
    print(f"{'backend':8} {'mix':7} {'0 rules':>13} {'10 rules':>13} {'100 rules':>13}")
    for url in ("memory://", a.redis):
        for mix in ("scoped", "all"):
            vals = [await engine_cost(n, mix, url, a.seconds) for n in (0, 10, 100)]
            name = url.split(":")[0]
            cells = " ".join(f"{w:6.1f}/{c:6.1f}" for w, c in vals)
            print(f"{name:8} {mix:7} {cells}", flush=True)
    await client_cost(a.redis, a.seconds)
    if not a.no_gateway:
        import gateway_load

        for c in a.connections:
            gateway_load.CONNECTIONS = c
            await gateway_load.gateway_ratio(a.redis, a.seconds, rules(20, "scoped"))


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    asyncio.run(main())

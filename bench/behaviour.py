"""Behaviour analytics cost: `python bench/behaviour.py [--seconds 3] [--entities 1000000] [--no-gateway]`.

Prints, in one run:
1. the complete-phase CPU cost per exchange (thread CPU time, robust to a busy machine) (behaviour scenarios + risk feed) and the request-phase cost
   (keys, entity linking, decisions, risk), behaviour on vs off, over a mixed traffic sample;
2. memory per tracked entity, with N entities of three keys each (address, fingerprint, session);
3. the gateway's req/s with behaviour on vs off (`bastion proxy` driven by wrk, alternating A/B three
   times, medians and their ratio). Needs wrk (`apt-get install -y wrk`); skipped without it.

`--flood many,one,stuffing,mixed` prints instead the memory of floods of fresh keys (API keys,
sessions, users, accounts, addresses) through the default pipeline: bytes per fresh client, and the
whole state once every table is at its cap (see docs/behaviour.md, "Memory").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import yaml

from bastion.clock import ManualClock
from bastion.config import BastionConfig
from bastion.engine import build_pipeline
from bastion.entity import EntityGraph, GraphLimits
from bastion.exchange import Client, Headers, Response
from bastion.verdict import Action
from procs import stop_all

CHROME = [("Host", "shop.test"), ("User-Agent", "Mozilla/5.0 (X11) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"),
          ("Accept", "application/json"), ("Accept-Language", "en-US"), ("Accept-Encoding", "gzip")]


def traffic(n: int, rng: random.Random) -> list[tuple[str, str, str, bytes, int, bytes, list[tuple[str, str]]]]:
    """A mix: browsing, logins (some failing), lookups, order views, 404s, from 5000 clients of very
    unequal activity (a few busy, most occasional), as real traffic is."""
    out = []
    clients = [f"127.{1 + c % 7}.{(c >> 8) & 255}.{c & 255 or 1}" for c in range(5000)]
    weights = [1.0 / (1 + c) ** 0.8 for c in range(5000)]
    picks = rng.choices(clients, weights=weights, k=n)
    for i in range(n):
        ip = picks[i]
        x = rng.random()
        headers = list(CHROME)
        if x < 0.55:
            out.append((ip, "GET", f"/api/products/{rng.randint(1, 500)}", b"", 200, b'{"id":1}', headers))
        elif x < 0.7:
            out.append((ip, "GET", f"/api/search?q=w{rng.randint(1, 50)}", b"", 200, b"[]", headers))
        elif x < 0.8:
            body = orjson.dumps({"username": f"u{rng.randint(1, 3000)}@x.test", "password": "p"})
            out.append((ip, "POST", "/api/login", body, 401 if rng.random() < 0.3 else 200, b"{}", headers))
        elif x < 0.88:
            out.append((ip, "GET", f"/api/users/lookup?email=u{rng.randint(1, 9000)}%40x.test", b"",
                        404 if rng.random() < 0.3 else 200, b"{}", headers))
        elif x < 0.96:
            out.append((ip, "GET", f"/api/orders/{rng.randint(1, 9000)}", b"", 200, b"{}",
                        [*headers, ("Cookie", f"sid=s{i % 500}")]))
        else:
            out.append((ip, "GET", f"/missing/{rng.randint(1, 100)}", b"", 404, b"{}", headers))
    return out


async def phase_costs(n: int) -> None:
    rng = random.Random(1)
    sample = traffic(n, rng)
    results: dict[str, tuple[float, float]] = {}
    for label, enabled in (("off", False), ("on", True)):
        cfg = BastionConfig.model_validate({"behaviour": {"enabled": enabled, "decisions": {"persist": False}}})
        clock = ManualClock()
        p = build_pipeline(cfg, clock=clock, only={"decisions", "risk", "behaviour"})
        await p.startup()
        req_t = comp_t = 0.0
        for ip, method, target, body, status, rbody, headers in sample:
            clock.advance(0.01)
            ex = p.new_exchange(Client(peer_ip=ip), method, target, Headers(list(headers)))
            t0 = time.thread_time()
            v = await p.connection(ex) or await p.request_headers(ex)
            if body and (v is None or v.action < Action.CHALLENGE):
                ex.request.body = body
                v = await p.request_body(ex)
            t1 = time.thread_time()
            ex.response = Response(status, Headers(), body=rbody, body_size=len(rbody))
            t2 = time.thread_time()
            p.complete(ex)
            t3 = time.thread_time()
            req_t += t1 - t0
            comp_t += t3 - t2
        await p.shutdown()
        results[label] = (req_t / n * 1e6, comp_t / n * 1e6)
    off, on = results["off"], results["on"]
    print(f"request phases (decisions, keys, entity, risk): {on[0]:.1f} us/exchange on, {off[0]:.1f} off "
          f"(+{on[0] - off[0]:.1f} us)")
    print(f"complete phase (scenarios + risk feed): {on[1]:.1f} us/exchange on, {off[1]:.1f} off "
          f"(+{on[1] - off[1]:.1f} us); target <= 30 us")


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory(n: int) -> None:
    gc.collect()
    before = rss()
    g = EntityGraph(GraphLimits(max_keys=4 * n))  # (the default cap would evict: this measures the entities)
    t0 = time.thread_time()
    for i in range(n):
        g.observe({"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "fp": f"{i % 100:012x}",
                   "session": f"{i:016x}"}, float(i) * 1e-3)
    took = time.thread_time() - t0
    gc.collect()
    used = rss() - before
    print(f"memory: {n} entities (address + session linked, fingerprint shared by 1%): {used / 2**20:.0f} MiB RSS, "
          f"{used / n:.0f} bytes/entity (target <= 1024); {took / n * 1e6:.1f} us per observe")
    del g


def gateway(seconds: float) -> None:
    if shutil.which("wrk") is None:
        print("gateway: skipped (wrk not installed: apt-get install -y wrk)")
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from gateway_load import UPSTREAM, free_port, wait_port, wrk  # the same harness as bench/rules.py

    tmp = Path(tempfile.mkdtemp(prefix="bench-h7-"))
    script = tmp / "wrk.lua"
    script.write_text('local i = 0\nrequest = function()\n  i = i + 1\n'
                      '  return wrk.format("GET", "/api/products/" .. (i % 10))\nend\n')
    (tmp / "off.yaml").write_text(yaml.safe_dump({"behaviour": {"enabled": False}}))
    (tmp / "on.yaml").write_text(yaml.safe_dump({"behaviour": {"enabled": True}}))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_port = free_port()
        up = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)], stderr=subprocess.PIPE)
        procs.append(up)
        wait_port(up_port, up)
        ports = {}
        for name in ("off", "on"):
            port = free_port()
            p = subprocess.Popen(
                [sys.executable, "-c", "from bastion.cli import main; main()", "proxy", "--upstream",
                 f"http://127.0.0.1:{up_port}", "--listen", f"127.0.0.1:{port}", "--config", str(tmp / f"{name}.yaml"),
                 "--data-dir", str(tmp / name)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ),
            )
            procs.append(p)
            wait_port(port, p)
            ports[name] = port
        res: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(3):
            for name in ("off", "on"):
                res[name].append(wrk(ports[name], seconds, str(script)))
                print(f"  behaviour {name}: {res[name][-1]:.0f} req/s", flush=True)
        a, b = statistics.median(res["off"]), statistics.median(res["on"])
        print(f"gateway req/s (default detectors, wrk -t1 -c32, median of 3 x {seconds:g}s): behaviour off {a:.0f}, "
              f"on {b:.0f}, ratio {b / a:.2f} (target >= 0.90)")
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"gateway: could not run: {exc}")
    finally:
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)


def flood_request(shape: str, i: int) -> tuple[str, str, str, list[tuple[str, str]], bytes, int, bytes]:
    """Request i of a flood of fresh keys: (method, target, address, headers, body, status, answer)."""
    key = hashlib.blake2b(str(i).encode(), digest_size=12).hexdigest()
    ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
    if shape == "many":  # own address, API key, session and User-Agent per client (a botnet, a proxy pool)
        return ("GET", f"/api/items/{key[:8]}/detail?ref={key[8:]}", ip,
                [("Host", "shop.test"), ("User-Agent", f"client-{i}/1.0"), ("X-API-Key", key),
                 ("Cookie", f"session={key[::-1]}"), ("Accept", "application/json")], b"", 200, b'{"id": 1}')
    if shape == "one":  # one address, a fresh API key, session and Basic user on every request
        user = base64.b64encode(f"u{key[:10]}:pw".encode()).decode()
        return ("GET", f"/api/items/{key[:8]}/detail?ref={key[8:]}", "203.0.113.7",
                [("Host", "shop.test"), ("User-Agent", "tool/1.0"), ("X-API-Key", key),
                 ("Authorization", f"Basic {user}"), ("Cookie", f"session={key[::-1]}")], b"", 200, b'{"id": 1}')
    if shape == "stuffing":  # a fresh account per failed login, from a fresh address and network each
        body = orjson.dumps({"username": f"user{key[:12]}@mail.test", "password": key[12:]})
        return ("POST", "/api/login", f"10.{i % 250}.{i // 250 % 250}.{1 + i // 62500 % 250}",
                [("Host", "shop.test"), ("User-Agent", f"agent-{i}"), ("Content-Type", "application/json")], body,
                401, b'{"error": "invalid credentials"}')
    # mixed: a different scenario per client (logins, lookups, probes, refused ids, checkouts, new routes),
    # each with fresh keys: every scenario's table fills at once (the worst case of the caps)
    hdr = [("Host", "shop.test"), ("User-Agent", f"c{i}"), ("X-API-Key", key), ("Cookie", f"sid={key[:10]}")]
    k = i % 6
    if k == 0:
        return ("POST", "/api/login", ip, [*hdr, ("Content-Type", "application/json")],
                orjson.dumps({"username": f"u{key}@x.test", "password": "p"}), 401, b'{"error": "invalid credentials"}')
    if k == 1:
        return ("GET", f"/api/users/lookup?email={key}%40x.test", ip, hdr, b"", 404, b"{}")
    if k == 2:
        return ("GET", f"/.{key}/config", ip, hdr, b"", 404, b"{}")
    if k == 3:
        return ("GET", f"/api/orders/{i}", ip, hdr, b"", 403, b"{}")
    if k == 4:
        return ("POST", "/api/checkout", ip, [*hdr, ("Content-Type", "application/json")], b'{"x": 1}', 201, b"{}")
    return ("GET", f"/api/a{key[:6]}/items/{i}", ip, hdr, b"", 200, b'{"id": 1}')


async def flood(shape: str, max_keys: int) -> None:
    """Memory of a flood of fresh keys through the default pipeline (in process, a manual clock):
    bytes per client while no table is full, then the whole state once every table is at its cap, at
    `max_keys` and twice that (the difference, per key, is what max_keys costs: the rest is the other
    detectors' bounded tables). Traced with tracemalloc, the memo tables of behaviour (keys by header
    fields, routes, fingerprints: bounded) emptied before each reading."""
    from bastion.testing import behaviour_state_bytes, make_exchange, run_exchange, run_response

    saturated: list[tuple[int, int, dict[str, int]]] = []
    for cap, n in ((10_000_000, 5_000), (max_keys, 3 * max_keys), (2 * max_keys, 6 * max_keys)):
        cfg = BastionConfig.model_validate({"behaviour": {"entity": {"max_keys": cap}, "decisions": {"persist": False}}})
        clock = ManualClock()
        p = build_pipeline(cfg, clock=clock)
        await p.startup()
        det: Any = next(d for d in p.detectors if d.name == "behaviour")

        def state(det: Any = det) -> int:
            return behaviour_state_bytes(det)

        tracemalloc.start()
        first = 0
        for i in range(n):
            if i == n // 5:
                first = state()
            method, target, ip, headers, body, status, answer = flood_request(shape, i)
            ex = make_exchange(method, target, pipeline=p, client_ip=ip, headers=headers, body=body)
            await run_exchange(p, ex)
            await run_response(p, ex, status, headers={"Content-Type": "application/json"}, body=answer)
            clock.advance(0.001)
        used = state()
        tracemalloc.stop()
        graph = det.core.graph
        if cap == 10_000_000:
            print(f"flood {shape}: {(used - first) / (n - n // 5):.0f} bytes per fresh client "
                  f"({len(graph.nodes) / n:.1f} graph keys each)", flush=True)
        else:
            tables = {"graph": len(graph.nodes), "activity": len(det.activity)}
            tables.update({k: len(v) for k, v in det.tracks.items() if len(v)})
            saturated.append((cap, used, tables))
        await p.shutdown()
    (k1, u1, _), (k2, u2, tables) = saturated
    per_key = (u2 - u1) / (k2 - k1)
    print(f"flood {shape}: saturated {u1 / 2**20:.1f} MiB at max_keys {k1}, {u2 / 2**20:.1f} MiB at {k2}: "
          f"{per_key:.0f} bytes per key of max_keys (the default 1,000,000: {per_key / 1e3:.2f} GB); tables at {k2}: "
          f"{tables}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exchanges", type=int, default=50_000)
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--no-gateway", action="store_true")
    ap.add_argument("--flood", default="", help="only the memory of floods of fresh keys: many,one,stuffing,mixed")
    ap.add_argument("--max-keys", type=int, default=20_000, help="behaviour.entity.max_keys of the saturated --flood")
    args = ap.parse_args()
    if args.flood:
        for shape in args.flood.split(","):
            asyncio.run(flood(shape, args.max_keys))
        return
    asyncio.run(phase_costs(args.exchanges))
    memory(args.entities)
    if not args.no_gateway:
        gateway(args.seconds)


if __name__ == "__main__":
    main()

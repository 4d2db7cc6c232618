"""Behaviour analytics cost: `python bench/behaviour.py [--seconds 3] [--entities 1000000] [--no-gateway]`.

Prints, in one run:
1. the complete-phase CPU cost per exchange (thread CPU time, robust to a busy machine) (behaviour scenarios + risk feed) and the request-phase cost
   (keys, entity linking, decisions, risk), behaviour on vs off, over a mixed traffic sample;
2. memory per tracked entity, with N entities of three keys each (address, fingerprint, session);
3. the gateway's req/s with behaviour on vs off (`bastion proxy` driven by wrk, alternating A/B three
   times, medians and their ratio). Needs wrk (`apt-get install -y wrk`); skipped without it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from bastion.clock import ManualClock
from bastion.config import BastionConfig
from bastion.engine import build_pipeline
from bastion.entity import EntityGraph
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
    g = EntityGraph()
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exchanges", type=int, default=50_000)
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--no-gateway", action="store_true")
    args = ap.parse_args()
    asyncio.run(phase_costs(args.exchanges))
    memory(args.entities)
    if not args.no_gateway:
        gateway(args.seconds)


if __name__ == "__main__":
    main()

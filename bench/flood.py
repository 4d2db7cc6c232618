"""Flood the gateway past its capacity on loopback, bounded in time, and show that it keeps
answering (shedding with 429/503, not timing out), serves a polite client throughout, recovers at
once, and keeps memory bounded with a million distinct keys.

    .venv/bin/python bench/flood.py [--seconds 5] [--connections 600] [--state memory://|redis://...]

1. `bastion proxy` (its own process) in front of a small upstream, with examples/per-ip-limit.yaml
   (20 requests per 10 s per client IP, 429 beyond).
2. Flood: wrk with `--wrk-connections` keep-alive connections from 127.0.0.1, and `--connections`
   Python keep-alive connections from 300 loopback addresses (127.20.x.y), each sending as fast as
   answers come, for `--seconds`. Each answer is awaited at most 2 s; a miss counts as a timeout. Meanwhile a polite client (127.30.0.1, one request every 0.6 s: under
   its limit) measures what a normal user gets.
3. Recovery: right after the flood, the polite client sends 10 requests.
4. Memory: the rules engine in-process, memory:// state with default bounds, fed one million
   distinct client addresses (time-bounded): RSS and table size along the way.
Only 127.0.0.0/8 is targeted. Redis keys under `bench-h6-flood:` are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from gateway_load import UPSTREAM, free_port, spawn, wait_port
from procs import stop_all

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


REQ = b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n"


async def flooder(port: int, ip: str, until: float, stats: Counter[str], lat: list[float]) -> None:
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0)), 2)
        except (OSError, TimeoutError):
            stats["connect-failed"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < until:
                t = time.monotonic()
                writer.write(REQ)
                try:
                    status = await asyncio.wait_for(read_status(reader), 2)
                except TimeoutError:
                    stats["timeout"] += 1
                    break
                stats[str(status)] += 1
                lat.append(time.monotonic() - t)
                if status == 503:
                    break  # shed: the server closes
        except (OSError, asyncio.IncompleteReadError):
            stats["closed"] += 1
        finally:
            writer.close()


async def probe_once(port: int) -> tuple[int, float]:
    """One request on a fresh connection from the polite client's address: (status or 0, seconds)."""
    t = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=("127.30.0.1", 0)), 2)
        writer.write(REQ)
        status = await asyncio.wait_for(read_status(reader), 2)
        writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        status = 0
    return status, time.monotonic() - t


async def polite(port: int, until: float, every: float, out: list[tuple[int, float]]) -> None:
    while time.monotonic() < until:
        status, took = await probe_once(port)
        out.append((status, took))
        await asyncio.sleep(max(0.0, every - took))


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


def start_wrk(port: int, args: argparse.Namespace) -> subprocess.Popen[str]:
    return subprocess.Popen(["wrk", "-t1", f"-c{args.wrk_connections}", f"-d{max(1, int(args.seconds))}s",
                             "--timeout", "2s", f"http://127.0.0.1:{port}/hello"], stdout=subprocess.PIPE, text=True)


async def flood(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-h6-flood-"))
    cfg = yaml.safe_load((ROOT / "examples" / "per-ip-limit.yaml").read_text())
    cfg["state"] = {"url": args.state, "prefix": "bench-h6-flood:"}
    if args.only_rules:
        from bastion.engine.registry import DETECTORS

        cfg["detectors"] = {name: {"enabled": name == "ratelimit"} for name, _ in DETECTORS}
    (tmp / "flood.yaml").write_text(yaml.safe_dump(cfg))
    up_port, gw_port = free_port(), free_port()
    procs = []
    try:
        up = spawn([sys.executable, "-c", UPSTREAM, str(up_port)])
        procs.append(up)
        gw = spawn(
            [sys.executable, "-c", "from bastion.cli import main; main()", "proxy", "--upstream",
             f"http://127.0.0.1:{up_port}", "--listen", f"127.0.0.1:{gw_port}", "--config", str(tmp / "flood.yaml"),
             "--data-dir", str(tmp)],
            tmp / "gateway.log")
        procs.append(gw)
        wait_port(up_port, up)
        wait_port(gw_port, gw, log=tmp / "gateway.log")
        rss0 = rss_mb(gw.pid)
        stats: Counter[str] = Counter()
        lat: list[float] = []
        probe: list[tuple[int, float]] = []
        t0 = time.monotonic()
        until = t0 + args.seconds
        ips = [f"127.20.{i // 250}.{i % 250 + 1}" for i in range(300)]
        wrk = None
        if shutil.which("wrk"):
            # The bulk of the flood from one address, in C: the Python flooders alone would use
            # more CPU than the gateway they flood.
            wrk = start_wrk(gw_port, args)
        tasks = [flooder(gw_port, ips[i % 300], until, stats, lat) for i in range(args.connections)]
        tasks.append(polite(gw_port, until, 0.6, probe))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
        wrk_out = wrk.communicate()[0] if wrk is not None else ""
        after: list[tuple[int, float]] = []
        for _ in range(10):
            after.append(await probe_once(gw_port))
        total = sum(v for k, v in stats.items() if k.isdigit())
        if wrk is not None:
            rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk_out)
            errs = re.search(r"Socket errors:.*", wrk_out)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk_out)
            lat_line = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", wrk_out)
            print(f"flood (wrk, {args.wrk_connections} connections from 127.0.0.1, {args.seconds:.0f} s): "
                  f"{rps.group(1) if rps else '?'} answers/s, non-2xx {non2xx.group(1) if non2xx else 0}, "
                  f"latency avg {lat_line.group(1) if lat_line else '?'} max {lat_line.group(3) if lat_line else '?'}"
                  + (f", {errs.group(0)}" if errs else ", no socket errors"))
        print(f"flood (python, {args.connections} connections from 300 addresses, {elapsed:.1f} s), "
              f"state {args.state}")
        print(f"  answers {total} ({total / elapsed:.0f}/s): "
              + ", ".join(f"{k}: {v}" for k, v in sorted(stats.items())))
        print(f"  answer latency p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms; "
              f"timeouts (no answer in 2 s): {stats['timeout']}")
        ok = [s for s, _ in probe if s == 200]
        print(f"  polite client during the flood: {len(ok)}/{len(probe)} served 200, "
              f"latency p50 {pct([t for _, t in probe], 0.5):.1f} ms, max {pct([t for _, t in probe], 1.0):.1f} ms")
        print(f"  right after: {sum(1 for s, _ in after if s == 200)}/10 served 200, "
              f"latency p50 {pct([t for _, t in after], 0.5):.1f} ms")
        print(f"  gateway RSS {rss0:.0f} MB before, {rss_mb(gw.pid):.0f} MB after; still running: {gw.poll() is None}")
    finally:
        stop_all(procs)
        if args.state.startswith("redis"):
            from state_cleanup import wipe_prefix

            await wipe_prefix(args.state, "bench-h6-flood:")


async def million_keys(seconds: float) -> None:
    from bastion.clock import SystemClock
    from bastion.config import load_config
    from bastion.engine import build_pipeline
    from bastion.exchange import Client, Headers

    cfg = load_config(ROOT / "examples" / "per-ip-limit.yaml")
    p = build_pipeline(cfg, clock=SystemClock(), only={"ratelimit"})
    det = p.detectors[0]
    table = det.storage
    print(f"memory: 1,000,000 distinct client addresses through the engine (memory://, max_keys {table.max_keys})")
    base = rss_mb()
    t0 = time.monotonic()
    n = 0
    marks = {100_000, 250_000, 500_000, 750_000, 1_000_000}
    while n < 1_000_000 and time.monotonic() - t0 < seconds:
        for _ in range(1000):
            ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
            ex = p.new_exchange(Client(ip), "GET", "/x", Headers([("Host", "a")]))
            await p.request_headers(ex)
            n += 1
        if n in marks:
            print(f"  {n:>9,} keys: table {len(table):,} entries, RSS +{rss_mb() - base:.0f} MB, "
                  f"{(time.monotonic() - t0) / n * 1e6:.1f} µs/request", flush=True)
    if n < 1_000_000:
        print(f"  stopped after {n:,} keys ({seconds:.0f} s budget): table {len(table):,}, RSS +{rss_mb() - base:.0f} MB")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=100, help="python flooders from 300 addresses")
    ap.add_argument("--wrk-connections", type=int, default=500, help="wrk connections (one address)")
    ap.add_argument("--state", default="memory://")
    ap.add_argument("--only-rules", action="store_true", help="switch off every detector but the rules")
    ap.add_argument("--memory-seconds", type=float, default=60.0)
    args = ap.parse_args()
    await flood(args)
    await million_keys(args.memory_seconds)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())

"""Reverse-proxy benchmark: upstream direct, nginx as a proxy, Bastion pass-through, Bastion with the
signature rules only (protocol + signatures), Bastion with the default detectors. Prints req/s and p50/p99 latency (medians over alternating rounds) and the
ratios to nginx measured in the same run.

Needs wrk and nginx (as root: `apt-get install -y wrk nginx`). Only 127.0.0.1 is targeted; every
run is bounded by --duration and --rounds.

    .venv/bin/python bench/proxy.py                    # default: 3 rounds of 5 s per target
    .venv/bin/python bench/proxy.py --duration 3 --rounds 2 --connections 64

Pinning (2+ cores): the proxy under test (nginx or Bastion) runs alone on CPU 0; the upstream
nginx and wrk share CPU 1. So each proxy gets one core, as in the issue's reference figures.
A separate low-concurrency run (1 connection) measures the latency a proxy adds to one request.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from gateway_load import free_port

ROOT = Path(__file__).resolve().parent.parent
BODY = "hello from upstream\n"




def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def pin(cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(cpu)]


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (nginx's workers), from /proc."""
    pids = [pid]
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                pids += [int(x) for x in f.read().split()]
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError), open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextlib.contextmanager
def nginx(conf_body: str, cpu: int | None) -> Iterator[int]:
    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-nginx-"))
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 1000000;
  {conf_body}
}}
"""
    )
    # taskset execs nginx: the Popen pid is nginx's master.
    proc = subprocess.Popen([*pin(cpu), "nginx", "-c", str(conf), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def upstream_conf(port: int) -> str:
    return f'server {{ listen 127.0.0.1:{port}; location / {{ return 200 "{BODY.strip()}\\n"; }} }}'


def nginx_proxy_conf(port: int, upstream_port: int) -> str:
    return f"""
upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 256; }}
server {{
  listen 127.0.0.1:{port};
  location / {{
    proxy_pass http://app;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For $remote_addr;
  }}
}}"""


@contextlib.contextmanager
def bastion(port: int, upstream_port: int, detectors: str, cpu: int | None) -> Iterator[int]:
    cmd = [*pin(cpu), sys.executable, str(Path(__file__).resolve()), "--serve-bastion", str(port),
           str(upstream_port), detectors]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        wait_port(port)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def serve_bastion(port: int, upstream_port: int, detectors: str) -> None:
    """Child process: one Bastion worker (uvloop), no event store (benign traffic writes nothing)."""
    import asyncio
    import tempfile

    import uvloop

    from bastion.config import parse_config
    from bastion.frontends.proxy.server import ProxyServer
    from bastion.runtime import Runtime

    async def main() -> None:
        config = parse_config({
            "upstream": {"url": f"http://127.0.0.1:{upstream_port}"},
            "server": {"listen": f"127.0.0.1:{port}"},
            "data_dir": tempfile.mkdtemp(prefix="bastion-bench-"),
            "logging": {"level": "warning"},
        })
        # "none", "default", or a comma-separated list of detector names (to find a slow one)
        only = set() if detectors == "none" else None if detectors == "default" else set(detectors.split(","))
        verdicts: dict[str, int] = {}

        class Count:
            """Counts verdicts: a flood from one address may be throttled by the behaviour detectors."""

            def exchange_done(self, ex: object) -> None:
                v = getattr(ex, "verdict", None)
                key = v.action.name.lower() if v is not None else "none"
                verdicts[key] = verdicts.get(key, 0) + 1

        runtime = Runtime.create(config, with_store=False, only=only, sinks=[Count()])
        await runtime.start()
        names = [d.name for d in runtime.pipeline.detectors]
        print(f"  bastion detectors: {', '.join(names) or '(none)'}", file=sys.stderr, flush=True)
        server = ProxyServer(runtime)
        await server.start()
        if os.environ.get("BENCH_GC_THRESHOLD"):  # experiment: python's gen-0 threshold
            import gc

            gc.set_threshold(int(os.environ["BENCH_GC_THRESHOLD"]))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.close(1.0)
        await runtime.stop()
        print(f"  bastion ({detectors}) verdicts: {verdicts}", file=sys.stderr, flush=True)

    uvloop.run(main())


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(port: int, duration: float, connections: int, cpu: int | None,
        pid: int | None = None) -> tuple[float, float, float, float]:
    """(req/s, p50 ms, p99 ms, CPU µs per request of `pid`) of one wrk run."""
    cpu0 = cpu_seconds(pid) if pid else 0.0
    cmd = [*pin(cpu), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           f"http://127.0.0.1:{port}/bench"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  warning: {errors.group(1)} non-2xx responses on port {port}", file=sys.stderr)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    us = (cpu_seconds(pid) - cpu0) / max(1, int(total.group(1))) * 1e6 if pid else float("nan")
    return float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), us


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per target (default 3)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--serve-bastion", nargs=3, metavar=("PORT", "UPSTREAM_PORT", "DETECTORS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bastion:
        serve_bastion(int(args.serve_bastion[0]), int(args.serve_bastion[1]), args.serve_bastion[2])
        return 0
    missing = [t for t in ("wrk", "nginx") if shutil.which(t) is None]
    if missing:
        print(f"missing {', '.join(missing)}: run `apt-get install -y wrk nginx` (as root) first", file=sys.stderr)
        return 2
    two_cores = (os.cpu_count() or 1) >= 2
    proxy_cpu, side_cpu = (0, 1) if two_cores else (None, None)
    up_port, ngx_port, b0_port, bs_port, b1_port = (free_port() for _ in range(5))
    targets = {
        "upstream direct": up_port,
        "nginx proxy": ngx_port,
        "bastion, no detectors": b0_port,
        "bastion, signatures": bs_port,
        "bastion, default detectors": b1_port,
    }
    results: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in targets}
    single: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in targets}
    print(f"wrk: {args.connections} connections, {args.duration:g} s x {args.rounds} rounds per target; "
          f"proxies pinned to CPU {proxy_cpu}, upstream+wrk to CPU {side_cpu}", file=sys.stderr)
    with (
        nginx(upstream_conf(up_port), side_cpu) as up_pid,
        nginx(nginx_proxy_conf(ngx_port, up_port), proxy_cpu) as ngx_pid,
        bastion(b0_port, up_port, "none", proxy_cpu) as b0_pid,
        bastion(bs_port, up_port, "protocol,signatures", proxy_cpu) as bs_pid,
        bastion(b1_port, up_port, "default", proxy_cpu) as b1_pid,
    ):
        pids = dict(zip(targets, (up_pid, ngx_pid, b0_pid, bs_pid, b1_pid), strict=True))
        for port in targets.values():
            wait_port(port)
            wrk(port, 1, args.connections, side_cpu)  # warm-up: pools, caches
        for r in range(args.rounds):
            for name, port in targets.items():
                results[name].append(wrk(port, args.duration, args.connections, side_cpu, pids[name]))
                single[name].append(wrk(port, max(1.0, args.duration / 2), 1, side_cpu))
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)

    def med(rows: list[tuple[float, float, float, float]], i: int) -> float:
        return statistics.median(row[i] for row in rows)

    nginx_rps = med(results["nginx proxy"], 0)
    direct_p50_1 = med(single["upstream direct"], 1)
    print()
    nginx_us = med(results["nginx proxy"], 3)
    print(f"{'target':28} {'req/s':>9} {'vs nginx':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} "
          f"{'nginx/CPU':>9}   {'1-conn p50':>10} {'added':>7}")
    for name in targets:
        rps, p50, p99, us = (med(results[name], i) for i in range(4))
        s50 = med(single[name], 1)
        added = "" if name == "upstream direct" else f"{s50 - direct_p50_1:+.3f}"
        print(f"{name:28} {rps:9.0f} {rps / nginx_rps:8.0%} {p50:8.3f} {p99:8.3f} {us:10.1f} "
              f"{nginx_us / us:9.0%}   {s50:10.3f} {added:>7}")
    print()
    print("req/s, p50, p99: medians over rounds at the given concurrency. 'CPU us/req': CPU time the")
    print("process (tree) used per request; 'nginx/CPU': nginx's CPU per request over this one, i.e. the")
    print("req/s ratio to nginx on an otherwise idle core. '1-conn p50': median latency with one connection")
    print("(no queueing); 'added': that minus the upstream's own, in ms.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

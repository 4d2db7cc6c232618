"""Cost of the JA4 ClientHello fingerprint on a TLS handshake.

Three figures:
1. parse + JA4 of one real ClientHello (Python's default client hello), in microseconds;
2. server-side handshakes in memory (client and server SSLObjects over MemoryBIOs, the way asyncio
   and uvloop drive OpenSSL), with the proxy's server context with and without the callback;
3. end to end: TLS connections per second (handshake + one GET) through the real proxy under uvloop,
   `server.tls.ja4` on and off, client in another process.

    python bench/tls_ja4.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bastion.config import TLSConfig
from bastion.frontends.proxy import ja4
from bastion.frontends.proxy.tls import server_context


def make_cert(d: Path) -> tuple[Path, Path]:
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


def client_ctx() -> ssl.SSLContext:
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols(["http/1.1"])
    return c


def handshake_pair(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> bytes:
    """One full handshake in memory. Returns the client's first flight (its ClientHello record)."""
    ci, co, si, so = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = cctx.wrap_bio(ci, co, server_hostname="localhost")
    s = sctx.wrap_bio(si, so, server_side=True)
    first = b""
    done_c = done_s = False
    while not (done_c and done_s):
        if not done_c:
            try:
                c.do_handshake()
                done_c = True
            except ssl.SSLWantReadError:
                pass
        out = co.read()
        if out and not first:
            first = out
        si.write(out)
        if not done_s:
            try:
                s.do_handshake()
                done_s = True
            except ssl.SSLWantReadError:
                pass
        ci.write(so.read())
    return first


def bench_memory(cert: Path, key: Path, seconds: float) -> dict[str, float]:
    """CPU microseconds per in-memory handshake (client and server sides), best of 5 interleaved rounds."""
    out: dict[str, list[float]] = {"off": [], "on": []}
    cctx = client_ctx()
    ctxs = {label: server_context(TLSConfig(cert=cert, key=key, ja4=label == "on")) for label in out}
    for _ in range(5):
        for label, sctx in ctxs.items():
            assert sctx is not None
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds / 5:
                handshake_pair(sctx, cctx)
                n += 1
            out[label].append((time.process_time() - c0) / n * 1e6)
    return {k: min(v) for k, v in out.items()}


def bench_parse(cert: Path, key: Path) -> tuple[float, str]:
    sctx = server_context(TLSConfig(cert=cert, key=key, ja4=False))
    assert sctx is not None
    record = handshake_pair(sctx, client_ctx())
    msg = record[5:]  # one record: strip its 5-byte header, leaving the handshake message
    fp = ja4.ja4_of(msg)
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        ja4.ja4_of(msg)
    return (time.perf_counter() - t0) / n * 1e6, fp


def _client_proc(port: int, seconds: float, q: mp.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> int:
        ctx = client_ctx()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
            w.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            await r.read()
            w.close()
            n += 1
        return n

    q.put(asyncio.run(run()) / seconds)


def bench_proxy(cert: Path, key: Path, seconds: float) -> dict[str, list[float]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import uvloop

    from proxy_helpers import gateway, make_config, upstream_server

    out: dict[str, list[float]] = {"off": [], "on": [], "cpu_off": [], "cpu_on": []}

    async def one(on: bool) -> tuple[float, float]:
        async with upstream_server() as up:
            cfg = make_config(up.url, server={"tls": {"cert": str(cert), "key": str(key), "ja4": on}})
            async with gateway(cfg, only=set()) as gw:
                q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
                p = mp.get_context("fork").Process(target=_client_proc, args=(gw.port, seconds, q))
                c0 = time.process_time()
                p.start()
                await asyncio.to_thread(p.join)  # the proxy keeps serving in this loop meanwhile
                rate = float(q.get())
                return rate, (time.process_time() - c0) / max(1.0, rate * seconds) * 1e6

    for _ in range(3):
        for on in (False, True):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
                rate, cpu = r.run(one(on))
            out["on" if on else "off"].append(rate)
            out["cpu_on" if on else "cpu_off"].append(cpu)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(Path(d))
        us, fp = bench_parse(cert, key)
        print(f"parse + JA4 of a ClientHello: {us:.1f} us  ({fp})")
        mem = bench_memory(cert, key, args.seconds)
        off, on = mem["off"], mem["on"]
        print(f"in-memory handshake CPU, client+server (ECDSA P-256, TLS 1.3, best of 5): off {off:.0f} us, "
              f"on {on:.0f} us, {on - off:+.0f} us ({(on - off) / off * 100:+.1f}%)")
        px = bench_proxy(cert, key, args.seconds)
        m_off, m_on = statistics.median(px["off"]), statistics.median(px["on"])
        c_off, c_on = statistics.median(px["cpu_off"]), statistics.median(px["cpu_on"])
        print(f"proxy under uvloop, a new TLS connection + GET each, median of 3: off {m_off:.0f}/s, on {m_on:.0f}/s; "
              f"gateway process CPU per connection: off {c_off:.0f} us, on {c_on:.0f} us ({c_on - c_off:+.0f} us)")


if __name__ == "__main__":
    main()

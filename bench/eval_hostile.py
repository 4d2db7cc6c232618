"""Blind robustness probe of the real `bastion proxy` (default configuration) under hostile input.

Written from the documentation only (README.md, docs/configuration.md, docs/protocol.md, docs/admin.md,
`bastion proxy --help`), not from the implementation. It starts a real upstream (its own process, with
misbehaving paths) and a real `bastion proxy` in front of it, then sends malformed HTTP, hostile bodies,
upstream trouble, floods, broken configs and unauthenticated admin calls over raw loopback sockets.

Each case checks the answer (status, RFC 9457 problem+json body for the gateway's own refusals, nothing
internal disclosed) and that a legitimate request sent right after still succeeds. At the end: the proxy
is still alive, its RSS has not grown unreasonably, it holds no leaked sockets, and its log holds no
uncaught exception. Cases that need the documented timeouts (slowloris, idle reaping, the 60 s upstream
timeout) run in background threads from the start so that the whole run stays under ~3 minutes.

    cd bench && ../.venv/bin/python eval_hostile.py [--only SUBSTRING] [--verbose]

Prints a table (case, expected, observed, PASS/FAIL) and the details of every FAIL; exits 1 on a FAIL.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import itertools
import json
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gateway_load import free_port, spawn, wait_port
from procs import stop_all

HOST = "127.0.0.1"
BASTION = os.path.join(os.path.dirname(sys.executable), "bastion")
UPSTREAM_MARK = "hostile-upstream"  # every upstream answer carries X-Upstream: hostile-upstream
H = b"Host: shop.example\r\nUser-Agent: hostile-probe/1.0\r\nAccept: */*\r\n"
LEGIT_UA = "Mozilla/5.0 (X11; Linux x86_64) legit-probe/1.0"
MB = 1 << 20

# Documented defaults (docs/configuration.md) the timing cases are judged against.
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
BODY_MIN_RATE = 500.0
IDLE_TIMEOUT = 60.0
UPSTREAM_RESPONSE_TIMEOUT = 60.0
SLACK = 8.0  # scheduling slack on a shared 2-core machine

# What a gateway's own error body must not show: Python exceptions, stack frames, file paths, internals.
DISCLOSURE = re.compile(
    r"Traceback|File \"|line \d+, in |\.py\b|site-packages|/work/|/usr/lib|/home/|/tmp/|"
    r"\b[A-Z][A-Za-z]+(?:Error|Exception)\b|asyncio|uvloop|llhttp|httptools|\bh11\b|uvicorn|"
    r"bastion\.[a-z_]+\.[a-z_]+"
)
SERVER_BANNER = re.compile(r"python|uvicorn|uvloop|aiohttp|bastion/\d|\d+\.\d+\.\d+", re.I)
LOG_CRASH = re.compile(r"Traceback|Exception in callback|Task exception was never retrieved|exception was never retrieved")

TRACE_PAGE = (
    b"<html><body><h1>Internal Server Error</h1><pre>Traceback (most recent call last):\n"
    b'  File "/srv/app/views.py", line 42, in checkout\n    total = compute(order)\n'
    b"ZeroDivisionError: division by zero\n"
    b"DATABASE_URL=postgres://app:s3cret@db.internal/shop</pre></body></html>"
)

UPSTREAM = r'''
import asyncio, base64, json, sys
STATS = {"requests": 0, "infinite_active": 0, "big_active": 0, "hang_active": 0}
OK = b'{"ok":true}'
TRACE = base64.b64decode(sys.argv[2])
BASE = b"X-Upstream: hostile-upstream\r\nServer: upstream-internal/9.9\r\n"
def resp(status, body, ctype=b"application/json", extra=b""):
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\n" + BASE + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
async def read_body(r, headers):
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        out, trailers = bytearray(), bytearray()
        while True:
            line = await r.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (line := await r.readuntil(b"\r\n")) != b"\r\n":
                    trailers += line
                return bytes(out), bytes(trailers)
            out += await r.readexactly(size)
            await r.readexactly(2)
    n = int(headers.get(b"content-length", b"0") or 0)
    return (await r.readexactly(n) if n else b""), b""
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, target = lines[0].split(b" ")[:2]
            headers = {}
            for line in lines[1:]:
                if b":" in line:
                    k, v = line.split(b":", 1)
                    headers[k.strip().lower()] = v.strip()
            body, trailers = await read_body(r, headers)
            STATS["requests"] += 1
            path = target.split(b"?")[0]
            if path == b"/__hang":
                STATS["hang_active"] += 1
                try:
                    await asyncio.sleep(3600)
                finally:
                    STATS["hang_active"] -= 1
            elif path == b"/__malformed":
                w.write(b"HTTP/1.1 2OO OK\r\nContent-Length: x\r\n\r\n{}")
                await w.drain()
                break
            elif path == b"/__garbage":
                w.write(b"\x00\x01\x02 this is not http at all\r\n\r\n")
                await w.drain()
                break
            elif path == b"/__close":
                break
            elif path == b"/__midbody":
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + BASE
                        + b"Content-Length: 100000\r\n\r\n{" + b" " * 999)
                await w.drain()
                break
            elif path == b"/__bighdr":
                w.write(resp(b"200 OK", OK, extra=b"X-Big: " + b"a" * 1048576 + b"\r\n"))
            elif path == b"/__manyhdr":
                w.write(resp(b"200 OK", OK, extra=b"".join(b"X-H%d: v\r\n" % i for i in range(10000))))
            elif path == b"/__splitresp":
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + BASE
                        + b"Content-Length: 11\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + b"b\r\n" + OK + b"\r\n0\r\n\r\n")
            elif path == b"/__trace":
                w.write(resp(b"500 Internal Server Error", TRACE, b"text/html"))
            elif path == b"/__big":
                STATS["big_active"] += 1
                try:
                    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + BASE
                            + b"Content-Length: %d\r\n\r\n" % (20 << 20))
                    chunk = b"\0" * 65536
                    for _ in range(320):
                        w.write(chunk)
                        await w.drain()
                finally:
                    STATS["big_active"] -= 1
            elif path == b"/__infinite":
                STATS["infinite_active"] += 1
                try:
                    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + BASE + b"Transfer-Encoding: chunked\r\n\r\n")
                    chunk = b"4000\r\n" + b"x" * 16384 + b"\r\n"
                    while True:
                        w.write(chunk)
                        await w.drain()
                finally:
                    STATS["infinite_active"] -= 1
            elif path == b"/__stats":
                w.write(resp(b"200 OK", json.dumps(STATS).encode()))
            elif path == b"/__echo":
                w.write(resp(b"200 OK", json.dumps({"head": base64.b64encode(head).decode(), "body": len(body), "trailers": len(trailers)}).encode()))
            elif method == b"HEAD":
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + BASE + b"Content-Length: 11\r\n\r\n")
            else:
                w.write(resp(b"200 OK", OK))
            await w.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError, IndexError):
        pass
    finally:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), limit=4 << 20, backlog=1024)
    await s.serve_forever()
asyncio.run(main())
'''


# --------------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client: every socket bounded by a timeout, every read capped.


@dataclass
class Resp:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    head: bytes
    body: bytes = b""
    incomplete: bool = False  # the connection closed before the declared body ended
    timed_out: bool = False  # the body stopped arriving
    capped: bool = False  # we stopped reading (cap reached)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def from_upstream(self) -> bool:
        return self.header("x-upstream") == UPSTREAM_MARK


Answer = Resp | str  # a str says why there was no response: "closed", "reset", "timeout", "garbage ..."


class Client:
    def __init__(self, port: int, src: str | None = None, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if src:
            self.sock.bind((src, 0))
        self.sock.connect((HOST, port))
        self.buf = bytearray()
        self.eof = False
        self.error = ""

    def send(self, data: bytes, chunk: int = 65536) -> str:
        """Send, stopping when the server already answered (a 413 mid-upload). Returns why it stopped, or ''."""
        view = memoryview(data)
        for i in range(0, len(data), chunk):
            if select.select([self.sock], [], [], 0)[0]:
                return "answered early"
            try:
                self.sock.sendall(view[i:i + chunk])
            except OSError as e:
                return type(e).__name__
        return ""

    def readable(self) -> bool:
        return bool(self.buf) or bool(select.select([self.sock], [], [], 0)[0])

    def _fill(self, deadline: float) -> bool:
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            self.eof, self.error = True, "reset"
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_response(self, timeout: float = 5.0, method: str = "GET", max_body: int = 4 * MB) -> Answer:
        deadline = time.monotonic() + timeout
        resp: Resp | None = None
        try:
            while True:
                while b"\r\n\r\n" not in self.buf:
                    if len(self.buf) > 2 * MB:
                        return f"garbage {bytes(self.buf[:60])!r}"
                    if not self._fill(deadline):
                        if not self.buf:
                            return self.error or "closed"
                        return f"partial {bytes(self.buf[:80])!r}"
                idx = self.buf.index(b"\r\n\r\n")
                head = bytes(self.buf[:idx])
                del self.buf[:idx + 4]
                lines = head.split(b"\r\n")
                m = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: (.*))?", lines[0])
                if not m:
                    return f"garbage {head[:80]!r}"
                status = int(m.group(1))
                headers = [(k.strip().decode("latin-1").lower(), v.strip().decode("latin-1"))
                           for k, _, v in (line.partition(b":") for line in lines[1:])]
                if 100 <= status < 200 and status != 101:
                    continue
                resp = Resp(status, (m.group(2) or b"").decode("latin-1"), headers, head)
                if method == "HEAD" or status in (101, 204, 304):
                    return resp
                te, cl = resp.header("transfer-encoding"), resp.header("content-length")
                if te and "chunked" in te.lower():
                    self._read_chunked(resp, deadline, max_body)
                elif cl is not None and cl.isdigit():
                    self._read_n(resp, int(cl), deadline, max_body)
                else:
                    while self._fill(deadline) and len(self.buf) < max_body:
                        pass
                    resp.body, resp.capped = bytes(self.buf[:max_body]), len(self.buf) >= max_body
                    self.buf.clear()
                return resp
        except TimeoutError:
            if resp is None:
                return f"timeout ({len(self.buf)} bytes received)" if self.buf else "timeout"
            resp.timed_out = True
            return resp

    def _read_n(self, resp: Resp, n: int, deadline: float, max_body: int) -> None:
        while len(self.buf) < n:
            if len(self.buf) >= max_body:
                resp.body, resp.capped = bytes(self.buf), True
                self.buf.clear()
                return
            if not self._fill(deadline):
                resp.body, resp.incomplete = bytes(self.buf), True
                self.buf.clear()
                return
        resp.body = bytes(self.buf[:n])
        del self.buf[:n]

    def _read_chunked(self, resp: Resp, deadline: float, max_body: int) -> None:
        body = bytearray()
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill(deadline):
                    resp.body, resp.incomplete = bytes(body), True
                    return
            idx = self.buf.index(b"\r\n")
            try:
                size = int(bytes(self.buf[:idx]).split(b";")[0].strip(), 16)
            except ValueError:
                resp.body, resp.incomplete = bytes(body), True
                return
            del self.buf[:idx + 2]
            if size == 0:
                while b"\r\n" not in self.buf or (not self.buf.startswith(b"\r\n") and b"\r\n\r\n" not in self.buf):
                    if not self._fill(deadline):
                        break
                end = 2 if self.buf.startswith(b"\r\n") else self.buf.find(b"\r\n\r\n") + 4
                del self.buf[:max(end, 0)]
                resp.body = bytes(body)
                return
            while len(self.buf) < size + 2:
                if not self._fill(deadline):
                    resp.body, resp.incomplete = bytes(body + self.buf), True
                    return
            body += self.buf[:size]
            del self.buf[:size + 2]
            if len(body) >= max_body:
                resp.body, resp.capped = bytes(body), True
                return

    def wait_closed(self, timeout: float) -> tuple[str, float]:
        """Discard what the server sends until it closes; returns ('closed'|'reset'|'open', seconds waited)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            while self._fill(deadline):
                self.buf.clear()
        except TimeoutError:
            return "open", time.monotonic() - t0
        return (self.error or "closed"), time.monotonic() - t0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def http_request(method: str = "GET", target: str = "/api/products", headers: list[tuple[str, str]] | None = None,
                 body: bytes = b"", ctype: str | None = None, length: bool = True) -> bytes:
    """A well-formed request (the hostile part is in the arguments)."""
    out = [f"{method} {target} HTTP/1.1".encode(), b"Host: shop.example", b"User-Agent: hostile-probe/1.0", b"Accept: */*"]
    if ctype:
        out.append(f"Content-Type: {ctype}".encode())
    if length and (body or method in ("POST", "PUT", "PATCH")):
        out.append(f"Content-Length: {len(body)}".encode())
    for k, v in headers or []:
        out.append(f"{k}: {v}".encode("latin-1"))
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def legit_request(page: int = 1) -> bytes:
    return (f"GET /api/products?page={page}&sort=price HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: {LEGIT_UA}\r\n"
            "Accept: application/json\r\n\r\n").encode()


# --------------------------------------------------------------------------------------------------
# Judging answers.


def body_problems(r: Resp, require_id: bool = True) -> list[str]:
    """What is wrong with an answer, as a security gateway's own error or as forwarded content."""
    out: list[str] = []
    banner = r.header("server") or ""
    if SERVER_BANNER.search(banner) or r.header("x-powered-by"):
        out.append(f"banner Server={banner!r} X-Powered-By={r.header('x-powered-by')!r}")
    if r.from_upstream:
        return out
    text = r.body.decode("utf-8", "replace")
    m = DISCLOSURE.search(text)
    if m:
        out.append(f"body discloses {m.group(0)!r}")
    for k, v in r.headers:
        if k not in ("date",) and DISCLOSURE.search(v):
            out.append(f"header {k} discloses {v[:80]!r}")
    if r.status >= 400:
        ctype = (r.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/problem+json":
            out.append(f"Content-Type {ctype or 'missing'}")
        elif r.body:
            try:
                doc = json.loads(r.body)
            except ValueError:
                out.append("problem body is not JSON")
            else:
                if not isinstance(doc, dict) or doc.get("status") != r.status:
                    out.append("problem status != HTTP status")
                elif require_id and "request_id" not in doc:
                    out.append("problem body without request_id")
        else:
            out.append("empty problem body")
    return out


def describe(r: Answer) -> str:
    if isinstance(r, str):
        return r[:90]
    kind = "upstream" if r.from_upstream else (r.header("content-type") or "no-ctype").split(";")[0]
    kind = kind.replace("application/", "")
    flags = "".join(f" {f}" for f, on in (("INCOMPLETE", r.incomplete), ("TIMED-OUT", r.timed_out)) if on)
    return f"{r.status} {kind}{flags}"


def judge(r: Answer, allowed: Collection[int], close_ok: bool = False, require_id: bool = True) -> tuple[bool, str]:
    if isinstance(r, str):
        return close_ok and r in ("closed", "reset"), describe(r)
    problems = body_problems(r, require_id)
    ok = r.status in allowed and not problems and not r.incomplete and not r.timed_out
    return ok, describe(r) + (f" [{'; '.join(problems)}]" if problems else "")


def excerpt(r: Answer) -> str:
    if isinstance(r, str):
        return r
    return f"{r.head[:300]!r} body={r.body[:300]!r}"


def sent_excerpt(data: bytes) -> str:
    if len(data) <= 240:
        return repr(data)
    return f"{data[:160]!r}...{data[-60:]!r} ({len(data)} bytes)"


# --------------------------------------------------------------------------------------------------
# Processes: memory, sockets.


def children(pid: int) -> list[int]:
    out = [pid]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out += children(int(d.name))
    return out


def rss_mb(pid: int) -> float:
    total = 0
    for p in children(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def socket_states(pid: int, local_port: int, remote_port: int) -> tuple[Counter[str], Counter[str]]:
    """TCP states of the sockets held by `pid`'s tree: client side (local port) and upstream side (remote port)."""
    inodes: set[str] = set()
    for p in children(pid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{p}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    names = {"01": "ESTABLISHED", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK",
             "04": "FIN_WAIT1", "05": "FIN_WAIT2", "0B": "CLOSING", "0A": "LISTEN"}
    client: Counter[str] = Counter()
    upstream: Counter[str] = Counter()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[9] not in inodes or f[3] == "0A":
            continue
        if int(f[1].split(":")[1], 16) == local_port:
            client[names.get(f[3], f[3])] += 1
        elif int(f[2].split(":")[1], 16) == remote_port:
            upstream[names.get(f[3], f[3])] += 1
    return client, upstream


class RssMonitor(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), rss_mb(self.pid)))
            self.stop.wait(0.2)

    def peak_since(self, t0: float) -> float:
        return max((v for t, v in self.samples if t >= t0), default=rss_mb(self.pid))


# --------------------------------------------------------------------------------------------------
# The probe.


@dataclass
class Row:
    case: str
    expected: str
    observed: str
    ok: bool
    detail: str = ""


Outcome = tuple[bool, str, str]  # passed, observed, details (shown for failures)


@dataclass
class Probe:
    gw: subprocess.Popen[bytes]
    gw_port: int
    up_port: int
    admin_port: int
    tmp: Path
    gw_log: Path
    only: str = ""
    verbose: bool = False
    rows: list[Row] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    addr: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    threads: list[threading.Thread] = field(default_factory=list)
    rss: RssMonitor | None = None
    baseline_rss: float = 0.0
    extra_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_logs: list[tuple[str, Path]] = field(default_factory=list)
    hang_many_done: float = 0.0
    state_growth: float = 0.0  # RSS the 10k-distinct-clients case added (entity state, kept by design)

    # --- plumbing -------------------------------------------------------------------------------

    def src(self) -> str:
        """A fresh loopback source address per connection group: behaviour scoring keys on the client
        address, so a hostile case must not make the next case's (or the legitimate probe's) address suspect."""
        with self.lock:
            n = next(self.addr)
        return f"127.{60 + n // 62500}.{(n // 250) % 250}.{n % 250 + 1}"

    def client(self, port: int | None = None, timeout: float = 5.0, src: str | None = None) -> Client:
        return Client(port or self.gw_port, src or self.src(), timeout)

    def record(self, row: Row) -> None:
        with self.lock:
            self.rows.append(row)
        mark = "PASS" if row.ok else "FAIL"
        print(f"  {mark} {row.case}: {row.observed}", flush=True)

    def legit(self, port: int | None = None) -> tuple[bool, str]:
        """A legitimate request from a fresh address must be served (200 from the upstream)."""
        try:
            c = self.client(port, timeout=8)
            c.send(legit_request())
            r = c.read_response(8)
            c.close()
        except OSError as e:
            return False, f"connect: {type(e).__name__}"
        ok = isinstance(r, Resp) and r.status == 200 and r.from_upstream
        return ok, describe(r)

    def selected(self, name: str) -> bool:
        return not self.only or self.only.lower() in name.lower()

    def case(self, name: str, expected: str, fn: Callable[[], Outcome], legit: bool = True) -> None:
        if not self.selected(name):
            return
        try:
            ok, observed, detail = fn()
        except Exception as e:  # a probe failure is reported as a failed case, never hidden
            ok, observed, detail = False, f"probe error {type(e).__name__}: {e}", ""
        if legit:
            lok, lobs = self.legit()
            if not lok:
                ok = False
                observed += f" | legit after: {lobs}"
        self.record(Row(name, expected, observed, ok, detail))

    def background(self, name: str, expected: str, fn: Callable[[], Outcome]) -> None:
        if not self.selected(name):
            return

        def run() -> None:
            self.case(name, expected, fn, legit=True)

        t = threading.Thread(target=run, daemon=True, name=name)
        t.start()
        self.threads.append(t)

    def raw(self, name: str, data: bytes, allowed: Collection[int], expected: str | None = None,
            close_ok: bool = False, timeout: float = 6.0, method: str = "GET") -> None:
        exp = expected or ("/".join(map(str, sorted(allowed))) + (" or close" if close_ok else ""))

        def fn() -> Outcome:
            c = self.client(timeout=timeout)
            why = c.send(data)
            r = c.read_response(timeout, method)
            c.close()
            ok, obs = judge(r, allowed, close_ok)
            if why and isinstance(r, str):
                obs += f" (send stopped: {why})"
            return ok, obs, f"sent {sent_excerpt(data)}; got {excerpt(r)}"

        self.case(name, exp, fn)

    def raw_timed(self, name: str, data: bytes, allowed: Collection[int], max_seconds: float, wait: float,
                  close_ok: bool = False) -> None:
        """A refusal that must come promptly; waits longer to show what happens instead (in the background)."""
        exp = "/".join(map(str, sorted(allowed))) + (" or close" if close_ok else "") + f" within {max_seconds:.0f} s"

        def fn() -> Outcome:
            t0 = time.monotonic()
            c = self.client(timeout=wait)
            c.send(data)
            r = c.read_response(wait)
            c.close()
            elapsed = time.monotonic() - t0
            ok, obs = judge(r, allowed, close_ok)
            return ok and elapsed <= max_seconds, f"{obs} after {elapsed:.1f} s", f"sent {sent_excerpt(data)}; got {excerpt(r)}"

        self.background(name, exp, fn)

    def upstream_stats(self) -> dict[str, int]:
        conn = http.client.HTTPConnection(HOST, self.up_port, timeout=5)
        try:
            conn.request("GET", "/__stats")
            return dict(json.loads(conn.getresponse().read()))
        finally:
            conn.close()

    # --- long-running cases, started first ------------------------------------------------------

    def start_background(self) -> None:
        # First, so that whatever it leaves behind has expired (upstream timeout) before the final socket check.
        self.background("flood: 200 requests parked on a hanging upstream", "legit served < 2 s; upstream released "
                        "< 5 s after the clients leave", self.hang_many)
        self.background("slowloris: header 1 byte / 0.5 s", f"408 or close <= {HEADER_TIMEOUT + SLACK:.0f} s",
                        self.slowloris)
        self.background("slow body: 1 byte / 0.5 s of 1000", "408 or close <= 32 s (+slack)", self.slow_body)
        self.background("body shorter than declared, then idle", f"408 or close <= {BODY_TIMEOUT + SLACK:.0f} s",
                        self.short_body_idle)
        self.background("keep-alive connection left idle", f"closed <= {IDLE_TIMEOUT + SLACK:.0f} s",
                        self.keepalive_idle)
        self.background("upstream accepts, never answers", f"504 problem at ~{UPSTREAM_RESPONSE_TIMEOUT:.0f} s",
                        self.upstream_hang)
        te = (b"POST /api/orders HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
        # A chunk declaring more than limits.max_body_bytes (10 MiB) can be refused as soon as its size line is read.
        self.raw_timed("chunk size: 7fffffffffffffff (declares 8 EiB)", te + b"7fffffffffffffff\r\n" + b'{"a":1}',
                       (400, 413), 5, BODY_TIMEOUT + SLACK)
        self.raw_timed("chunk size: a00001 (10 MiB + 1)", te + b"a00001\r\n" + b'{"a":1}', (400, 413), 5,
                       BODY_TIMEOUT + SLACK)
        # HTTP/0.9 has no version: the request line is complete at its CRLF, nothing more will come.
        self.raw_timed("HTTP/0.9 request", b"GET /api/products\r\n", (400,), 5, HEADER_TIMEOUT + SLACK, close_ok=True)
        if self.selected("flood: 500 idle connections"):
            self.idle_flood()

    def slowloris(self) -> Outcome:
        c = self.client(timeout=30)
        data = b"GET /api/products HTTP/1.1\r\nHost: shop.example\r\nX-Slow: " + b"a" * 200
        t0 = time.monotonic()
        sent, r = 0, None
        for i in range(len(data)):
            if time.monotonic() - t0 > 30:
                break
            if c.readable():
                break
            try:
                c.sock.sendall(data[i:i + 1])
                sent += 1
            except OSError:
                break
            time.sleep(0.5)
        r = c.read_response(2) if c.readable() else ("open" if time.monotonic() - t0 > 30 else "closed")
        elapsed = time.monotonic() - t0
        c.close()
        ok = elapsed <= HEADER_TIMEOUT + SLACK and (r in ("closed", "reset") or (isinstance(r, Resp) and r.status == 408
                                                                                and not body_problems(r)))
        return ok, f"{describe(r)} after {elapsed:.1f} s ({sent} bytes)", f"sent {sent} header bytes one per 0.5 s"

    def slow_body(self) -> Outcome:
        c = self.client(timeout=60)
        c.send(http_request("POST", "/api/orders", ctype="application/json", headers=[("Content-Length", "1000")],
                            length=False))
        t0 = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < 55 and sent < 1000 and not c.readable():
            try:
                c.sock.sendall(b"a")
                sent += 1
            except OSError:
                break
            time.sleep(0.5)
        r: Answer = c.read_response(3) if c.readable() else "open"
        if r == "open":
            state, _ = c.wait_closed(0.5)
            r = state
        elapsed = time.monotonic() - t0
        c.close()
        limit = BODY_TIMEOUT + 1000 / BODY_MIN_RATE + SLACK
        ok = elapsed <= limit and (r in ("closed", "reset") or (isinstance(r, Resp) and r.status in (400, 408, 413)
                                                                and not body_problems(r)))
        return ok, f"{describe(r)} after {elapsed:.1f} s ({sent} body bytes)", "Content-Length: 1000, 1 byte / 0.5 s"

    def short_body_idle(self) -> Outcome:
        c = self.client(timeout=60)
        c.send(http_request("POST", "/api/orders", ctype="application/json", headers=[("Content-Length", "100")],
                            length=False) + b'{"a": 1}')
        t0 = time.monotonic()
        r = c.read_response(BODY_TIMEOUT + 20)
        elapsed = time.monotonic() - t0
        c.close()
        ok = elapsed <= BODY_TIMEOUT + 1 + SLACK and (r in ("closed", "reset") or (
            isinstance(r, Resp) and r.status in (400, 408) and not body_problems(r)))
        return ok, f"{describe(r)} after {elapsed:.1f} s", "Content-Length: 100, 8 bytes sent, then silence"

    def keepalive_idle(self) -> Outcome:
        c = self.client(timeout=80)
        c.send(legit_request())
        r = c.read_response(8)
        if not (isinstance(r, Resp) and r.status == 200):
            return False, f"first request: {describe(r)}", excerpt(r)
        state, waited = c.wait_closed(IDLE_TIMEOUT + 15)
        c.close()
        return state in ("closed", "reset") and waited <= IDLE_TIMEOUT + SLACK, f"{state} after {waited:.1f} s", ""

    def upstream_hang(self) -> Outcome:
        c = self.client(timeout=90)
        c.send(http_request("GET", "/__hang"))
        t0 = time.monotonic()
        r = c.read_response(UPSTREAM_RESPONSE_TIMEOUT + 20)
        elapsed = time.monotonic() - t0
        c.close()
        ok, obs = judge(r, (504,))
        ok = ok and elapsed <= UPSTREAM_RESPONSE_TIMEOUT + SLACK
        return ok, f"{obs} after {elapsed:.1f} s", excerpt(r)

    def idle_flood(self) -> None:
        name = "flood: 500 idle connections"
        src = self.src()
        socks: list[socket.socket] = []
        err = ""
        t0 = time.monotonic()
        for _ in range(500):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.bind((src, 0))
                s.connect((HOST, self.gw_port))
                socks.append(s)
            except OSError as e:
                err = f"{type(e).__name__} after {len(socks)}"
                s.close()
                break
        # Legitimate traffic while the 500 sit there.
        ok, obs = self.legit()
        self.record(Row(f"{name}: legit request meanwhile", "200", f"{len(socks)} open{', ' + err if err else ''};"
                        f" legit {obs}", ok and not err))

        def reap() -> Outcome:
            deadline = t0 + IDLE_TIMEOUT + 15
            open_ = list(socks)
            closed_at: list[float] = []
            while open_ and time.monotonic() < deadline:
                ready, _, _ = select.select(open_, [], [], 1.0)
                for s in ready:
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        closed_at.append(time.monotonic() - t0)
                        open_.remove(s)
                        s.close()
            left = len(open_)
            for s in open_:
                s.close()
            last = max(closed_at, default=0.0)
            ok = left == 0 and last <= IDLE_TIMEOUT + SLACK
            return ok, f"{len(closed_at)} reaped (last after {last:.1f} s), {left} still open at {deadline - t0:.0f} s", ""

        self.background(f"{name}: reaped by timeouts", f"all closed <= {IDLE_TIMEOUT + SLACK:.0f} s", reap)

    # --- malformed HTTP -------------------------------------------------------------------------

    def protocol_cases(self) -> None:
        r = self.raw
        r("request line: binary garbage", b"\x01\x02\x03 \xff\xfe nonsense\r\n\r\n", (400,))
        r("request line: no version, with headers", b"GET /api/products\r\n" + H + b"\r\n", (400,))
        r("request line: extra token", b"GET /api/products HTTP/1.1 extra\r\n" + H + b"\r\n", (400,))
        r("request line: HTTP/1.2", b"GET /api/products HTTP/1.2\r\n" + H + b"\r\n", (400, 505))
        r("request line: HTTP/9.9", b"GET /api/products HTTP/9.9\r\n" + H + b"\r\n", (400, 505))
        r("request line: lower-case http/1.1", b"GET /api/products http/1.1\r\n" + H + b"\r\n", (400,))
        r("request line: tabs as separators", b"GET\t/api/products\tHTTP/1.1\r\n" + H + b"\r\n", (400,))
        # A few empty lines may be skipped (RFC 9112 2.2); an endless stream of them must not hold the connection.
        r("request line: 64 KB of empty lines", b"\r\n" * 32768, (400, 431), "400/431 or close (<= header timeout)",
          close_ok=True, timeout=HEADER_TIMEOUT + SLACK)
        r("request line: leading empty lines (RFC: ignore)", b"\r\n\r\nGET /api/products HTTP/1.1\r\n" + H + b"\r\n",
          (200, 400))
        r("bare LF line endings", b"GET /api/products HTTP/1.1\nHost: shop.example\nUser-Agent: x\n\n", (200, 400))
        r("method: G@T (not a token)", b"G@T /api/products HTTP/1.1\r\n" + H + b"\r\n", (400,))
        r("method: NUL inside", b"GE\x00T /api/products HTTP/1.1\r\n" + H + b"\r\n", (400,))
        r("method: 8 KB long", b"A" * 8192 + b" /api/products HTTP/1.1\r\n" + H + b"\r\n", (400, 405, 414, 501))
        r("method: TRACE", b"TRACE /api/products HTTP/1.1\r\n" + H + b"\r\n", (405,))
        r("method: CONNECT", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n" + H + b"\r\n", (400, 405))
        r("method: FOO (a valid token)", b"FOO /api/products HTTP/1.1\r\n" + H + b"\r\n", (405, 501),
          "405 (docs: outside allowed_methods)")
        r("method: PROPFIND (WebDAV, not allowed)", b"PROPFIND /api/products HTTP/1.1\r\n" + H + b"\r\n", (405,),
          "405 (docs: outside allowed_methods)")
        r("method: lower-case get", b"get /api/products HTTP/1.1\r\n" + H + b"\r\n", (400, 405))
        r("URI: 64 KB", http_request("GET", "/api/search?q=" + "a" * 65536), (414,))
        r("URI: 1 MB", http_request("GET", "/api/search?q=" + "a" * MB), (400, 414, 431), "414 (or 400/431)")
        r("URI: file:// target", b"GET file:///etc/passwd HTTP/1.1\r\n" + H + b"\r\n", (400,))
        r("URI: * with GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n", (400,))
        r("URI: absolute-form to another host", b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n" + H + b"\r\n",
          (400, 403))
        r("URI: raw NUL in path", b"GET /api/\x00products HTTP/1.1\r\n" + H + b"\r\n", (400,))
        r("URI: raw CR in path", b"GET /api/\rproducts HTTP/1.1\r\n" + H + b"\r\n", (400,))
        r("URI: %00 in path", http_request("GET", "/api/products%00.json"), (400, 403))
        r("URI: %0d%0a in path", http_request("GET", "/api/products%0d%0aSet-Cookie:%20a=b"), (400, 403))
        r("URI: raw space-split", b"GET /api/pro ducts HTTP/1.1\r\n" + H + b"\r\n", (400,))
        r("URI: raw bytes >= 0x80", b"GET /api/\xff\xfe\xc0\xaf HTTP/1.1\r\n" + H + b"\r\n", (400, 403, 404, 200))
        r("header: one value of 64 KB", http_request(headers=[("X-Big", "a" * 65536)]), (431,))
        r("header: one value of 1 MB", http_request(headers=[("X-Big", "a" * MB)]), (400, 431), "431 (or 400)")
        r("header: 150 headers", http_request(headers=[(f"X-H{i}", "v") for i in range(150)]), (431,))
        r("header: 10k headers", http_request(headers=[(f"X-H{i}", "v") for i in range(10000)]), (400, 431),
          "431 (or 400)")
        r("header: 3000 x 100 B (300 KB block)", http_request(headers=[(f"X-H{i}", "v" * 100) for i in range(3000)]),
          (400, 431), "431 (or 400)")
        r("header name: space inside", b"GET /api/products HTTP/1.1\r\n" + H + b"X Bad: 1\r\n\r\n", (400,))
        r("header name: space before colon", b"GET /api/products HTTP/1.1\r\n" + H + b"X-Bad : 1\r\n\r\n", (400,))
        r("header name: control byte", b"GET /api/products HTTP/1.1\r\n" + H + b"X\x01Bad: 1\r\n\r\n", (400,))
        r("header name: byte 0xff", b"GET /api/products HTTP/1.1\r\n" + H + b"\xffName: 1\r\n\r\n", (400,))
        r("header name: parentheses", b"GET /api/products HTTP/1.1\r\n" + H + b"X(a): 1\r\n\r\n", (400,))
        r("header name: empty", b"GET /api/products HTTP/1.1\r\n" + H + b": value\r\n\r\n", (400,))
        r("header line: no colon", b"GET /api/products HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", (400,))
        r("header value: NUL", b"GET /api/products HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", (400,))
        r("header value: bare CR", b"GET /api/products HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", (400,))
        r("header: CR-only line end", b"GET /api/products HTTP/1.1\r\n" + H + b"X-A: 1\rX-B: 2\r\n\r\n", (400,))
        r("header: LF inside request line", b"GET /api/a\nb HTTP/1.1\r\n" + H + b"\r\n", (400,))
        r("header: %0d%0a injection in value", http_request(headers=[("X-Note", "a%0d%0aSet-Cookie:%20s=1")]), (400, 403))
        self.case("header: obs-fold", "400 (or 200 with the fold removed upstream)", self.obs_fold)
        r("Host: missing (HTTP/1.1)", b"GET /api/products HTTP/1.1\r\nUser-Agent: x\r\n\r\n", (400,))
        r("Host: twice", b"GET /api/products HTTP/1.1\r\n" + H + b"Host: evil.example\r\n\r\n", (400,))
        r("Host: with spaces", b"GET /api/products HTTP/1.1\r\nHost: a b\r\n\r\n", (400,))
        r("Host: userinfo", b"GET /api/products HTTP/1.1\r\nHost: user@evil.example\r\n\r\n", (400,))
        body = b'{"a":1}'
        post = b"POST /api/orders HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\n"
        r("Content-Length twice, equal", post + b"Content-Length: 7\r\nContent-Length: 7\r\n\r\n" + body, (400,))
        r("Content-Length twice, different", post + b"Content-Length: 7\r\nContent-Length: 3\r\n\r\n" + body, (400,))
        r("Content-Length: 7, 7", post + b"Content-Length: 7, 7\r\n\r\n" + body, (400,))
        r("Content-Length: +7", post + b"Content-Length: +7\r\n\r\n" + body, (400,))
        r("Content-Length: 0x7", post + b"Content-Length: 0x7\r\n\r\n" + body, (400,))
        r("Content-Length: -1", post + b"Content-Length: -1\r\n\r\n" + body, (400,))
        r("Content-Length: 30 digits", post + b"Content-Length: " + b"9" * 30 + b"\r\n\r\n" + body, (400, 413))
        chunked = b"7\r\n" + body + b"\r\n0\r\n\r\n"
        r("CL + TE", post + b"Content-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, (400,))
        r("TE: chunked, identity", post + b"Transfer-Encoding: chunked, identity\r\n\r\n" + chunked, (400,))
        r("TE: identity, chunked", post + b"Transfer-Encoding: identity, chunked\r\n\r\n" + chunked, (400,))
        r("TE: xchunked", post + b"Transfer-Encoding: xchunked\r\n\r\n" + chunked, (400, 501))
        r("TE: chunked twice (two headers)", post + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
          + chunked, (400,))
        r("TE: space before colon", post + b"Transfer-Encoding : chunked\r\n\r\n" + chunked, (400,))
        r("TE: vertical tab before value", post + b"Transfer-Encoding:\x0bchunked\r\n\r\n" + chunked, (400,))
        r("TE: in HTTP/1.0", b"POST /api/orders HTTP/1.0\r\n" + H + b"Content-Type: application/json\r\n"
          b"Transfer-Encoding: chunked\r\n\r\n" + chunked, (400,))
        r("TE: gzip, chunked", post + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked, (400, 501))
        te = post + b"Transfer-Encoding: chunked\r\n\r\n"
        r("chunk size: zz", te + b"zz\r\n" + body + b"\r\n0\r\n\r\n", (400,))
        r("chunk size: -1", te + b"-1\r\n" + body + b"\r\n0\r\n\r\n", (400,))
        r("chunk size: 0x7", te + b"0x7\r\n" + body + b"\r\n0\r\n\r\n", (400,))
        r("chunk size: '7 7'", te + b"7 7\r\n" + body + b"\r\n0\r\n\r\n", (400,))
        r("chunk size: 2^64 overflow", te + b"10000000000000007\r\n" + body + b"\r\n0\r\n\r\n", (400, 413))
        r("chunk size: 40 hex digits", te + b"f" * 40 + b"\r\n" + body + b"\r\n0\r\n\r\n", (400, 413))
        r("chunk data longer than size", te + b"3\r\n" + body + b"\r\n0\r\n\r\n", (400,))
        r("chunk without CRLF after data", te + b"7\r\n" + body + b"0\r\n\r\n", (400,))
        echo = te.replace(b"POST /api/orders ", b"POST /__echo ")
        self.trailer("chunked: valid trailer", echo + chunked[:-2] + b"X-Trailer: 1\r\n\r\n", (200,))
        self.trailer("chunked: Content-Length in trailer", echo + chunked[:-2] + b"Content-Length: 500\r\n\r\n",
                     (200, 400))
        self.trailer("chunked: 100 KB trailer", echo + chunked[:-2] + b"X-T: " + b"a" * 102400 + b"\r\n\r\n",
                     (400, 413, 431))
        self.trailer("chunked: 30 MB of trailer fields", echo + chunked[:-2]
                     + b"".join(b"X-T%d: %s\r\n" % (i, b"a" * 1000) for i in range(30000)) + b"\r\n", (400, 413, 431))
        self.trailer("chunked: bad trailer name", echo + chunked[:-2] + b"Bad Name: 1\r\n\r\n", (200, 400))
        self.case("body longer than declared (smuggled request behind)", "200 then 403 (smuggled XSS inspected)",
                  self.body_longer)
        self.case("body longer than declared (garbage behind)", "200 then 400", self.body_longer_garbage)
        r("HTTP/2 preface on cleartext", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
          (400, 505), close_ok=True)
        r("TLS ClientHello on plain port", client_hello(), (400,), "400 or close", close_ok=True)
        r("SSLv2-style / random binary", bytes(range(256)) * 16, (400,), "400 or close", close_ok=True)
        r("Expect: garbage", http_request("POST", "/api/orders", [("Expect", "200-ok")], b'{"a":1}', "application/json"),
          (417,))
        self.case("Expect: 100-continue (legit)", "100 then 200", self.expect_continue)
        r("Range: 50 ranges", http_request(headers=[("Range", "bytes=" + ",".join(f"{i}-{i}" for i in range(50)))]),
          (400, 403, 416))
        self.case("Upgrade: h2c", "400/403, or 200 with Upgrade not forwarded (docs: never forwarded)", self.h2c)
        self.case("pipelined: 100 GETs in one write", "100 x 200 in order", self.pipelined_100)
        self.case("pipelined: framing error in the middle", "10 x 200, 400, close", self.pipelined_bad_middle)
        self.case("pipelined: attack in the middle", "10 x 200, 403, then 200s or close", self.pipelined_attack)
        self.case("client closes mid-headers", "proxy unaffected", self.close_mid_headers)
        self.case("client closes mid-body", "proxy unaffected", self.close_mid_body)
        self.case("client closes mid-response (20 MB)", "proxy unaffected, upstream released", self.close_mid_response)
        self.case("half-close after a full request", "200", self.half_close)

    def trailer(self, name: str, data: bytes, allowed: Collection[int]) -> None:
        def fn() -> Outcome:
            t0 = time.monotonic()
            c = self.client(timeout=15)
            why = c.send(data)
            r = c.read_response(15)
            c.close()
            ok, obs = judge(r, allowed)
            if isinstance(r, Resp) and r.from_upstream and r.status == 200:
                got = json.loads(r.body)
                obs += f"; upstream got {got['trailers']} trailer bytes"
            peak = self.rss.peak_since(t0) if self.rss else 0.0
            obs += f"; RSS +{peak - self.baseline_rss:.0f} MB" + (f" (send stopped: {why})" if why else "")
            return ok, obs, f"sent {sent_excerpt(data)}; got {excerpt(r)}"

        self.case(name, "/".join(map(str, sorted(allowed))), fn)

    def obs_fold(self) -> Outcome:
        data = b"GET /__echo HTTP/1.1\r\n" + H + b"X-Folded: first\r\n  second: part\r\n\r\n"
        c = self.client()
        c.send(data)
        r = c.read_response()
        c.close()
        if isinstance(r, Resp) and r.status == 200 and r.from_upstream:
            head = base64.b64decode(json.loads(r.body)["head"])
            folded = any(line[:1] in (b" ", b"\t") for line in head.split(b"\r\n")[1:])
            return not folded, "200, upstream saw " + ("the fold (smuggling risk)" if folded else "no fold"), repr(head)
        ok, obs = judge(r, (400,))
        return ok, obs, excerpt(r)

    def h2c(self) -> Outcome:
        data = http_request("GET", "/__echo", [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"),
                                               ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")])
        c = self.client()
        c.send(data)
        r = c.read_response()
        c.close()
        if isinstance(r, Resp) and r.status == 200 and r.from_upstream:
            head = base64.b64decode(json.loads(r.body)["head"]).lower()
            leaked = [h for h in (b"upgrade:", b"http2-settings:") if h in head]
            return not leaked, f"200, upstream saw {leaked or 'no upgrade headers'}", repr(head)
        ok, obs = judge(r, (400, 403))
        return ok, obs, excerpt(r)

    def sequence(self, data: bytes, n: int, timeout: float = 8.0) -> list[Answer]:
        c = self.client(timeout=timeout)
        c.send(data)
        out: list[Answer] = []
        for _ in range(n):
            r = c.read_response(timeout)
            out.append(r)
            if isinstance(r, str):
                break
        # Anything beyond the expected answers would be a request the gateway should not have processed.
        if len(out) == n and isinstance(out[-1], Resp):
            out.append(c.read_response(1.5))
        c.close()
        return out

    def body_longer(self) -> Outcome:
        smuggled = b"GET /api/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E HTTP/1.1\r\n" + H + b"\r\n"
        data = (b"POST /api/orders HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n"
                b'{"a":1}' + smuggled)
        rs = self.sequence(data, 2)
        obs = ", ".join(describe(x) for x in rs)
        ok = (len(rs) >= 2 and isinstance(rs[0], Resp) and rs[0].status == 200 and judge(rs[1], (403,))[0])
        return ok, obs, f"sent {sent_excerpt(data)}"

    def body_longer_garbage(self) -> Outcome:
        data = (b"POST /api/orders HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n"
                b'{"a":1}XYZZY garbage line\r\n\r\n')
        rs = self.sequence(data, 2)
        obs = ", ".join(describe(x) for x in rs)
        ok = len(rs) >= 2 and isinstance(rs[0], Resp) and rs[0].status == 200 and judge(rs[1], (400,))[0]
        return ok, obs, f"sent {sent_excerpt(data)}"

    def expect_continue(self) -> Outcome:
        c = self.client()
        c.send(http_request("POST", "/api/orders", [("Expect", "100-continue")], b"", "application/json",
                            length=False).replace(b"\r\n\r\n", b"\r\nContent-Length: 7\r\n\r\n"))
        got100 = False
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and b"\r\n\r\n" not in c.buf:
            if not c._fill(deadline):
                break
        if c.buf.startswith(b"HTTP/1.1 100"):
            got100 = True
        c.send(b'{"a":1}')
        r = c.read_response()
        c.close()
        ok = isinstance(r, Resp) and r.status == 200
        return ok, f"{'100, ' if got100 else 'no 100, '}{describe(r)}", excerpt(r)

    def pipelined_100(self) -> Outcome:
        data = b"".join(legit_request(i) for i in range(100))
        rs = self.sequence(data, 100, timeout=15)
        statuses = Counter(x.status if isinstance(x, Resp) else x for x in rs[:100])
        extra = rs[100:] if len(rs) > 100 else []
        ok = statuses.get(200, 0) == 100 and not any(isinstance(x, Resp) for x in extra)
        return ok, " ".join(f"{k}x{v}" for k, v in statuses.items()), ""

    def pipelined_bad_middle(self) -> Outcome:
        bad = b"POST /api/orders HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n"
        data = b"".join(legit_request(i) for i in range(10)) + bad + b"".join(legit_request(i) for i in range(10))
        rs = self.sequence(data, 11)
        obs = [x.status if isinstance(x, Resp) else x for x in rs]
        ok = (len(rs) == 12 and obs[:10] == [200] * 10 and judge(rs[10], (400,))[0] and rs[11] in ("closed", "reset"))
        summary = f"{Counter(map(str, obs[:10]))} then {describe(rs[10]) if len(rs) > 10 else '-'}, then " \
                  f"{describe(rs[11]) if len(rs) > 11 else '-'}"
        return ok, summary, f"statuses {obs}"

    def pipelined_attack(self) -> Outcome:
        attack = http_request("GET", "/api/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--")
        data = b"".join(legit_request(i) for i in range(10)) + attack + b"".join(legit_request(i) for i in range(10))
        rs = self.sequence(data, 21)
        obs = [x.status if isinstance(x, Resp) else x for x in rs]
        after = obs[11:21]
        ok = (obs[:10] == [200] * 10 and len(rs) > 10 and judge(rs[10], (403,))[0]
              and (after == [200] * 10 or (after and after[0] in ("closed", "reset"))))
        return ok, f"{obs[:10].count(200)} x 200, {describe(rs[10]) if len(rs) > 10 else '-'}, after: {Counter(map(str, after))}", str(obs)

    def close_mid_headers(self) -> Outcome:
        for _ in range(20):
            c = self.client()
            c.send(b"GET /api/products HTTP/1.1\r\nHost: shop.exa")
            c.close()
        return True, "20 connections closed mid-headers", ""

    def close_mid_body(self) -> Outcome:
        for _ in range(20):
            c = self.client()
            c.send(http_request("POST", "/api/orders", [("Content-Length", "100000")], b"", "application/json",
                                length=False) + b'{"a": "' + b"x" * 5000)
            c.close()
        return True, "20 connections closed mid-body (5 KB of 100 KB)", ""

    def close_mid_response(self) -> Outcome:
        t0 = time.monotonic()
        for _ in range(3):
            c = self.client(timeout=10)
            c.send(http_request("GET", "/__big"))
            deadline = time.monotonic() + 5
            while len(c.buf) < 65536 and c._fill(deadline):
                pass
            # RST rather than FIN for one of them: an abortive close is what a killed client produces.
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        active = -1
        for _ in range(20):
            active = self.upstream_stats()["big_active"]
            if active == 0:
                break
            time.sleep(0.5)
        peak = self.rss.peak_since(t0) if self.rss else 0.0
        ok = active == 0 and peak - self.baseline_rss < 100
        return ok, f"upstream streams still active: {active}; RSS peak {peak:.0f} MB", ""

    def half_close(self) -> Outcome:
        c = self.client()
        c.send(legit_request())
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_response()
        c.close()
        return isinstance(r, Resp) and r.status == 200, describe(r), excerpt(r)

    # --- hostile bodies -------------------------------------------------------------------------

    def post(self, name: str, body: bytes, ctype: str | None, allowed: Collection[int], expected: str | None = None,
             path: str = "/api/orders", headers: list[tuple[str, str]] | None = None, max_seconds: float = 10.0,
             rss_limit: float = 100.0) -> None:
        exp = (expected or "/".join(map(str, sorted(allowed)))) + f", < {max_seconds:.0f} s"

        def fn() -> Outcome:
            t0 = time.monotonic()
            c = self.client(timeout=max_seconds + 5)
            data = http_request("POST", path, headers, body, ctype)
            why = c.send(data, chunk=MB)
            r = c.read_response(max_seconds + 5)
            c.close()
            elapsed = time.monotonic() - t0
            ok, obs = judge(r, allowed)
            peak = self.rss.peak_since(t0) if self.rss else 0.0
            obs += f" in {elapsed:.1f} s"
            if peak - self.baseline_rss > rss_limit:
                ok = False
                obs += f"; RSS peak {peak:.0f} MB (baseline {self.baseline_rss:.0f})"
            if why and isinstance(r, str):
                obs += f" (send stopped: {why})"
            return ok and elapsed < max_seconds, obs, f"sent {sent_excerpt(data)}; got {excerpt(r)}"

        self.case(name, exp, fn)

    def body_cases(self) -> None:
        self.case("body: 100 MB with Content-Length", "413 without buffering (RSS +<50 MB)", self.body_100mb_cl)
        self.case("body: 100 MB chunked", "413 without buffering (RSS +<50 MB)", self.body_100mb_chunked)
        j = "application/json"
        ok_or_refused = (200, 400, 403, 413, 422)
        self.post("JSON: 100k nested arrays", b"[" * 100000 + b"]" * 100000, j, ok_or_refused)
        self.post("JSON: 30k nested arrays (inside the 64 KiB window)", b"[" * 30000 + b"]" * 30000, j, ok_or_refused)
        self.post("JSON: 15k nested objects", b'{"a":' * 15000 + b"1" + b"}" * 15000, j, ok_or_refused)
        self.post("JSON: 1M keys", b"{" + b",".join(b'"k%d":1' % i for i in range(1_000_000)) + b"}", j, ok_or_refused)
        self.post("JSON: 100k keys", b"{" + b",".join(b'"k%d":1' % i for i in range(100_000)) + b"}", j, ok_or_refused)
        self.post("JSON: 50k-digit integer", b'{"n": ' + b"9" * 50000 + b"}", j, ok_or_refused)
        self.post("JSON: 1e999999 and -1e-999999", b'{"a": 1e999999, "b": -1e-999999, "c": 1E+400}', j, ok_or_refused)
        self.post("JSON: 20k-digit fraction", b'{"n": 0.' + b"1" * 20000 + b"e-5}", j, ok_or_refused)
        self.post("JSON: invalid UTF-8", b'{"q": "\xff\xfe\xc0\xaf caf\xe9 \xed\xa0\x80"}', j, (200, 400, 403, 415, 422))
        self.post("JSON: UTF-16 with BOM, charset=utf-16 (benign)", '{"q": "hello world"}'.encode("utf-16"),
                  "application/json; charset=utf-16", (200, 400, 415))
        self.post("JSON: UTF-16 with BOM, charset=utf-16, SQLi inside",
                  '{"q": "1\' UNION SELECT username, password FROM users--"}'.encode("utf-16"),
                  "application/json; charset=utf-16", (400, 403, 415), "refused 400/403/415")
        self.post("JSON: UTF-16LE with BOM, no charset, SQLi inside",
                  b"\xff\xfe" + '{"q": "1\' UNION SELECT username, password FROM users--"}'.encode("utf-16-le"),
                  j, (400, 403, 415), "refused 400/403/415")
        self.post("JSON: escaped lone surrogates", b'{"q": "\\ud800 x \\udfff", "\\udbff": "\\ud83d"}', j,
                  (200, 400, 403, 422))
        self.post("JSON: lone surrogate then SQLi", b'{"q": "\\ud800\' OR 1=1-- -"}', j, (400, 403),
                  "refused 400/403")
        self.post("JSON: NUL escapes and raw controls", b'{"q": "a\\u0000b", "r": "x\x01\x02y"}', j,
                  (200, 400, 403, 422))
        laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10))
                  + b"]><lolz>&lol9;</lolz>")
        self.post("XML: billion laughs", laughs, "application/xml", (400, 403), max_seconds=5, path="/api/import")
        self.case("XML: external DTD (must not be fetched)", "400/403, no fetch", self.xml_external_dtd)
        b = "XyZzY"
        parts = b"".join(b'--%s\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % (b.encode(), i)
                         for i in range(10000)) + b"--%s--\r\n" % b.encode()
        self.post("multipart: 10k parts", parts, f"multipart/form-data; boundary={b}", (200, 400, 403, 413))
        one = b'--XyZzY\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--XyZzY--\r\n'
        self.post("multipart: no boundary parameter", one, "multipart/form-data", (400, 403))
        self.post("multipart: boundary never closed", one.replace(b"--XyZzY--\r\n", b"") + b'--XyZzY\r\nContent-'
                  b'Disposition: form-data; name="b"\r\n\r\n' + b"x" * 1000, f"multipart/form-data; boundary={b}",
                  (200, 400, 403))
        self.post("multipart: 70-char boundary of quotes", one, 'multipart/form-data; boundary="' + '"' * 70 + '"',
                  (400, 403))
        self.case("gzip bomb (1 GB of zeros, Content-Encoding: gzip)", "200/400/403/413/415, RSS +<100 MB, < 10 s",
                  self.gzip_bomb)
        form = b"&".join(b"p%d=1" % i for i in range(100_000))
        self.post("form: 100k params", form, "application/x-www-form-urlencoded", (200, 400, 403, 413))
        self.raw("query: 100k params", http_request("GET", "/api/search?" + "&".join(f"p{i}=1" for i in range(100_000))),
                 (414,), "414 (URI > 8 KiB)")
        self.raw("query: 300 params within 8 KiB", http_request("GET", "/api/search?" + "&".join(f"p{i}=1" for i in range(300))),
                 (400,), "400 (max_query_args 256)")
        self.raw("query: 300 repeats of one name", http_request("GET", "/api/search?" + "&".join("a=1" for i in range(300))),
                 (400,), "400 (max_query_args 256)")

    def pathological_cases(self) -> None:
        """Inputs that make backtracking regexes, decoders or normalisers slow: each must be answered quickly."""
        payloads: dict[str, str] = {
            "a x 60k": "a" * 60000, "spaces then x": " " * 60000 + "x", "'<' x 60k": "<" * 60000,
            "'<a' x 30k": "<a" * 30000, "'<!--' x 15k": "<!--" * 15000, "quotes x 60k": "'" * 60000,
            "\"' or \" x 12k": "' or " * 12000, "'union select' x 5k": "union select " * 4600,
            "'/*' x 30k": "/*" * 30000, "'${' x 30k": "${" * 30000, "'{{' x 30k": "{{" * 30000,
            "'%' x 60k": "%" * 60000, "'%25' x 20k": "%25" * 20000, "backslashes x 60k": "\\" * 30000,
            "'../' x 20k": "../" * 20000, "'&#' x 30k": "&#" * 30000, "'a=' x 30k": "a=" * 30000,
            "'javascript:' x 5k": "javascript:" * 5400, "'on' x 30k then =": "on" * 30000 + "=",
            "'(' x 60k": "(" * 60000, "'select(' x 8k": "select(" * 8500, "tabs x 60k": "\t" * 60000,
            "U+FDFA x 20k (NFKC x18)": "\ufdfa" * 20000, "'<script' x 8k": "<script" * 8500,
            "'jndi:' nested ${ x 10k": "${jndi:" * 8500, "'--' x 30k": "--" * 30000,
            "'0x' x 30k": "0x" * 30000, "'|' x 60k": "|" * 60000, "'$(' x 30k": "$(" * 30000,
            "'\\u00' x 10k": "\\u00" * 10000, "'@@' x 30k": "@@" * 30000, "'\\x' x 30k": "\\x" * 30000,
        }
        for label, text in payloads.items():
            self.case(f"slow input: {label}", "answered < 2 s in query and JSON body",
                      lambda t=text: self.pathological(t))
        self.raw("slow input: query 'a' + '[x]' x 2000", http_request("GET", "/api/search?a" + "[x]" * 2000 + "=1"),
                 (200, 400, 403, 414))
        self.raw("slow input: 1600 cookies in 8 KB", http_request(headers=[("Cookie", "; ".join(
            f"c{i}=1" for i in range(1300)))]), (200, 400, 403, 431))

    def pathological(self, text: str) -> Outcome:
        out, ok = [], True
        q = urllib.parse.quote(text[:2600], safe="")  # the query value stays under the 8 KiB URI limit
        body = json.dumps({"comment": text[:60000], "name": "x"}).encode()
        for label, data in (("query", http_request("GET", f"/api/search?q={q}")),
                            ("body", http_request("POST", "/api/orders", None, body, "application/json"))):
            t0 = time.monotonic()
            c = self.client(timeout=20)
            c.send(data)
            r = c.read_response(20)
            c.close()
            elapsed = time.monotonic() - t0
            good, obs = judge(r, (200, 400, 403, 414))
            ok = ok and good and elapsed < 2
            out.append(f"{label} {obs} {elapsed:.2f} s")
        return ok, "; ".join(out), ""

    def body_100mb_cl(self) -> Outcome:
        t0 = time.monotonic()
        c = self.client(timeout=20)
        c.send(http_request("POST", "/api/upload", [("Content-Length", str(100 * MB))], b"",
                            "application/octet-stream", length=False))
        chunk = b"a" * MB
        why, sent = "", 0
        for _ in range(100):
            why = c.send(chunk)
            if why:
                break
            sent += 1
        r = c.read_response(10)
        c.close()
        peak = self.rss.peak_since(t0) if self.rss else 0.0
        ok, obs = judge(r, (413,))
        grew = peak - self.baseline_rss
        return (ok and grew < 50, f"{obs} after {sent} MB sent ({why or 'all sent'}); RSS +{grew:.0f} MB",
                excerpt(r))

    def body_100mb_chunked(self) -> Outcome:
        t0 = time.monotonic()
        c = self.client(timeout=20)
        c.send(http_request("POST", "/api/upload", [("Transfer-Encoding", "chunked")], b"",
                            "application/octet-stream", length=False))
        chunk = b"100000\r\n" + b"a" * MB + b"\r\n"
        why, sent = "", 0
        for _ in range(100):
            why = c.send(chunk)
            if why:
                break
            sent += 1
        if not why:
            c.send(b"0\r\n\r\n")
        r = c.read_response(10)
        c.close()
        peak = self.rss.peak_since(t0) if self.rss else 0.0
        ok, obs = judge(r, (413,))
        grew = peak - self.baseline_rss
        return (ok and grew < 50, f"{obs} after {sent} MB sent ({why or 'all sent'}); RSS +{grew:.0f} MB",
                excerpt(r))

    def xml_external_dtd(self) -> Outcome:
        canary = socket.socket()
        canary.bind((HOST, 0))
        canary.listen(8)
        canary.setblocking(False)
        port = canary.getsockname()[1]
        body = (f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:{port}/evil.dtd">'
                f'<r><a>&ext;</a></r>').encode()
        c = self.client()
        c.send(http_request("POST", "/api/import", None, body, "application/xml"))
        r = c.read_response()
        c.close()
        time.sleep(0.5)
        fetched = bool(select.select([canary], [], [], 0)[0])
        canary.close()
        ok, obs = judge(r, (400, 403))
        return ok and not fetched, obs + ("; DTD FETCHED" if fetched else "; not fetched"), excerpt(r)

    def gzip_bomb(self) -> Outcome:
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        zeros = b"\0" * (16 * MB)
        bomb = b"".join(z.compress(zeros) for _ in range(64)) + z.flush()  # 1 GiB inflated
        t0 = time.monotonic()
        c = self.client(timeout=15)
        data = http_request("POST", "/api/orders", [("Content-Encoding", "gzip")], bomb, "application/json")
        c.send(data)
        r = c.read_response(15)
        c.close()
        elapsed = time.monotonic() - t0
        peak = self.rss.peak_since(t0) if self.rss else 0.0
        ok, obs = judge(r, (200, 400, 403, 413, 415))
        grew = peak - self.baseline_rss
        return (ok and grew < 100 and elapsed < 10,
                f"{obs} in {elapsed:.1f} s ({len(bomb) // 1024} KB sent); RSS +{grew:.0f} MB", excerpt(r))

    # --- upstream trouble -----------------------------------------------------------------------

    def upstream_cases(self) -> None:
        self.raw("upstream: malformed status line", http_request("GET", "/__malformed"), (502,))
        self.raw("upstream: not HTTP at all", http_request("GET", "/__garbage"), (502,))
        self.raw("upstream: closes without answering", http_request("GET", "/__close"), (502,))
        self.case("upstream: closes mid-body", "502, or truncated then closed (< 5 s)", self.upstream_midbody)
        self.raw("upstream: 1 MB response header", http_request("GET", "/__bighdr"), (502,), timeout=10)
        self.raw("upstream: 10k response headers", http_request("GET", "/__manyhdr"), (502,), timeout=10)
        self.case("upstream: response with CL and TE", "502 or 200 well-framed, connection reusable",
                  self.upstream_cl_te)
        self.case("upstream: 500 stack trace page", "500/502 scrubbed (no trace, no secret)", self.upstream_trace)
        self.case("upstream: infinite chunked, client disconnects", "upstream stream released < 10 s",
                  self.upstream_infinite)
        self.case("upstream: infinite chunked, client stops reading", "RSS +<50 MB (backpressure)",
                  self.upstream_infinite_slow_reader)

    def upstream_midbody(self) -> Outcome:
        c = self.client(timeout=10)
        c.send(http_request("GET", "/__midbody"))
        t0 = time.monotonic()
        r = c.read_response(8)
        state = "open"
        if isinstance(r, Resp) and not r.incomplete:
            state, _ = c.wait_closed(5)
        elapsed = time.monotonic() - t0
        c.close()
        if isinstance(r, Resp) and r.status == 502:
            ok, obs = judge(r, (502,))
            return ok, obs, excerpt(r)
        truncated = isinstance(r, Resp) and r.incomplete and not r.timed_out and elapsed < 5
        obs = describe(r) + f", {len(r.body) if isinstance(r, Resp) else 0} of 100000 bytes, in {elapsed:.1f} s"
        if isinstance(r, Resp) and not r.incomplete:
            obs += f" (presented as complete; connection {state})"
        return truncated, obs, excerpt(r)

    def upstream_cl_te(self) -> Outcome:
        c = self.client()
        c.send(http_request("GET", "/__splitresp"))
        r = c.read_response()
        if isinstance(r, Resp) and r.status == 200:
            c.send(legit_request())
            r2 = c.read_response()
            c.close()
            ok = r.body == b'{"ok":true}' and isinstance(r2, Resp) and r2.status == 200
            return ok, f"200 body={r.body[:30]!r}, next on same connection: {describe(r2)}", excerpt(r)
        c.close()
        ok, obs = judge(r, (502,))
        return ok, obs, excerpt(r)

    def upstream_trace(self) -> Outcome:
        c = self.client()
        c.send(http_request("GET", "/__trace"))
        r = c.read_response()
        c.close()
        if not isinstance(r, Resp):
            return False, describe(r), ""
        text = r.body.decode("latin-1")
        leaks = [w for w in ("Traceback", "views.py", "s3cret", "ZeroDivisionError", "DATABASE_URL") if w in text]
        banner = r.header("server")
        ok = r.status in (500, 502) and not leaks and banner is None
        obs = f"{r.status} {(r.header('content-type') or '').split(';')[0]}" + (f", leaks {leaks}" if leaks else "") + (
            f", Server: {banner}" if banner else "")
        return ok, obs, excerpt(r)

    def upstream_infinite(self) -> Outcome:
        before = self.upstream_stats()["infinite_active"]
        c = self.client(timeout=10)
        c.send(http_request("GET", "/__infinite"))
        deadline = time.monotonic() + 5
        while len(c.buf) < 200_000 and c._fill(deadline):
            pass
        got = len(c.buf)
        during = self.upstream_stats()["infinite_active"]
        c.close()
        active = during
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            active = self.upstream_stats()["infinite_active"]
            if active <= before:
                break
            time.sleep(0.25)
        ok = during > before and active <= before
        return ok, f"read {got // 1024} KB; upstream streams {during} while reading, {active} " \
                   f"{time.monotonic() - t0:.1f} s after the client left", ""

    def upstream_infinite_slow_reader(self) -> Outcome:
        t0 = time.monotonic()
        c = self.client(timeout=10)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(http_request("GET", "/__infinite"))
        deadline = time.monotonic() + 5
        while len(c.buf) < 16384 and c._fill(deadline):
            pass
        time.sleep(4)  # not reading: the proxy must stop reading from the upstream, not buffer
        peak = self.rss.peak_since(t0) if self.rss else 0.0
        c.close()
        grew = peak - self.baseline_rss
        return grew < 50, f"RSS +{grew:.0f} MB over 4 s of a stalled reader", ""

    def upstream_down_and_back(self) -> None:
        """A second default proxy in front of a port where nothing listens, then an upstream appears there."""
        name = "upstream down (connection refused)"
        if not self.selected(name) and not self.selected("upstream comes back"):
            return
        dead = free_port()
        port, admin = free_port(), free_port()
        log = self.tmp / "gw-b.log"
        gw = spawn([BASTION, "proxy", "--upstream", f"http://{HOST}:{dead}", "--listen", f"{HOST}:{port}",
                    "--admin", f"{HOST}:{admin}", "--data-dir", str(self.tmp / "data-b")], log)
        self.extra_procs.append(gw)
        self.extra_logs.append(("proxy B (upstream down)", log))
        try:
            wait_port(port, gw, 40, log)
        except RuntimeError as e:
            self.record(Row(name, "502 problem", f"second proxy did not start: {e}"[:200], False))
            return

        def down() -> Outcome:
            t0 = time.monotonic()
            c = self.client(port, timeout=10)
            c.send(legit_request())
            r = c.read_response(10)
            c.close()
            ok, obs = judge(r, (502,))
            elapsed = time.monotonic() - t0
            return ok and elapsed < 6, f"{obs} in {elapsed:.1f} s", excerpt(r)

        self.case(name, "502 problem+json, < 6 s", down)
        up = spawn([sys.executable, "-c", UPSTREAM, str(dead), _b64(TRACE_PAGE)], self.tmp / "upstream-b.log")
        self.extra_procs.append(up)

        def back() -> Outcome:
            wait_port(dead, up)
            t0 = time.monotonic()
            last: Answer = "none"
            while time.monotonic() - t0 < 15:
                c = self.client(port, timeout=5)
                c.send(legit_request())
                last = c.read_response(5)
                c.close()
                if isinstance(last, Resp) and last.status == 200 and last.from_upstream:
                    return True, f"200 after {time.monotonic() - t0:.1f} s", ""
                time.sleep(0.5)
            return False, f"still {describe(last)} after 15 s", excerpt(last)

        self.case("upstream comes back: traffic flows again", "200 < 15 s", back)

    # --- floods ---------------------------------------------------------------------------------

    def flood_cases(self) -> None:
        self.case("flood: 2000 requests in 2 s from one address", "rate-limited (429/403), no 5xx, no crash",
                  self.request_flood)
        self.case("flood: 10k distinct clients (address, API key, session, path)", "RSS +< 100 MB, no 5xx",
                  self.distinct_clients)
        self.case("flood: 1000 connect/close (half RST)", "no leaked sockets, proxy serves", self.churn)

    def request_flood(self) -> Outcome:
        src = self.src()
        statuses: Counter[str] = Counter()
        lock = threading.Lock()
        t0 = time.monotonic()

        def worker(k: int) -> None:
            c: Client | None = None
            for batch in range(5):
                # Pace: 20 connections x 5 batches x 20 requests = 2000 within ~2 s.
                wait = t0 + batch * 0.4 - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if c is None:
                        c = Client(self.gw_port, src, 10)
                    c.send(b"".join(
                        f"GET /api/products?page={k * 100 + batch * 20 + i} HTTP/1.1\r\nHost: shop.example\r\n"
                        f"User-Agent: flood-client/1.0\r\nAccept: */*\r\n\r\n".encode() for i in range(20)))
                    got: list[str] = []
                    for _ in range(20):
                        r = c.read_response(10)
                        got.append(str(r.status) if isinstance(r, Resp) else r.split(" ")[0])
                        if isinstance(r, str):
                            c.close()
                            c = None
                            break
                    got += ["unanswered"] * (20 - len(got))
                except OSError as e:
                    got = [f"connect-{type(e).__name__}"] * 20
                    c = None
                with lock:
                    statuses.update(got)
            if c is not None:
                c.close()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
        five = sum(v for k, v in statuses.items() if k.startswith("5"))
        limited = statuses.get("429", 0) + statuses.get("403", 0)
        ok = five == 0 and limited > 0 and self.gw.poll() is None
        obs = f"{dict(statuses)} in {elapsed:.1f} s"
        return ok, obs, "20 keep-alive connections from one address, 100 pipelined requests each"

    def hang_many(self) -> Outcome:
        src = self.src()
        clients: list[Client] = []
        for i in range(200):
            c = Client(self.gw_port, src, 5)
            c.send(http_request("GET", f"/__hang?i={i}"))
            clients.append(c)
        time.sleep(1.5)
        _, before = socket_states(self.gw.pid, self.gw_port, self.up_port)
        t0 = time.monotonic()
        lok, lobs = self.legit()
        lt = time.monotonic() - t0
        for c in clients:
            c.close()
        after = before
        t1 = time.monotonic()
        while time.monotonic() - t1 < 5:
            time.sleep(0.5)
            _, after = socket_states(self.gw.pid, self.gw_port, self.up_port)
            if before["ESTABLISHED"] - after["ESTABLISHED"] >= 190:
                break
        self.hang_many_done = time.monotonic()
        released = before["ESTABLISHED"] - after["ESTABLISHED"]
        ok = lok and lt < 2 and released >= 190 and after.get("CLOSE_WAIT", 0) == 0
        return ok, (f"legit {lobs} in {lt:.2f} s; upstream sockets {dict(before)} -> {dict(after)} "
                    f"{time.monotonic() - t1:.1f} s after the clients left"), ""

    def distinct_clients(self) -> Outcome:
        rss0 = rss_mb(self.gw.pid)
        statuses: Counter[str] = Counter()
        lock = threading.Lock()
        n_threads, per = 8, 1250
        addrs = [[self.src() for _ in range(per)] for _ in range(n_threads)]

        def worker(k: int) -> None:
            got: Counter[str] = Counter()
            for i, src in enumerate(addrs[k]):
                key = os.urandom(12).hex()
                data = (f"GET /api/items/{key[:8]}/detail?ref={key[8:]} HTTP/1.1\r\nHost: shop.example\r\n"
                        f"User-Agent: client-{k}-{i}/1.0\r\nX-API-Key: {key}\r\nCookie: session={key[::-1]}\r\n"
                        "Accept: application/json\r\nConnection: close\r\n\r\n").encode()
                try:
                    c = Client(self.gw_port, src, 5)
                    c.send(data)
                    r = c.read_response(5)
                    c.close()
                    got[str(r.status) if isinstance(r, Resp) else r.split(" ")[0]] += 1
                except OSError as e:
                    got[type(e).__name__] += 1
            with lock:
                statuses.update(got)

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        elapsed = time.monotonic() - t0
        time.sleep(1)
        grew = rss_mb(self.gw.pid) - rss0
        self.state_growth = grew
        n = n_threads * per
        five = sum(v for k, v in statuses.items() if k.startswith("5"))
        per_client = grew * 1024 / n
        return (grew < 100 and five == 0,
                f"{dict(statuses)} in {elapsed:.0f} s; RSS +{grew:.0f} MB ({per_client:.1f} KB per client: "
                f"~{per_client * 2_000_000 / MB:.1f} GB at behaviour.entity.max_keys 2M)", "")

    def churn(self) -> Outcome:
        src = self.src()
        before, _ = socket_states(self.gw.pid, self.gw_port, self.up_port)
        errors: Counter[str] = Counter()
        for i in range(1000):
            try:
                s = socket.socket()
                s.settimeout(3)
                s.bind((src, 0))
                s.connect((HOST, self.gw_port))
                if i % 2:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError as e:
                errors[type(e).__name__] += 1
        time.sleep(1.5)
        client, _ = socket_states(self.gw.pid, self.gw_port, self.up_port)
        held = sum(v for k, v in client.items() if k in ("ESTABLISHED", "CLOSE_WAIT"))
        held0 = sum(v for k, v in before.items() if k in ("ESTABLISHED", "CLOSE_WAIT"))
        return (not errors and held - held0 < 20,
                f"connect errors {dict(errors)}; client sockets held {dict(before)} -> {dict(client)}", "")

    # --- broken configs -------------------------------------------------------------------------

    def config_cases(self) -> None:
        up = f"http://{HOST}:{self.up_port}"
        cases: list[tuple[str, str, list[str], list[str]]] = [
            ("config: YAML syntax error", "mode: enforce\nlimits: {max_body_bytes: 10\n  bad: [\n", ["--upstream", up],
             ["yaml", "line", "bad.yaml"]),
            ("config: unknown key", "upstreem:\n  url: http://127.0.0.1:9\n", ["--upstream", up], ["upstreem"]),
            ("config: wrong type", "limits:\n  max_body_bytes: lots\n", ["--upstream", up], ["max_body_bytes"]),
            ("config: negative size", "limits:\n  max_body_bytes: -5\n", ["--upstream", up], ["max_body_bytes"]),
            ("config: bad regex in a rule", "rules:\n  - id: bad-regex-rule\n    match:\n      path: {regex: \"([\"}\n"
             "    threshold: 0\n    window: 60\n    actions: {block: 403}\n", ["--upstream", up],
             ["regex", "bad-regex-rule"]),
            ("config: bad regex in login routes", "behaviour:\n  login:\n    routes: [\"(login\"]\n", ["--upstream", up],
             ["routes", "regex"]),
            ("config: missing upstream", "mode: enforce\n", [], ["upstream"]),
            ("config: upstream ftp://", "upstream:\n  url: ftp://127.0.0.1:21/\n", [], ["upstream"]),
            ("config: listen port 99999", "server:\n  listen: 127.0.0.1:99999\n", ["--upstream", up], ["listen", "99999"]),
            ("config: file does not exist", "", ["--upstream", up, "--config", str(self.tmp / "nope.yaml")],
             ["nope.yaml"]),
            ("config: top level is a list", "- a\n- b\n", ["--upstream", up], ["bad.yaml", "mapping", "config"]),
        ]
        for name, text, args, words in cases:
            self.case(name, "exit != 0, one clear line naming it", lambda t=text, a=args, w=words: self.bad_config(t, a, w),
                      legit=False)
        self.case("config: listen port already in use", "exit != 0, one clear line naming it", self.port_in_use,
                  legit=False)
        self.case("config: state redis://127.0.0.1:1 (dead)", "clear exit, or starts and serves (fail open)",
                  self.redis_dead, legit=False)

    def start_proxy(self, args: list[str], tag: str, port: int | None = None) -> tuple[subprocess.Popen[bytes], Path, int]:
        port = port or free_port()
        log = self.tmp / f"cfg-{tag}.log"
        full = [BASTION, "proxy", "--listen", f"{HOST}:{port}", "--admin", f"{HOST}:{free_port()}",
                "--data-dir", str(self.tmp / f"data-{tag}"), *args]
        with log.open("wb") as err:
            proc = subprocess.Popen(full, stdout=err, stderr=err)
        return proc, log, port

    def wait_exit_or_listen(self, proc: subprocess.Popen[bytes], port: int, timeout: float = 25) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return "exited"
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, port), timeout=0.2).close()
                return "listening"
            time.sleep(0.1)
        return "neither"

    def wait_exit(self, proc: subprocess.Popen[bytes], timeout: float) -> str:
        try:
            proc.wait(timeout)
            return "exited"
        except subprocess.TimeoutExpired:
            return f"still running after {timeout:.0f} s"

    def bad_config(self, text: str, args: list[str], words: list[str], port: int | None = None) -> Outcome:
        tag = f"c{next(self.addr)}"
        path = self.tmp / "bad.yaml"
        cfg_args = [] if "--config" in args else ["--config", str(path)]
        path.write_text(text)
        proc, log, lport = self.start_proxy([*cfg_args, *args], tag, port)
        state = self.wait_exit_or_listen(proc, lport) if port is None else self.wait_exit(proc, 20)
        if state != "exited":
            proc.kill()
            proc.wait(5)
            return False, f"did not exit ({state}): started with a broken config", log.read_text(errors="replace")[-800:]
        out = log.read_text(errors="replace")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        # The error is the last line naming the problem (an info line such as "protecting ..." may precede it).
        first = next((ln for ln in reversed(lines) if any(w.lower() in ln.lower() for w in words)
                      and '"level":"info"' not in ln), "")
        problems = []
        if proc.returncode == 0:
            problems.append("exit status 0")
        if LOG_CRASH.search(out):
            problems.append("traceback")
        if not first:
            problems.append(f"no line names {words}")
        if len(lines) > 3:
            problems.append(f"{len(lines)} lines of output")
        shown = (first or (lines[-1] if lines else "(no output)"))[:150]
        return not problems, f"rc={proc.returncode} {'; '.join(problems) + ': ' if problems else ''}{shown}", out[-1500:]

    def port_in_use(self) -> Outcome:
        holder = socket.socket()
        holder.bind((HOST, 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        try:
            return self.bad_config("mode: enforce\n", ["--upstream", f"http://{HOST}:{self.up_port}"],
                                   [str(port), "in use", "address already"], port=port)
        finally:
            holder.close()

    def redis_dead(self) -> Outcome:
        proc, log, port = self.start_proxy(["--upstream", f"http://{HOST}:{self.up_port}", "--state",
                                            "redis://127.0.0.1:1/0"], "redis")
        try:
            state = self.wait_exit_or_listen(proc, port, 30)
            out = log.read_text(errors="replace")
            if state == "exited":
                lines = [ln for ln in out.splitlines() if ln.strip()]
                named = any("redis" in ln.lower() or "state" in ln.lower() for ln in lines)
                ok = proc.returncode != 0 and named and not LOG_CRASH.search(out)
                return ok, f"exited rc={proc.returncode}: {(lines[-1] if lines else '')[:140]}", out[-1500:]
            if state != "listening":
                return False, "neither exited nor listened in 30 s", out[-1500:]
            times, statuses = [], []
            for _ in range(5):
                t0 = time.monotonic()
                c = self.client(port, timeout=10)
                c.send(legit_request())
                r = c.read_response(10)
                c.close()
                times.append(time.monotonic() - t0)
                statuses.append(r.status if isinstance(r, Resp) else r)
            c = self.client(port, timeout=10)
            c.send(http_request("GET", "/api/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--"))
            attack = c.read_response(10)
            c.close()
            time.sleep(0.5)
            out = log.read_text(errors="replace")
            crash = LOG_CRASH.search(out)
            ok = all(s == 200 for s in statuses) and max(times) < 2 and proc.poll() is None and not crash and \
                isinstance(attack, Resp) and attack.status == 403
            obs = (f"started; legit {statuses} (max {max(times) * 1000:.0f} ms); attack {describe(attack)}"
                   + ("; TRACEBACK in log" if crash else ""))
            return ok, obs, "\n".join(ln for ln in out.splitlines() if LOG_CRASH.search(ln) or "redis" in ln.lower())[:1500]
        finally:
            stop_all([proc])

    # --- admin ----------------------------------------------------------------------------------

    def admin(self, method: str, path: str, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
              src: str | None = None) -> Answer:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.admin_port}", "User-Agent: hostile-probe/1.0"]
        lines += [f"{k}: {v}" for k, v in headers or []]
        if body or method in ("POST", "DELETE"):
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines.append("Connection: close")
        c = Client(self.admin_port, src or self.src(), 5)
        c.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        r = c.read_response(5)
        c.close()
        return r

    def admin_cases(self) -> None:
        token = (self.tmp / "data" / "admin.token").read_text().strip()

        def expect(name: str, allowed: Collection[int], method: str, path: str,
                   headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
            def fn() -> Outcome:
                r = self.admin(method, path, headers, body)
                ok, obs = judge(r, allowed, require_id=False)
                if isinstance(r, Resp) and token in r.body.decode("latin-1"):
                    ok, obs = False, obs + " [TOKEN IN BODY]"
                return ok, obs, excerpt(r)

            self.case(name, "/".join(map(str, allowed)) + " problem+json, nothing disclosed", fn, legit=False)

        expect("admin: events, no credentials", (401, 403), "GET", "/api/v1/events")
        expect("admin: stats, wrong bearer", (401, 403), "GET", "/api/v1/stats", [("Authorization", "Bearer " + "x" * 43)])
        expect("admin: stats, token with one char changed", (401, 403), "GET", "/api/v1/stats",
               [("Authorization", "Bearer " + token[:-1] + ("A" if token[-1] != "A" else "B"))])
        expect("admin: stats, empty bearer", (401, 403), "GET", "/api/v1/stats", [("Authorization", "Bearer ")])
        expect("admin: stats, Basic scheme", (401, 403), "GET", "/api/v1/stats",
               [("Authorization", "Basic YWRtaW46YWRtaW4=")])
        expect("admin: stats, token in query string", (401, 403), "GET", f"/api/v1/stats?token={token}")
        expect("admin: metrics, no credentials", (401, 403), "GET", "/metrics")
        expect("admin: entities, no credentials", (401, 403), "GET", "/api/v1/entities")
        expect("admin: bogus session cookie", (401, 403), "GET", "/api/v1/session",
               [("Cookie", "bastion_session=forged")])
        self.case("admin: add decision without credentials", "401/403 and nothing added", self.admin_write_unauth,
                  legit=False)
        expect("admin: login with wrong token", (401, 403), "POST", "/api/v1/login", body=b'{"token": "wrong"}')
        expect("admin: login with malformed JSON", (400, 401, 403, 422), "POST", "/api/v1/login", body=b'{"token": ')
        self.case("admin: path traversal under /console/", "404/400, no file content", self.admin_traversal,
                  legit=False)
        self.case("admin: right token works (sanity)", "200", lambda: self.admin_ok(token), legit=False)
        self.case("admin: lock-out after 20 failures", "429 from the 21st, right token included",
                  lambda: self.admin_lockout(token), legit=False)
        self.case("admin: garbage bytes to the admin port", "400 or close; /healthz still 200", self.admin_garbage,
                  legit=False)

    def admin_write_unauth(self) -> Outcome:
        body = b'{"kind": "ip", "value": "198.51.100.77", "action": "allow", "duration": "1h", "reason": "probe"}'
        r = self.admin("POST", "/api/v1/decisions", body=body)
        ok, obs = judge(r, (401, 403), require_id=False)
        token = (self.tmp / "data" / "admin.token").read_text().strip()
        listing = self.admin("GET", "/api/v1/decisions?all=1", [("Authorization", f"Bearer {token}")])
        added = isinstance(listing, Resp) and b"198.51.100.77" in listing.body
        return ok and not added, obs + ("; DECISION ADDED" if added else "; nothing added"), excerpt(r)

    def admin_traversal(self) -> Outcome:
        bad = []
        for path in ("/console/../../../../etc/passwd", "/console/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                     "/console/..%2f..%2f..%2f..%2fetc%2fpasswd", "/console/....//....//etc/passwd",
                     "/console/%c0%ae%c0%ae/etc/passwd", "/console/..\\..\\..\\etc\\passwd"):
            r = self.admin("GET", path)
            if not isinstance(r, Resp):
                bad.append(f"{path}: {r}")
            elif b"root:" in r.body or r.status == 200 or r.status >= 500:
                bad.append(f"{path}: {r.status} {r.body[:60]!r}")
        return not bad, "; ".join(bad) or "all refused", ""

    def admin_ok(self, token: str) -> Outcome:
        r = self.admin("GET", "/api/v1/stats", [("Authorization", f"Bearer {token}")])
        return isinstance(r, Resp) and r.status == 200, describe(r), ""

    def admin_lockout(self, token: str) -> Outcome:
        src = self.src()
        seen = []
        for _ in range(21):
            r = self.admin("GET", "/api/v1/stats", [("Authorization", "Bearer wrong-token-" + "z" * 20)], src=src)
            seen.append(r.status if isinstance(r, Resp) else r)
        r = self.admin("GET", "/api/v1/stats", [("Authorization", f"Bearer {token}")], src=src)
        right = r.status if isinstance(r, Resp) else r
        ok = seen[:20].count(429) == 0 and seen[20] == 429 and right == 429
        retry = r.header("retry-after") if isinstance(r, Resp) else None
        return ok, f"{Counter(map(str, seen[:20]))}, 21st {seen[20]}, right token {right} (Retry-After {retry})", str(seen)

    def admin_garbage(self) -> Outcome:
        c = Client(self.admin_port, self.src(), 5)
        c.send(b"\x16\x03\x01\x00\xff" + os.urandom(300) + b"\r\n\r\n")
        r = c.read_response(5)
        c.close()
        ok1, obs = judge(r, (400,), close_ok=True, require_id=False)
        h = self.admin("GET", "/healthz")
        ok2 = isinstance(h, Resp) and h.status == 200
        return ok1 and ok2, f"{obs}; /healthz {describe(h)}", excerpt(r)

    # --- the end --------------------------------------------------------------------------------

    def final_checks(self) -> None:
        if self.hang_many_done:
            # Requests abandoned on the hanging upstream may legitimately live until the upstream timeout.
            wait = self.hang_many_done + UPSTREAM_RESPONSE_TIMEOUT + SLACK - time.monotonic()
            if wait > 0:
                print(f"  (waiting {wait:.0f} s for the upstream timeout before the socket check)", flush=True)
                time.sleep(wait)
        alive = self.gw.poll() is None
        self.record(Row("end: proxy process alive", "running", "running" if alive else f"exited rc={self.gw.returncode}",
                        alive))
        final = rss_mb(self.gw.pid) if alive else 0.0
        peak = max((v for _, v in self.rss.samples), default=0.0) if self.rss else 0.0
        grew = final - self.baseline_rss - self.state_growth
        self.record(Row("end: RSS growth", "final < baseline + 100 MB (+ the 10k clients' state)",
                        f"baseline {self.baseline_rss:.0f} MB, peak {peak:.0f} MB, final {final:.0f} MB "
                        f"(10k clients' state: {self.state_growth:.0f} MB)", grew < 100))
        if alive:
            client, upstream = socket_states(self.gw.pid, self.gw_port, self.up_port)
            leaked = sum(v for k, v in client.items() if k in ("ESTABLISHED", "CLOSE_WAIT"))
            stuck_up = upstream.get("CLOSE_WAIT", 0)
            self.record(Row("end: sockets held by the proxy", "no client sockets left, no upstream CLOSE_WAIT",
                            f"client side {dict(client)}, upstream side {dict(upstream)}", leaked <= 2 and stuck_up == 0))
        if alive:
            ticks = os.sysconf("SC_CLK_TCK")

            def cpu() -> float:
                f = Path(f"/proc/{self.gw.pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) / ticks

            c0 = cpu()
            time.sleep(3)
            busy = (cpu() - c0) / 3
            self.record(Row("end: proxy CPU when idle", "< 10 % of a core (no spinning leftover)",
                            f"{busy * 100:.1f} %", busy < 0.10))
        for label, log in [("main proxy", self.gw_log), *self.extra_logs]:
            text = log.read_text(errors="replace") if log.exists() else ""
            hits = [ln for ln in text.splitlines() if LOG_CRASH.search(ln)]
            detail = "\n".join(traceback_excerpts(text))
            self.record(Row(f"end: {label} log has no uncaught exception", "none",
                            f"{len(hits)} lines match" if hits else "none", not hits, detail))


def traceback_excerpts(text: str, limit: int = 6) -> list[str]:
    """The crash lines of a JSON-lines log with what follows them (the exception text), a few of each kind."""
    out: list[str] = []
    seen: set[str] = set()
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if not LOG_CRASH.search(ln):
            continue
        block = "\n".join(lines[i:i + 3])
        with contextlib.suppress(ValueError):
            doc = json.loads(ln)
            block = json.dumps({k: doc.get(k) for k in ("msg", "exc_info", "exception", "exc", "error") if doc.get(k)})
        key = block[-300:]
        if key in seen:
            continue
        seen.add(key)
        out.append(block[-2500:])
        if len(out) >= limit:
            break
    return out


def client_hello() -> bytes:
    """A real TLS ClientHello, as a browser would send to https:// on the wrong port."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="shop.example")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def print_table(rows: list[Row], verbose: bool) -> None:
    w1 = min(58, max(len(r.case) for r in rows))
    w2 = min(44, max(len(r.expected) for r in rows))
    print()
    print(f"{'case':{w1}}  {'expected':{w2}}  {'verdict':7}  observed")
    print("-" * (w1 + w2 + 60))
    for r in rows:
        print(f"{r.case[:w1]:{w1}}  {r.expected[:w2]:{w2}}  {'PASS' if r.ok else 'FAIL':7}  {r.observed}")
    fails = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(fails)}/{len(rows)} passed, {len(fails)} failed")
    if fails:
        print("\nFailures:")
        for r in fails:
            print(f"- {r.case}\n    expected: {r.expected}\n    observed: {r.observed}")
            if r.detail:
                print("    details: " + r.detail[:3000].replace("\n", "\n             "))
    if verbose:
        for r in rows:
            if r.ok and r.detail:
                print(f"  {r.case}: {r.detail[:300]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bastion-hostile-"))
    up_port, gw_port, admin_port = free_port(), free_port(), free_port()
    up = spawn([sys.executable, "-c", UPSTREAM, str(up_port), _b64(TRACE_PAGE)], tmp / "upstream.log")
    gw_log = tmp / "gw.log"
    gw = spawn([BASTION, "proxy", "--upstream", f"http://{HOST}:{up_port}", "--listen", f"{HOST}:{gw_port}",
                "--admin", f"{HOST}:{admin_port}", "--data-dir", str(tmp / "data")], gw_log)
    probe = Probe(gw, gw_port, up_port, admin_port, tmp, gw_log, args.only, args.verbose)
    try:
        wait_port(up_port, up)
        wait_port(gw_port, gw, 40, gw_log)
        wait_port(admin_port, gw, 20, gw_log)
        for i in range(5):  # warm up before taking the memory baseline
            ok, obs = probe.legit()
            if not ok and i == 4:
                print(f"legitimate request not served before any case: {obs}")
                return 2
        probe.baseline_rss = rss_mb(gw.pid)
        probe.rss = RssMonitor(gw.pid)
        probe.rss.start()
        print(f"proxy pid {gw.pid} on :{gw_port} (upstream :{up_port}, admin :{admin_port}); "
              f"baseline RSS {probe.baseline_rss:.0f} MB; logs in {tmp}", flush=True)
        probe.start_background()
        probe.protocol_cases()
        probe.body_cases()
        probe.pathological_cases()
        probe.upstream_cases()
        probe.upstream_down_and_back()
        probe.flood_cases()
        probe.admin_cases()
        probe.config_cases()
        for t in probe.threads:
            t.join(max(1.0, 150 - (time.monotonic() - t_start)))
            if t.is_alive():
                probe.record(Row(t.name, "finished", "still running at the deadline", False))
        time.sleep(1)
        probe.final_checks()
    finally:
        if probe.rss:
            probe.rss.stop.set()
        stop_all([gw, up, *probe.extra_procs])
    print_table(probe.rows, args.verbose)
    print(f"\nwall time {time.monotonic() - t_start:.0f} s; logs and data in {tmp}")
    return 1 if any(not r.ok for r in probe.rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for proxy tests: a real upstream HTTP server, a running gateway, and a raw HTTP client.

The upstream is a tiny asyncio HTTP/1.1 server with its own (independent, deliberately simple)
parser, so the proxy is tested against something it did not write. Its routes:

  /hello            200 text with banner headers (Server, X-Powered-By) and a custom header
  /echo             200 JSON: method, target, headers (as received, in order), body (latin-1)
  /chunked          200 chunked, three chunks
  /close            200 close-delimited body (no Content-Length, connection closes)
  /big?n=N          200 with N bytes
  /stack            500 with a Python traceback
  /json500          500 with a plain JSON error
  /status/N         status N, empty body
  /slow?ms=N        200 after N ms
  /hang             never answers
  /drop             closes the connection without an answer
  /ws               101 Switching Protocols, then echoes raw bytes (a stand-in for WebSocket)
  /badframing       200 with Content-Length and Transfer-Encoding (response smuggling)
  /endlesshead      a response head that never ends (header lines until the client goes)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bastion.config import BastionConfig, parse_config
from bastion.frontends.proxy.server import ProxyServer
from bastion.runtime import Runtime

TRACEBACK = (
    b"Traceback (most recent call last):\n"
    b'  File "/srv/app/views.py", line 42, in get_user\n'
    b"    row = db.execute(q)\n"
    b"sqlite3.OperationalError: near \"'\": syntax error\n"
)


@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Upstream:
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last(self) -> Received:
        return self.requests[-1]


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k, v.strip()))
    low = {k.lower(): v for k, v in headers}
    body = b""
    if low.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    elif "content-length" in low:
        body = await reader.readexactly(int(low["content-length"]))
    return Received(method, target, headers, body)


async def _handle(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    up.connections += 1
    try:
        while True:
            req = await _read_request(reader)
            if req is None:
                return
            up.requests.append(req)
            keep = await _respond(req, reader, writer)
            await writer.drain()
            if not keep:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _resp(status: int, body: bytes, headers: Iterable[tuple[str, str]] = (), reason: str = "") -> bytes:
    reason = reason or {200: "OK", 500: "Internal Server Error", 101: "Switching Protocols"}.get(status, "Whatever")
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if status not in (204, 304) and status >= 200:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _respond(req: Received, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    parts = urlsplit(req.target)
    path, q = parts.path, parse_qs(parts.query)
    head_only = req.method == "HEAD"

    def send(data: bytes) -> None:
        if head_only:
            data = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        writer.write(data)

    if path == "/hello":
        send(_resp(200, b"hello world\n", [("Content-Type", "text/plain"), ("Server", "TestServer/1.0"),
                                          ("X-Powered-By", "PHP/5.4"), ("X-Custom", "a,b;c"),
                                          ("Set-Cookie", "s=1; HttpOnly"), ("Set-Cookie", "t=2")]))
    elif path.startswith("/echo"):
        body = json.dumps(
            {"method": req.method, "target": req.target, "headers": req.headers,
             "body": req.body.decode("latin-1"), "sha": hashlib.sha256(req.body).hexdigest()}
        ).encode()
        send(_resp(200, body, [("Content-Type", "application/json")]))
    elif path == "/chunked":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        if not head_only:
            for piece in (b"first,", b"second,", b"third"):
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\nX-Trailer: t\r\n\r\n")
    elif path == "/close":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        if not head_only:
            writer.write(b"close-delimited body")
        return False
    elif path == "/big":
        n = int(q.get("n", ["1000000"])[0])
        body = (bytes(range(251)) * (n // 251 + 1))[:n]  # byte i is i % 251
        send(_resp(200, body, [("Content-Type", "application/octet-stream")]))
    elif path == "/stack":
        send(_resp(500, TRACEBACK, [("Content-Type", "text/plain"), ("Server", "gunicorn")]))
    elif path == "/json500":
        send(_resp(500, b'{"error": "internal"}', [("Content-Type", "application/json")]))
    elif path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
        send(_resp(status, b"", []))
    elif path == "/slow":
        await asyncio.sleep(int(q.get("ms", ["100"])[0]) / 1000)
        send(_resp(200, b"slow", []))
    elif path == "/hang":
        await asyncio.sleep(3600)
    elif path == "/drop":
        return False
    elif path == "/ws":
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: x\r\n\r\n")
        await writer.drain()
        while True:
            data = await reader.read(65536)
            if not data:
                return False
            writer.write(b"echo:" + data)
            await writer.drain()
    elif path == "/badframing":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n")
    elif path == "/endlesshead":
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(100_000):
            writer.write(b"X-Filler-%d: %b\r\n" % (i, b"v" * 100))
            await writer.drain()
        return False
    else:
        send(_resp(404, b"not found", [("Content-Type", "text/plain")]))
    return True


@contextlib.asynccontextmanager
async def upstream_server(ssl_context: Any = None) -> AsyncIterator[Upstream]:
    up = Upstream()
    server = await asyncio.start_server(lambda r, w: _handle(up, r, w), "127.0.0.1", 0, ssl=ssl_context)
    up.server = server
    up.port = server.sockets[0].getsockname()[1]
    try:
        yield up
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


def make_config(upstream_url: str, **sections: Any) -> BastionConfig:
    data: dict[str, Any] = {"upstream": {"url": upstream_url}, "server": {"listen": "127.0.0.1:0"}}
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k].update(v)
        else:
            data[k] = v
    return parse_config(data)


class Sink:
    """Collects finished exchanges, as the event store would."""

    def __init__(self) -> None:
        self.exchanges: list[Any] = []

    def exchange_done(self, ex: Any) -> None:
        self.exchanges.append(ex)

    def rules(self) -> list[str]:
        return [f.rule_id for ex in self.exchanges for f in ex.findings]


@dataclass
class Gateway:
    server: ProxyServer
    runtime: Runtime
    sink: Sink

    @property
    def port(self) -> int:
        return self.server.port


@contextlib.asynccontextmanager
async def gateway(config: BastionConfig, detectors: list[Any] | None = None,
                  only: set[str] | None = None) -> AsyncIterator[Gateway]:
    """A running ProxyServer on an ephemeral port. `detectors` replaces the registry's list."""
    sink = Sink()
    runtime = Runtime.create(config, with_store=False, sinks=[sink], only=only if detectors is None else set())
    if detectors is not None:
        from bastion.engine.pipeline import Pipeline

        runtime.pipeline = Pipeline(config, detectors, clock=runtime.clock, sinks=[sink])
    await runtime.start()
    server = ProxyServer(runtime)
    await server.start()
    try:
        yield Gateway(server, runtime, sink)
    finally:
        await server.close(grace=1.0)
        await runtime.stop()


# --- a raw HTTP client ----------------------------------------------------------------------


@dataclass
class Resp:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader, head_only: bool = False, wait: float = 5.0) -> Resp:
    async def _read() -> Resp:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        _, status, *rest = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k, v.strip()))
        resp = Resp(int(status), rest[0] if rest else "", headers, b"", head)
        code = int(status)
        if head_only or code in (204, 304) or 100 <= code < 200:
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te and te.lower() == "chunked":
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailer fields
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            resp.body = body
        elif cl is not None:
            resp.body = await reader.readexactly(int(cl))
        else:
            resp.body = await reader.read()
        return resp

    return await asyncio.wait_for(_read(), wait)


async def request(port: int, raw: bytes, head_only: bool = False, wait: float = 5.0,
                  local_ip: str | None = None) -> Resp:
    """Send one raw request on a fresh connection and read one response."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(local_ip, 0) if local_ip else None
    )
    try:
        writer.write(raw)
        await writer.drain()
        return await read_response(reader, head_only=head_only, wait=wait)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def closed_after(reader: asyncio.StreamReader, wait: float = 3.0) -> bool:
    """Whether the server closes the connection (EOF or reset) within `wait` seconds."""
    try:
        data = await asyncio.wait_for(reader.read(65536), wait)
    except (ConnectionError, OSError):
        return True
    except TimeoutError:
        return False
    return data == b""


def get(path: str, host: str = "example.test", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

"""The proxy against clients that leave, lie about sizes or speak a request line llhttp refuses.

- a client that closes its socket while its request waits for the upstream releases that upstream
  connection within a second (not after timeouts.upstream_response); one that only half-closed
  (SHUT_WR) still gets its answers, after an interim 100 that probed it;
- a chunk-size line declaring more than limits.max_body_bytes allows is refused at once (413);
- chunked trailers count against the header limits (431);
- an HTTP/0.9 request line is refused at once (400), not after timeouts.header;
- a method llhttp does not know is a 405 with Allow when it is a token, a 400 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from proxy_helpers import (
    Gateway,
    closed_after,
    gateway,
    get,
    make_config,
    read_response,
    request,
    upstream_server,
)

POST_CHUNKED = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


# --- clients that leave ---------------------------------------------------------------------


@dataclass
class HangingUpstream:
    """Reads request heads, never answers, and records when the proxy closes each connection."""

    port: int = 0
    heads: int = 0
    open: int = 0
    closed: list[float] = field(default_factory=list)


@contextlib.asynccontextmanager
async def hanging_upstream() -> AsyncIterator[HangingUpstream]:
    up = HangingUpstream()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up.open += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            up.heads += 1
            while await reader.read(65536):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            up.open -= 1
            up.closed.append(time.monotonic())
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    up.port = server.sockets[0].getsockname()[1]
    try:
        yield up
    finally:
        server.close()


async def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def _aborted(gw: Gateway) -> list[Any]:
    return [ex for ex in gw.sink.exchanges if "client-aborted" in ex.tags]


async def test_clients_that_close_release_their_upstream_connections() -> None:
    async with hanging_upstream() as up, gateway(make_config(f"http://127.0.0.1:{up.port}"), only=set()) as gw:
        writers = []
        for i in range(20):
            _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(get(f"/hang?i={i}"))
            writers.append(writer)
        assert await _wait_for(lambda: up.heads == 20, 5)
        t0 = time.monotonic()
        for writer in writers:
            writer.close()  # a plain close: a FIN, exactly what a half-close sends
        assert await _wait_for(lambda: up.open == 0, 3), f"{up.open} upstream connections still open"
        assert max(up.closed) - t0 < 2.0
        assert await _wait_for(lambda: not gw.server.connections, 2)
        await asyncio.sleep(0.1)
        aborted = _aborted(gw)
        # each exchange still completes, once, with no response: the client left before it
        assert len(aborted) == 20 and len(gw.sink.exchanges) == 20
        assert all(ex.response is None for ex in aborted)


async def test_a_reset_releases_the_upstream_connection_at_once() -> None:
    async with hanging_upstream() as up, gateway(make_config(f"http://127.0.0.1:{up.port}"), only=set()) as gw:
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(get("/hang"))
        assert await _wait_for(lambda: up.heads == 1, 5)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
        writer.transport.abort()
        assert await _wait_for(lambda: up.open == 0, 0.5)
        await asyncio.sleep(0.1)
        assert len(_aborted(gw)) == 1


def _half_closed_exchange(port: int, data: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


async def test_half_closed_clients_still_get_their_answers() -> None:
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        fast = await asyncio.to_thread(_half_closed_exchange, gw.port, get("/hello"))
        slow = await asyncio.to_thread(_half_closed_exchange, gw.port, get("/slow?ms=1500"))
        two = await asyncio.to_thread(_half_closed_exchange, gw.port, get("/slow?ms=1200") + get("/hello"))
        old = await asyncio.to_thread(_half_closed_exchange, gw.port,
                                      b"GET /slow?ms=1200 HTTP/1.0\r\nHost: a\r\n\r\n")
    # an answer before the probe: nothing else is sent
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n") and fast.endswith(b"hello world\n")
    # a slow answer: the interim 100 that probed the client first, then the answer
    assert slow.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n") and slow.endswith(b"\r\n\r\nslow")
    assert two.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2 and two.endswith(b"hello world\n")
    # no interim response for an HTTP/1.0 client (RFC 9110 section 15.2)
    assert old.startswith(b"HTTP/1.1 200 OK\r\n") and b" 100 " not in old
    assert not _aborted(gw)


# --- chunk sizes ----------------------------------------------------------------------------


async def _timed(port: int, parts: list[bytes], wait: float = 5.0) -> tuple[int, float, bool]:
    """Send parts (one write each), read one answer: (status, seconds after the last part, closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        resp = await read_response(reader, wait=wait)
        elapsed = time.monotonic() - t0
        closed = resp.status == 200 or await closed_after(reader, 2)
        if resp.status == 405:
            assert resp.header("allow") == "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        return resp.status, elapsed, closed
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("parts", "status"),
    [
        # 10 MiB + 1 in one chunk, and 8 EiB: 413 before any of the data
        ([POST_CHUNKED + b"a00001\r\n{\"a\":1}"], 413),
        ([POST_CHUNKED + b"7fffffffffffffff\r\n{\"a\":1}"], 413),
        ([POST_CHUNKED + b"0000000000a00001\r\n"], 413),
        # the size line after the head, split across reads, or after other chunks
        ([POST_CHUNKED, b"a00001\r\n"], 413),
        ([POST_CHUNKED + b"a0", b"00", b"01\r\nxyz"], 413),
        ([POST_CHUNKED + b"5\r\nhello\r\n", b"a00001;name=value\r\n"], 413),
        ([POST_CHUNKED + b"5\r\nhello\r\na0000", b"0\r\n"], 413),
        # received + declared: 10 MiB - 5 is fine alone, not after 10 bytes
        ([POST_CHUNKED + b"a\r\n0123456789\r\n9ffffb\r\nab"], 413),
        # past 64 bits: llhttp's own refusal
        ([POST_CHUNKED + b"10000000000000007\r\n"], 400),
    ],
)
async def test_chunk_size_over_the_body_limit_refused_at_once(parts: list[bytes], status: int) -> None:
    async with upstream_server() as up, gateway(make_config(up.url, timeouts={"body": 10}), only=set()) as gw:
        got, elapsed, closed = await _timed(gw.port, parts)
        ok = await request(gw.port, get("/hello"))
    assert got == status and elapsed < 1.0 and closed
    assert ok.status == 200
    assert all(r.target != "/echo" or r.body == b"" for r in up.requests)
    if status == 413:
        assert "limits-body-size" in gw.sink.rules()


@pytest.mark.parametrize(
    "parts",
    [
        [POST_CHUNKED + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"],
        [POST_CHUNKED + b"5;ext=\"a b\"\r\nhello\r\n0\r\n\r\n"],
        [POST_CHUNKED, b"5\r\n", b"hello\r\n", b"0\r\n", b"\r\n"],
        [POST_CHUNKED + b"5\r", b"\nhel", b"lo\r\n0\r\nX-Trailer: 1\r\n\r\n"],
        # exactly the limit (100 bytes in the configuration below), in chunks
        [POST_CHUNKED + b"32\r\n" + b"x" * 50 + b"\r\n", b"32\r\n" + b"y" * 50 + b"\r\n0\r\n\r\n"],
    ],
)
async def test_chunked_bodies_within_the_limit_pass(parts: list[bytes]) -> None:
    async with upstream_server() as up, gateway(make_config(up.url, limits={"max_body_bytes": 100}),
                                                only=set()) as gw:
        status, _, _ = await _timed(gw.port, parts)
    assert status == 200
    body = b"".join(parts)[len(POST_CHUNKED):]
    expected = b"x" * 50 + b"y" * 50 if b"32\r\n" in body else (b"hello world" if b" world" in body else b"hello")
    assert up.last().body == expected


async def test_received_plus_declared_over_a_small_limit() -> None:
    async with upstream_server() as up, gateway(make_config(up.url, limits={"max_body_bytes": 100}),
                                                only=set()) as gw:
        status, elapsed, closed = await _timed(gw.port, [POST_CHUNKED + b"32\r\n" + b"x" * 50 + b"\r\n33\r\n"])
    assert (status, closed) == (413, True) and elapsed < 1.0


# --- trailers -------------------------------------------------------------------------------


def _send_until_answered(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send `data` until the gateway answers (as a client uploading would), then read to the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        view = memoryview(data)
        with contextlib.suppress(OSError):
            for i in range(0, len(data), 65536):
                if select.select([s], [], [], 0)[0]:
                    break
                s.sendall(view[i:i + 65536])
        out = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                out += chunk
    return out


@pytest.mark.parametrize(
    ("trailer", "rule"),
    [
        (b"X-T: " + b"a" * 102_400 + b"\r\n\r\n", "limits-header-bytes"),  # one field, far over 32 KiB
        (b"".join(b"X-T%d: v\r\n" % i for i in range(150)) + b"\r\n", "limits-header-count"),
        (b"".join(b"X-T%d: %b\r\n" % (i, b"a" * 1000) for i in range(30_000)) + b"\r\n", None),
    ],
    ids=["100KB", "150-fields", "30MB"],
)
async def test_trailers_count_against_the_header_limits(trailer: bytes, rule: str | None) -> None:
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        data = POST_CHUNKED + b"5\r\nhello\r\n0\r\n" + trailer
        raw = await asyncio.to_thread(_send_until_answered, gw.port, data)
        ok = await request(gw.port, get("/hello"))
    assert raw.startswith(b"HTTP/1.1 431 ") and b"/headers-too-large" in raw
    assert raw.count(b"HTTP/1.1") == 1 and b"Connection: close\r\n" in raw
    assert ok.status == 200
    rules = gw.sink.rules()
    assert rule in rules if rule else any(r.startswith("limits-header") for r in rules)


async def test_a_few_trailer_fields_pass_and_are_not_forwarded() -> None:
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        trailer = b"".join(b"X-T%d: %b\r\n" % (i, b"v" * 100) for i in range(20)) + b"\r\n"
        resp = await request(gw.port, POST_CHUNKED + b"5\r\nhello\r\n0\r\n" + trailer)
    assert resp.status == 200 and up.last().body == b"hello"
    assert not any(k.lower().startswith("x-t") for k, _ in up.last().headers)


# --- request lines llhttp refuses or waits on -----------------------------------------------


@pytest.mark.parametrize(
    ("parts", "status", "rule"),
    [
        ([b"GET /path\r\n"], 400, "protocol-version-invalid"),
        ([b"GET /path", b"\r\n"], 400, "protocol-version-invalid"),
        ([b"\r\nGET /path\r\nHost: a"], 400, "protocol-version-invalid"),
        ([b"GET /path\r\n\r\n"], 400, "protocol-version-invalid"),
        ([b"FOO /path HTTP/1.1\r\nHost: a\r\n\r\n"], 405, "protocol-method-not-allowed"),
        ([b"get /path HTTP/1.1\r\nHost: a\r\n\r\n"], 405, "protocol-method-not-allowed"),
        ([b"POSTX /path HTTP/1.1\r\n"], 405, "protocol-method-not-allowed"),
        ([b"FOO /pa"], 405, "protocol-method-not-allowed"),
        ([get("/hello"), b"FOO /path HTTP/1.1\r\nHost: a\r\n\r\n"], 405, "protocol-method-not-allowed"),
        ([b"G@T /path HTTP/1.1\r\nHost: a\r\n\r\n"], 400, "protocol-method-invalid"),
        ([b"FOO /path\r\n\r\n"], 400, "protocol-method-invalid"),
        ([b"FOO /path HTTP/2.0\r\n\r\n"], 400, "protocol-method-invalid"),
        ([b"FOO\t/path HTTP/1.1\r\n\r\n"], 400, "protocol-method-invalid"),
        ([b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"], 400, "protocol-method-invalid"),
    ],
)
async def test_request_lines_refused_at_once(parts: list[bytes], status: int, rule: str) -> None:
    async with upstream_server() as up, gateway(make_config(up.url, timeouts={"header": 10}), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        try:
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.05)
            t0 = time.monotonic()
            resp = await read_response(reader)
            if resp.status == 200:  # the good request before the refused one
                resp = await read_response(reader)
            elapsed = time.monotonic() - t0
            closed = await closed_after(reader)
        finally:
            writer.close()
    assert resp.status == status and elapsed < 1.0 and closed
    assert resp.header("content-type") == "application/problem+json"
    refused = [ex for ex in gw.sink.exchanges if ex.verdict and ex.verdict.blocks]
    assert len(refused) == 1 and refused[0].findings[0].rule_id == rule
    assert refused[0].id == resp.header("x-request-id")
    if status == 405:
        assert resp.header("allow") == "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        assert resp.json()["type"].endswith("/unsupported-method")
        assert refused[0].request.method in ("FOO", "get", "POSTX")
    elif rule == "protocol-method-invalid":
        assert refused[0].request.method == ""  # not the parser's stale guess
    assert all(r.target == "/hello" for r in up.requests)


async def test_unknown_method_405_matches_the_protocol_detectors_405() -> None:
    async with upstream_server() as up, gateway(make_config(up.url)) as gw:
        unknown = await request(gw.port, b"FOO /x HTTP/1.1\r\nHost: a\r\n\r\n")
        known = await request(gw.port, b"PROPFIND /x HTTP/1.1\r\nHost: a\r\n\r\n")
    for resp in (unknown, known):
        assert resp.status == 405
        assert resp.header("allow") == "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        assert resp.json()["title"] == "Method not allowed"
    assert up.requests == []


async def test_connect_405_has_allow_too() -> None:
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        resp = await request(gw.port, b"CONNECT internal:22 HTTP/1.1\r\nHost: internal:22\r\n\r\n")
    assert resp.status == 405 and resp.header("allow") == "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

"""The proxy's per-request shortcuts keep the behaviour of the general path.

- the request's HTTP version is read from the request line when it starts the read, and asked of
  llhttp otherwise (pipelined, split across reads, after empty lines);
- an upstream response head is reset without an on_message_begin callback: after `send` and after
  an interim 1xx response, whose fields must not leak into the final response;
- decoded RawHeaders switch to plain Headers behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bastion.exchange import Headers
from proxy_helpers import Gateway, gateway, get, make_config, read_response, request, upstream_server


async def _version_of(gw: Gateway, raw_parts: list[bytes], n: int) -> list[tuple[int, str, str | None]]:
    """Send `raw_parts` (one write each) on one connection; n responses: (status, version seen, Connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        for part in raw_parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)
        out = []
        for _ in range(n):
            resp = await read_response(reader)
            out.append((resp.status, resp.header("connection")))
    finally:
        writer.close()
    await asyncio.sleep(0.05)
    versions = [ex.request.http_version for ex in gw.sink.exchanges[-n:]]
    return [(s, v, c) for (s, c), v in zip(out, versions, strict=True)]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        # the request line starts the read
        ([b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"], ["1.1"]),
        ([b"GET /hello HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"], ["1.0"]),
        # pipelined: the second request does not start the read
        ([b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"],
         ["1.1", "1.0"]),
        ([b"GET /hello HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n"],
         ["1.0", "1.1"]),
        # the head split across reads, inside the request line and inside a field
        ([b"GET /hel", b"lo HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"], ["1.0"]),
        ([b"GET /hello HTTP/1.0\r\nHo", b"st: a\r\nConnection: keep-alive\r\n\r\n"], ["1.0"]),
        ([b"GET /hello HTTP/1.", b"0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"], ["1.0"]),
        # empty lines before the request line (llhttp skips them)
        ([b"\r\nGET /hello HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"], ["1.0"]),
        # extra spaces llhttp accepts around the target
        ([b"GET  /hello HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"], ["1.0"]),
        ([b"GET /hello  HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"], ["1.0"]),
        ([b"\r\nGET   /hello   HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"], ["1.0"]),
        # a target that looks like a request line's end
        ([b"GET /hello?v=/HTTP/1.1 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"], ["1.0"]),
        # the next request on a kept-alive connection starts a later read
        ([b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
          b"GET /hello HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"], ["1.1", "1.0"]),
    ],
)
async def test_request_version_wherever_the_line_starts(parts: list[bytes], expected: list[str]) -> None:
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        got = await _version_of(gw, parts, len(expected))
    assert [v for _, v, _ in got] == expected
    for status, version, connection in got:
        assert status == 200
        # HTTP/1.0 keep-alive is answered as such; HTTP/1.1 needs no Connection field
        assert connection == ("keep-alive" if version == "1.0" else None)


async def test_unsupported_version_still_refused() -> None:
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        resp = await request(gw.port, b"GET /hello HTTP/2.0\r\nHost: a\r\n\r\n")
        await asyncio.sleep(0.05)
    assert resp.status == 400
    assert "protocol-version-invalid" in gw.sink.rules()


@contextlib.asynccontextmanager
async def raw_upstream(chunks: list[bytes]) -> AsyncIterator[int]:
    """An upstream that answers every request with `chunks`, one write each, on a kept-alive connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                for chunk in chunks:
                    writer.write(chunk)
                    await writer.drain()
                    await asyncio.sleep(0.02)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


FINAL = b"HTTP/1.1 200 OK\r\nX-Final: 1\r\nContent-Length: 2\r\n\r\nok"
EARLY = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "chunks",
    [
        [EARLY + FINAL],  # interim and final response in one read
        [EARLY, FINAL],  # in two
        [EARLY + FINAL[:20], FINAL[20:]],  # the final head split across reads
        [EARLY[:10], EARLY[10:] + FINAL[:5], FINAL[5:]],
        [FINAL[:3], FINAL[3:40], FINAL[40:]],  # no interim: a head in three reads
    ],
)
async def test_interim_response_fields_do_not_leak_into_the_final_one(chunks: list[bytes]) -> None:
    async with raw_upstream(chunks) as port, gateway(make_config(f"http://127.0.0.1:{port}"), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        try:
            for _ in range(2):  # the second on the pooled upstream connection
                writer.write(get("/x"))
                resp = await read_response(reader)
                assert resp.status == 200 and resp.body == b"ok"
                assert resp.header("x-final") == "1" and resp.header("link") is None
                assert resp.header("transfer-encoding") is None  # the interim's field did not stick
        finally:
            writer.close()
        await asyncio.sleep(0.05)
    for ex in gw.sink.exchanges[-2:]:
        assert ex.response.status == 200 and ex.response.reason == "OK"
        assert ex.response.headers.get("x-final") == "1" and ex.response.headers.get("link") is None


async def test_decoded_raw_headers_are_plain_headers() -> None:
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        resp = await request(gw.port, get("/hello", extra="X-A: 1\r\nx-a: 2\r\n"))
        await asyncio.sleep(0.05)
    assert resp.status == 200
    hdrs = gw.sink.exchanges[-1].request.headers
    assert isinstance(hdrs, Headers) and hdrs.get("host") == "example.test"
    items = hdrs.items
    assert ("X-A", "1") in items and hdrs.get_all("x-a") == ["1", "2"] and "x-a" in hdrs
    hdrs.set("X-A", "3")
    assert hdrs.get_all("X-A") == ["3"] and hdrs.items[-1] == ("X-A", "3")
    hdrs.items = [("K", "v")]
    assert len(hdrs) == 1 and list(hdrs) == [("K", "v")]

"""The admin's small HTTP/1.1 server: hostile request heads give clear errors, never a crash."""

from __future__ import annotations

import asyncio
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.admin.http import HttpServer, Request, Response, _BadRequest, parse_head


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_parse_head_raises_only_bad_request(head):
    try:
        method, target, version, headers = parse_head(head)
    except _BadRequest as exc:
        assert exc.status == 400
    else:
        assert target.startswith("/") and version in ("HTTP/1.1", "HTTP/1.0") and method.isalpha()
        assert all(k == k.lower() for k in headers)


def test_repeated_headers_are_joined():
    _, _, _, headers = parse_head(b"GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nHost: h")
    assert headers == {"x-a": "1, 2", "host": "h"}


async def test_keep_alive_and_pipelining_on_one_connection():
    seen: list[str] = []

    async def handler(req: Request) -> Response:
        seen.append(req.path + "?" + (req.arg("n") or ""))
        return Response(200, req.path.encode(), "text/plain")

    server = HttpServer(handler)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    await server.start(sock)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /a?n=1 HTTP/1.1\r\n\r\nGET /b?n=2 HTTP/1.1\r\n\r\n"
                     b"GET /c HTTP/1.1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)  # the server closes after the third
        writer.close()
        assert data.count(b"HTTP/1.1 200 OK") == 3 and data.endswith(b"/c")
        assert seen == ["/a?1", "/b?2", "/c?"]
    finally:
        await server.close()

"""A deliberately small HTTP/1.1 server for the admin listener, on asyncio streams.

Admin traffic is a few requests a second from one operator, a console and a Prometheus scraper,
so this favours strict limits over speed: bounded header and body sizes, read timeouts, a cap on
connections, no chunked request bodies. It runs in the gateway's event loop, and a handler's
exception becomes a 500 for that request only: the admin must never take the proxy down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

import orjson

log = logging.getLogger("bastion.admin")

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
MAX_CONNECTIONS = 64
MAX_REQUESTS_PER_CONNECTION = 1000
HEAD_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 302: "Found", 304: "Not Modified", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
            429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}

# Every answer: nothing cached, no MIME sniffing, never framed, no referrer leaks.
BASE_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


@dataclass(slots=True)
class Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    client_ip: str
    tls: bool = False
    csrf: str = ""  # set for console (cookie) sessions once authenticated

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            k, sep, v = part.strip().partition("=")
            if sep and k == name:
                return v
        return None


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(data: object, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, orjson.dumps(data), "application/json", headers or [])


def problem(status: int, detail: str, *, title: str | None = None, headers: list[tuple[str, str]] | None = None,
            **extra: object) -> Response:
    """An RFC 9457 problem+json answer."""
    body = {"type": "about:blank", "title": title or _REASONS.get(status, "Error"), "status": status, "detail": detail}
    body.update(extra)
    return Response(status, orjson.dumps(body), "application/problem+json", headers or [])


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Request line and headers; raises _BadRequest on anything malformed."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _BadRequest(400, "undecodable request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith("/") or parts[2] not in (
            "HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise _BadRequest(400, "malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], parts[1], parts[2], headers


class HttpServer:
    """Serves `handler` on a listening socket until `close()`."""

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.requests = 0

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._connection, sock=sock, ssl=self.ssl, limit=MAX_HEAD + 1024)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return 0
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            for t in list(self._conns):
                with contextlib.suppress(BaseException):
                    await t
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._conns) >= MAX_CONNECTIONS or task is None:
            writer.close()
            return
        self._conns.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("admin connection failed")
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        for n in range(MAX_REQUESTS_PER_CONNECTION):
            timeout = HEAD_TIMEOUT if n == 0 else IDLE_TIMEOUT
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            except asyncio.LimitOverrunError:
                await self._send(writer, problem(431, "request head too large"), close=True)
                return
            except asyncio.IncompleteReadError:
                return
            keep = True
            try:
                if len(head) > MAX_HEAD:
                    raise _BadRequest(431, "request head too large")
                method, target, version, headers = parse_head(head[:-4])
                if "transfer-encoding" in headers:
                    raise _BadRequest(411, "chunked request bodies are not accepted here; send Content-Length")
                length_text = headers.get("content-length", "0")
                if not length_text.isdigit():
                    raise _BadRequest(400, "bad Content-Length")
                length = int(length_text)
                if length > MAX_BODY:
                    raise _BadRequest(413, f"request bodies are limited to {MAX_BODY} bytes")
                body = await asyncio.wait_for(reader.readexactly(length), HEAD_TIMEOUT) if length else b""
            except _BadRequest as exc:
                await self._send(writer, problem(exc.status, exc.detail), close=True)
                return
            conn = headers.get("connection", "").lower()
            keep = "close" not in conn and (version == "HTTP/1.1" or "keep-alive" in conn)
            raw_path, _, raw_query = target.partition("?")
            req = Request(method=method, path=unquote(raw_path), query=parse_qs(raw_query, keep_blank_values=True),
                          headers=headers, body=body, client_ip=client_ip, tls=self.ssl is not None)
            self.requests += 1
            try:
                resp = await self.handler(req)
            except Exception:
                log.exception("admin handler failed for %s %s", method, raw_path[:100])
                resp = problem(500, "the admin API failed on this request; the gateway is unaffected")
            await self._send(writer, resp, close=not keep, head_only=method == "HEAD")
            if not keep:
                return

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, resp: Response, *, close: bool, head_only: bool = False) -> None:
        lines = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Status')}"]
        if resp.status in (204, 304):  # RFC 9110 8.6: no Content-Length on a 204; neither has a body
            resp.body = b""
        else:
            lines += [f"Content-Type: {resp.content_type}", f"Content-Length: {len(resp.body)}"]
        lines += [f"{k}: {v}" for k, v in BASE_HEADERS]
        lines += [f"{k}: {v}" for k, v in resp.headers]
        if close:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else resp.body))
        await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT)

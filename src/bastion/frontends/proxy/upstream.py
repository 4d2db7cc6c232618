"""The upstream side: keep-alive HTTP/1.1 connections, pooled per worker.

One `UpstreamConnection` carries one request at a time (no upstream pipelining: a slow response
must not hold others hostage). It parses the response with llhttp in strict mode, so an upstream
that frames its response ambiguously (CL+TE) is refused with a 502 instead of being relayed, and
hands the response to the client connection it is bound to through the `UpstreamHandler` calls.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol
from urllib.parse import urlsplit

import httptools

from bastion.errors import ConfigError


class UpstreamHandler(Protocol):
    """What a client connection implements to receive its upstream response."""

    def up_head(self, conn: UpstreamConnection) -> None: ...
    def up_body(self, data: bytes) -> None: ...
    def up_done(self, conn: UpstreamConnection) -> None: ...
    def up_lost(self, conn: UpstreamConnection, exc: BaseException | None) -> None: ...
    def up_tunnel(self, data: bytes) -> None: ...
    def up_flush(self) -> None: ...
    # > 0 while a read is being parsed (an upstream read increments it directly: one call less per
    # read), up_leave() decrements it and acts on what the read decided
    in_io: int
    def up_enter(self) -> None: ...
    def up_leave(self) -> None: ...
    def up_pause(self) -> None: ...
    def up_resume(self) -> None: ...


class UpstreamTarget:
    """Where requests go: scheme, host, port, optional path prefix, the Host to use when a client
    sent none (HTTP/1.0)."""

    __slots__ = ("host", "host_header", "port", "prefix", "scheme")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError([f"upstream.url: expected http(s)://HOST[:PORT][/PREFIX], got {url!r}"])
        self.scheme = parts.scheme
        self.host = parts.hostname
        try:
            port = parts.port
        except ValueError:
            raise ConfigError([f"upstream.url: invalid port in {url!r}"]) from None
        self.port = port or (443 if self.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/").encode("latin-1")
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (host if self.port == default else f"{host}:{self.port}").encode("latin-1")


# An upstream (broken, or compromised) that never ends its response head must not grow our memory:
# beyond these, the response is a 502. Generous: real response heads are a few KB.
MAX_HEAD_BYTES = 256 * 1024
MAX_HEAD_FIELDS = 500


class UpstreamHeadTooLarge(Exception):
    pass


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to the upstream and its response parser."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.handler: UpstreamHandler | None = None
        self.uses = 0
        self.head_only = False
        self.reset_parser = False
        self.tunnel = False
        self.got_bytes = False
        self.in_head = False
        self.head_seen = False  # a read of the current response head was seen
        self.head_bytes = 0  # bytes read while the response head is incomplete
        self.done = True  # no request in flight
        self.skip_message = False
        self.closed = False
        # Response head, valid after `up_head`.
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.chunked = False
        self.has_length = False
        self.upgrade = False

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same interface.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        handler = self.handler
        if handler is None:  # an idle connection must stay silent; anything else is not reusable
            self.close()
            return
        if self.tunnel:
            handler.up_tunnel(data)
            return
        self.got_bytes = True
        if self.in_head:
            # Bytes of the reads after the one the response began in, while its head is incomplete.
            if not self.head_seen:
                self.head_seen = True
            else:
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD_BYTES:
                    self._fail(UpstreamHeadTooLarge(f"response head over {MAX_HEAD_BYTES} bytes"))
                    return
        handler.in_io += 1  # handler.up_enter()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # 101 Switching Protocols: what follows the head belongs to the tunnel.
            offset = int(exc.args[0]) if exc.args else len(data)
            handler.up_flush()
            if self.upgrade and self.handler is not None:
                self.tunnel = True
                if offset < len(data):
                    self.handler.up_tunnel(data[offset:])
            else:
                self._fail(exc)
        except (httptools.HttpParserError, UpstreamHeadTooLarge) as exc:
            self._fail(exc)
        finally:
            handler.up_leave()  # what this read decided, then everything it produced in one write

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.pool.forget(self)
        handler, self.handler = self.handler, None
        if handler is None:
            return
        if self.tunnel:
            handler.up_lost(self, exc)
        elif self.in_head is False and self.status and not self.done and not self.has_length and not self.chunked:
            # A close-delimited response ends with the connection (RFC 9112 section 6.3, rule 8).
            self.done = True
            self.keep_alive = False
            handler.up_enter()
            handler.up_done(self)
            handler.up_leave()
        elif not self.done:
            handler.up_lost(self, exc)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.up_pause()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.up_resume()

    # --- parser callbacks ------------------------------------------------------------------

    # No on_message_begin: a response begins with the first bytes after `send` (one request at a
    # time), or right after an interim 1xx response; both reset the head state themselves
    # (`_begin`), which spares a parser callback per response.

    def _begin(self) -> None:
        self.in_head = True
        self.head_seen = False
        self.head_bytes = 0
        self.headers = []
        self.chunked = False
        self.has_length = False
        self.upgrade = False
        self.reason = b""

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailers of a chunked body arrive after the head: dropped (RFC 9110 section 6.5.1 allows it).
        if self.in_head:
            self.headers.append((name, value))
            if len(self.headers) > MAX_HEAD_FIELDS:
                raise UpstreamHeadTooLarge(f"response head over {MAX_HEAD_FIELDS} fields")

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # Interim responses (100 Continue, 103 Early Hints): Bastion answers 100 itself.
            self.skip_message = True
            self._begin()  # the final response follows
            return
        for name, _ in self.headers:
            n = len(name)
            if n == 14 and name.lower() == b"content-length":
                self.has_length = True
            elif n == 17 and name.lower() == b"transfer-encoding":
                self.chunked = True
            elif n == 7 and name.lower() == b"upgrade":
                self.upgrade = True
        self.status = status
        self.keep_alive = parser.should_keep_alive()
        self.upgrade = status == 101 and self.upgrade
        handler = self.handler
        if handler is None:
            return
        handler.up_head(self)
        if self.head_only and status != 101 and not self.done:
            # llhttp cannot be told the request was HEAD: it would wait for Content-Length bytes.
            # The response ends with its head; a fresh parser reads the next one.
            self.reset_parser = True
            self.done = True
            if self.handler is not None:
                self.handler.up_done(self)

    def on_body(self, data: bytes) -> None:
        if self.handler is not None and not self.done:
            self.handler.up_body(data)

    def on_message_complete(self) -> None:
        if self.skip_message:
            self.skip_message = False
            return
        if self.done:
            return
        self.done = True
        if self.handler is not None and not self.upgrade:
            self.handler.up_done(self)

    # --- use ------------------------------------------------------------------------------

    def send(self, handler: UpstreamHandler, data: bytes, head_only: bool) -> None:
        """Bind to a client connection and write a request head (and any body bytes ready)."""
        if self.reset_parser:
            self.parser = httptools.HttpResponseParser(self)
            self.reset_parser = False
        self.handler = handler
        self.head_only = head_only
        self.done = False
        self.got_bytes = False
        self.status = 0
        self.uses += 1
        self._begin()  # a new response head (what on_message_begin would reset)
        assert self.transport is not None
        self.transport.write(data)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def reusable(self) -> bool:
        return self.done and self.keep_alive and not self.closed and not self.tunnel and self.transport is not None

    def close(self) -> None:
        self.handler = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.handler = None
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        handler, self.handler = self.handler, None
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()
        if handler is not None:
            handler.up_lost(self, exc)


class UpstreamPool:
    """Idle keep-alive connections to one upstream, most recently used first."""

    def __init__(
        self,
        target: UpstreamTarget,
        *,
        size: int,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.target = target
        self.size = size
        self.connect_timeout = connect_timeout
        self.ssl = ssl_context
        self.idle: list[UpstreamConnection] = []
        self.connects = 0
        self.closed = False

    def get_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.closed and not conn.transport.is_closing():
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        t = self.target
        self.connects += 1
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(self),
                t.host,
                t.port,
                ssl=self.ssl,
                server_hostname=t.host if self.ssl is not None else None,
            )
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Give a connection back after its response; keep it only if it can carry another."""
        conn.handler = None
        # conn.reusable(), inlined: once per request
        if (conn.done and conn.keep_alive and not conn.closed and not conn.tunnel and conn.transport is not None
                and not self.closed and len(self.idle) < self.size):
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

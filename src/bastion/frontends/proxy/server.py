"""The listener and the per-connection HTTP/1.1 protocol of the reverse proxy.

Built on asyncio Protocols (uvloop when installed) and llhttp in strict mode, not on a framework:
a request that needs no inspection crosses the proxy through callbacks only, without a coroutine.
A pipeline phase that has detectors runs as one task and resumes the callback flow when done.

One `ClientConnection` per client socket holds a queue of requests: only the head of the queue is
active (forwarded, answered); requests pipelined behind it are parsed, checked against the limits
and buffered, and answered strictly in order. Any framing error ends the connection after the
responses owed before it, since bytes after a framing error cannot be trusted to start a request
(request smuggling, RFC 9112 section 11.2).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import httptools

from bastion.config import parse_hostport
from bastion.engine.pipeline import PhaseTail, valid_request_id
from bastion.errors import problem_for
from bastion.exchange import Client, Exchange, Headers, Response
from bastion.frontends.proxy import http as h
from bastion.frontends.proxy import ja4
from bastion.frontends.proxy.forwarding import (
    TrustedProxies,
    forwarded_for_chain,
    forwarding_headers,
    resolve_client_ip,
)
from bastion.frontends.proxy.tls import client_context, hsts_header, server_context
from bastion.frontends.proxy.upstream import UpstreamConnection, UpstreamPool, UpstreamTarget
from bastion.hygiene import BANNER_HEADERS_BYTES, scrubbed_body, should_scrub
from bastion.runtime import Runtime
from bastion.verdict import Action, Finding, Phase, Severity, Verdict

log = logging.getLogger("bastion.proxy")

# Why reading from the client is paused (bit flags): reading resumes when none is left.
PAUSE_PIPELINE = 1  # too many requests queued on this connection
PAUSE_BUFFER = 2  # request body piling up while the request is inspected or queued
PAUSE_UPSTREAM = 4  # the upstream is not taking the body as fast as the client sends it
PAUSE_DONE = 8  # the parser is finished (error, upgrade): read nothing more
PAUSE_HELD = 16  # bytes already read but not parsed yet (pipelining over max_pipelined) are being fed

# One read can hold thousands of tiny pipelined requests: it is parsed in slices of this size, and
# what follows once max_pipelined requests are queued is held unparsed until the queue drains.
FEED_SLICE = 4096

# Read deadline kinds.
RD_NONE, RD_FIRST, RD_HEADER, RD_BODY, RD_IDLE, RD_LINGER = range(6)

# Request states.
Q_QUEUED, Q_INSPECT, Q_WAIT_BODY, Q_CONNECTING, Q_UPSTREAM, Q_DONE = range(6)

# Response states: not started, held for inspection, waiting for the body prefix, streaming.
R_NONE, R_HOLD, R_STREAM, R_WAIT_BODY = range(4)

# Response framing towards the client.
F_NONE, F_LENGTH, F_CHUNKED, F_CLOSE = range(4)

# Where the parser is in a chunked request body (ClientConnection.cstate), followed at the end of
# each read: before (or inside) a chunk-size line, right after a chunk-size line read in this read,
# inside a chunk's data (or the trailer section) whose size line came in an earlier read.
# C_NONE is False, not 0: it is tested after every read, and a bool takes the interpreter's fast path.
C_NONE, C_LINE, C_NEW, C_DATA = False, 1, 2, 3
# llhttp declares no chunk size to its callbacks: the size line is read back from the bytes (strict
# llhttp has validated it: hex digits, optional extensions, CRLF).
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)(?:;[^\r\n]*)?\r\n")
CHUNK_LINE_CARRY = 256  # the start of a chunk-size line split across reads is kept up to this
# A request line whose method llhttp does not know (it stops at the method): an RFC 9110 token and
# then, if the line is complete in this read, an origin/absolute/asterisk target and HTTP/1.x.
_TOKEN_SP = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64} ")
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64} ([\x21-\x7e\x80-\xff]+) HTTP/1\.[01]\r\n")
# How long a half-closed client with an unanswered request is trusted to still read (SHUT_WR) before
# it is probed with an interim 100 response, and how long its reset may take to come back.
PROBE_AFTER = 0.5
PROBE_RTT = 0.25
_TCP_CLOSE = 7  # tcp_states.h: the state a socket is in once the peer's reset came back
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)  # Linux; elsewhere SO_ERROR tells

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})
REPLAY_MAX = 64 * 1024  # a request is kept for one retry on a stale keep-alive connection below this
LINGER_SECONDS = 2.0  # how long unread client bytes are drained before a refusal closes (no RST)
LINGER_BYTES = 1 << 20
HOLD_SLACK = 64 * 1024

# Method names as str without a decode per request (and with their hash cached).
_METHODS: dict[bytes, str] = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
}
# The end of a request line (after the target) -> its HTTP version.
_LINE_ENDS: dict[bytes, str] = {b" HTTP/1.1\r\n": "1.1", b" HTTP/1.0\r\n": "1.0"}
_new = object.__new__
# Phases run per request, as module constants: on Python 3.11 reading an enum member
# (`Phase.REQUEST_HEADERS`) goes through EnumType's __getattr__ hook, ~1.5k instructions a read.
_CONNECTION = Phase.CONNECTION
_REQUEST_HEADERS = Phase.REQUEST_HEADERS
_REQUEST_BODY = Phase.REQUEST_BODY
_RESPONSE_HEADERS = Phase.RESPONSE_HEADERS
_RESPONSE_BODY = Phase.RESPONSE_BODY
# (status, reason) -> the status line relayed to the client
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


class _Refuse(Exception):
    """Raised inside parser callbacks to stop parsing with a recorded refusal."""

    def __init__(self, rule_id: str, status: int, reason: str, message: str, method: str | None = None,
                 target: str | None = None) -> None:
        super().__init__(rule_id)
        self.rule_id = rule_id
        self.status = status
        self.reason = reason
        self.message = message
        # what the refused request's exchange records when the parser could not tell (None: ask it)
        self.method = method
        self.target = target


class _Stop(Exception):
    """Raised inside parser callbacks when the connection no longer reads requests."""


_HEADER_ITEMS = Headers.__dict__["items"]  # the slot descriptor RawHeaders stores decoded items in


class RawHeaders(Headers):
    """Headers kept as received (bytes) and decoded on first use: a response nobody inspects costs
    no decoding."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw: list[tuple[bytes, bytes]] | None = raw
        self._index = None

    @property
    def items(self) -> list[tuple[str, str]]:
        raw = self._raw
        if raw is not None:
            self._raw = None
            _HEADER_ITEMS.__set__(self, [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw])
        # Decoded for good: Headers' own slot from now on, not this property (detectors read the
        # items several times per request).
        self.__class__ = _DecodedHeaders
        items: list[tuple[str, str]] = _HEADER_ITEMS.__get__(self)
        return items

    @items.setter
    def items(self, value: list[tuple[str, str]]) -> None:
        self._raw = None
        _HEADER_ITEMS.__set__(self, value)
        self.__class__ = _DecodedHeaders

    def get(self, name: str, default: str | None = None) -> str | None:
        raw = self._raw
        if raw is None:
            return super().get(name, default)
        key = name.lower().encode("latin-1", "replace")
        n = len(key)
        for k, v in raw:  # one lookup (the Host, by new_exchange) does not need the whole index
            if len(k) == n and k.lower() == key:
                return v.decode("latin-1")
        return default


class _DecodedHeaders(RawHeaders):
    """RawHeaders once decoded: plain Headers again (the slot and lookups of Headers, no property)."""

    __slots__ = ()
    items = _HEADER_ITEMS
    get = Headers.get


class _Req:
    """One request on a client connection, from its parsed head to its answered response."""

    __slots__ = (
        "body",
        "body_buffered",
        "chunked",
        "ended",
        "error",
        "ex",
        "expect_continue",
        "framing",
        "head",
        "keep_alive",
        "length",
        "method",
        "received",
        "replay",
        "resp_buf",
        "resp_buffered",
        "resp_close",
        "resp_ended",
        "resp_head",
        "retried",
        "rid_line",
        "rs",
        "st",
        "task",
        "tunnel_pending",
        "up",
        "up_paused",
        "version",
        "websocket",
    )

    def __init__(self, ex: Exchange, method: str) -> None:
        self.ex = ex
        self.method = method
        self.head = b""
        self.chunked = False
        self.length = 0
        self.keep_alive = True
        self.version = "1.1"
        self.expect_continue = False
        self.websocket = False
        self.body: list[bytes] = []
        self.body_buffered = 0
        self.received = 0
        self.ended = False
        self.error: Finding | None = None
        self.st = Q_QUEUED
        self.task: asyncio.Future[Any] | _Soon | None = None
        self.up: UpstreamConnection | None = None
        self.up_paused = 0
        self.replay = b""
        self.retried = False
        self.rid_line = b""  # "X-Request-Id: ID\r\n", once the head is forwarded
        self.rs = R_NONE
        self.resp_head: list[bytes] = []
        self.resp_buf: list[bytes] = []
        self.resp_buffered = 0
        self.resp_ended = False
        self.resp_close = False
        self.framing = F_NONE
        self.tunnel_pending = b""

    @property
    def has_body(self) -> bool:
        return self.chunked or self.length > 0


# A phase's continuation waiting for the end of the read being parsed (ClientConnection._spawn):
# (request, then, verdict). A tuple, not a class: one per phase per request, and a tuple costs no
# __init__ call. It is also the request's pending step (`_Req.task`), compared by identity.
_Soon = tuple[_Req, Callable[[_Req, Verdict | None], None], Verdict | None]


def _cancel(task: asyncio.Future[Any] | _Soon) -> None:
    """Stop a request's pending step; a continuation (_Soon) has nothing to undo: the run checks
    that it is still the request's pending step."""
    if task.__class__ is not tuple:
        task.cancel()  # type: ignore[union-attr]


class ProxyServer:
    """The reverse proxy of one worker process: a listener, its connections and an upstream pool."""

    def __init__(self, runtime: Runtime) -> None:
        cfg = runtime.config
        if not cfg.upstream.url:
            from bastion.errors import ConfigError

            raise ConfigError(["upstream.url: the proxy needs an upstream (--upstream URL)"])
        self.runtime = runtime
        self.pipeline = runtime.pipeline
        self.completed: list[Exchange] = []  # finished exchanges whose complete phase runs at the loop's turn
        self.config = cfg
        self.target = UpstreamTarget(cfg.upstream.url)
        self.ssl = server_context(cfg.server.tls)
        self.scheme = "https" if self.ssl is not None else "http"
        self.hsts = hsts_header(cfg.server.tls) if self.ssl is not None else b""
        self.trusted = TrustedProxies(cfg.server.trusted_proxies)
        self.pool = UpstreamPool(
            self.target,
            size=cfg.upstream.pool_size,
            connect_timeout=cfg.timeouts.upstream_connect,
            ssl_context=client_context(cfg.upstream) if self.target.scheme == "https" else None,
        )
        lim, to = cfg.limits, cfg.timeouts
        self.max_uri = lim.max_uri_bytes
        self.max_header_bytes = lim.max_header_bytes
        self.max_header_count = lim.max_header_count
        self.max_header_value = lim.max_header_value_bytes
        self.max_head = lim.max_uri_bytes + lim.max_header_bytes + 1024
        self.max_body = lim.max_body_bytes
        self.inspect_bytes = lim.inspect_body_bytes
        self.inspect_resp_bytes = lim.inspect_response_bytes
        self.buffer_cap = max(self.inspect_bytes, 64 * 1024) + 64 * 1024
        self.t_header, self.t_body, self.t_idle = to.header, to.body, to.idle
        # mod_reqtimeout's MinRate: every byte of body buys 1/rate s more, so a slow POST that trickles
        # a byte within each `body` interval still ends (0: only the between-reads timeout)
        self.body_byte_s = 1.0 / to.body_min_rate if to.body_min_rate else 0.0
        self.t_upstream = to.upstream_response
        self.max_connections = cfg.server.max_connections
        self.max_per_ip = cfg.server.max_connections_per_ip
        self.per_ip: dict[str, int] = {}  # open connections by (untrusted) peer address
        self.max_pipelined = cfg.server.max_pipelined
        self.allowed_methods = frozenset(cfg.protocol.allowed_methods)
        self.allow: tuple[tuple[str, str], ...] = (("Allow", ", ".join(cfg.protocol.allowed_methods)),)
        self.websocket = cfg.server.websocket
        self.scrub = cfg.errors.scrub_upstream_errors
        self.banners = BANNER_HEADERS_BYTES if cfg.errors.strip_banners else frozenset()
        self.resp_dropped = h.RESPONSE_REWRITTEN | self.banners
        step_up = cfg.behaviour.step_up
        # the step-up code is Bastion's business (and spent once verified): the API never sees it
        self.req_rewritten = h.REQUEST_REWRITTEN | (
            {step_up.header.lower().encode("latin-1")} if step_up.enabled else set()
        )
        p = self.pipeline
        self.wants_conn = p.wants(Phase.CONNECTION)
        self.wants_head = p.wants(Phase.REQUEST_HEADERS)
        self.wants_body = p.wants(Phase.REQUEST_BODY) and self.inspect_bytes > 0
        self.wants_resp_head = p.wants(Phase.RESPONSE_HEADERS)
        self.wants_resp_body = p.wants(Phase.RESPONSE_BODY) and self.inspect_resp_bytes > 0
        # Complete-phase readers (catalog: response schemas, sensitive data) see the response body
        # prefix even when nothing holds the response back: it is copied as it streams past.
        self.copy_resp_prefix = p.wants(Phase.COMPLETE) and self.inspect_resp_bytes > 0
        # How much of a held response is read before it is inspected (or checked for a debug page)
        self.resp_hold_limit = self.inspect_resp_bytes if self.wants_resp_body else max(self.inspect_resp_bytes, 4096)
        self.connections: set[ClientConnection] = set()
        self.refused_connections = 0
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._tick = min(1.0, max(0.02, min(to.header, to.body, to.idle, to.upstream_response) / 4))
        self._closing = False
        self._rid_prefix = secrets.token_hex(4)
        self._rid = 0
        self._drained: asyncio.Event | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def run_completed(self) -> None:
        batch, self.completed = self.completed, []
        complete = self.pipeline.complete
        for ex in batch:
            try:
                complete(ex)
            except Exception:
                log.exception("complete phase failed")

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on `sock` (already bound, e.g. SO_REUSEPORT by run.py) or on `server.listen`."""
        loop = asyncio.get_running_loop()
        if sock is None:
            host, port = parse_hostport(self.config.server.listen)
            self._server = await loop.create_server(
                lambda: ClientConnection(self), host, port, ssl=self.ssl, backlog=2048, reuse_address=True
            )
        else:
            self._server = await loop.create_server(lambda: ClientConnection(self), sock=sock, ssl=self.ssl,
                                                    backlog=2048)
        self._sweeper = loop.call_later(self._tick, self._sweep)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        socks = self.sockets
        return int(socks[0].getsockname()[1]) if socks else 0

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (up to `grace` seconds), close the rest."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), grace)
            except TimeoutError:
                pass
        for conn in list(self.connections):
            conn.abort()
        self.run_completed()  # what finished in this last turn is counted too
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.pool.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except TimeoutError:
                pass
        await self.pipeline.drain()

    def next_request_id(self) -> str:
        """A unique request id: a random per-worker prefix and a counter (no syscall per request)."""
        rid = self._rid + 1
        if rid > 0xFFFFFFFF:
            self._rid_prefix, rid = secrets.token_hex(4), 1
        self._rid = rid
        # 8 hex digits: hex() of 2**32 + rid is "0x1" and those digits (cheaper than an 08x format spec)
        return self._rid_prefix + hex(rid + 0x100000000)[3:]

    def _sweep(self) -> None:
        """Enforce every connection's deadlines: one timer per worker, not one per request."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self.connections):
            try:
                conn.check(now)
            except Exception:  # one broken connection must not stop the sweeper
                log.exception("deadline check failed")
                conn.abort()
        if not self._closing or self.connections:
            self._sweeper = loop.call_later(self._tick, self._sweep)


class ClientConnection(asyncio.Protocol):
    """One client socket: parses requests, drives them through the pipeline, relays responses."""

    __slots__ = (
        "begun",
        "body_due",
        "chunk_rcv",
        "client",
        "cline",
        "closing",
        "conn_checked",
        "counted",
        "cstate",
        "dead",
        "eof_watch",
        "fed",
        "fed_idle",
        "fwd_block",
        "fwd_host",
        "hdrs",
        "head_bytes",
        "held",
        "host_raw",
        "host_str",
        "in_head",
        "in_io",
        "line_at0",
        "lingered",
        "loop",
        "other",
        "out",
        "parser",
        "paused",
        "peer_ip",
        "peer_port",
        "peer_trusted",
        "queue",
        "rd",
        "rd_kind",
        "reading",
        "s",
        "soon",
        "transport",
        "trl_bytes",
        "trl_count",
        "trl_raw",
        "tunnel",
        "up_deadline",
        "url",
        "wr",
    )

    def __init__(self, server: ProxyServer) -> None:
        self.s = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[_Req] = deque()
        self.reading: _Req | None = None
        self.url = b""
        self.hdrs: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.begun = False
        self.other = 0
        self.fed = b""  # the bytes being parsed (during _feed)
        self.fed_idle = True
        self.line_at0 = False
        self.in_head = False
        self.paused = 0
        self.dead = False
        self.closing = False
        self.conn_checked = False
        self.counted = False
        self.tunnel: UpstreamConnection | None = None
        self.rd = 0.0
        self.rd_kind = RD_NONE
        self.body_due = 0.0  # the whole body's deadline (timeouts.body_min_rate); 0: none
        self.up_deadline = 0.0
        self.wr = 0.0
        self.lingered = 0
        self.fwd_host = ""
        self.fwd_block = b""
        self.host_raw = b""
        self.host_str = ""
        self.peer_trusted = False
        self.out: list[bytes] = []
        self.held = b""
        self.peer_ip = ""
        self.peer_port = 0
        self.client = Client(peer_ip="")
        self.in_io = 0  # > 0 while a read (ours or the upstream's) is being parsed
        self.soon: deque[_Soon] = deque()  # continuations to run once that read is parsed
        # A chunked request body, followed between reads (see _chunked_read_end): the parser's place
        # in it, the start of a chunk-size line split across reads (None: too long to keep), the
        # body bytes received when the last chunk-size line was read, the trailer section's size.
        self.cstate: int = C_NONE
        self.cline: bytes | None = b""
        self.chunk_rcv = 0
        self.trl_count = 0
        self.trl_bytes = 0
        self.trl_raw = 0
        # The client half-closed while owed a response: watch for the reset that says it is gone.
        self.eof_watch = False

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same interface.
        self.transport = transport  # type: ignore[assignment]
        s = self.s
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer_ip, self.peer_port = str(peer[0]), int(peer[1])
            if self.peer_ip.startswith("::ffff:"):
                self.peer_ip = self.peer_ip[7:]
        client = Client(peer_ip=self.peer_ip, peer_port=self.peer_port)
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            client.tls = True
            client.tls_version = sslobj.version() or ""
            client.fingerprint, sni = ja4.fingerprint_of(sslobj)
            client.sni = sslobj.server_hostname or sni
        self.client = client
        self.peer_trusted = s.trusted.contains(self.peer_ip)
        if len(s.connections) >= s.max_connections or s._closing:
            self._shed()
            return
        if s.max_per_ip and not self.peer_trusted:
            # One address must not hold every slot (slowloris, slow POST): the rest of its clients wait.
            n = s.per_ip.get(self.peer_ip, 0)
            if n >= s.max_per_ip:
                self._shed("limits-connections-ip", "too many concurrent connections from one address")
                return
            s.per_ip[self.peer_ip] = n + 1
            self.counted = True
        s.connections.add(self)
        self._set_rd(RD_FIRST, s.t_header)

    def data_received(self, data: bytes) -> None:
        self.in_io += 1
        try:
            if self.tunnel is None and not self.dead and not self.held and len(data) <= FEED_SLICE:
                self._feed(data)  # the usual read: straight to the parser (the checks of _receive)
            else:
                self._receive(data)
        finally:
            self.in_io -= 1
        if not self.in_io and self.soon:
            self._run_soon()

    def _receive(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.dead:
            self.lingered += len(data)
            if self.lingered > LINGER_BYTES:
                self.abort()
            elif self.queue and self.queue[-1].websocket:
                self._tunnel_pending(data)
            return
        if self.held:  # keep the byte order: what is held is parsed first
            self.held += data
            return
        if len(data) <= FEED_SLICE:
            self._feed(data)
            return
        n = len(data)
        off = 0
        while off < n:
            if self.dead or self.tunnel is not None:
                self._receive(data[off:])
                return
            if self.paused & PAUSE_PIPELINE:
                self.held = data[off:]
                return
            self._feed(data[off:off + FEED_SLICE])
            off += FEED_SLICE

    def _feed_held(self) -> None:
        """Parse the bytes held back while max_pipelined requests were queued (PAUSE_HELD is set)."""
        if self.transport is None:
            self.held = b""
            return
        data, self.held = self.held, b""
        if data:
            self.data_received(data)
        self._resume(PAUSE_HELD)

    def _feed(self, data: bytes) -> None:
        self.begun = False
        self.other = 0
        self.fed = data
        self.fed_idle = self.reading is None and not self.in_head  # no message is half parsed
        try:
            self.parser.feed_data(data)
            if self.in_head:
                # llhttp buffers an unfinished header line internally: bound the head by bytes seen.
                if self.begun:
                    self.head_bytes = len(data) - self.other
                else:
                    self.head_bytes += len(data)
                if self.head_bytes > self.s.max_head:
                    raise _Refuse("limits-header-bytes", 431, "headers-too-large", "request head too large")
                if self.url and not self.hdrs and self._http09(data):
                    raise _Refuse("protocol-version-invalid", 400, "bad-request", "HTTP/0.9 request line")
            elif self.cstate:
                self._chunked_read_end(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data, int(exc.args[0]) if exc.args else len(data))
        except _Refuse as exc:
            self._refuse_parse(exc)
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refuse):
                self._refuse_parse(cause)
            elif isinstance(cause, _Stop):
                return
            else:
                if cause is not None:  # a bug of ours in a callback: still answer, but say so
                    log.error("parser callback failed: %r", cause)
                rule, message = h.classify_parse_error(exc)
                refusal = _Refuse(rule, 400, "bad-request", message)
                if rule == "protocol-method-invalid":
                    # llhttp knows a fixed list of methods; any other token is a method, just not one
                    # the API accepts. The method it would report is stale: the exchange records none.
                    refusal = self._unknown_method(data) or _Refuse(rule, 400, "bad-request", message, method="")
                self._refuse_parse(refusal)
        finally:
            self.fed = b""  # an idle connection keeps no read buffer alive

    def _http09(self, data: bytes) -> bool:
        """Whether the unfinished head is an HTTP/0.9 request line (`GET /path` CRLF, no version).

        llhttp takes it for one and waits for header fields that such a client never sends: it is
        refused at once, not after timeouts.header. Asked only at the end of a read that leaves a
        head unfinished, while no header field is complete (a 0.9 line with fields is refused with
        its head). llhttp says 0.9 once a byte follows the line; a read that ends with the line is
        read back: its last line is a method, the target llhttp read and CRLF (a header line of that
        shape would have been a parse error). A line split right after its target: see on_url."""
        if self.parser.get_http_version() == "0.9":
            return True
        if data[-2:] != b"\r\n":
            return False
        tail = b" " + self.url + b"\r\n"
        end = len(data) - len(tail)
        if end <= 0 or data[end:] != tail:
            return False
        start = data.rfind(b"\n", 0, end) + 1
        return _TOKEN_SP.fullmatch(data, start, end + 1) is not None

    def _chunked_read_end(self, data: bytes) -> None:
        """The end of a read inside a chunked request body: what llhttp does not tell its callbacks.

        A chunk-size line that declares more than the body may still grow is refused at once (413),
        not after timeouts.body spent waiting for data that is never sent. The trailer section is
        bounded like a head (431): llhttp would grow one endless trailer field for as long as it
        comes. Called only while cstate is set, i.e. for chunked bodies.
        """
        state = self.cstate
        if state == C_LINE:
            # The read ended before the next chunk-size line was complete: keep what it has of it.
            i = data.rfind(b"\n")
            carry = data[i + 1:] if i >= 0 else (None if self.cline is None else self.cline + data)
            self.cline = carry if carry is None or len(carry) <= CHUNK_LINE_CARRY else None
            return
        req = self.reading
        if req is None:
            return
        if state == C_DATA:
            if req.received != self.chunk_rcv:
                self.chunk_rcv = req.received  # chunk data: the chunk goes on
                return
            # No chunk data in a whole read: the trailer section (or the CR after a chunk's data).
            self.trl_raw += len(data)
            if self.trl_raw > self.s.max_header_bytes + 1024:
                raise _Refuse("limits-header-bytes", 431, "headers-too-large", "trailer section too large")
            return
        # C_NEW: a chunk-size line ended in this read, and what of its data came fills the rest of it.
        self.cstate = C_DATA
        before = self.chunk_rcv  # body bytes before this chunk
        self.chunk_rcv = req.received
        end = len(data) - (req.received - before)
        i = data.rfind(b"\n", 0, end - 1)
        if i >= 0:
            line = data[i + 1:end]
        elif self.cline is not None:
            line = self.cline + data[:end]
        else:
            return  # a size line split across reads and longer than what was kept: the data bounds it
        m = _CHUNK_SIZE.fullmatch(line)
        # No size line there: the last chunk (size 0) with trailer fields after it in this read.
        if m is not None and before + int(m.group(1), 16) > self.s.max_body:
            raise _Refuse("limits-body-size", 413, "body-too-large", "chunk size over the body size limit")

    def _trailer(self, name: bytes, value: bytes) -> None:
        """A trailer field of a chunked request: not forwarded, but bounded by the header limits."""
        s = self.s
        self.trl_count += 1
        self.trl_bytes += len(name) + len(value) + 4
        if self.trl_count > s.max_header_count:
            raise _Refuse("limits-header-count", 431, "headers-too-large", "too many trailer fields")
        if len(value) > s.max_header_value:
            raise _Refuse("limits-header-value", 431, "headers-too-large", "trailer field value too long")
        if self.trl_bytes > s.max_header_bytes:
            raise _Refuse("limits-header-bytes", 431, "headers-too-large", "trailer fields too large")

    def _unknown_method(self, data: bytes) -> _Refuse | None:
        """405 for a request line whose method is a token llhttp does not know (None: not one).

        Read from the bytes fed, so only for a message that starts them (not one pipelined behind
        another in the same read); a method the configuration allows but llhttp cannot parse stays
        a 400."""
        if not (self.line_at0 and self.begun):
            return None
        line = data.lstrip(b"\r\n")
        m = _TOKEN_SP.match(line)
        if m is None:
            return None
        method = m.group()[:-1].decode("ascii")
        if method in self.s.allowed_methods:
            return None
        target = "*"
        eol = line.find(b"\n")
        if eol >= 0:  # a complete line must be a well-formed one
            full = _REQUEST_LINE.fullmatch(line, 0, eol + 1)
            if full is None:
                return None
            target = full.group(1)[: self.s.max_uri].decode("latin-1")
        return _Refuse("protocol-method-not-allowed", 405, "unsupported-method", "method not allowed",
                       method=method, target=target)

    def eof_received(self) -> bool | None:
        """The client's FIN: answer the complete requests it is owed, then close.

        A request cut off mid-head is dropped; one cut off mid-body can never be answered (its
        body will not arrive), which ends the connection if it is the active one.

        A FIN is the same from a client that half-closed (SHUT_WR) and still reads its answers as
        from one that closed its socket and left: only a write tells them apart (the closed one's
        kernel answers it with a reset). A client still owed an answer half a second later is
        probed (`_probe`), so an abandoned request does not hold its upstream connection until
        timeouts.upstream_response.
        """
        if self.tunnel is not None:
            return None
        partial = self.reading
        if partial is not None:
            if self.queue and self.queue[0] is partial:
                return None
            if partial in self.queue:
                self.queue.remove(partial)
            self.reading = None
        self.in_head = False
        self._set_rd(RD_NONE, 0.0)
        if self.queue:
            self.closing = True
            self.dead = True
            self.loop.call_later(PROBE_AFTER, self._probe)
            return True
        return None

    def _probe(self) -> None:
        """A half-closed client is still owed an answer: find out whether it is still there.

        A client that closed its socket answers any byte with a reset; one that only shut down its
        sending side reads it. The byte sent is an interim `100 Continue`, which an HTTP/1.1 client
        must accept before any final response (RFC 9110 section 15.2), and only where the final
        response has not begun. Response bytes already on their way probe just as well: the socket
        is then watched on every sweep (`check`) until the connection ends."""
        if self.transport is None or not self.queue:
            return
        req = self.queue[0]
        if req.rs != R_STREAM and req.version == "1.1":
            self._write(h.CONTINUE_100)
        self.eof_watch = True
        self.loop.call_later(PROBE_RTT, self._check_peer)

    def _check_peer(self) -> None:
        """Abort the connection (and with it the upstream exchange) if the client's reset came back."""
        t = self.transport
        if t is None or not self.eof_watch:
            return
        sock = t.get_extra_info("socket")
        try:
            if _TCP_INFO is not None:
                gone = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0] == _TCP_CLOSE
            else:
                gone = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
        except (OSError, AttributeError, IndexError):
            gone = sock is not None  # a socket that cannot be asked is not a client to wait for
        if gone:
            # connection_lost aborts the upstream connection (it cannot be reused mid-response) and
            # completes the exchange as client-aborted.
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        s = self.s
        s.connections.discard(self)
        if self.counted:
            self.counted = False
            n = s.per_ip.get(self.peer_ip, 0) - 1
            if n > 0:
                s.per_ip[self.peer_ip] = n
            else:
                s.per_ip.pop(self.peer_ip, None)
        if s._drained is not None and not s.connections:
            s._drained.set()
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        if self.queue:
            req = self.queue[0]
            if req.task is not None:
                _cancel(req.task)
                req.task = None
            if req.up is not None:
                req.up.abort()
                req.up = None
            if req.st != Q_DONE and req.st != Q_QUEUED and req.error is None:
                req.st = Q_DONE
                req.ex.tags.add("client-aborted")
                self._complete(req.ex)
            for queued in self.queue:
                if queued.error is not None and queued.st == Q_QUEUED:
                    # A refusal the client left before hearing (a smuggling attempt, say) is still an event.
                    queued.st = Q_DONE
                    queued.ex.tags.add("client-aborted")
                    self.s.pipeline.block(queued.ex, queued.error)
                    self._complete(queued.ex)
            self.queue.clear()

    def pause_writing(self) -> None:
        # The client reads slower than the upstream answers: stop reading the upstream.
        self.wr = self.loop.time() + self.s.t_body
        if self.queue:
            self._pause_up(self.queue[0], 1)
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.pause_reading()

    def resume_writing(self) -> None:
        self.wr = 0.0
        if self.queue:
            self._resume_up(self.queue[0], 1)
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.resume_reading()

    # --- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.dead:
            raise _Stop
        self.in_head = True
        # This message starts at the first byte fed (not after another message of the same read):
        # on_headers_complete may read its request line there.
        self.line_at0 = self.fed_idle and not self.begun
        self.begun = True
        self.head_bytes = 0
        self.url = b""
        self.hdrs = []
        self.rd_kind = RD_HEADER  # _set_rd(RD_HEADER, t_header), inlined: once per request
        self.rd = 0.0 if self.paused else self.loop.time() + self.s.t_header

    def on_url(self, url: bytes) -> None:
        # llhttp hands the target in one piece unless it spans reads
        if self.url:
            # This piece starts the read: what follows the target is known. A CR is an HTTP/0.9
            # line split after its target, which _http09 cannot read back at the end of the read.
            if self.fed[len(url):len(url) + 1] == b"\r":
                raise _Refuse("protocol-version-invalid", 400, "bad-request", "HTTP/0.9 request line")
            url = self.url + url
        self.url = url
        if len(url) > self.s.max_uri:
            raise _Refuse("limits-uri-length", 414, "uri-too-long", "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Limits are checked once the head is complete (the head's total size is bounded while it
        # is read, in data_received); chunked trailers arrive after it and are not forwarded.
        if self.in_head:
            self.hdrs.append((name, value))
        else:
            self._trailer(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        s = self.s
        hdrs = self.hdrs
        if len(hdrs) > s.max_header_count:
            raise _Refuse("limits-header-count", 431, "headers-too-large", "too many header fields")
        parser = self.parser
        method_b = parser.get_method()
        method = _METHODS.get(method_b) or method_b.decode("ascii")
        url = self.url
        version = ""
        if self.line_at0 and self.begun:  # begun: the head started in this read, not an earlier one
            # The request line starts the bytes being parsed: read its version there, since
            # httptools' get_http_version() formats it with str.format (~2k instructions, ~1 % of a
            # pass-through request). Exact: the window below is the line's own " HTTP/x.y\r\n" when
            # single spaces separate its parts; shifted by CR/LF that llhttp skipped before the line
            # or by extra spaces it accepts, it starts in that prefix, the method, the target (no SP,
            # CR or LF in it) or on a SP followed by another SP or by the target, which llhttp never
            # accepts starting "HTTP/". Anything else still asks llhttp.
            i = len(method_b) + len(url) + 1
            version = _LINE_ENDS.get(self.fed[i:i + 11], "")
        if not version:
            version = parser.get_http_version()
        target = url.decode("latin-1")
        fwd: list[bytes] = [b""]  # [0]: the request line, set last
        host_count = 0
        host = ""
        total = 0
        special: list[tuple[bytes, bytes]] | None = None  # fields the proxy rewrites: (lower-case name, value)
        rewritten = s.req_rewritten
        max_value = s.max_header_value
        peer_trusted = self.peer_trusted
        for name, value in hdrs:
            n = len(value)
            if n > max_value:
                raise _Refuse("limits-header-value", 431, "headers-too-large", "header field value too long")
            total += len(name) + n + 4
            low = name.lower()
            if low not in rewritten:
                if low == b"host":
                    host_count += 1
                    host = self.host_str if value == self.host_raw else self._host(value)
                fwd.append(b"%b: %b\r\n" % (name, value))
                continue
            if special is None:
                special = []
            special.append((low, value))
            if low in h.FORWARDED_CLAIMS and peer_trusted:
                fwd.append(b"%b: %b\r\n" % (name, value))
        if total > s.max_header_bytes:
            raise _Refuse("limits-header-bytes", 431, "headers-too-large", "request header fields too large")
        self.other += total + len(url) + 16
        length = -1
        chunked = False
        expect = b""
        upgrade = b""
        xff: list[str] = []
        fwded: list[str] = []
        xfp: str | None = None
        rid: str | None = None
        if special is not None:
            conn_values: list[bytes] = []
            for low, value in special:
                if low == b"content-length":
                    length = int(value)  # llhttp validated it (digits only, no duplicates)
                elif low == b"transfer-encoding":
                    chunked = True
                elif low == b"connection":
                    conn_values.append(value)
                elif low == b"expect":
                    expect = value
                elif low == b"upgrade":
                    upgrade = value
                elif low == b"x-forwarded-for":
                    xff.append(value.decode("latin-1"))
                elif low == b"forwarded":
                    fwded.append(value.decode("latin-1"))
                elif low == b"x-forwarded-proto":
                    xfp = value.decode("latin-1").strip()
                elif low == b"x-request-id":
                    svalue = value.decode("latin-1")
                    rid = svalue if valid_request_id(svalue) else None
            # Fields named by Connection are hop-by-hop too (RFC 9110 section 7.6.1).
            if conn_values:
                tokens = h.connection_tokens(conn_values) - {b"close", b"keep-alive", b"upgrade"}
                if tokens:
                    fwd = [line for line in fwd if line.split(b":", 1)[0].lower() not in tokens]
        client = self.client
        if peer_trusted and (xff or fwded):
            ip = resolve_client_ip(self.peer_ip, forwarded_for_chain(xff, fwded), s.trusted)
            if ip != client.ip:
                client = Client(peer_ip=client.peer_ip, peer_port=client.peer_port, ip=ip, tls=client.tls,
                                tls_version=client.tls_version, sni=client.sni, fingerprint=client.fingerprint)
        headers = _new(RawHeaders)  # RawHeaders(hdrs) without the __init__ call
        headers._raw = hdrs
        headers._index = None
        # the Host value decoded above, when there is exactly one (new_exchange's own lookup would
        # find the same: the first Host field, decoded and stripped)
        ex = s.pipeline.new_exchange(client, method, target, headers, version, rid or s.next_request_id(),
                                     host if host_count == 1 else None)
        req = _Req(ex, method)
        req.version = version
        req.keep_alive = parser.should_keep_alive()
        req.chunked = chunked
        if length > 0:
            req.length = length
            ex.request.body_size = length
        self.queue.append(req)
        self.reading = req
        # Checks llhttp leaves to us; each refusal ends the connection.
        refusal: _Refuse | None = None
        if version != "1.1" and version != "1.0":
            refusal = _Refuse("protocol-version-invalid", 400, "bad-request", "unsupported HTTP version")
        elif host_count > 1:
            refusal = _Refuse("protocol-host-multiple", 400, "bad-request", "more than one Host header")
        elif host_count == 0 and version == "1.1":
            refusal = _Refuse("protocol-host-missing", 400, "bad-request", "HTTP/1.1 request without Host")
        elif chunked and version == "1.0":
            # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is a smuggling tell.
            refusal = _Refuse("protocol-te-version", 400, "bad-request", "Transfer-Encoding in HTTP/1.0")
        elif method == "CONNECT":
            refusal = _Refuse("protocol-method-not-allowed", 405, "unsupported-method", "CONNECT is not proxied")
        elif length > s.max_body:
            refusal = _Refuse("limits-body-size", 413, "body-too-large", "declared body too large")
        elif upgrade and parser.should_upgrade():
            if req.has_body:
                # llhttp skips the body of an upgrade request: those bytes would be parsed as a request.
                refusal = _Refuse("protocol-upgrade-body", 400, "bad-request", "upgrade request with a body")
            elif s.websocket and method == "GET" and b"websocket" in upgrade.lower():
                req.websocket = True
        if refusal is not None:
            req.error = self._finding(refusal)
            raise refusal
        if expect:
            if expect.strip().lower() != b"100-continue":
                refusal = _Refuse("protocol-expect-invalid", 417, "expectation-failed", "unsupported Expect")
                req.error = self._finding(refusal)
                raise refusal
            req.expect_continue = version == "1.1"
        # The head forwarded upstream: request line, surviving fields, framing, forwarding chain.
        if url[:1] != b"/" and url != b"*":
            # absolute-form (RFC 9112 section 3.2.2): forward origin-form, Host from the target
            authority, url = self._origin_form(url)
            fwd = [line for line in fwd if line[:5].lower() != b"host:"]
            fwd.append(b"Host: %b\r\n" % authority)
        elif host_count == 0:
            fwd.append(b"Host: %b\r\n" % s.target.host_header)
        if req.websocket:
            fwd.append(b"Connection: Upgrade\r\nUpgrade: %b\r\n" % upgrade)
        if chunked:
            fwd.append(b"Transfer-Encoding: chunked\r\n")
        elif length >= 0:
            fwd.append(b"Content-Length: %d\r\n" % length)
        if peer_trusted:
            fwd.append(self._forwarding_block(client.ip, host, True, xff, fwded, xfp))
        else:  # the same for every request of this connection to this Host: computed once
            if host != self.fwd_host or not self.fwd_block:
                self.fwd_host = host
                self.fwd_block = self._forwarding_block(client.ip, host, False, xff, fwded, xfp)
            fwd.append(self.fwd_block)
        rid_line = req.rid_line = b"X-Request-Id: %b\r\n" % ex.id.encode("latin-1")  # the response's too
        fwd.append(rid_line)
        fwd.append(b"\r\n")
        fwd[0] = b"%b %b%b HTTP/1.1\r\n" % (method_b, s.target.prefix, url)
        req.head = b"".join(fwd)
        if chunked or length > 0:
            self._set_rd(RD_BODY, s.t_body)
            self.body_due = self.loop.time() + s.t_body if s.body_byte_s else 0.0
            if chunked:  # the first chunk-size line starts right after this head (in this read)
                self.cstate = C_LINE
                self.cline = b""
                self.trl_count = self.trl_bytes = self.trl_raw = 0
        else:
            self.rd_kind = RD_NONE
            self.rd = 0.0
        if len(self.queue) == 1:
            self._start(req)
        elif len(self.queue) >= s.max_pipelined:
            self._pause(PAUSE_PIPELINE)

    @staticmethod
    def _origin_form(url: bytes) -> tuple[bytes, bytes]:
        """(authority, origin-form target) of an absolute-form target; refuses anything else."""
        scheme, sep, rest = url.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https"):
            raise _Refuse("protocol-target-invalid", 400, "bad-request", "unsupported request-target form")
        end = len(rest)
        for c in (b"/", b"?"):
            i = rest.find(c)
            if 0 <= i < end:
                end = i
        authority, path = rest[:end], rest[end:]
        if not authority or b"@" in authority:
            raise _Refuse("protocol-target-invalid", 400, "bad-request", "invalid authority in the request-target")
        if not path.startswith(b"/"):
            path = b"/" + path
        return authority, path

    def _host(self, value: bytes) -> str:
        """The Host as text, memoized per connection (a keep-alive client repeats it)."""
        self.host_raw = value
        self.host_str = value.decode("latin-1").strip()
        return self.host_str

    def _forwarding_block(self, client_ip: str, host: str, trusted: bool, xff: list[str], fwded: list[str],
                          xfp: str | None) -> bytes:
        lines = forwarding_headers(self.peer_ip, client_ip, self.s.scheme, host, trusted, xff, fwded, xfp)
        return b"".join(b"%b: %b\r\n" % (name, value) for name, value in lines)

    def on_body(self, data: bytes) -> None:
        req = self.reading
        if req is None:
            return
        n = len(data)
        req.received += n
        self.other += n
        if req.received > self.s.max_body:
            raise _Refuse("limits-body-size", 413, "body-too-large", "body too large")
        if self.rd_kind == RD_BODY:
            self.rd = self.loop.time() + self.s.t_body
            if self.body_due:
                self.body_due += n * self.s.body_byte_s
        req.ex.request.body_size = req.received
        up = req.up
        if up is not None and req.st == Q_UPSTREAM:
            up.write(h.chunk(data) if req.chunked else data)
            return
        if req.st == Q_DONE:
            return  # answered already (refused or the upstream answered early): discarded
        req.body.append(data)
        req.body_buffered += n
        if req.body_buffered > self.s.buffer_cap:
            self._pause(PAUSE_BUFFER)
        if req.st == Q_WAIT_BODY:
            self._maybe_inspect_body(req)

    def on_chunk_header(self) -> None:
        # A chunk-size line was read: its size is checked at the end of the read (_chunked_read_end).
        self.cstate = C_NEW
        req = self.reading
        self.chunk_rcv = req.received if req is not None else 0

    def on_chunk_complete(self) -> None:
        self.cstate = C_LINE

    def on_message_complete(self) -> None:
        req = self.reading
        self.reading = None
        if req is None:
            return
        req.ended = True
        if self.rd_kind == RD_BODY:
            self._set_rd(RD_NONE, 0.0)
        if req.chunked:
            self.cstate = C_NONE
            if req.up is not None and req.st == Q_UPSTREAM:
                req.up.write(h.CHUNKED_END)
                return
        if req.st == Q_WAIT_BODY:
            self._maybe_inspect_body(req)

    # --- request flow ----------------------------------------------------------------------

    def _start(self, req: _Req) -> None:
        """Make `req` the active request: refuse it, inspect it, or forward it."""
        if req.error is not None:
            self._answer_error(req)
            return
        s = self.s
        conn_phase = s.wants_conn and not self.conn_checked
        self.conn_checked = True
        if conn_phase or s.wants_head:
            req.st = Q_INSPECT
            self._spawn(req, self._inspect_head(req.ex, conn_phase), self._after_head)
            return
        if not req.expect_continue and not (s.wants_body and (req.chunked or req.length > 0)):
            conn = s.pool.get_idle()  # the pass-through fast path: straight to a pooled connection
            if conn is not None:
                self._send(req, conn)
                return
        self._after_head(req, None)

    def _inspect_head(self, ex: Exchange, conn_phase: bool) -> Verdict | PhaseTail | None:
        """Connection phase (first request of a connection) then request headers, synchronously
        unless a hook goes async."""
        p = self.s.pipeline
        if conn_phase:
            first = p.run_now(_CONNECTION, ex)
            if first is not None and not isinstance(first, Verdict):
                return self._head_after_connection(first, ex)
            if first is not None and first.blocks:
                return first
            if self.s.wants_head:
                v = p.run_now(_REQUEST_HEADERS, ex)
                return first if v is None else v
            return first
        return p.run_now(_REQUEST_HEADERS, ex)

    async def _head_after_connection(self, pending: PhaseTail, ex: Exchange) -> Verdict | None:
        first = await pending
        if (first is not None and first.blocks) or not self.s.wants_head:
            return first
        v = await self.s.pipeline.run(Phase.REQUEST_HEADERS, ex)
        return first if v is None else v

    def _spawn(
        self,
        req: _Req,
        result: Verdict | PhaseTail | None,
        then: Callable[[_Req, Verdict | None], None],
    ) -> None:
        """Continue with `then` once a phase has decided.

        A phase that ran synchronously (the common case) continues as soon as the read being
        parsed is finished: the parser completes the data it was fed (message complete, pipelined
        requests, the rest of a response) before the answer is chosen, exactly as when the phase
        had to wait. Inside a read that is right after it (no extra loop turn: ~7 % of a proxied
        request's instructions with signatures on); elsewhere (timers, tasks) on the next turn."""
        if result is None or isinstance(result, Verdict):
            soon = (req, then, result)
            req.task = soon
            self.soon.append(soon)
            if not self.in_io:
                self.loop.call_soon(self._run_soon)
            return
        task = self.loop.create_task(result)
        req.task = task

        def done(t: asyncio.Future[Verdict | None]) -> None:
            if req.task is not t:
                return
            req.task = None
            if t.cancelled() or self.transport is None:
                return
            exc = t.exception()
            verdict: Verdict | None = None
            if exc is not None:
                log.error("inspection failed: %r", exc)
                if self.s.pipeline.fail_closed:
                    verdict = self.s.pipeline.block(req.ex, Finding(
                        rule_id="bastion-fail-closed", detector="proxy", message="inspection failed",
                        action=Action.BLOCK, status=503, reason="inspection-failed"))
            else:
                verdict = t.result()
            try:
                then(req, verdict)
            except Exception as err:
                self._crashed(req, err)

        task.add_done_callback(done)

    def _run_soon(self) -> None:
        """Run the continuations of phases that decided synchronously, in order (see `_spawn`)."""
        self.in_io += 1
        try:
            queue = self.soon
            while queue:
                soon = queue.popleft()
                req, then, verdict = soon
                if req.task is not soon:
                    continue  # cancelled: the client left or the request was refused meanwhile
                req.task = None
                if self.transport is None:
                    continue
                try:
                    then(req, verdict)
                except Exception as err:
                    self._crashed(req, err)
        finally:
            self.in_io -= 1

    def _after_head(self, req: _Req, v: Verdict | None) -> None:
        if v is not None:
            if v.blocks:
                self._refuse(req, v)
                return
            if v.action == Action.THROTTLE and v.delay > 0:
                self.loop.call_later(v.delay, self._resume_after_throttle, req, self._want_body)
                return
        self._want_body(req)

    def _resume_after_throttle(self, req: _Req, then: Callable[[_Req], None]) -> None:
        if self.transport is not None and self.queue and self.queue[0] is req and req.st != Q_DONE:
            try:
                then(req)
            except Exception as err:
                self._crashed(req, err)

    def _want_body(self, req: _Req) -> None:
        if self.s.wants_body and (req.chunked or req.length > 0):  # req.has_body
            req.st = Q_WAIT_BODY
            if req.expect_continue and not req.ended and self.transport is not None:
                req.expect_continue = False
                self._write(h.CONTINUE_100)
            self._maybe_inspect_body(req)
        else:
            self._forward(req)

    def _maybe_inspect_body(self, req: _Req) -> None:
        if req.st != Q_WAIT_BODY or not (req.ended or req.body_buffered >= self.s.inspect_bytes):
            return
        req.st = Q_INSPECT
        body = b"".join(req.body)
        req.body = [body]
        r = req.ex.request
        limit = self.s.inspect_bytes
        r.body = body[:limit]
        r.body_truncated = not req.ended or len(body) > limit
        self._spawn(req, self.s.pipeline.run_now(_REQUEST_BODY, req.ex), self._after_body)

    def _after_body(self, req: _Req, v: Verdict | None) -> None:
        if v is not None:
            if v.blocks:
                self._refuse(req, v)
                return
            if v.action == Action.THROTTLE and v.delay > 0:
                self.loop.call_later(v.delay, self._resume_after_throttle, req, self._forward)
                return
        self._forward(req)

    def _forward(self, req: _Req) -> None:
        if req.expect_continue and not req.ended and self.transport is not None:
            req.expect_continue = False
            self._write(h.CONTINUE_100)
        conn = self.s.pool.get_idle()
        if conn is not None:
            self._send(req, conn)
            return
        req.st = Q_CONNECTING
        task = self.loop.create_task(self.s.pool.connect())
        req.task = task

        def connected(t: asyncio.Future[UpstreamConnection]) -> None:
            if req.task is not t:
                if not t.cancelled() and t.exception() is None:
                    self.s.pool.release(t.result())
                return
            req.task = None
            if t.cancelled():
                return
            exc = t.exception()
            if self.transport is None:
                if exc is None:
                    self.s.pool.release(t.result())
                return
            try:
                if exc is not None:
                    timeout = isinstance(exc, TimeoutError)
                    self._upstream_failed(req, 504 if timeout else 502, f"connect: {type(exc).__name__}")
                    return
                self._send(req, t.result())
            except Exception as err:
                self._crashed(req, err)

        task.add_done_callback(connected)

    def _send(self, req: _Req, conn: UpstreamConnection, data: bytes | None = None) -> None:
        req.st = Q_UPSTREAM
        req.up = conn
        if data is None:
            chunked = req.chunked
            if req.body or (chunked and req.ended):
                parts = [req.head]
                if req.body:
                    if chunked:
                        parts.extend(h.chunk(b) for b in req.body if b)
                    else:
                        parts.extend(req.body)
                    req.body = []
                    req.body_buffered = 0
                if req.ended and chunked:
                    parts.append(h.CHUNKED_END)
                data = b"".join(parts)
            else:
                data = req.head  # a request without a body (or whose body is still to come)
            if (req.ended or not (chunked or req.length > 0)) and not req.retried and len(data) <= REPLAY_MAX:
                req.replay = data
        self.up_deadline = self.loop.time() + self.s.t_upstream
        conn.send(self, data, req.method == "HEAD")
        if self.wr:  # the client is still not reading an earlier response: hold this one back too
            self._pause_up(req, 1)
        if self.paused & PAUSE_BUFFER:
            self._resume(PAUSE_BUFFER)

    # --- upstream callbacks (UpstreamHandler) ----------------------------------------------

    def _active(self, conn: UpstreamConnection) -> _Req | None:
        if self.queue:
            req = self.queue[0]
            if req.up is conn:
                return req
        return None

    def up_head(self, conn: UpstreamConnection) -> None:
        queue = self.queue
        if not queue:
            return
        req = queue[0]
        if req.up is not conn:
            return
        s = self.s
        status = conn.status
        reason = conn.reason
        self.up_deadline = self.loop.time() + s.t_upstream
        ex = req.ex
        headers = _new(RawHeaders)  # RawHeaders(conn.headers) without the __init__ call
        headers._raw = conn.headers
        headers._index = None
        resp = Response(status, headers)  # no keyword arguments: no dict built per response
        resp.reason = reason.decode("latin-1")
        ex.response = resp
        if status == 101:
            if req.websocket:
                self._switch_tunnel(req, conn)
            else:
                self._upstream_failed(req, 502, "unexpected 101 from upstream")
            return
        dropped = s.resp_dropped
        line = _STATUS_LINES.get((status, reason))
        if line is None:
            if len(_STATUS_LINES) >= 1024:  # reasons are the upstream's to choose: keep the memo bounded
                _STATUS_LINES.clear()
            line = _STATUS_LINES[(status, reason)] = b"HTTP/1.1 %d %b\r\n" % (status, reason)
        lines = [line]
        conn_values = None
        for name, value in conn.headers:
            low = name.lower()
            if low in dropped:
                if low == b"connection" and value.lower() not in (b"keep-alive", b"close"):
                    conn_values = (conn_values or []) + [value]
                continue
            lines.append(b"%b: %b\r\n" % (name, value))
        if conn_values:
            # Fields named by Connection are hop-by-hop too (RFC 9110 section 7.6.1).
            tokens = h.connection_tokens(conn_values) - {b"close", b"keep-alive"}
            if tokens:
                lines = [lines[0]] + [x for x in lines[1:] if x.split(b":", 1)[0].lower() not in tokens]
        no_body = req.method == "HEAD" or status == 204 or status == 304
        if no_body:
            req.framing = F_NONE
        elif conn.has_length and not conn.chunked:
            req.framing = F_LENGTH
        elif req.version == "1.1":
            req.framing = F_CHUNKED
            lines.append(b"Transfer-Encoding: chunked\r\n")
        else:
            req.framing = F_CLOSE
        lines.append(req.rid_line or b"X-Request-Id: %b\r\n" % ex.id.encode("latin-1"))
        if s.hsts:
            lines.append(s.hsts)
        req.resp_head = lines
        if not (s.wants_resp_head or (not no_body and (s.wants_resp_body or (s.scrub and status >= 500)))):
            self._write_head(req)  # nothing holds the response: it streams
            return
        req.rs = R_HOLD
        if s.wants_resp_head:
            self._spawn(req, s.pipeline.run_now(_RESPONSE_HEADERS, ex), self._after_resp_head)
        else:
            self._after_resp_head(req, None)

    def _after_resp_head(self, req: _Req, v: Verdict | None) -> None:
        if v is not None and v.blocks:
            self._refuse(req, v)
            return
        s = self.s
        status = req.ex.response.status if req.ex.response is not None else 0
        if req.framing != F_NONE and (s.wants_resp_body or (s.scrub and status >= 500)):
            req.rs = R_WAIT_BODY
            if req.resp_ended or req.resp_buffered >= s.resp_hold_limit:  # (_maybe_inspect_response's test)
                self._maybe_inspect_response(req)
        else:
            self._release_hold(req)

    def _maybe_inspect_response(self, req: _Req) -> None:
        limit = self.s.resp_hold_limit
        if not req.resp_ended and req.resp_buffered < limit:
            return
        s = self.s
        resp = req.ex.response
        assert resp is not None
        body = b"".join(req.resp_buf)
        req.resp_buf = [body] if body else []
        resp.body = body[:limit]
        if s.scrub and resp.status >= 500 and should_scrub(resp.status, resp.body):
            req.ex.tags.add("upstream-error-scrubbed")
            self._replace_response(req, resp.status, scrubbed_body(resp.status, req.ex.id))
            return
        if s.wants_resp_body:
            req.rs = R_HOLD
            self._spawn(req, s.pipeline.run_now(_RESPONSE_BODY, req.ex), self._after_resp_body)
        else:
            self._release_hold(req)

    def _after_resp_body(self, req: _Req, v: Verdict | None) -> None:
        if v is not None and v.blocks:
            self._refuse(req, v)
            return
        self._release_hold(req)

    def _release_hold(self, req: _Req) -> None:
        self._write_head(req)
        buf, req.resp_buf = req.resp_buf, []
        req.resp_buffered = 0
        for data in buf:
            self._write_body(req, data)
        if req.up_paused & 2:
            self._resume_up(req, 2)
        if req.resp_ended and self.queue and self.queue[0] is req and req.st != Q_DONE:
            self._response_done(req)
        self._flush()

    def _write_head(self, req: _Req) -> None:
        req.rs = R_STREAM
        lines = req.resp_head
        # A dead parser (upgrade, framing error) ends the connection once nothing else is owed.
        close = (not req.keep_alive or not req.ended or req.framing == F_CLOSE or req.websocket
                 or ((self.closing or self.dead) and len(self.queue) <= 1))
        req.resp_close = close
        if close:
            lines.append(b"Connection: close\r\n\r\n")
        elif req.version == "1.0":
            lines.append(b"Connection: keep-alive\r\n\r\n")
        else:
            lines.append(b"\r\n")
        req.resp_head = []
        # Joined with the body by _flush: one join per write, not one for the head and one more.
        if self.out:
            self.out += lines
        else:
            self.out = lines

    def _write_body(self, req: _Req, data: bytes) -> None:
        if not data:
            return
        if req.framing == F_CHUNKED:
            self.out.append(h.chunk(data))
        elif req.framing != F_NONE:
            self.out.append(data)

    def up_body(self, data: bytes) -> None:
        if not self.queue:
            return
        req = self.queue[0]
        resp = req.ex.response
        if resp is not None:
            resp.body_size += len(data)
        if req.rs == R_STREAM:
            if resp is not None and self.s.copy_resp_prefix:
                room = self.s.inspect_resp_bytes - len(resp.body)
                if room > 0:
                    resp.body += data[:room]
            if data:  # _write_body, inlined: once or more per response
                framing = req.framing
                if framing == F_CHUNKED:
                    self.out.append(h.chunk(data))
                elif framing != F_NONE:
                    self.out.append(data)
            return
        req.resp_buf.append(data)
        req.resp_buffered += len(data)
        if req.resp_buffered > self.s.inspect_resp_bytes + HOLD_SLACK:
            self._pause_up(req, 2)
        # (_maybe_inspect_response's own test first: most reads of a held body do not complete it)
        if req.rs == R_WAIT_BODY and (req.resp_ended or req.resp_buffered >= self.s.resp_hold_limit):
            self._maybe_inspect_response(req)

    def up_done(self, conn: UpstreamConnection) -> None:
        queue = self.queue  # _active(conn), inlined
        if not queue:
            return
        req = queue[0]
        if req.up is not conn:
            return
        req.resp_ended = True
        self.up_deadline = 0.0
        if req.rs == R_STREAM:
            self._response_done(req)
        elif req.rs == R_WAIT_BODY:
            self._maybe_inspect_response(req)

    def up_lost(self, conn: UpstreamConnection, exc: BaseException | None) -> None:
        if self.tunnel is conn:
            self.tunnel = None
            self.close()
            return
        req = self._active(conn)
        if req is None:
            return
        req.up = None
        if (not conn.got_bytes and conn.uses > 1 and req.replay and not req.retried and req.rs == R_NONE
                and (req.method in IDEMPOTENT or exc is None)):
            # A reused keep-alive connection closed under us before any answer (the keep-alive race,
            # RFC 9112 section 9.3.1): replay once on a fresh connection. A non-idempotent request
            # is replayed only after a clean close, never after a reset (it may have been processed).
            req.retried = True
            data, req.replay = req.replay, b""
            fresh = self.s.pool.get_idle()
            if fresh is not None:
                self._send(req, fresh, data)
                return
            req.head, req.body = data, []
            self._forward(req)
            return
        detail = f"upstream: {type(exc).__name__}" if exc is not None else "upstream closed the connection"
        self._upstream_failed(req, 502, detail)

    def up_tunnel(self, data: bytes) -> None:
        self._write(data)

    def up_flush(self) -> None:
        self._flush()

    def up_enter(self) -> None:
        self.in_io += 1

    def up_leave(self) -> None:
        self.in_io -= 1
        if not self.in_io and self.soon:
            self._run_soon()
        out = self.out  # _flush(), inlined: once per upstream read
        if out:
            self.out = []
            if self.transport is not None:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _flush(self) -> None:
        """Write what the relayed response produced, as one write (one syscall) per upstream read."""
        out = self.out
        if out:
            self.out = []
            if self.transport is not None:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _write(self, data: bytes) -> None:
        self._flush()
        if self.transport is not None:
            self.transport.write(data)

    def up_pause(self) -> None:
        self._pause(PAUSE_UPSTREAM)

    def up_resume(self) -> None:
        self._resume(PAUSE_UPSTREAM)

    # --- ends of exchanges -----------------------------------------------------------------

    def _response_done(self, req: _Req) -> None:
        if req.framing == F_CHUNKED:
            self.out.append(h.CHUNKED_END)
        conn = req.up
        req.up = None
        self.up_deadline = 0.0
        if conn is not None:
            # A request body not fully sent leaves the connection's framing unknown: not reusable.
            # Nor is one that carried a body on a method that normally has none: an upstream that
            # ignores such a body (CL.0 desync) would read it as the next request on this connection.
            reusable = req.ended and not ((req.chunked or req.length > 0) and req.method in NO_BODY_METHODS)
            if reusable and not req.up_paused:
                self.s.pool.release(conn)  # _give_back's usual case
            else:
                self._give_back(req, conn, reusable)
        self._finish(req, req.resp_close)

    def _give_back(self, req: _Req, conn: UpstreamConnection, reusable: bool) -> None:
        """Return an upstream connection to the pool (reading resumed) or close it."""
        if req.up_paused:
            req.up_paused = 0
            if conn.transport is not None:
                conn.transport.resume_reading()
        if reusable:
            self.s.pool.release(conn)
        else:
            conn.abort()

    def _finish(self, req: _Req, close: bool) -> None:
        req.st = Q_DONE
        s = self.s
        if not s.completed:  # _complete(req.ex), inlined: once per request
            self.loop.call_soon(s.run_completed)
        s.completed.append(req.ex)
        queue = self.queue
        if queue and queue[0] is req:
            queue.popleft()
        if self.transport is None:
            return
        if close or (self.closing and not queue):
            self.close(linger=not req.ended or self.dead)
            return
        if self.paused & PAUSE_PIPELINE and len(queue) < s.max_pipelined:
            self._resume(PAUSE_PIPELINE)
        if queue:
            self._start(queue[0])
        elif not self.in_head and self.reading is None:
            self.rd_kind = RD_IDLE  # _set_rd(RD_IDLE, t_idle), inlined
            self.rd = 0.0 if self.paused else self.loop.time() + s.t_idle

    def _last_owed(self) -> bool:
        """Whether the active response is the last this closing connection owes."""
        return self.closing and len(self.queue) <= 1

    def _complete(self, ex: Exchange) -> None:
        # The complete phase (learning, counting, scoring risk) runs once per loop turn over every
        # exchange finished in it: the client has its answer, and one pass over a batch keeps the
        # analytics' code and data warm in the CPU's caches.
        s = self.s
        if not s.completed:
            self.loop.call_soon(s.run_completed)
        s.completed.append(ex)

    def _refuse(self, req: _Req, v: Verdict) -> None:
        """Answer with Bastion's own problem+json instead of (or in place of) the upstream's."""
        status = v.status if v.status >= 400 else 403
        reason = v.reason or "request-blocked"
        title = v.title or problem_for(reason, status)[1]
        close = v.close or not req.ended or not req.keep_alive or self._last_owed() or req.rs != R_NONE
        if req.up is not None:
            conn, req.up = req.up, None
            self._give_back(req, conn, req.resp_ended and req.ended)
        if req.rs == R_STREAM:  # too late for a clean answer: cut the connection
            self._finish(req, True)
            self.abort()
            return
        self._write_problem(req, status, reason, title, close, v.retry_after, v.headers, v.extra)
        self._finish(req, close)

    def _replace_response(self, req: _Req, status: int, body: bytes) -> None:
        """Send a scrubbed upstream error: same status, a problem+json body, nothing upstream-made."""
        close = not req.ended or not req.keep_alive or self._last_owed() or not req.resp_ended
        if req.up is not None:
            conn, req.up = req.up, None
            self._give_back(req, conn, req.resp_ended and req.ended)
        head = [
            h.status_line(b"1.1", status, h.reason_phrase(status)),
            b"Content-Type: application/problem+json\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Cache-Control: no-store\r\n",
            b"X-Request-Id: %b\r\n" % req.ex.id.encode("latin-1"),
        ]
        if self.s.hsts:
            head.append(self.s.hsts)
        head.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
        self._write(b"".join(head) + (b"" if req.method == "HEAD" else body))
        req.rs = R_STREAM
        self._finish(req, close)

    def _write_problem(
        self,
        req: _Req,
        status: int,
        reason: str,
        title: str,
        close: bool,
        retry_after: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        extra: tuple[tuple[str, str | int], ...] = (),
    ) -> None:
        ex = req.ex
        ex.response = Response(
            status=status,
            headers=Headers([("Content-Type", "application/problem+json")]),
            from_bastion=True,
        )
        self._write(
            h.problem_response(status, reason, title, ex.id, close=close, retry_after=retry_after,
                               headers=headers, hsts=self.s.hsts, head_only=req.method == "HEAD", extra=extra)
        )
        req.rs = R_STREAM

    def _upstream_failed(self, req: _Req, status: int, detail: str) -> None:
        req.ex.upstream_error = detail
        if req.up is not None:
            req.up.abort()
            req.up = None
        self.up_deadline = 0.0
        if req.rs == R_STREAM:  # the head is out: the only honest signal left is a cut connection
            self._finish(req, True)
            self.abort()
            return
        reason = "gateway-timeout" if status == 504 else "bad-gateway"
        close = not req.ended or not req.keep_alive or self._last_owed()
        self._write_problem(req, status, reason, problem_for(reason, status)[1], close)
        self._finish(req, close)

    def _crashed(self, req: _Req, exc: BaseException) -> None:
        """A bug of ours while handling `req`: answer 502 (or cut), never leave the client hanging."""
        log.error("proxy failed on request %s: %r", req.ex.id, exc, exc_info=exc)
        try:
            self._upstream_failed(req, 502, f"internal: {type(exc).__name__}")
        except Exception:
            self.abort()

    def _finding(self, r: _Refuse) -> Finding:
        return Finding(
            rule_id=r.rule_id,
            detector="proxy",
            message=r.message,
            severity=Severity.CRITICAL,
            action=Action.BLOCK,
            status=r.status,
            reason=r.reason,
            tags=("protocol",) if r.rule_id.startswith("protocol-") else ("limits",),
            headers=self.s.allow if r.status == 405 else (),  # RFC 9110 section 15.5.6: a 405 lists them
        )

    def _refuse_parse(self, r: _Refuse) -> None:
        """The parser stopped: queue the refusal behind the requests already owed an answer."""
        if self.dead:
            return
        self.dead = True
        self.in_head = False
        self.cstate = C_NONE
        self._set_rd(RD_NONE, 0.0)
        req = self.reading
        if req is not None and req.error is None and req.st != Q_QUEUED and self.queue and self.queue[0] is req:
            # The active request broke mid-body (too large, malformed chunk): stop it now.
            self.reading = None
            finding = self._finding(r)
            verdict = self.s.pipeline.block(req.ex, finding)
            if req.up is not None:
                req.up.abort()
                req.up = None
            if req.task is not None:
                _cancel(req.task)
                req.task = None
            if req.rs == R_STREAM:
                self._finish(req, True)
                self.abort()
                return
            self._write_problem(req, verdict.status, verdict.reason or r.reason, verdict.title or r.message, True,
                                verdict.retry_after, verdict.headers)
            self._finish(req, True)
            return
        if req is not None and (req.error is not None or req.st == Q_QUEUED) and req in self.queue:
            req.error = req.error or self._finding(r)
            self.reading = None
        else:
            self.reading = None
            target = r.target if r.target is not None else (self.url.decode("latin-1")[: self.s.max_uri] or "*")
            if r.method is not None:
                method = r.method
            else:
                try:
                    method = self.parser.get_method().decode("ascii")
                except Exception:
                    method = ""
            hdrs = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.hdrs[:100]])
            ex = self.s.pipeline.new_exchange(self.client, method, target, hdrs)
            req = _Req(ex, method)
            req.error = self._finding(r)
            self.queue.append(req)
        if self.queue[0] is req:
            self._start(req)

    def _answer_error(self, req: _Req) -> None:
        assert req.error is not None
        verdict = self.s.pipeline.block(req.ex, req.error)
        status = verdict.status if verdict.status >= 400 else (req.error.status or 400)
        reason = verdict.reason or req.error.reason or "bad-request"
        title = verdict.title or problem_for(reason, status)[1]
        self._write_problem(req, status, reason, title, True, verdict.retry_after, verdict.headers)
        self._finish(req, True)

    def _shed(self, rule_id: str = "limits-connections", message: str = "too many concurrent connections") -> None:
        """Over max_connections (or the per-address cap): answer 503 with Retry-After and close,
        without reading anything."""
        s = self.s
        s.refused_connections += 1
        ex = s.pipeline.new_exchange(self.client, "", "*", Headers())
        finding = Finding(
            rule_id=rule_id, detector="proxy", message=message,
            severity=Severity.WARNING, action=Action.BLOCK, status=503, reason="overloaded", retry_after=1,
            tags=("limits", "flood"),
        )
        verdict = s.pipeline.block(ex, finding)
        ex.response = Response(status=503, headers=Headers([("Content-Type", "application/problem+json")]),
                               from_bastion=True)
        assert self.transport is not None
        self.transport.write(h.problem_response(503, "overloaded", problem_for("overloaded")[1], ex.id, close=True,
                                                retry_after=verdict.retry_after or 1, hsts=s.hsts))
        self._complete(ex)
        self.dead = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # our answer first; the socket is aborted shortly after
            self.loop.call_later(LINGER_SECONDS, self.abort)
        else:
            self.transport.close()

    # --- WebSocket --------------------------------------------------------------------------

    def _upgraded(self, data: bytes, offset: int) -> None:
        """The parser met an Upgrade request: stop parsing; keep what follows for a tunnel."""
        self.dead = True
        self.reading = None
        if self.queue and self.queue[-1].websocket and offset < len(data):
            self._tunnel_pending(data[offset:])

    def _tunnel_pending(self, data: bytes) -> None:
        req = self.queue[-1]
        req.tunnel_pending += data
        if len(req.tunnel_pending) > 64 * 1024:
            self._pause(PAUSE_BUFFER)

    def _switch_tunnel(self, req: _Req, conn: UpstreamConnection) -> None:
        s = self.s
        lines = [h.status_line(b"1.1", 101, conn.reason or b"Switching Protocols")]
        for name, value in conn.headers:
            low = name.lower()
            if low in s.banners or low == b"x-request-id":
                continue
            lines.append(b"%b: %b\r\n" % (name, value))
        lines.append(b"X-Request-Id: %b\r\n\r\n" % req.ex.id.encode("latin-1"))
        self._write(b"".join(lines))
        req.up = None
        self.tunnel = conn
        self.up_deadline = 0.0
        self._set_rd(RD_NONE, 0.0)
        pending, req.tunnel_pending = req.tunnel_pending, b""
        if pending:
            conn.write(pending)
        req.st = Q_DONE
        self._complete(req.ex)
        self.queue.clear()
        self.paused = 0
        if self.transport is not None:
            self.transport.resume_reading()

    # --- flow control and deadlines --------------------------------------------------------

    def _pause(self, why: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
            if self.rd_kind in (RD_BODY, RD_HEADER):
                self.rd = 0.0  # the client is not slow: we are not reading
        self.paused |= why

    def _resume(self, why: int) -> None:
        if not self.paused & why:
            return
        self.paused &= ~why
        if self.held and why != PAUSE_HELD and not self.paused & PAUSE_HELD:
            # Parse the held bytes first (on the next turn: this may run inside a parser callback).
            self.paused |= PAUSE_HELD
            self.loop.call_soon(self._feed_held)
            return
        if not self.paused and self.transport is not None:
            self.transport.resume_reading()
            if self.rd_kind == RD_BODY:
                self.rd = self.loop.time() + self.s.t_body
                if self.body_due:  # the time we did not read is not the client's
                    self.body_due = max(self.body_due, self.rd)
            elif self.rd_kind == RD_HEADER:
                self.rd = self.loop.time() + self.s.t_header

    def _pause_up(self, req: _Req, why: int) -> None:
        conn = req.up
        if conn is not None and conn.transport is not None and not req.up_paused:
            conn.transport.pause_reading()
        req.up_paused |= why

    def _resume_up(self, req: _Req, why: int) -> None:
        if not req.up_paused & why:
            return
        req.up_paused &= ~why
        conn = req.up
        if not req.up_paused and conn is not None and conn.transport is not None:
            conn.transport.resume_reading()

    def _set_rd(self, kind: int, seconds: float) -> None:
        self.rd_kind = kind
        self.rd = self.loop.time() + seconds if kind != RD_NONE and not self.paused else 0.0

    def check(self, now: float) -> None:
        """Called by the server's sweeper: enforce read, upstream and write deadlines."""
        if self.transport is None:
            return
        if self.rd and now >= self.rd:
            kind = self.rd_kind
            self._set_rd(RD_NONE, 0.0)
            if kind in (RD_FIRST, RD_IDLE, RD_LINGER):
                self.close()  # nothing owed: a quiet connection just ends
            elif kind == RD_HEADER:
                self._refuse_parse(_Refuse("timeouts-header", 408, "request-timeout", "request head too slow"))
            elif kind == RD_BODY:
                self._refuse_parse(_Refuse("timeouts-body", 408, "request-timeout", "request body too slow"))
        elif self.rd_kind == RD_BODY and self.body_due and now >= self.body_due and not self.paused:
            self._set_rd(RD_NONE, 0.0)
            self._refuse_parse(_Refuse("timeouts-body-rate", 408, "request-timeout",
                                       "request body below the minimum data rate"))
        if self.up_deadline and now >= self.up_deadline and self.queue:
            self.up_deadline = 0.0
            req = self.queue[0]
            if req.up is not None:
                self._upstream_failed(req, 504, "upstream response timeout")
        if self.wr and now >= self.wr:
            self.abort()  # the client stopped reading its response (slow-read attack)
        elif self.eof_watch:
            self._check_peer()  # a half-closed client owed an answer: a reset says it has gone

    # --- closing ----------------------------------------------------------------------------

    def close(self, linger: bool = False) -> None:
        self._flush()
        t = self.transport
        if t is None:
            return
        if linger and t.can_write_eof() and not t.is_closing():
            # Half-close and drain what the client still sends, so our answer is not lost to a RST.
            self.dead = True
            self.paused = 0
            t.resume_reading()
            try:
                t.write_eof()
            except (OSError, RuntimeError):
                t.close()
                return
            self.rd_kind = RD_LINGER
            self.rd = self.loop.time() + LINGER_SECONDS
            return
        t.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """Graceful stop: idle connections close now, busy ones after their current response."""
        self.closing = True
        if not self.queue and not self.in_head:
            self.close()

"""BastionMiddleware: the inspection engine inside an ASGI application (FastAPI, Starlette, ...).

    app = BastionMiddleware(app, config="bastion.yaml")      # or config=BastionConfig(...) / a dict

Pure ASGI, in the Starlette style: `__init__(app, **opts)` and `async __call__(scope, receive, send)`.
The middleware assembles the same pipeline as the reverse proxy and drives one Exchange per request:

- request line and headers -> `connection` and `request_headers` phases; a blocking verdict is
  answered with RFC 9457 problem+json and an X-Request-Id, and the application is never called;
- `receive` is wrapped: the first `limits.inspect_body_bytes` of the body are read ahead for the
  `request_body` phase, then handed to the application message by message, byte for byte; a body
  that grows past `limits.max_body_bytes` while streaming is cut with 413;
- `send` is wrapped to watch the response: `response_headers` runs before the status goes out;
  when a detector hooks `response_body`, or a 5xx may need scrubbing, the start of the response is
  held until its inspected prefix is known (streaming types such as text/event-stream never are);
- after the last body message, `pipeline.complete(ex)` (counting, learning, events) runs.

WebSocket handshakes are inspected like requests (a refusal is an HTTP denial response when the
server supports the `websocket.http.response` extension, else a close with code 1008); lifespan
starts and stops the engine's Runtime, which also starts lazily if the server has no lifespan.
Other scope types pass through untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bastion.clock import Clock
from bastion.config import BastionConfig, load_config, parse_config
from bastion.engine.pipeline import Pipeline, new_request_id, valid_request_id
from bastion.errors import problem_body, problem_for
from bastion.exchange import Client, Exchange, Headers, Response
from bastion.frontends.proxy.forwarding import TrustedProxies, forwarded_for_chain, parse_ip, resolve_client_ip
from bastion.hygiene import BANNER_HEADERS_BYTES, scrubbed_body, should_scrub
from bastion.runtime import Runtime
from bastion.verdict import Action, Finding, Phase, Severity, Verdict

log = logging.getLogger("bastion.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ConfigLike = BastionConfig | str | Path | Mapping[str, Any] | None

# Responses that are streams by nature: holding their start for inspection would stall them.
STREAMING_TYPES = ("text/event-stream", "application/x-ndjson", "multipart/x-mixed-replace", "application/grpc")
MAX_THROTTLE_DELAY = 30.0
_PATH_SAFE = "/%:@!$&'()*+,;=~"


def _load(config: ConfigLike) -> BastionConfig:
    if config is None:
        return parse_config({}, "<defaults>")
    if isinstance(config, BastionConfig):
        return config
    if isinstance(config, str | Path):
        return load_config(config)
    return parse_config(dict(config), "<middleware config>")


class BastionMiddleware:
    """Protect an ASGI application with Bastion's engine (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        config: ConfigLike = None,
        runtime: Runtime | None = None,
        *,
        clock: Clock | None = None,
        with_store: bool = True,
    ) -> None:
        self.app = app
        if runtime is None:
            runtime = Runtime.create(_load(config), clock=clock, with_store=with_store)
        self.runtime = runtime
        self.pipeline: Pipeline = runtime.pipeline
        cfg = runtime.config
        self.config = cfg
        self.trusted = TrustedProxies(cfg.server.trusted_proxies)
        self.inspect_body = cfg.limits.inspect_body_bytes
        self.inspect_response = cfg.limits.inspect_response_bytes
        self.max_body = cfg.limits.max_body_bytes
        limits = cfg.detector("limits")
        # A body that outgrows the limit after the inspected prefix is cut here, as the proxy does;
        # in observe mode (global or for the limits detector) it only shows up in the event.
        self.enforce_body_limit = cfg.mode == "enforce" and limits.enabled and not limits.observe
        self.strip_banners = cfg.errors.strip_banners
        self.scrub_errors = cfg.errors.scrub_upstream_errors
        self.wants_request_body = self.pipeline.wants(Phase.REQUEST_BODY)
        self.wants_response_body = self.pipeline.wants(Phase.RESPONSE_BODY)
        self.collect_response = self.wants_response_body or self.pipeline.wants(Phase.COMPLETE)
        self._started = False
        self._start_lock: asyncio.Lock | None = None

    # --- lifespan ----------------------------------------------------------------------------

    async def startup(self) -> None:
        """Start the runtime (idempotent). Called on lifespan startup or the first request."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                await self.runtime.start()
                self._started = True

    async def shutdown(self) -> None:
        if self._started:
            self._started = False
            await self.runtime.stop()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def lifespan_receive() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                await self.startup()
            return message

        async def lifespan_send(message: Message) -> None:
            if message.get("type") == "lifespan.shutdown.complete":
                try:
                    await self.shutdown()
                except Exception as exc:  # flushing events must not turn a clean shutdown into a crash
                    log.warning("bastion runtime stop failed: %r", exc)
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)

    # --- entry point ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "http":
            if not self._started:
                await self.startup()
            await _HTTPFlow(self, scope, receive, send).run()
        elif kind == "websocket":
            if not self._started:
                await self.startup()
            await _WebSocketFlow(self, scope, receive, send).run()
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # --- helpers shared by the flows --------------------------------------------------------------

    def build_exchange(self, scope: Scope, method: str) -> tuple[Exchange, list[tuple[bytes, bytes]]]:
        """The Exchange for a scope, and the scope headers with a valid X-Request-Id in them."""
        raw_headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
        headers = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers])
        sent_id = headers.get("x-request-id")
        rid = sent_id if sent_id is not None and valid_request_id(sent_id) else new_request_id()
        if rid is not sent_id:
            # The application sees the id Bastion uses, never a client's unusable one.
            if sent_id is not None:
                raw_headers = [(k, v) for k, v in raw_headers if k.lower() != b"x-request-id"]
            raw_headers.append((b"x-request-id", rid.encode()))
        # raw_path is the path as sent (still percent-encoded); servers that omit it give only the
        # decoded path, which is re-encoded so detectors always see one form.
        raw_path = scope.get("raw_path")
        target = raw_path.decode("latin-1") if raw_path else quote(scope.get("path") or "/", safe=_PATH_SAFE)
        query = scope.get("query_string") or b""
        if query:
            target += "?" + query.decode("latin-1")
        ex = self.pipeline.new_exchange(
            self.client(scope, headers), method, target, headers,
            http_version=str(scope.get("http_version") or "1.1"), request_id=rid,
        )
        return ex, raw_headers

    def client(self, scope: Scope, headers: Headers) -> Client:
        peer = scope.get("client")
        # No peer address means a Unix socket (or an in-process transport): only local processes
        # reach it, so it is loopback for trust purposes.
        peer_ip = str(peer[0]) if peer and peer[0] else "127.0.0.1"
        peer_port = int(peer[1]) if peer and len(peer) > 1 and peer[1] else 0
        if ":" in peer_ip:  # IPv6, maybe an IPv4-mapped one (::ffff:192.0.2.1): normalize
            addr = parse_ip(peer_ip)
            if addr is not None:
                peer_ip = str(addr)
        ip = peer_ip
        if self.trusted and self.trusted.contains(peer_ip):
            chain = forwarded_for_chain(headers.get_all("x-forwarded-for"), headers.get_all("forwarded"))
            ip = resolve_client_ip(peer_ip, chain, self.trusted)
        return Client(peer_ip=peer_ip, peer_port=peer_port, ip=ip, tls=scope.get("scheme") in ("https", "wss"))

    def problem(self, ex: Exchange, verdict: Verdict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body of Bastion's own answer to `ex`. Echoes nothing the client sent."""
        reason = verdict.reason or "request-blocked"
        status, title = problem_for(reason, verdict.status or None)
        body = problem_body(reason, status, verdict.title or title, ex.id, verdict.extra)
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
            (b"x-request-id", ex.id.encode("latin-1", "replace")),
        ]
        if verdict.retry_after is not None:
            headers.append((b"retry-after", str(max(0, int(verdict.retry_after))).encode()))
        for k, v in verdict.headers:
            if _safe_field(k) and _safe_field(v):
                headers.append((k.lower().encode("latin-1"), v.encode("latin-1")))
        if verdict.close:
            headers.append((b"connection", b"close"))
        ex.response = Response(
            status=status,
            headers=Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]),
            body=body,
            body_size=len(body),
            from_bastion=True,
        )
        return status, headers, body


def _safe_field(s: str) -> bool:
    # Header values from detectors are config-made, but a CR/LF here would be response splitting.
    return "\r" not in s and "\n" not in s and all(ord(c) < 256 for c in s)


def _stops(verdict: Verdict | None) -> bool:
    return verdict is not None and verdict.action >= Action.CHALLENGE


class _HTTPFlow:
    """One HTTP request through the middleware: read-ahead, phases, response watching, complete."""

    def __init__(self, mw: BastionMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.mw = mw
        self.scope = scope
        self.receive = receive
        self.send = send
        self.pipeline = mw.pipeline
        self.ex: Exchange | None = None
        self.replay: deque[Message] = deque()
        self.received = 0
        self.body_done = False
        self.response_started = False  # the client has been sent a response start
        self.answered = False  # Bastion answered: everything the app sends is dropped
        self.completed = False
        self.hold = False
        self.held_start: Message | None = None
        self.held: list[Message] = []
        self.prefix = bytearray()
        self.status = 0

    async def run(self) -> None:
        mw = self.mw
        try:
            ex, raw_headers = mw.build_exchange(self.scope, str(self.scope.get("method") or "GET"))
            self.ex = ex
            verdict = await self.pipeline.connection(ex) or await self.pipeline.request_headers(ex)
            if verdict is None and mw.wants_request_body:
                await self._read_ahead()
                verdict = await self.pipeline.request_body(ex)
        except Exception as exc:
            # A bug in Bastion itself: follow fail_mode rather than take the application down.
            log.error("bastion inspection failed: %r", exc)
            if self.pipeline.fail_closed and self.ex is not None:
                await self._answer(Verdict(Action.BLOCK, status=503, reason="inspection-failed"))
                self._complete()
                return
            await mw.app(self.scope, self._receive, self.send)
            return
        if verdict is not None:
            if _stops(verdict):
                await self._answer(verdict)
                self._complete()
                return
            if verdict.action == Action.THROTTLE and verdict.delay > 0:
                await asyncio.sleep(min(verdict.delay, MAX_THROTTLE_DELAY))
        scope = dict(self.scope)
        scope["headers"] = raw_headers
        state = dict(scope.get("state") or {})
        state["bastion_request_id"] = ex.id
        state["bastion_exchange"] = ex
        scope["state"] = state
        try:
            await mw.app(scope, self._receive, self._send)
        except Exception as exc:
            if self.answered:
                # Bastion answered already (body cut at the limit, response blocked): the app's
                # error is the consequence (a ClientDisconnect) and nobody is left to report it to.
                log.debug("app raised after Bastion answered: %r", exc)
                return
            if not self.response_started:
                # Nothing reached the client yet: answer as for any upstream failure (problem+json
                # with the request id, no traceback), then let the server log the exception.
                self.hold = False
                await self._answer(Verdict(Action.ALLOW, status=500, reason="upstream-error",
                                           title="Internal Server Error"), record=False)
            raise
        finally:
            try:
                if self.hold and self.held_start is not None and not self.answered:
                    # The app ended without finishing its body: release what it did send.
                    self.hold = False
                    await self._release(final=True)
            finally:
                self._complete()

    # --- request body ----------------------------------------------------------------------

    async def _read_ahead(self) -> None:
        """Read the inspected prefix of the body (whole messages, kept for the app)."""
        assert self.ex is not None
        req = self.ex.request
        cap = self.mw.inspect_body
        prefix = bytearray()
        while not self.body_done and len(prefix) < max(cap, 1):
            message = await self.receive()
            self.replay.append(message)
            if message.get("type") != "http.request":
                self.body_done = True  # http.disconnect: replayed to the app as-is
                break
            chunk = message.get("body", b"")
            self.received += len(chunk)
            if len(prefix) < cap:
                prefix += chunk[: cap - len(prefix)]
            if not message.get("more_body", False):
                self.body_done = True
        req.body = bytes(prefix)
        req.body_size = self.received
        req.body_truncated = not self.body_done or self.received > len(prefix)

    async def _receive(self) -> Message:
        if self.replay:
            return self.replay.popleft()
        message = await self.receive()
        if message.get("type") == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.body_done = True
            if self.received > self.mw.max_body and self.mw.enforce_body_limit and self.ex is not None:
                return await self._body_too_large()
        return message

    async def _body_too_large(self) -> Message:
        """A streamed body passed the limit after the inspected prefix: stop it (413 if we still can)."""
        ex = self.ex
        assert ex is not None
        ex.request.body_size = self.received
        verdict = self.pipeline.block(
            ex,
            Finding(
                rule_id="limits-body-size", detector="limits", message="body too large",
                severity=Severity.CRITICAL, action=Action.BLOCK, status=413, reason="body-too-large",
                evidence=f"{self.received} > {self.mw.max_body} bytes", tags=("limits", "protocol"),
            ),
        )
        if not self.response_started and not self.answered:
            await self._answer(verdict)
        return {"type": "http.disconnect"}

    # --- response -----------------------------------------------------------------------------

    def _should_hold(self, status: int, headers: Headers) -> bool:
        if not (self.mw.wants_response_body or (self.mw.scrub_errors and status >= 500)):
            return False
        ctype = (headers.get("content-type") or "").lower()
        return not ctype.startswith(STREAMING_TYPES)

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if self.answered:
            return  # Bastion already answered; the app's response goes nowhere
        ex = self.ex
        assert ex is not None
        if kind == "http.response.start":
            await self._start(message, ex)
        elif kind == "http.response.body":
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if ex.response is not None:
                ex.response.body_size += len(body)
            if (self.mw.collect_response or self.hold) and len(self.prefix) < self.mw.inspect_response:
                self.prefix += body[: self.mw.inspect_response - len(self.prefix)]
            if self.hold:
                self.held.append(message)
                if more and len(self.prefix) < self.mw.inspect_response:
                    return
                self.hold = False
                await self._release(final=not more)
            else:
                await self.send(message)
            if not more:
                self._complete()
        else:
            await self.send(message)  # trailers, pathsend, ... pass through

    async def _start(self, message: Message, ex: Exchange) -> None:
        status = int(message["status"])
        self.status = status
        raw: list[tuple[bytes, bytes]] = list(message.get("headers") or ())
        if self.mw.strip_banners:
            raw = [(k, v) for k, v in raw if k.lower() not in BANNER_HEADERS_BYTES]
        # One id per exchange, the one in Bastion's events: an app-set X-Request-Id is replaced.
        raw = [(k, v) for k, v in raw if k.lower() != b"x-request-id"]
        raw.append((b"x-request-id", ex.id.encode("latin-1", "replace")))
        ex.response = Response(
            status=status, headers=Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw])
        )
        verdict = await self.pipeline.response_headers(ex)
        if _stops(verdict):
            assert verdict is not None
            await self._answer(verdict)
            return
        start = dict(message)
        start["headers"] = raw
        if self._should_hold(status, ex.response.headers):
            self.hold = True
            self.held_start = start
            return
        self.response_started = True
        await self.send(start)

    async def _release(self, final: bool) -> None:
        """Decide on a held response from its prefix, then send it (or a replacement)."""
        ex = self.ex
        assert ex is not None and ex.response is not None and self.held_start is not None
        ex.response.body = bytes(self.prefix)
        verdict = await self.pipeline.response_body(ex) if self.mw.wants_response_body else None
        if _stops(verdict):
            assert verdict is not None
            await self._answer(verdict)
            return
        if self.mw.scrub_errors and should_scrub(self.status, ex.response.body):
            # CWE-209: a stack trace or debug page is replaced, status kept, nothing upstream leaks.
            body = scrubbed_body(self.status, ex.id)
            ex.tags.add("scrubbed")
            self.answered = True
            self.response_started = True
            await self.send({"type": "http.response.start", "status": self.status, "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-request-id", ex.id.encode("latin-1", "replace")),
            ]})
            await self.send({"type": "http.response.body", "body": body})
            return
        self.response_started = True
        await self.send(self.held_start)
        held, self.held = self.held, []
        for m in held:
            await self.send(m)
        if final and (not held or held[-1].get("more_body", False)):
            await self.send({"type": "http.response.body", "body": b""})

    async def _answer(self, verdict: Verdict, record: bool = True) -> None:
        ex = self.ex
        assert ex is not None
        status, headers, body = self.mw.problem(ex, verdict)
        if record and (ex.verdict is None or not ex.verdict.blocks):
            ex.verdict = verdict
        self.answered = True
        self.hold = False
        self.response_started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    def _complete(self) -> None:
        if self.completed or self.ex is None:
            return
        self.completed = True
        ex = self.ex
        if ex.response is not None and not ex.response.from_bastion and self.prefix:
            ex.response.body = bytes(self.prefix)
        if ex.request.body_size < self.received:
            ex.request.body_size = self.received
        self.pipeline.complete(ex)


class _WebSocketFlow:
    """A WebSocket handshake, inspected like a GET; the session then passes through."""

    def __init__(self, mw: BastionMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.mw = mw
        self.scope = scope
        self.receive = receive
        self.send = send

    async def run(self) -> None:
        mw = self.mw
        pipeline = mw.pipeline
        try:
            ex, raw_headers = mw.build_exchange(self.scope, "GET")
            verdict = await pipeline.connection(ex) or await pipeline.request_headers(ex)
        except Exception as exc:
            log.error("bastion websocket inspection failed: %r", exc)
            await mw.app(self.scope, self.receive, self.send)
            return
        if _stops(verdict):
            assert verdict is not None
            await self._refuse(ex, verdict)
            pipeline.complete(ex)
            return
        if verdict is not None and verdict.action == Action.THROTTLE and verdict.delay > 0:
            await asyncio.sleep(min(verdict.delay, MAX_THROTTLE_DELAY))
        scope = dict(self.scope)
        scope["headers"] = raw_headers
        state = dict(scope.get("state") or {})
        state["bastion_request_id"] = ex.id
        scope["state"] = state

        async def ws_send(message: Message) -> None:
            kind = message.get("type")
            if kind == "websocket.accept" and ex.response is None:
                hdrs = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers") or ()])
                ex.response = Response(status=101, headers=hdrs)
            elif kind == "websocket.close" and ex.response is None:
                ex.response = Response(status=403, headers=Headers())
            elif kind == "websocket.http.response.start" and ex.response is None:
                ex.response = Response(status=int(message.get("status", 403)), headers=Headers())
            await self.send(message)

        try:
            await mw.app(scope, self.receive, ws_send)
        finally:
            pipeline.complete(ex)

    async def _refuse(self, ex: Exchange, verdict: Verdict) -> None:
        if ex.verdict is None:
            ex.verdict = verdict
        message = await self.receive()
        if message.get("type") != "websocket.connect":
            return  # the client is already gone
        if "websocket.http.response" in (self.scope.get("extensions") or {}):
            status, headers, body = self.mw.problem(ex, verdict)
            await self.send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await self.send({"type": "websocket.http.response.body", "body": body})
        else:
            # RFC 6455 §7.4.1: 1008 policy violation. Before accept, servers answer the handshake 403.
            self.mw.problem(ex, verdict)
            await self.send({"type": "websocket.close", "code": 1008})

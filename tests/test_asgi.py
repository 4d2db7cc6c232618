"""BastionMiddleware around a real FastAPI application: in-process (httpx ASGITransport), through
Starlette's TestClient (lifespan, WebSocket) and through uvicorn on a real port."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
import websockets
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from bastion import BastionMiddleware
from bastion.clock import ManualClock
from bastion.config import BastionConfig
from bastion.engine.pipeline import ExchangeSink, Pipeline
from bastion.exchange import Exchange
from bastion.runtime import Runtime
from bastion.testing import make_config
from bastion.verdict import Action, Finding, Severity

CORE = {"decisions", "limits", "protocol"}


class Recorder(ExchangeSink):
    def __init__(self) -> None:
        self.done: list[Exchange] = []

    def exchange_done(self, ex: Exchange) -> None:
        self.done.append(ex)


def make_app() -> tuple[FastAPI, dict[str, int]]:
    app = FastAPI()
    calls = {"n": 0}

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        calls["n"] += 1
        return await call_next(request)

    @app.get("/items/{item_id}")
    async def item(item_id: int, request: Request) -> dict[str, Any]:
        return {"id": item_id, "name": "widget", "rid": request.state.bastion_request_id,
                "hdr": request.headers.get("x-request-id")}

    @app.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"size": len(body), "sha": hashlib.sha256(body).hexdigest()})

    @app.post("/login")
    async def login(payload: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "user": payload.get("user")}

    @app.get("/trace")
    async def trace() -> PlainTextResponse:
        return PlainTextResponse(
            'Traceback (most recent call last):\n  File "/srv/app/db.py", line 12, in query\nKeyError: x',
            status_code=500,
        )

    @app.get("/plain-error")
    async def plain_error() -> JSONResponse:
        return JSONResponse({"error": "internal"}, status_code=503)

    @app.get("/banner")
    async def banner() -> PlainTextResponse:
        return PlainTextResponse("hi", headers={"Server": "Apache/2.4.1", "X-Powered-By": "PHP/5.6"})

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def gen() -> Any:
            for i in range(3):
                yield f"data: {i}\n\n".encode()

        return StreamingResponse(gen(), media_type="text/event-stream")

    @app.get("/big")
    async def big() -> PlainTextResponse:
        return PlainTextResponse("x" * 200_000)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text.upper())
        await websocket.close()

    return app, calls


def build(config: dict[str, Any] | None = None, *, detectors: list[Any] | None = None,
          only: set[str] | None = None) -> tuple[BastionMiddleware, FastAPI, dict[str, int], Recorder]:
    app, calls = make_app()
    cfg = make_config({"logging": {"events_to_log": False}, **(config or {})})
    rec = Recorder()
    clock = ManualClock()
    if detectors is not None:
        pipeline = Pipeline(cfg, detectors, clock=clock, sinks=[rec])
        runtime = Runtime(config=cfg, pipeline=pipeline, clock=clock, sinks=[rec])
    else:
        runtime = Runtime.create(cfg, clock=clock, with_store=False, sinks=[rec], only=only or CORE)
    return BastionMiddleware(app, runtime=runtime), app, calls, rec


def client(mw: BastionMiddleware, ip: str = "203.0.113.9") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=mw, client=(ip, 4711))
    return httpx.AsyncClient(transport=transport, base_url="http://api.example")


def assert_problem(resp: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    doc = orjson.loads(resp.content)
    assert doc["type"].endswith("/" + reason) and doc["status"] == status
    assert doc["request_id"] == resp.headers["x-request-id"]
    return doc


# --- in-process ------------------------------------------------------------------------------


async def test_benign_request_is_served_unchanged_with_a_request_id():
    mw, _, calls, rec = build()
    async with client(mw) as c:
        resp = await c.get("/items/7")
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"] == 7 and body["name"] == "widget"
    rid = resp.headers["x-request-id"]
    assert rid == body["rid"] == body["hdr"]  # the app sees the same id
    assert calls["n"] == 1
    ex = rec.done[0]
    assert ex.id == rid and ex.response is not None and ex.response.status == 200
    assert ex.request.target == "/items/7" and ex.client.ip == "203.0.113.9"
    assert ex.verdict is not None and ex.verdict.action == Action.ALLOW


async def test_client_request_id_kept_only_when_valid():
    mw, _, _, _ = build()
    async with client(mw) as c:
        good = await c.get("/items/1", headers={"X-Request-Id": "abc-123"})
        bad = await c.get("/items/1", headers={"X-Request-Id": "evil\tid" + "x" * 80})
    assert good.headers["x-request-id"] == "abc-123" and good.json()["hdr"] == "abc-123"
    assert bad.headers["x-request-id"] != "evil" and len(bad.headers["x-request-id"]) == 16
    assert bad.json()["hdr"] == bad.headers["x-request-id"]


async def test_large_body_reaches_the_app_byte_for_byte():
    mw, _, _, rec = build({"limits": {"inspect_body_bytes": 1024}})
    payload = bytes(range(256)) * 1000  # 256 KB, far beyond the inspected prefix

    async def chunks() -> Any:
        for i in range(0, len(payload), 7000):
            yield payload[i : i + 7000]

    async with client(mw) as c:
        streamed = await c.post("/echo", content=chunks(), headers={"Content-Type": "application/octet-stream"})
        whole = await c.post("/echo", content=payload, headers={"Content-Type": "application/octet-stream"})
    for resp in (streamed, whole):
        assert resp.status_code == 200
        assert resp.json() == {"size": len(payload), "sha": hashlib.sha256(payload).hexdigest()}
    ex = rec.done[0]
    assert len(ex.request.body) == 1024 and ex.request.body_truncated
    assert ex.request.body_size == len(payload)


async def test_uri_too_long_is_refused_before_the_app():
    mw, _, calls, rec = build({"limits": {"max_uri_bytes": 100}})
    async with client(mw) as c:
        resp = await c.get("/items/1?q=" + "a" * 200)
    assert_problem(resp, 414, "uri-too-long")
    assert calls["n"] == 0
    assert "aaaa" not in resp.text  # never echoes the request
    assert rec.done[0].verdict is not None and rec.done[0].verdict.blocks


async def test_declared_body_too_large_is_413():
    mw, _, calls, _ = build({"limits": {"max_body_bytes": 1000}})
    async with client(mw) as c:
        resp = await c.post("/echo", content=b"x" * 5000, headers={"Content-Type": "text/plain"})
    assert_problem(resp, 413, "body-too-large")
    assert calls["n"] == 0


async def test_streamed_body_past_the_limit_is_cut_with_413():
    mw, _, _, rec = build({"limits": {"max_body_bytes": 10_000, "inspect_body_bytes": 1024}})

    async def chunks() -> Any:
        for _ in range(20):
            yield b"y" * 1000

    async with client(mw) as c:
        resp = await c.post("/echo", content=chunks(), headers={"Content-Type": "application/octet-stream"})
    assert_problem(resp, 413, "body-too-large")
    assert "limits-body-size" in {f.rule_id for f in rec.done[0].findings}


async def test_streamed_body_limit_not_enforced_in_observe_mode():
    mw, _, _, _ = build({"mode": "observe", "limits": {"max_body_bytes": 10_000, "inspect_body_bytes": 1024}})

    async def chunks() -> Any:
        for _ in range(20):
            yield b"y" * 1000

    async with client(mw) as c:
        resp = await c.post("/echo", content=chunks(), headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 200 and resp.json()["size"] == 20_000


async def test_protocol_attacks_blocked_in_the_middleware():
    mw, _, calls, _ = build()
    async with client(mw) as c:
        trace = await c.request("TRACE", "/items/1")
        mismatch = await c.post("/login", content=b"user=admin' or 1=1--", headers={"Content-Type": "application/json"})
        crlf = await c.get("/items/1%0d%0aSet-Cookie:%20a=b")
        ok = await c.post("/login", json={"user": "o'brien"})
    doc = assert_problem(trace, 405, "unsupported-method")
    assert "GET" in trace.headers["allow"] and doc["title"]
    assert_problem(mismatch, 403, "request-blocked")
    assert_problem(crlf, 403, "request-blocked")
    assert ok.status_code == 200 and ok.json() == {"ok": True, "user": "o'brien"}
    assert calls["n"] == 1


async def test_observe_mode_serves_and_records():
    mw, _, calls, rec = build({"mode": "observe"})
    async with client(mw) as c:
        resp = await c.request("TRACE", "/items/1")
    assert resp.status_code == 405  # FastAPI's own answer: the request went through
    assert "application/problem+json" not in resp.headers.get("content-type", "")
    assert calls["n"] == 1
    v = rec.done[0].verdict
    assert v is not None and v.action == Action.LOG and v.would_block


async def test_stack_trace_5xx_is_scrubbed_and_banners_stripped():
    mw, _, _, rec = build()
    async with client(mw) as c:
        trace = await c.get("/trace")
        plain = await c.get("/plain-error")
        banner = await c.get("/banner")
    doc = assert_problem(trace, 500, "upstream-error")
    assert "Traceback" not in trace.text and "db.py" not in trace.text and doc["status"] == 500
    assert "scrubbed" in rec.done[0].tags
    assert plain.status_code == 503 and plain.json() == {"error": "internal"}
    assert banner.text == "hi" and "server" not in banner.headers and "x-powered-by" not in banner.headers


async def test_hygiene_can_be_turned_off():
    mw, _, _, _ = build({"errors": {"scrub_upstream_errors": False, "strip_banners": False}})
    async with client(mw) as c:
        trace = await c.get("/trace")
        banner = await c.get("/banner")
    assert trace.status_code == 500 and "Traceback" in trace.text
    assert banner.headers["x-powered-by"] == "PHP/5.6"


class ResponseGuard:
    """A test detector: blocks responses that leak a marker, and records phases it saw."""

    name = "guard"

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.started = 0
        self.stopped = 0

    def request_headers(self, ex: Exchange) -> None:
        self.seen.append("request_headers")

    def request_body(self, ex: Exchange) -> None:
        self.seen.append("request_body")

    def response_headers(self, ex: Exchange) -> None:
        self.seen.append("response_headers")

    def response_body(self, ex: Exchange) -> None:
        self.seen.append("response_body")
        if ex.response is not None and b"widget" in ex.response.body:
            ex.add(Finding("guard-leak", self.name, "leak", Severity.CRITICAL, action=Action.BLOCK,
                           reason="response-blocked", status=502))

    def complete(self, ex: Exchange) -> None:
        self.seen.append("complete")

    def startup(self, pipeline: Pipeline) -> None:
        self.started += 1

    def shutdown(self) -> None:
        self.stopped += 1


async def test_response_phases_can_block_and_phases_run_in_order():
    guard = ResponseGuard()
    mw, _, _, rec = build(detectors=[guard])
    async with client(mw) as c:
        leak = await c.get("/items/3")
        fine = await c.get("/banner")
        sse = await c.get("/stream")  # streams are never held, so response_body is not run on them
    assert_problem(leak, 502, "response-blocked")
    assert "widget" not in leak.text
    assert fine.status_code == 200 and fine.text == "hi"
    assert sse.status_code == 200 and sse.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert guard.seen[:5] == ["request_headers", "request_body", "response_headers", "response_body", "complete"]
    assert guard.seen[-3:] == ["request_body", "response_headers", "complete"]
    assert [ex.response.status for ex in rec.done if ex.response] == [502, 200, 200]
    assert guard.started == 1  # lazy start: ASGITransport runs no lifespan


async def test_large_response_passes_through_when_held():
    guard = ResponseGuard()
    mw, _, _, rec = build({"limits": {"inspect_response_bytes": 1024}}, detectors=[guard])
    async with client(mw) as c:
        resp = await c.get("/big")
    assert resp.status_code == 200 and resp.text == "x" * 200_000
    ex = rec.done[0]
    assert ex.response is not None and len(ex.response.body) == 1024 and ex.response.body_size == 200_000


class Exploding:
    name = "exploding"

    def request_headers(self, ex: Exchange) -> None:
        raise RuntimeError("detector bug")


async def test_failing_detector_follows_fail_mode():
    mw, _, calls, _ = build(detectors=[Exploding()])
    async with client(mw) as c:
        assert (await c.get("/items/1")).status_code == 200
    assert calls["n"] == 1
    mw, _, calls, _ = build({"fail_mode": "closed"}, detectors=[Exploding()])
    async with client(mw) as c:
        assert_problem(await c.get("/items/1"), 503, "inspection-failed")
    assert calls["n"] == 0


async def test_trusted_proxy_resolves_client_ip():
    mw, _, _, rec = build({"server": {"trusted_proxies": ["10.0.0.0/8"]}})
    async with client(mw, ip="10.1.2.3") as c:
        await c.get("/items/1", headers={"X-Forwarded-For": "198.51.100.7, 10.9.9.9"})
    async with client(mw, ip="203.0.113.50") as c:
        await c.get("/items/1", headers={"X-Forwarded-For": "198.51.100.7"})
    assert rec.done[0].client.ip == "198.51.100.7" and rec.done[0].client.peer_ip == "10.1.2.3"
    assert rec.done[1].client.ip == "203.0.113.50"  # an untrusted peer's XFF is ignored


async def test_non_http_scopes_pass_through():
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = BastionMiddleware(app, config=BastionConfig(logging={"events_to_log": False}), with_store=False)
    await mw({"type": "custom"}, None, None)  # type: ignore[arg-type]
    assert seen == ["custom"]


def test_config_from_a_yaml_path(tmp_path):
    path = tmp_path / "bastion.yaml"
    path.write_text("mode: observe\nlimits:\n  max_uri_bytes: 300\nlogging:\n  events_to_log: false\n")
    app, _ = make_app()
    mw = BastionMiddleware(app, config=path, with_store=False)
    assert mw.config.mode == "observe" and mw.config.limits.max_uri_bytes == 300


# --- lifespan ---------------------------------------------------------------------------------


async def test_lifespan_starts_and_stops_the_runtime():
    guard = ResponseGuard()
    mw, _, _, _ = build(detectors=[guard])
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            assert guard.started == 1
            await inbox.put({"type": "lifespan.shutdown"})

    await mw({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert guard.started == 1 and guard.stopped == 1


# --- uvicorn on a real port -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def raw_request(port: int, data: bytes, local: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
                if length and len(rest) >= int(length[0].split(b":")[1]):
                    break
    finally:
        writer.close()
    return out


@asynccontextmanager
async def serve(mw: BastionMiddleware) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(mw, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           ws="websockets-sansio"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(250):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        assert server.started
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_served_by_uvicorn_on_a_real_port():
    mw, _, calls, rec = build({"limits": {"max_uri_bytes": 200}, "server": {"trusted_proxies": ["127.0.0.1/32"]}})
    async with serve(mw) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            ok = await c.get("/items/5")
            long = await c.get("/items/5?q=" + "z" * 300)
            trace = await c.request("TRACE", "/items/5")
            login = await c.post("/login", json={"user": "zoë"})
        assert ok.status_code == 200 and ok.json()["id"] == 5
        assert_problem(long, 414, "uri-too-long")
        assert_problem(trace, 405, "unsupported-method")
        assert login.json() == {"ok": True, "user": "zoë"}
        # Distinct client addresses: a trusted proxy's XFF is believed, another peer's is not.
        fwd = b"GET /items/1 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1\r\nConnection: close\r\n\r\n"
        assert b" 200 " in (await raw_request(port, fwd))[:20]
        assert b" 200 " in (await raw_request(port, fwd, local="127.7.0.3"))[:20]
        bad = b"GET /items/1 HTTP/1.1\r\nHost: a\r\nX-Note: a\x01b\r\nConnection: close\r\n\r\n"
        bad = await raw_request(port, bad)
        assert bad.startswith(b"HTTP/1.1 4")  # refused by uvicorn's parser or by Bastion
    assert calls["n"] == 4
    ips = [ex.client.ip for ex in rec.done if ex.request.headers.get("x-forwarded-for")]
    assert ips[:2] == ["198.51.100.1", "127.7.0.3"]


async def test_websocket_handshake_inspected_through_uvicorn():
    mw, _, _, rec = build()
    async with serve(mw) as port:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hello")
            assert await ws.recv() == "HELLO"
        with pytest.raises(websockets.InvalidStatus) as denied:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?next=%0d%0aSet-Cookie:%20a=1"):
                pass
        await mw.pipeline.drain()
    resp = denied.value.response
    assert resp.status_code == 403 and resp.headers["content-type"] == "application/problem+json"
    assert orjson.loads(resp.body)["request_id"] == resp.headers["x-request-id"]
    statuses = [ex.response.status for ex in rec.done if ex.response]
    assert statuses == [101, 403]


# --- the documented example -------------------------------------------------------------------


def documented_example() -> str:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "middleware.md").read_text()
    return doc.split("```python\n", 1)[1].split("```", 1)[0]


async def test_documented_fastapi_example_runs(tmp_path, monkeypatch):
    code = documented_example()
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path))
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/middleware.md", "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app, BastionMiddleware)
    try:
        async with client(app) as c:
            user = await c.get("/users/7")
            trace = await c.request("TRACE", "/users/7")
            sqli = await c.post("/login", content=b"user=admin' or 1=1--", headers={"Content-Type": "application/json"})
            login = await c.post("/login", json={"user": "ada"})
    finally:
        await app.shutdown()
    assert user.status_code == 200 and user.json()["name"] == "Ada"
    assert user.json()["request_id"] == user.headers["x-request-id"]
    assert_problem(trace, 405, "unsupported-method")
    assert_problem(sqli, 403, "request-blocked")
    assert login.json() == {"ok": True, "user": "ada"}


# --- hostile scopes never break the middleware ----------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_FUZZ_MW: list[BastionMiddleware] = []


def fuzz_middleware() -> BastionMiddleware:
    if not _FUZZ_MW:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            while (await receive()).get("more_body"):
                pass
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        cfg = make_config({"logging": {"events_to_log": False}})
        runtime = Runtime.create(cfg, clock=ManualClock(), with_store=False, only=CORE)
        _FUZZ_MW.append(BastionMiddleware(app, runtime=runtime))
    return _FUZZ_MW[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "TRACE"]), st.text(max_size=8)),
    raw_path=st.binary(max_size=60),
    query=st.binary(max_size=60),
    headers=st.lists(st.tuples(st.binary(min_size=0, max_size=20), st.binary(max_size=40)), max_size=6),
    chunks=st.lists(st.binary(max_size=50), max_size=4),
    version=st.sampled_from(["1.1", "1.0", "2", "9"]),
    peer=st.one_of(st.none(), st.tuples(st.sampled_from(["127.0.0.1", "::1", "not-an-ip", ""]), st.integers(0, 65535))),
)
async def test_fuzz_middleware_always_answers(method, raw_path, query, headers, chunks, version, peer):
    mw = fuzz_middleware()
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": version, "method": method,
             "path": "/", "raw_path": raw_path, "query_string": query, "headers": headers,
             "client": peer, "scheme": "http"}
    await mw(scope, receive, send)
    assert sent and sent[0]["type"] == "http.response.start"
    assert 200 <= sent[0]["status"] < 600
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body")
    assert mw.pipeline.counters.detector_errors == {}


async def test_app_crash_before_responding_gets_a_problem_document():
    async def crashing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("secret stack detail")

    rec = Recorder()
    cfg = make_config({"logging": {"events_to_log": False}})
    runtime = Runtime.create(cfg, clock=ManualClock(), with_store=False, sinks=[rec], only=CORE)
    mw = BastionMiddleware(crashing, runtime=runtime)
    transport = httpx.ASGITransport(app=mw, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example") as c:
        resp = await c.get("/items/1")
    assert_problem(resp, 500, "upstream-error")
    assert "secret" not in resp.text
    ex = rec.done[0]
    assert ex.response is not None and ex.response.status == 500 and ex.verdict is not None
    assert not ex.verdict.blocks  # a crash is not a block decision
    with pytest.raises(RuntimeError):  # and the server still sees the exception, to log it
        await mw({"type": "http", "method": "GET", "path": "/", "headers": [(b"host", b"a")]},
                 _empty_receive, _discard)


async def _empty_receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Any) -> None:
    return None

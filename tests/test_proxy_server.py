"""The reverse proxy end to end: real sockets, a real upstream, benign traffic passes unchanged."""

from __future__ import annotations

import asyncio
import json

import pytest

from bastion.exchange import Exchange
from bastion.verdict import Action, Finding, Severity
from proxy_helpers import (
    closed_after,
    gateway,
    get,
    make_config,
    read_response,
    request,
    upstream_server,
)


async def test_benign_get_passes_byte_for_byte_except_banners():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        direct = await request(up.port, get("/hello"))
        via = await request(gw.port, get("/hello"))
    assert via.status == direct.status == 200
    assert via.reason == direct.reason == "OK"
    assert via.body == direct.body == b"hello world\n"
    # Every upstream header survives, in order, except the banners.
    kept = [(k, v) for k, v in direct.headers if k.lower() not in ("server", "x-powered-by")]
    assert [(k, v) for k, v in via.headers if k.lower() != "x-request-id"] == kept
    assert via.header("server") is None and via.header("x-powered-by") is None
    assert via.header_all("set-cookie") == ["s=1; HttpOnly", "t=2"]
    assert len(via.header("x-request-id") or "") == 16


async def test_banners_kept_when_configured():
    async with upstream_server() as up, gateway(make_config(up.url, errors={"strip_banners": False}),
                                                only=set()) as gw:
        via = await request(gw.port, get("/hello"))
    assert via.header("server") == "TestServer/1.0"


async def test_request_forwarding_headers_and_hop_by_hop():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        raw = (
            b"POST /echo?a=1&b=%20x HTTP/1.1\r\nHost: api.test\r\nX-Forwarded-For: 6.6.6.6\r\n"
            b"Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nConnection: keep-alive, X-Secret\r\n"
            b"X-Secret: hop\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nContent-Type: application/json\r\n"
            b"X-Request-Id: client-id-123\r\nContent-Length: 9\r\n\r\n{\"a\": 1}\n"
        )
        resp = await request(gw.port, raw)
    assert resp.status == 200
    echo = resp.json()
    assert echo["method"] == "POST"
    assert echo["target"] == "/echo?a=1&b=%20x"
    assert echo["body"] == '{"a": 1}\n'
    names = [k.lower() for k, _ in echo["headers"]]
    for hop in ("connection", "x-secret", "keep-alive", "te"):
        assert hop not in names, hop
    hdrs = {k.lower(): v for k, v in echo["headers"]}
    # The client's own forwarding claims are replaced: the peer is not a trusted proxy.
    assert hdrs["x-forwarded-for"] == "127.0.0.1"
    assert hdrs["x-real-ip"] == "127.0.0.1"
    assert hdrs["forwarded"] == 'for=127.0.0.1;proto=http;host="api.test"'
    assert hdrs["x-forwarded-proto"] == "http"
    assert hdrs["host"] == "api.test"
    assert hdrs["x-request-id"] == "client-id-123"
    assert resp.header("x-request-id") == "client-id-123"
    assert hdrs["content-length"] == "9"


async def test_invalid_client_request_id_is_replaced():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        resp = await request(gw.port, get("/echo", extra="X-Request-Id: bad id\r\n"))
    rid = resp.header("x-request-id")
    assert rid and rid != "bad id" and len(rid) == 16


async def test_trusted_proxy_chain_resolves_client_ip():
    seen: list[str] = []

    class Recorder:
        name = "recorder"

        def request_headers(self, ex: Exchange) -> None:
            seen.append(ex.client.ip)

    cfg = make_config("http://127.0.0.1:1", server={"trusted_proxies": ["127.0.0.0/8"]})
    async with upstream_server() as up:
        cfg.upstream.url = up.url
        async with gateway(cfg, detectors=[Recorder()]) as gw:
            resp = await request(gw.port, get("/echo", extra="X-Forwarded-For: 203.0.113.9, 127.0.0.5\r\n"))
            resp2 = await request(gw.port, get("/echo"))
    assert seen == ["203.0.113.9", "127.0.0.1"]
    hdrs = {k.lower(): v for k, v in resp.json()["headers"]}
    assert hdrs["x-forwarded-for"] == "203.0.113.9, 127.0.0.5, 127.0.0.1"
    assert hdrs["x-real-ip"] == "203.0.113.9"
    assert resp2.status == 200


async def test_keep_alive_and_upstream_pool_reuse():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        for i in range(20):
            writer.write(get(f"/echo?i={i}"))
            resp = await read_response(reader)
            assert resp.status == 200 and resp.json()["target"] == f"/echo?i={i}"
        writer.close()
    assert up.connections == 1


async def test_pipelined_requests_answered_in_order():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(get("/slow?ms=150") + get("/echo?n=2") + get("/chunked") + get("/echo?n=4"))
        r1 = await read_response(reader)
        r2 = await read_response(reader)
        r3 = await read_response(reader)
        r4 = await read_response(reader)
        writer.close()
    assert r1.body == b"slow"
    assert r2.json()["target"] == "/echo?n=2"
    assert r3.body == b"first,second,third"
    assert r4.json()["target"] == "/echo?n=4"


async def test_chunked_request_body_is_rechunked_and_response_relayed():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        raw = (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n")
        resp = await request(gw.port, raw)
        chunked = await request(gw.port, get("/chunked"))
    assert resp.json()["body"] == "wikipedia"
    assert chunked.header("transfer-encoding") == "chunked"
    assert chunked.body == b"first,second,third"


async def test_close_delimited_response_becomes_chunked_for_http11():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(get("/close"))
        resp = await read_response(reader)
        assert resp.body == b"close-delimited body"
        assert resp.header("transfer-encoding") == "chunked"
        # The client connection survives the upstream's close.
        writer.write(get("/echo"))
        assert (await read_response(reader)).status == 200
        writer.close()


async def test_http10_client_gets_close_delimited():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        resp = await request(gw.port, b"GET /close HTTP/1.0\r\n\r\n")
        resp2 = await request(gw.port, b"GET /echo HTTP/1.0\r\n\r\n")
    assert resp.body == b"close-delimited body"
    assert resp.header("transfer-encoding") is None
    # No Host from an HTTP/1.0 client: the upstream's host is sent.
    hdrs = {k.lower(): v for k, v in resp2.json()["headers"]}
    assert hdrs["host"] == f"127.0.0.1:{up.port}"


async def test_head_requests_and_no_body_statuses():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await read_response(reader, head_only=True)
        assert head.status == 200 and head.header("content-length") == "12"
        writer.write(get("/status/204"))
        assert (await read_response(reader)).status == 204
        writer.write(get("/status/304"))
        assert (await read_response(reader)).status == 304
        writer.write(get("/hello"))
        assert (await read_response(reader)).body == b"hello world\n"
        writer.close()


async def test_large_bodies_stream_both_ways():
    n = 3_000_000
    payload = bytes(i % 256 for i in range(n))
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        big = await request(gw.port, get(f"/big?n={n}"), wait=20)
        raw = b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % n + payload
        echo = await request(gw.port, raw, wait=20)
    assert big.body == bytes(i % 251 for i in range(n))
    import hashlib

    assert echo.json()["sha"] == hashlib.sha256(payload).hexdigest()


async def test_expect_100_continue():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = await read_response(reader)
        assert interim.status == 100
        writer.write(b"hello")
        resp = await read_response(reader)
        writer.close()
    assert resp.json()["body"] == "hello"
    assert "expect" not in [k.lower() for k, _ in resp.json()["headers"]]


async def test_upstream_down_gives_502_problem():
    async with upstream_server() as up:
        port = up.port
    async with gateway(make_config(f"http://127.0.0.1:{port}"), only=set()) as gw:
        resp = await request(gw.port, get("/x"))
        assert resp.status == 502
        assert resp.header("content-type") == "application/problem+json"
        doc = resp.json()
        assert doc["status"] == 502 and doc["request_id"] == resp.header("x-request-id")
        assert doc["type"].endswith("/bad-gateway")
        assert gw.sink.exchanges[-1].upstream_error


async def test_upstream_dropping_connection_gives_502_and_gateway_serves_on():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        resp = await request(gw.port, get("/drop"))
        ok = await request(gw.port, get("/hello"))
    assert resp.status == 502
    assert ok.status == 200


async def test_upstream_timeout_gives_504():
    async with upstream_server() as up, gateway(make_config(up.url, timeouts={"upstream_response": 0.3}),
                                                only=set()) as gw:
        resp = await request(gw.port, get("/hang"))
        ok = await request(gw.port, get("/hello"))
    assert resp.status == 504
    assert resp.json()["type"].endswith("/gateway-timeout")
    assert ok.status == 200


async def test_upstream_response_smuggling_is_refused():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        resp = await request(gw.port, get("/badframing"))
    assert resp.status == 502


async def test_upstream_head_that_never_ends_gives_502_and_bounded_memory():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        resp = await asyncio.wait_for(request(gw.port, get("/endlesshead")), 10)
        ok = await request(gw.port, get("/hello"))
    assert resp.status == 502
    assert ok.status == 200


async def test_stack_trace_scrubbed_and_plain_500_kept():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        scrubbed = await request(gw.port, get("/stack"))
        plain = await request(gw.port, get("/json500"))
    assert scrubbed.status == 500
    assert scrubbed.header("content-type") == "application/problem+json"
    assert b"Traceback" not in scrubbed.body and b"views.py" not in scrubbed.body
    assert scrubbed.json()["request_id"] == scrubbed.header("x-request-id")
    assert scrubbed.header("server") is None
    assert plain.status == 500 and plain.body == b'{"error": "internal"}'


async def test_scrubbing_can_be_turned_off():
    async with upstream_server() as up, gateway(make_config(up.url, errors={"scrub_upstream_errors": False}),
                                                only=set()) as gw:
        resp = await request(gw.port, get("/stack"))
    assert b"Traceback" in resp.body


async def test_websocket_upgrade_tunnels_after_handshake():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = await read_response(reader)
        assert head.status == 101
        assert head.header("upgrade") == "websocket"
        writer.write(b"frame-1")
        assert await asyncio.wait_for(reader.readexactly(12), 3) == b"echo:frame-1"
        writer.write(b"frame-2")
        assert await asyncio.wait_for(reader.readexactly(12), 3) == b"echo:frame-2"
        writer.close()
    handshake = up.requests[-1]
    names = {k.lower(): v for k, v in handshake.headers}
    assert names["upgrade"] == "websocket" and names["connection"] == "Upgrade"


async def test_non_websocket_upgrade_is_not_tunneled():
    # h2c upgrade smuggling: the Upgrade must never reach the upstream.
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                     b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
        resp = await read_response(reader)
        assert await closed_after(reader)
        writer.close()
    assert resp.status == 200
    names = [k.lower() for k, _ in resp.json()["headers"]]
    assert "upgrade" not in names and "http2-settings" not in names


class HeaderBlocker:
    """Blocks requests carrying `X-Evil` (request headers) and responses with `X-Leak` (response)."""

    name = "header-blocker"

    def request_headers(self, ex: Exchange) -> None:
        if "x-evil" in ex.request.headers:
            ex.add(Finding("test-evil", self.name, "evil header", Severity.CRITICAL, score=5, zone="headers"))

    async def request_body(self, ex: Exchange) -> None:
        await asyncio.sleep(0)  # an awaitable hook: the proxy must wait for it
        if b"attack" in ex.request.body:
            ex.add(Finding("test-body", self.name, "evil body", Severity.CRITICAL, score=5, zone="body"))

    def response_headers(self, ex: Exchange) -> None:
        assert ex.response is not None
        if "x-leak" in ex.response.headers:
            ex.add(Finding("test-leak", self.name, "leak", Severity.CRITICAL, score=5))

    def response_body(self, ex: Exchange) -> None:
        assert ex.response is not None
        if b"secret" in ex.response.body:
            ex.add(Finding("test-secret", self.name, "secret", Severity.CRITICAL, score=5))


async def test_custom_detector_blocks_in_each_phase():
    async with upstream_server() as up, gateway(make_config(up.url), detectors=[HeaderBlocker()]) as gw:
        blocked = await request(gw.port, get("/echo", extra="X-Evil: 1\r\n"))
        body_blocked = await request(gw.port,
                                     b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nsome attack")
        ok = await request(gw.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        resp_blocked = await request(gw.port, get("/echo?q=secret"))
    assert blocked.status == 403
    assert blocked.header("content-type") == "application/problem+json"
    doc = blocked.json()
    assert doc["type"].endswith("/request-blocked") and doc["request_id"] == blocked.header("x-request-id")
    assert b"X-Evil" not in blocked.body
    assert body_blocked.status == 403
    # Neither blocked request reached the upstream.
    assert [(r.method, r.target, r.body) for r in up.requests] == [("POST", "/echo", b"hello"),
                                                                    ("GET", "/echo?q=secret", b"")]
    assert ok.status == 200 and ok.json()["body"] == "hello"
    assert resp_blocked.status == 502
    assert b"secret" not in resp_blocked.body
    rules = gw.sink.rules()
    assert {"test-evil", "test-body", "test-secret"} <= set(rules)
    ids = [ex.id for ex in gw.sink.exchanges if ex.verdict and ex.verdict.blocks]
    assert blocked.header("x-request-id") in ids


async def test_observe_mode_forwards_but_records():
    cfg = make_config("http://127.0.0.1:1", mode="observe")
    async with upstream_server() as up:
        cfg.upstream.url = up.url
        async with gateway(cfg, detectors=[HeaderBlocker()]) as gw:
            resp = await request(gw.port, get("/echo", extra="X-Evil: 1\r\n"))
    assert resp.status == 200
    ex = gw.sink.exchanges[-1]
    assert ex.verdict is not None and ex.verdict.would_block


async def test_throttle_verdict_delays_then_forwards():
    class Slow:
        name = "slow"

        def request_headers(self, ex: Exchange) -> None:
            ex.add(Finding("test-throttle", self.name, "slow down", action=Action.THROTTLE, delay=0.2))

    async with upstream_server() as up, gateway(make_config(up.url), detectors=[Slow()]) as gw:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        resp = await request(gw.port, get("/hello"))
        elapsed = loop.time() - t0
    assert resp.status == 200
    assert elapsed >= 0.19


async def test_block_with_retry_after_and_headers():
    class Limiter:
        name = "limiter"

        def request_headers(self, ex: Exchange) -> None:
            ex.add(Finding("test-rate", self.name, "too many", action=Action.BLOCK, status=429,
                           reason="rate-limited", retry_after=7, headers=(("RateLimit-Policy", "10;w=1"),)))

    async with upstream_server() as up, gateway(make_config(up.url), detectors=[Limiter()]) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(get("/hello"))
        resp = await read_response(reader)
        # A clean refusal keeps the connection: the next request is answered too.
        writer.write(get("/hello"))
        resp2 = await read_response(reader)
        writer.close()
    assert resp.status == 429 and resp2.status == 429
    assert resp.header("retry-after") == "7"
    assert resp.header("ratelimit-policy") == "10;w=1"
    assert json.loads(resp.body)["type"].endswith("/rate-limited")


async def test_failing_detector_fails_open_by_default_and_closed_when_asked():
    class Broken:
        name = "broken"

        def request_headers(self, ex: Exchange) -> None:
            raise RuntimeError("boom")

    async with upstream_server() as up:
        async with gateway(make_config(up.url), detectors=[Broken()]) as gw:
            assert (await request(gw.port, get("/hello"))).status == 200
        async with gateway(make_config(up.url, fail_mode="closed"), detectors=[Broken()]) as gw:
            assert (await request(gw.port, get("/hello"))).status == 503


async def test_connection_phase_runs_once_per_connection():
    calls: list[str] = []

    class Conn:
        name = "conn"

        def connection(self, ex: Exchange) -> None:
            calls.append(ex.request.target)

    async with upstream_server() as up, gateway(make_config(up.url), detectors=[Conn()]) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        for i in range(3):
            writer.write(get(f"/echo?{i}"))
            await read_response(reader)
        writer.close()
    assert calls == ["/echo?0"]


async def test_upstream_path_prefix_and_https_scheme_validation():
    async with upstream_server() as up, gateway(make_config(up.url + "/api/"), only=set()) as gw:
        resp = await request(gw.port, get("/echo?x=1"))
    # the upstream's 404 for /api/echo proves the prefix was applied
    assert resp.status == 404
    assert up.requests[-1].target == "/api/echo?x=1"
    from bastion.errors import ConfigError
    from bastion.frontends.proxy.upstream import UpstreamTarget

    with pytest.raises(ConfigError):
        UpstreamTarget("ftp://x")


async def test_absolute_form_target_is_forwarded_in_origin_form():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        resp = await request(gw.port, b"GET http://api.test:8080/echo?a=1 HTTP/1.1\r\nHost: other.test\r\n\r\n")
        query_only = await request(gw.port, b"GET http://api.test?x=1 HTTP/1.1\r\nHost: api.test\r\n\r\n")
        userinfo = await request(gw.port, b"GET http://user:pw@api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n")
    assert resp.status == 200
    echo = resp.json()
    assert echo["target"] == "/echo?a=1"
    hosts = [v for k, v in echo["headers"] if k.lower() == "host"]
    assert hosts == ["api.test:8080"]
    assert query_only.status == 404 and up.requests[1].target == "/?x=1"
    assert userinfo.status == 400


async def test_pipelining_flood_in_one_read_is_bounded_by_max_pipelined():
    # H11: thousands of tiny pipelined requests arriving in one read were all parsed into queued
    # exchanges at once (max_pipelined only paused the *next* read): memory per connection unbounded.
    one = b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n"
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(one * 6000)  # ~190 KB
        await writer.drain()
        await asyncio.sleep(0.5)
        (conn,) = gw.server.connections
        queued = len(conn.queue)
        writer.close()
    # max_pipelined (16) plus at most one parse slice of requests.
    assert 16 <= queued <= 16 + 4096 // len(one) + 1


async def test_many_pipelined_requests_in_one_write_all_answered_in_order():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"".join(get(f"/echo?n={i}") for i in range(300)))
        targets = [(await read_response(reader)).json()["target"] for _ in range(300)]
        writer.close()
    assert targets == [f"/echo?n={i}" for i in range(300)]


async def test_forwarded_host_claims_pass_only_from_trusted_proxies():
    """X-Forwarded-Host from an untrusted client would let it choose the host the API builds its
    links and password-reset URLs on; only a trusted proxy may say it."""
    claim = "X-Forwarded-Host: evil.example\r\nX-Forwarded-Port: 8443\r\nX-Original-URL: /admin\r\n"
    async with upstream_server() as up:
        async with gateway(make_config(up.url), only=set()) as gw:
            untrusted = await request(gw.port, get("/echo", extra=claim))
        trusted_cfg = make_config(up.url, server={"trusted_proxies": ["127.0.0.0/8"]})
        async with gateway(trusted_cfg, only=set()) as gw:
            trusted = await request(gw.port, get("/echo", extra=claim))
    names = {k.lower() for k, _ in untrusted.json()["headers"]}
    assert not names & {"x-forwarded-host", "x-forwarded-port", "x-original-url"}
    kept = {k.lower(): v for k, v in trusted.json()["headers"]}
    assert kept["x-forwarded-host"] == "evil.example" and kept["x-original-url"] == "/admin"

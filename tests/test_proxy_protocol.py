"""Smuggling, malformed HTTP, limits, slow clients and load shedding at the proxy's edge.

Each refusal must be a clean problem+json with the right status, close the connection, be
recorded as an event with its rule id, and leave the gateway serving.
"""

from __future__ import annotations

import asyncio

import pytest

from proxy_helpers import (
    closed_after,
    gateway,
    get,
    make_config,
    read_response,
    request,
    upstream_server,
)

SMUGGLING = [
    ("cl-te", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"0\r\n\r\nG", "protocol-cl-te"),
    ("te-cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
              b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n", "protocol-cl-te"),
    ("dup-cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     "protocol-cl-multiple"),
    ("list-cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", "protocol-cl-invalid"),
    ("plus-cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", "protocol-cl-invalid"),
    ("te-xchunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", "protocol-te-invalid"),
    ("te-double", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
                  b"\r\n\r\n0\r\n\r\n", "protocol-te-invalid"),
    ("te-space", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
     "protocol-header-name-invalid"),
    ("te-http10", b"POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "protocol-te-version"),
    ("obs-fold", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
     "protocol-obs-fold"),
    ("bare-lf", b"GET /echo HTTP/1.1\nHost: a\n\n", "protocol-bare-crlf"),
    ("bare-cr", b"GET /echo HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "protocol-bare-crlf"),
    ("bad-name", b"GET /echo HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", "protocol-header-name-invalid"),
    ("nul-value", b"GET /echo HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", "protocol-header-crlf"),
    ("bad-chunk", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
     "protocol-chunk-invalid"),
    ("no-host", b"GET /echo HTTP/1.1\r\n\r\n", "protocol-host-missing"),
    ("two-hosts", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "protocol-host-multiple"),
    ("http09", b"GET /\r\n\r\n", "protocol-version-invalid"),
    ("bad-method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "protocol-method-invalid"),
    ("ctl-target", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", "protocol-target-invalid"),
    ("upgrade-body", b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Content-Length: 5\r\n\r\nGET /", "protocol-upgrade-body"),
]


@pytest.mark.parametrize(("name", "raw", "rule"), SMUGGLING, ids=[c[0] for c in SMUGGLING])
async def test_smuggling_and_malformed_get_400_close_and_event(name, raw, rule):
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(raw)
        resp = await read_response(reader)
        closed = await closed_after(reader)
        writer.close()
        ok = await request(gw.port, get("/hello"))
    assert resp.status == 400, (name, resp)
    assert resp.header("content-type") == "application/problem+json"
    assert resp.header("connection") == "close"
    assert resp.json()["type"].endswith("/bad-request")
    assert closed
    assert ok.status == 200
    # The smuggled request never reached the upstream: only /hello did.
    assert [r.target for r in up.requests] == ["/hello"]
    refused = [ex for ex in gw.sink.exchanges if ex.verdict and ex.verdict.blocks]
    assert len(refused) == 1 and refused[0].findings[0].rule_id == rule
    assert refused[0].id == resp.header("x-request-id")


async def test_refusal_after_pipelined_good_request_keeps_order():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(get("/slow?ms=100")
                     + b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        first = await read_response(reader)
        second = await read_response(reader)
        assert await closed_after(reader)
        writer.close()
    assert first.status == 200 and first.body == b"slow"
    assert second.status == 400


async def test_connect_and_bad_expect_refused():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        connect = await request(gw.port, b"CONNECT internal:22 HTTP/1.1\r\nHost: internal:22\r\n\r\n")
        expect = await request(gw.port,
                               b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n")
    assert connect.status == 405
    assert expect.status == 417
    assert up.requests == []


def _limits(up_url: str, **limits) -> object:
    return make_config(up_url, limits=limits)


async def test_uri_too_long_414():
    async with upstream_server() as up, gateway(_limits(up.url, max_uri_bytes=100), only=set()) as gw:
        resp = await request(gw.port, get("/" + "a" * 200))
        ok = await request(gw.port, get("/hello"))
    assert resp.status == 414 and ok.status == 200
    assert "limits-uri-length" in gw.sink.rules()


async def test_headers_too_large_431():
    cfg = _limits("http://127.0.0.1:1", max_header_bytes=2048, max_header_count=10, max_header_value_bytes=512)
    async with upstream_server() as up:
        cfg.upstream.url = up.url
        async with gateway(cfg, only=set()) as gw:
            many = await request(gw.port, get("/hello", extra="".join(f"X-{i}: v\r\n" for i in range(20))))
            big = await request(gw.port, get("/hello", extra="".join(f"X-{i}: {'v' * 400}\r\n" for i in range(8))))
            long_value = await request(gw.port, get("/hello", extra=f"X-Long: {'v' * 600}\r\n"))
            # One endless header line, sent in pieces: cut without buffering it all.
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Endless: ")
            for _ in range(20):
                writer.write(b"v" * 1000)
            endless = await read_response(reader)
            writer.close()
            ok = await request(gw.port, get("/hello"))
    assert many.status == big.status == long_value.status == endless.status == 431
    assert ok.status == 200
    assert {"limits-header-count", "limits-header-bytes", "limits-header-value"} <= set(gw.sink.rules())


async def test_body_too_large_413_declared_and_streamed():
    async with upstream_server() as up, gateway(_limits(up.url, max_body_bytes=1000), only=set()) as gw:
        declared = await request(gw.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"
                                 + b"x" * 5000)
        chunk = b"%x\r\n%b\r\n" % (600, b"y" * 600)
        streamed = await request(gw.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 + chunk * 3 + b"0\r\n\r\n")
        ok = await request(gw.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    assert declared.status == 413
    assert streamed.status == 413
    assert ok.status == 200
    assert gw.sink.rules().count("limits-body-size") == 2
    # The declared-too-large body never reached the upstream; the streamed one was cut short.
    assert all(r.body != b"x" * 5000 for r in up.requests)


async def test_header_timeout_slowloris_408():
    async with upstream_server() as up, gateway(make_config(up.url, timeouts={"header": 0.3}), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /hello HTTP/1.1\r\nHost: a\r\n")
        for _ in range(3):
            await asyncio.sleep(0.1)
            writer.write(b"X-A: b\r\n")
        resp = await read_response(reader)
        assert await closed_after(reader)
        writer.close()
        ok = await request(gw.port, get("/hello"))
    assert resp.status == 408
    assert ok.status == 200
    assert "timeouts-header" in gw.sink.rules()


async def test_body_timeout_408():
    async with upstream_server() as up, gateway(make_config(up.url, timeouts={"body": 0.3}), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly-part")
        resp = await read_response(reader)
        writer.close()
    assert resp.status == 408
    assert "timeouts-body" in gw.sink.rules()


async def test_slow_post_below_the_minimum_data_rate_408_while_a_steady_upload_passes():
    # Each byte arrives well within `body` (0.5 s), so only the data rate can end the trickle.
    cfg = make_config("http://127.0.0.1:1", timeouts={"body": 0.5, "body_min_rate": 200})
    async with upstream_server() as up:
        cfg.upstream.url = up.url
        async with gateway(cfg, only=set()) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
            read = asyncio.ensure_future(read_response(reader))
            for _ in range(40):  # 10 bytes/s, for up to 4 s
                if read.done():
                    break
                writer.write(b"x")
                await asyncio.sleep(0.1)
            resp = await asyncio.wait_for(read, 3)
            writer.close()
            # 1,000 bytes at 400 bytes/s: slower than `body` allows alone, above the minimum rate
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(10):
                writer.write(b"y" * 100)
                await asyncio.sleep(0.25)
            ok = await read_response(reader)
            writer.close()
    assert resp.status == 408
    assert "timeouts-body-rate" in gw.sink.rules()
    assert ok.status == 200


async def test_idle_and_silent_connections_are_closed():
    cfg = make_config("http://127.0.0.1:1", timeouts={"idle": 0.3, "header": 0.3})
    async with upstream_server() as up:
        cfg.upstream.url = up.url
        async with gateway(cfg, only=set()) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(get("/hello"))
            assert (await read_response(reader)).status == 200
            assert await closed_after(reader, wait=2)  # idle keep-alive ends
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            assert await closed_after(reader, wait=2)  # never sent a byte
            writer.close()
    # Quiet connections are not attacks: no events.
    assert gw.sink.exchanges and all(not ex.findings for ex in gw.sink.exchanges)


async def test_max_connections_sheds_with_503_and_recovers():
    async with upstream_server() as up, gateway(make_config(up.url, server={"max_connections": 2}),
                                                only=set()) as gw:
        held = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        shed = await request(gw.port, get("/hello"))
        for _, w in held:
            w.close()
        await asyncio.sleep(0.1)
        ok = await request(gw.port, get("/hello"))
    assert shed.status == 503
    assert shed.header("retry-after") == "1"
    assert shed.json()["type"].endswith("/overloaded")
    assert ok.status == 200
    assert "limits-connections" in gw.sink.rules()


async def test_one_address_cannot_hold_every_connection():
    # H11: there was no per-address cap: one client could take all max_connections slots with idle
    # or slow-body connections, and every other client got 503.
    cfg = make_config("http://127.0.0.1:1", server={"max_connections_per_ip": 3})
    async with upstream_server() as up:
        cfg.upstream.url = up.url
        async with gateway(cfg, only=set()) as gw:
            held = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(3)]
            await asyncio.sleep(0.05)
            shed = await request(gw.port, get("/hello"))
            assert gw.server.per_ip == {"127.0.0.1": 3}
            for _, w in held:
                w.close()
            await asyncio.sleep(0.1)
            ok = await request(gw.port, get("/hello"))
            await asyncio.sleep(0.05)
            assert gw.server.per_ip == {}
    assert shed.status == 503 and shed.header("retry-after") == "1"
    assert ok.status == 200
    assert "limits-connections-ip" in gw.sink.rules()
    # Connections from a trusted proxy (a load balancer) are not capped.
    cfg = make_config("http://127.0.0.1:1", server={"max_connections_per_ip": 1, "trusted_proxies": ["127.0.0.0/8"]})
    async with upstream_server() as up:
        cfg.upstream.url = up.url
        async with gateway(cfg, only=set()) as gw:
            held = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(2)]
            resp = await request(gw.port, get("/hello"))
            for _, w in held:
                w.close()
    assert resp.status == 200


async def test_blocked_request_with_unread_body_answer_not_lost():
    """A refusal before a big body is read must reach the client (no RST from unread bytes)."""
    from bastion.exchange import Exchange
    from bastion.verdict import Finding

    class Deny:
        name = "deny"

        def request_headers(self, ex: Exchange) -> None:
            ex.add(Finding("test-deny", self.name, "no", score=10))

    async with upstream_server() as up, gateway(make_config(up.url), detectors=[Deny()]) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n")
        writer.write(b"z" * 200_000)
        resp = await read_response(reader)
        writer.close()
    assert resp.status == 403
    assert resp.header("connection") == "close"


async def test_refusal_is_recorded_even_if_the_client_leaves_first():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(get("/hang")
                     + b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.2)
        writer.transport.abort()
        await asyncio.sleep(0.2)
    assert "protocol-cl-te" in gw.sink.rules()


async def test_bodied_get_never_poisons_a_pooled_upstream_connection():
    """CL.0 desync: an upstream that ignores a GET body would read it as its next request. The
    body is forwarded with its framing, and that upstream connection is not reused."""
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        smuggle = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b" % (len(smuggle), smuggle))
        first = await read_response(reader)
        writer.write(get("/hello"))
        second = await read_response(reader)
        writer.close()
    assert first.status == 200 and first.json()["body"] == smuggle.decode()
    assert second.status == 200 and second.body == b"hello world\n"
    assert up.connections == 2  # the GET-with-body connection was not pooled
    assert all(r.target != "/smuggled" for r in up.requests)

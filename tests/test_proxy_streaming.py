"""Bodies larger than the inspection window, stale pooled connections, aborts and graceful stop."""

from __future__ import annotations

import asyncio
import hashlib

from bastion.exchange import Exchange
from proxy_helpers import closed_after, gateway, get, make_config, read_response, request, upstream_server


class Recorder:
    """Records what the body phases saw (and proves the proxy buffers only the prefix)."""

    name = "recorder"

    def __init__(self) -> None:
        self.request_bodies: list[tuple[int, bool]] = []
        self.response_bodies: list[tuple[int, int]] = []

    def request_body(self, ex: Exchange) -> None:
        self.request_bodies.append((len(ex.request.body), ex.request.body_truncated))

    def response_body(self, ex: Exchange) -> None:
        assert ex.response is not None
        self.response_bodies.append((len(ex.response.body), ex.response.status))


async def test_large_bodies_inspect_prefix_and_stream_the_rest():
    rec = Recorder()
    n = 2_000_000
    payload = hashlib.sha256(b"seed").digest() * (n // 32)
    cfg = make_config("http://127.0.0.1:1", limits={"inspect_body_bytes": 4096, "inspect_response_bytes": 8192})
    async with upstream_server() as up:
        cfg.upstream.url = up.url
        async with gateway(cfg, detectors=[rec]) as gw:
            echo = await request(gw.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(payload)
                                 + payload, wait=20)
            chunked_body = b"".join(b"%x\r\n%b\r\n" % (50_000, payload[i:i + 50_000])
                                    for i in range(0, 500_000, 50_000)) + b"0\r\n\r\n"
            echo2 = await request(gw.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  + chunked_body, wait=20)
            big = await request(gw.port, get("/big?n=1000000"), wait=20)
            small = await request(gw.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    assert echo.json()["sha"] == hashlib.sha256(payload).hexdigest()
    assert echo2.json()["sha"] == hashlib.sha256(payload[:500_000]).hexdigest()
    assert big.body == bytes(i % 251 for i in range(1_000_000))
    assert small.json()["body"] == "abc"
    assert rec.request_bodies[0] == (4096, True)
    assert rec.request_bodies[1] == (4096, True)
    assert rec.request_bodies[-1] == (3, False)
    assert (8192, 200) in rec.response_bodies


async def test_stale_keep_alive_connection_is_retried_once():
    """The upstream drops a kept-alive connection just as the next request arrives on it (the
    keep-alive race): an idempotent request is replayed once on a fresh connection."""
    served = 0

    async def one_request_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request on this connection: dropped unanswered
        writer.transport.abort()

    server = await asyncio.start_server(one_request_per_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with gateway(make_config(f"http://127.0.0.1:{port}"), only=set()) as gw:
            for _ in range(4):
                resp = await request(gw.port, get("/x"))
                assert resp.status == 200 and resp.body == b"ok"
            # a non-idempotent request is not replayed after a reset: it fails cleanly instead
            post = await request(gw.port, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nz")
            assert post.status == 502
    finally:
        server.close()
    assert served >= 4


async def test_retry_after_upstream_closes_idle_connection():
    """The upstream closes the pooled connection right after answering: the next request must not
    fail (a stale keep-alive connection is detected or the request replayed once)."""
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        for _ in range(5):
            # /close makes the upstream close after its answer; the following request needs a new one
            assert (await request(gw.port, get("/close"))).status == 200
            assert (await request(gw.port, get("/hello"))).status == 200


async def test_client_abort_mid_response_leaves_gateway_healthy():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(get("/big?n=5000000"))
        await reader.readexactly(1000)
        writer.transport.abort()
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly-some")
        await asyncio.sleep(0.05)
        writer.transport.abort()
        await asyncio.sleep(0.1)
        for _ in range(3):
            assert (await request(gw.port, get("/hello"))).status == 200
        assert not gw.server.connections or all(c.transport is not None for c in gw.server.connections)


async def test_graceful_close_finishes_in_flight_request():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(get("/slow?ms=300"))
        await asyncio.sleep(0.1)
        closing = asyncio.create_task(gw.server.close(grace=5))
        resp = await read_response(reader)
        assert resp.status == 200 and resp.body == b"slow"
        assert resp.header("connection") == "close"
        assert await closed_after(reader)
        await closing
        writer.close()


async def test_pipelining_backpressure_with_many_requests():
    async with upstream_server() as up, gateway(make_config(up.url, server={"max_pipelined": 2}),
                                                only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"".join(b"POST /echo?i=%d HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n%d" % (i, i % 10)
                              for i in range(30)))
        for i in range(30):
            resp = await read_response(reader)
            assert resp.json()["target"] == f"/echo?i={i}"
            assert resp.json()["body"] == str(i % 10)
        writer.close()


async def test_head_of_chunked_and_close_delimited_resources():
    async with upstream_server() as up, gateway(make_config(up.url), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"HEAD /chunked HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await read_response(reader, head_only=True)
        assert head.status == 200
        writer.write(get("/echo?after-head"))
        assert (await read_response(reader)).json()["target"] == "/echo?after-head"
        writer.close()


async def test_slow_reader_pauses_upstream_then_is_cut():
    n = 30_000_000
    async with upstream_server() as up, gateway(make_config(up.url, timeouts={"body": 1.0}), only=set()) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port, limit=2**16)
        writer.write(get(f"/big?n={n}"))
        await asyncio.sleep(0.4)
        conns = [c for c in gw.server.connections if c.queue]
        assert conns and conns[0].queue[0].up_paused & 1, "upstream reading should pause for a slow client"
        # Read a little, then stop reading: the write-stall deadline (timeouts.body) ends the connection.
        await reader.readexactly(200_000)
        await asyncio.sleep(2.5)
        got = 200_000
        try:
            while True:
                data = await asyncio.wait_for(reader.read(1 << 20), 5)
                if not data:
                    break
                got += len(data)
        except (ConnectionError, TimeoutError):
            pass
        writer.close()
        assert got < n
        assert (await request(gw.port, get("/hello"))).status == 200


async def test_streamed_response_prefix_reaches_the_complete_phase():
    """With no response-body detector the response streams, and its prefix is still copied for
    complete-phase readers (the catalog learns response schemas and sensitive data from it)."""
    seen: list[bytes] = []

    class Learner:
        name = "learner"

        def complete(self, ex: Exchange) -> None:
            assert ex.response is not None
            seen.append(ex.response.body)

    cfg = make_config("http://127.0.0.1:1", limits={"inspect_response_bytes": 1000})
    async with upstream_server() as up:
        cfg.upstream.url = up.url
        async with gateway(cfg, detectors=[Learner()]) as gw:
            big = await request(gw.port, get("/big?n=50000"), wait=20)
            await gw.runtime.pipeline.drain()
    assert big.body == bytes(i % 251 for i in range(50_000))
    assert seen == [bytes(i % 251 for i in range(1000))]

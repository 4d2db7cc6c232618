"""The Redis backend: atomic across instances, pipelined, bounded in time when Redis misbehaves."""

from __future__ import annotations

import asyncio
import time

import pytest

from bastion.clock import ManualClock
from bastion.state import Algo, Op, StorageError, make_key, open_storage
from bastion.state.redis import RedisStorage
from bastion.state.resp import RespClient, encode, parse
from state_backends import REDIS_URL, redis_up, wipe

needs_redis = pytest.mark.skipif(not redis_up(), reason="Redis is not reachable at 127.0.0.1:6379")


def test_resp_roundtrip_parser():
    assert encode(("GET", "k")) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    buf = b"*3\r\n$2\r\nab\r\n:5\r\n$-1\r\n+OK\r\n-ERR bad\r\n"
    v, pos = parse(buf, 0)
    assert v == [b"ab", 5, None]
    v, pos = parse(buf, pos)
    assert v == b"OK"
    v, pos = parse(buf, pos)
    assert isinstance(v, StorageError) and "bad" in str(v)


def test_bad_urls_are_clear():
    with pytest.raises(ValueError, match="unknown state backend"):
        open_storage("mongodb://x")
    with pytest.raises(ValueError, match="database must be a number"):
        open_storage("redis://127.0.0.1:6379/abc")


async def test_unreachable_redis_fails_fast_and_backs_off():
    st = RedisStorage("redis://127.0.0.1:1/0?timeout=0.05&connect_timeout=0.2")
    op = Op("k", Algo.FIXED_WINDOW, limit=1, window=1)
    t = time.monotonic()
    with pytest.raises(StorageError):
        await st.hit([op], 0.0)
    with pytest.raises(StorageError, match="waiting before reconnecting"):
        await st.hit([op], 0.0)  # no new connection attempt per request while backing off
    assert time.monotonic() - t < 1.0
    await st.close()


async def test_silent_server_times_out_every_pending_call():
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)
        await asyncio.sleep(5)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    st = RedisStorage(f"redis://127.0.0.1:{port}/0?timeout=0.05")
    op = Op("k", Algo.FIXED_WINDOW, limit=1, window=1)
    t = time.monotonic()
    results = await asyncio.gather(*(st.hit([op], 0.0) for _ in range(20)), return_exceptions=True)
    elapsed = time.monotonic() - t
    assert all(isinstance(r, StorageError) for r in results)
    assert elapsed < 0.5, elapsed
    await st.close()
    server.close()


@needs_redis
async def test_reconnects_by_itself_after_the_connection_is_killed():
    prefix = "bastion-test-h6:reconnect:"
    st = RedisStorage(REDIS_URL + "?timeout=1")
    st.client.min_backoff = st.client._backoff = 0.05
    op = Op(make_key(prefix, "r", "x"), Algo.FIXED_WINDOW, limit=100, window=60)
    await st.hit([op], 1000.0)
    my_id = await st.client.call("CLIENT", "ID")
    admin = RespClient(REDIS_URL, timeout=1)
    await admin.call("CLIENT", "KILL", "ID", my_id)
    await asyncio.sleep(0.05)
    ok = False
    for _ in range(20):
        try:
            (o,) = await st.hit([op], 1000.0)
            ok = True
            break
        except StorageError:
            await asyncio.sleep(0.05)
    assert ok and o.count == 2
    await st.close()
    await admin.close()
    await wipe(prefix)


@needs_redis
async def test_two_instances_share_one_limit_exactly():
    """Two gateways (two connections), 400 concurrent hits on a limit of 50: 50 pass, not 100."""
    prefix = "bastion-test-h6:shared:"
    a, b = RedisStorage(REDIS_URL + "?timeout=2"), RedisStorage(REDIS_URL + "?timeout=2")
    clock = ManualClock()
    key = make_key(prefix, "limit", "10.0.0.1")
    op = Op(key, Algo.SLIDING_WINDOW, limit=50, window=60)
    calls = [(a if i % 2 else b).hit([op], clock.now()) for i in range(400)]
    results = await asyncio.gather(*calls)
    assert sum(not r[0].exceeded for r in results) == 50
    # 400 requests, each answered; concurrent ones shared script calls (batched, then pipelined).
    assert a.hits + b.hits == 400 and a.calls + b.calls < 400
    await a.close()
    await b.close()
    await wipe(prefix)


@needs_redis
async def test_pipelined_replies_reach_their_own_callers():
    prefix = "bastion-test-h6:order:"
    st = RedisStorage(REDIS_URL + "?timeout=2")

    async def one(i: int) -> tuple[int, float]:
        (o,) = await st.hit([Op(make_key(prefix, "o", str(i)), Algo.FIXED_WINDOW, limit=i + 1, window=60)], 0.0)
        return i, o.remaining

    results = await asyncio.gather(*(one(i) for i in range(300)))
    assert all(rem == i for i, rem in results)
    await st.close()
    await wipe(prefix)


@needs_redis
async def test_keys_expire_and_secrets_are_hashed():
    prefix = "bastion-test-h6:ttl:"
    st = RedisStorage(REDIS_URL + "?timeout=2")
    secret = "sk_live_SUPERSECRET"
    key = make_key(prefix, "perkey", secret)
    await st.hit([Op(key, Algo.SLIDING_WINDOW, limit=5, window=30)], 0.0)
    c = st.client
    keys = await c.call("KEYS", prefix + "*")
    assert keys == [key.encode()] and b"SUPERSECRET" not in keys[0]
    ttl = await c.call("PTTL", key)
    assert isinstance(ttl, int) and 0 < ttl <= 60_000
    await st.close()
    await wipe(prefix)

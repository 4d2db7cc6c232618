"""Backends for the state test suites: every suite runs over memory:// and a real Redis (db 13)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from bastion.state import Storage, open_storage
from bastion.state.resp import RespClient

REDIS_URL = "redis://127.0.0.1:6379/13"


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.3):
            return True
    except OSError:
        return False


async def wipe(prefix: str) -> None:
    """Delete only this test's keys (never FLUSHDB: the database is shared)."""
    c = RespClient(REDIS_URL, timeout=2.0)
    cursor = b"0"
    while True:
        reply = await c.call("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)
        assert isinstance(reply, list)
        cursor, keys = reply[0], reply[1]
        if keys:
            await c.call("DEL", *keys)
        if cursor == b"0":
            break
    await c.close()


async def make_backend(kind: str) -> tuple[Storage, str]:
    prefix = f"bastion-test-h6:{uuid.uuid4().hex[:8]}:"
    if kind == "memory":
        return open_storage("memory://"), prefix
    if not redis_up():
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (CI runs these tests against a real Redis)")
    st = open_storage(REDIS_URL + "?timeout=2")
    await st.start()
    return st, prefix


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Storage, str]]:
    st, prefix = await make_backend(request.param)
    yield st, prefix
    await st.close()
    if request.param == "redis":
        await wipe(prefix)
        await asyncio.sleep(0)

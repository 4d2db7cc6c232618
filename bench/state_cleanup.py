"""Delete a benchmark's own keys (never FLUSHDB: the database is shared)."""

from __future__ import annotations

from bastion.state.resp import RespClient


async def wipe_prefix(url: str, prefix: str) -> None:
    c = RespClient(url.split("?")[0], timeout=5.0)
    cursor: object = b"0"
    while True:
        reply = await c.call("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)  # type: ignore[arg-type]
        assert isinstance(reply, list)
        cursor, keys = reply[0], reply[1]
        if keys:
            await c.call("DEL", *keys)
        if cursor == b"0":
            break
    await c.close()

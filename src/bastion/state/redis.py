"""`redis://host:port/db`: counters shared by every gateway instance.

All the ops of one call run in ONE script call (lua/hit.lua, shipped in the package), so a
request costs one round trip whatever the number of its counters, and the check-and-count is
atomic across instances: two gateways sharing a limit of N let N requests through in total,
never 2N. Concurrent requests' script calls are pipelined on one shared connection (resp.py).
Every key carries an expiry, so Redis memory stays bounded by the traffic of the last windows.
Time comes from the caller's clock (`now`), not Redis TIME, so tests and replay can drive it;
instances must keep their clocks in sync (NTP), as for any distributed limiter.
Redis Cluster is not supported (one request's keys may live in several slots).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from urllib.parse import parse_qs, urlsplit, urlunsplit

from bastion.state.base import Algo, Op, Outcome, StorageError
from bastion.state.resp import ReplyError, RespClient, encode_ascii


def load_script(name: str) -> bytes:
    return resources.files("bastion.state").joinpath("lua", name).read_bytes()


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(float(x))


_ALGO_ARG = {a: str(int(a)) for a in Algo}


class RedisStorage:
    """Counters in Redis. Options in the URL query: `timeout` (s, default 0.1) and
    `connect_timeout` (s, default 0.5), e.g. `redis://127.0.0.1:6379/0?timeout=0.05`."""

    sync = False

    def __init__(self, url: str, *, timeout: float | None = None) -> None:
        u = urlsplit(url)
        opts = parse_qs(u.query)
        self.url = url
        t = timeout if timeout is not None else float(opts.get("timeout", ["0.1"])[0])
        ct = float(opts.get("connect_timeout", ["0.5"])[0])
        if t <= 0 or ct <= 0:
            raise ValueError("redis timeouts must be positive")
        self.client = RespClient(urlunsplit((u.scheme, u.netloc, u.path, "", "")), timeout=t, connect_timeout=ct)
        self.script = load_script("hit.lua")
        self.sha = hashlib.sha1(self.script).hexdigest()
        self.calls = 0

    def hit_sync(self, ops: list[Op], now: float) -> list[Outcome]:
        raise NotImplementedError("redis:// is asynchronous; use hit()")

    async def start(self) -> None:
        """Connect and load the script; an unreachable Redis is logged, not fatal (fail mode applies)."""
        try:
            await self.client.call("SCRIPT", "LOAD", self.script)
        except StorageError:
            pass

    async def close(self) -> None:
        await self.client.close()

    async def hit(self, ops: list[Op], now: float) -> list[Outcome]:
        if not ops:
            return []
        args = ["EVALSHA", self.sha, str(2 * len(ops))]
        for op in ops:
            args.append(op.key)
            args.append(op.block_key or "-")
        args.append(repr(now))
        for op in ops:
            args += (
                _ALGO_ARG[op.algo],
                _num(op.limit),
                _num(op.window),
                _num(op.cost),
                op.member or "-",
                _num(op.cooldown),
                "1" if op.consume else "0",
            )
        self.calls += 1
        try:
            reply = await self.client.call_raw(encode_ascii(args))
        except ReplyError as exc:
            if "NOSCRIPT" not in str(exc):
                raise
            reply = await self.client.call("EVAL", self.script, *args[2:])
        if not isinstance(reply, bytes):
            raise StorageError(f"unexpected reply from the counter script: {type(reply).__name__}")
        return [_outcome(part) for part in reply.split(b";")]


def _outcome(part: bytes) -> Outcome:
    e, count, rem, reset, cooling, newly = part.split(b",")
    return Outcome(e == b"1", float(count), float(rem), float(reset), float(cooling), newly == b"1")

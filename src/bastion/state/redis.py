"""`redis://host:port/db`: counters shared by every gateway instance.

All the ops of one call run in ONE script call (lua/hit.lua, shipped in the package), so a
request costs one round trip whatever the number of its counters, and the check-and-count is
atomic across instances: two gateways sharing a limit of N let N requests through in total,
never 2N. Requests asking in the same event-loop turn share one script call, and script calls
are pipelined on one shared connection (resp.py).
Every key carries an expiry, so Redis memory stays bounded by the traffic of the last windows.
Time comes from the caller's clock (`now`), not Redis TIME, so tests and replay can drive it;
instances must keep their clocks in sync (NTP), as for any distributed limiter.
Redis Cluster is not supported (one request's keys may live in several slots).
"""

from __future__ import annotations

import asyncio
import hashlib
from importlib import resources
from urllib.parse import parse_qs, urlsplit, urlunsplit

from bastion.state.base import Algo, Op, Outcome, StorageError
from bastion.state.resp import ReplyError, RespClient, encode_ascii

MAX_BATCH_OPS = 256  # ops in one script call at most: a script blocks Redis while it runs


def load_script(name: str) -> bytes:
    return resources.files("bastion.state").joinpath("lua", name).read_bytes()


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(float(x))


_ALGO_ARG = {a: str(int(a)) for a in Algo}


class RedisStorage:
    """Counters in Redis. Options in the URL query: `timeout` (s, default 0.1) and
    `connect_timeout` (s, default: the timeout, at least 0.1), e.g. `redis://127.0.0.1:6379/0?timeout=0.05`."""

    sync = False

    def __init__(self, url: str, *, timeout: float | None = None) -> None:
        u = urlsplit(url)
        opts = parse_qs(u.query)
        self.url = url
        t = timeout if timeout is not None else float(opts.get("timeout", ["0.1"])[0])
        # A request may wait for a (re)connection: bound that by the same short timeout.
        ct = float(opts.get("connect_timeout", [str(max(0.1, t))])[0])
        if t <= 0 or ct <= 0:
            raise ValueError("redis timeouts must be positive")
        self.client = RespClient(urlunsplit((u.scheme, u.netloc, u.path, "", "")), timeout=t, connect_timeout=ct)
        self.script = load_script("hit.lua")
        self.sha = hashlib.sha1(self.script).hexdigest()
        self.calls = 0  # script calls sent
        self.hits = 0  # hit() calls (requests' phases); several share a script call under load
        self._batch: list[tuple[list[Op], float, asyncio.Future[list[Outcome]]]] = []
        self._batch_ops = 0
        self._batch_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

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
        """Queue `ops` for the next script call: every request that asks within one event-loop turn
        shares ONE script call (still atomic: a script runs alone in Redis), which saves Redis and
        this client the per-call overhead under load. One request's ops are never split."""
        if not ops:
            return []
        self.hits += 1
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Outcome]] = loop.create_future()
        self._batch.append((ops, now, fut))
        self._batch_ops += len(ops)
        if self._batch_ops >= MAX_BATCH_OPS:
            self._flush_batch()
        elif not self._batch_scheduled:
            self._batch_scheduled = True
            loop.call_soon(self._flush_batch)
        return await fut

    def _flush_batch(self) -> None:
        self._batch_scheduled = False
        batch, self._batch, self._batch_ops = self._batch, [], 0
        if batch:
            task = asyncio.ensure_future(self._run_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, batch: list[tuple[list[Op], float, asyncio.Future[list[Outcome]]]]) -> None:
        ops = [op for part, _, _ in batch for op in part]
        now = max(n for _, n, _ in batch)  # callers of one loop turn: microseconds apart
        try:
            outs = await self._script(ops, now)
            if len(outs) != len(ops):
                raise StorageError("the counter script answered the wrong number of outcomes")
        except Exception as exc:
            err = exc if isinstance(exc, StorageError) else StorageError(f"redis counter call failed: {exc!r}")
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        i = 0
        for part, _, fut in batch:
            if not fut.done():
                fut.set_result(outs[i : i + len(part)])
            i += len(part)

    async def _script(self, ops: list[Op], now: float) -> list[Outcome]:
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

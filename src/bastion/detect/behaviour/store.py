"""Where decisions live: a per-process index, kept in step with a file or with Redis.

- `MemoryStore` (default): the index in memory, mirrored to `data_dir/decisions.json` so that
  `bastion decisions add|delete` (another process) reaches a running gateway and every worker of
  it within `poll_interval`, and decisions survive a restart.
- `RedisStore` (`redis://`): a hash of decisions shared by every instance, and a pub/sub channel
  so that a decision made on one instance is enforced by all of them at once.

The request path only ever reads the local `DecisionIndex`; writes to the file or Redis happen in
background tasks. A failing backend is logged and retried; enforcement goes on with what is known.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import heapq
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from bastion.decision import MANUAL_ORIGINS, Decision, DecisionIndex, Origin
from bastion.events import mask_secrets

log = logging.getLogger("bastion.decisions")


class DecisionStore:
    """The local index plus the hooks a backend implements. Subclasses sync it elsewhere."""

    def __init__(self) -> None:
        self.index = DecisionIndex()
        self._tasks: set[asyncio.Task[Any]] = set()
        # called with each decision revoked here or elsewhere (the CLI, another instance), so that
        # local state derived from it (an entity's ban) is lifted too
        self.on_revoke: list[Callable[[Decision], None]] = []
        # called with each risk delta another instance shared: (entity keys, points, rule id, time)
        self.on_risk: Callable[[list[str], float, str, float], None] | None = None
        # Automatic decisions (risk, scenarios, rules) added here, as a heap of (expiry, id): at most
        # `max_automatic` are kept in this process. An attack from ever fresh keys earns a block per
        # key, each a few decisions (~800 bytes each) living for block_ttl: unbounded, thousands a
        # second would fill memory. Beyond the cap, those that expire first are forgotten here only
        # (not revoked: a revocation would lift the entity's block in every process); the blocked
        # entity keeps its block in the entity graph, which keeps risky entities longest.
        self.max_automatic = 100_000
        self._automatic: list[tuple[float, str]] = []
        self.shed = 0  # automatic decisions forgotten early (the cap)

    def add(self, d: Decision) -> None:
        self.index.add(d)
        self._changed("add", d)
        if d.origin not in MANUAL_ORIGINS:
            heapq.heappush(self._automatic, (math.inf if d.until is None else d.until, d.id))
            if len(self._automatic) > self.max_automatic:
                self._shed()

    def _shed(self) -> None:
        """Forget the automatic decisions that expire first, down to `max_automatic` (entries of
        decisions gone already, expired or revoked, just leave the heap)."""
        heap = self._automatic
        by_id = self.index.by_id
        while len(heap) > self.max_automatic:
            _, did = heapq.heappop(heap)
            d = by_id.get(did)
            if d is not None and d.origin not in MANUAL_ORIGINS:
                self.index.remove(did)
                self._forget(d)
                self.shed += 1

    def _forget(self, d: Decision) -> None:
        """A decision shed by the cap (see _shed): a backend drops what it has not sent yet."""

    def delete(self, decision_id: str) -> Decision | None:
        d = self._revoke(decision_id)
        if d is not None:
            self._changed("delete", d)
        return d

    def _revoke(self, decision_id: str) -> Decision | None:
        d = self.index.remove(decision_id)
        if d is not None:
            for fn in self.on_revoke:
                try:
                    fn(d)
                except Exception as exc:
                    log.warning("revoke listener failed: %r", exc)
        return d

    def list(self, now: float) -> builtins.list[Decision]:
        self.index.purge(now)
        return sorted(self.index, key=lambda d: d.created)

    def _changed(self, op: str, d: Decision) -> None:
        """A backend persists or publishes the change (never blocking the caller)."""

    def share_risk(self, keys: builtins.list[str], points: float, rule_id: str, t: float) -> None:
        """Tell the other instances that these keys' entity gained risk (a shared backend only)."""

    def _spawn(self, coro: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (a CLI or a synchronous test): nothing to schedule
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        """Load what the backend holds and start following it."""

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    async def flush(self) -> None:
        """Wait until local changes reached the backend (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


# --- the file backend ----------------------------------------------------------------------------


def read_decisions(path: Path) -> list[Decision]:
    """Decisions stored in a decisions file; bad records are skipped (and logged), never fatal."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    if not raw.strip():
        return []
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.error("decisions file %s is not valid JSON; ignoring it", path)
        return []
    out: list[Decision] = []
    for rec in data.get("decisions", []) if isinstance(data, dict) else []:
        try:
            out.append(Decision.from_dict(rec))
        except ValueError as exc:
            log.warning("skipping a bad decision in %s: %s", path, exc)
    return out


def update_decisions(path: Path, add: Iterable[Decision] = (), delete: Iterable[str] = (),
                     now: float | None = None) -> list[Decision]:
    """Read-modify-write the decisions file under an exclusive lock; expired ones are dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_suffix(path.suffix + ".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            by_id = {d.id: d for d in read_decisions(path)}
            for d in add:
                by_id[d.id] = d
            for did in delete:
                by_id.pop(did, None)
            kept = [d for d in by_id.values() if now is None or d.active(now)]
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(orjson.dumps({"decisions": [d.as_dict() for d in kept]}, option=orjson.OPT_INDENT_2))
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return kept


class MemoryStore(DecisionStore):
    def __init__(self, path: Path | None = None, poll_interval: float = 1.0, now: Any = None) -> None:
        super().__init__()
        self.path = path
        self.poll_interval = poll_interval
        self._now = now  # callable -> float (the engine's clock), for dropping expired decisions
        self._pending_add: dict[str, Decision] = {}
        self._pending_del: set[str] = set()
        self._mtime = 0.0
        self._poller: asyncio.Task[None] | None = None

    def _forget(self, d: Decision) -> None:
        self._pending_add.pop(d.id, None)  # not written yet: it never will be

    def _changed(self, op: str, d: Decision) -> None:
        if self.path is None or d.origin == Origin.CONFIG:
            return
        if op == "add":
            self._pending_add[d.id] = d
            self._pending_del.discard(d.id)
        else:
            self._pending_add.pop(d.id, None)
            self._pending_del.add(d.id)

    async def start(self) -> None:
        if self.path is None:
            return
        await self._reload()
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(BaseException):
                await self._poller
        with contextlib.suppress(OSError):
            await self.flush()
        await super().stop()

    async def flush(self) -> None:
        if self.path is None or (not self._pending_add and not self._pending_del):
            return
        adds, dels = list(self._pending_add.values()), set(self._pending_del)
        self._pending_add.clear()
        self._pending_del.clear()
        now = self._now() if self._now else None
        await asyncio.to_thread(update_decisions, self.path, adds, dels, now)
        self._mtime = self._stat()

    def _stat(self) -> float:
        try:
            return float(os.stat(self.path).st_mtime_ns) if self.path else 0.0
        except OSError:
            return 0.0

    async def _reload(self) -> None:
        assert self.path is not None
        self._mtime = self._stat()
        stored = await asyncio.to_thread(read_decisions, self.path)
        ids = {d.id for d in stored}
        for d in list(self.index):
            # gone from the file (deleted by the CLI or another worker): forget it here too
            if d.origin != Origin.CONFIG and d.id not in ids and d.id not in self._pending_add:
                self._revoke(d.id)
        for d in stored:
            if d.id not in self._pending_del:
                cur = self.index.by_id.get(d.id)
                if cur != d:
                    self.index.add(d)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                if self._pending_add or self._pending_del:
                    await self.flush()
                elif self._stat() != self._mtime:
                    await self._reload()
            except Exception as exc:  # a full disk or a bad file must not stop enforcement
                log.warning("decisions file sync failed: %r", exc)


# --- the Redis backend ---------------------------------------------------------------------------


class RedisStore(DecisionStore):
    """Decisions in a Redis hash `<prefix>`, changes announced on channel `<prefix>:events`."""

    def __init__(self, url: str, prefix: str = "bastion:decisions", now: Any = None) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.channel = prefix + ":events"
        self.instance = secrets.token_hex(4)
        self._now = now
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        self.ready: asyncio.Event | None = None  # set once subscribed
        self.received = 0
        self._risk_out: list[tuple[list[str], float, str, float]] = []
        self._order: asyncio.Lock | None = None
        self.risk_lost = 0  # deltas Redis did not take (risk sharing is best effort)
        self._risk_error_at = -1e9

    def _changed(self, op: str, d: Decision) -> None:
        if d.origin == Origin.CONFIG or self._redis is None:
            return
        self._spawn(self._publish(op, d))

    async def _publish(self, op: str, d: Decision) -> None:
        # In the order of the changes: an add and the delete that follows must not cross on the way
        # (each is two round trips), or another instance would keep a revoked decision.
        if self._order is None:
            self._order = asyncio.Lock()
        async with self._order:
            await self._send(op, d)

    async def _send(self, op: str, d: Decision) -> None:
        r = self._redis
        try:
            if op == "add":
                body = orjson.dumps(d.as_dict())
                await r.hset(self.prefix, d.id, body)
                await r.publish(self.channel, b"+" + self.instance.encode() + b" " + body)
            else:
                await r.hdel(self.prefix, d.id)
                await r.publish(self.channel, b"-" + self.instance.encode() + b" " + d.id.encode())
        except Exception as exc:
            log.warning("decision %s to redis failed: %r", op, exc)

    def share_risk(self, keys: list[str], points: float, rule_id: str, t: float) -> None:
        if self._redis is None:
            return
        if not self._risk_out:  # the first delta of a batch schedules its publication
            self._spawn(self._publish_risk())
        if len(self._risk_out) < 10_000:  # bounded while Redis is slow; risk is best effort
            self._risk_out.append((keys, points, rule_id, t))

    async def _publish_risk(self) -> None:
        # One message per 50 ms however many findings raised risk (a flood of attacks is many).
        await asyncio.sleep(0.05)
        batch, self._risk_out = self._risk_out, []
        try:
            await self._redis.publish(self.channel, b"r" + self.instance.encode() + b" " + orjson.dumps(batch))
        except Exception as exc:
            self.risk_lost += len(batch)
            mono = time.monotonic()
            if mono - self._risk_error_at > 60:  # once a minute while Redis is away, not every 50 ms
                self._risk_error_at = mono
                log.warning("risk to redis failed (%d deltas lost so far): %r", self.risk_lost, exc)

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.url, socket_timeout=5.0, socket_connect_timeout=2.0)
        self.ready = asyncio.Event()
        loaded = True
        try:
            await self.load()
        except Exception as exc:
            # Redis down at start-up: enforce config decisions and what this instance decides, and
            # catch up when the channel comes back (the listener reloads the hash on reconnect).
            log.error("decisions: cannot load from %s (%r); continuing with local decisions", mask_secrets(self.url),
                      exc)
            loaded = False
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        if loaded:  # subscribed before serving, so no decision published from now on is missed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), 2.0)

    async def load(self) -> None:
        now = self._now() if self._now else None
        raw = await self._redis.hgetall(self.prefix)
        expired = []
        for did, body in raw.items():
            try:
                d = Decision.from_dict(orjson.loads(body))
            except (ValueError, orjson.JSONDecodeError):
                continue
            if now is not None and not d.active(now):
                expired.append(did)
                continue
            self.index.add(d)
        if expired:
            await self._redis.hdel(self.prefix, *expired)

    async def _listen(self) -> None:
        assert self.ready is not None
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(self.channel)
                self.ready.set()
                async for msg in pubsub.listen():
                    if msg.get("type") != "message":
                        continue
                    self._apply(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.ready.is_set():
                    log.warning("decisions channel lost (%r); reconnecting", exc)
                self.ready.clear()
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self.load()  # catch up on what was missed while disconnected

    def _apply(self, data: bytes) -> None:
        self.received += 1
        if not data:
            return
        head, _, body = data.partition(b" ")
        if head[1:].decode(errors="replace") == self.instance:
            return
        try:
            if head[:1] == b"+":
                self.index.add(Decision.from_dict(orjson.loads(body)))
            elif head[:1] == b"-":
                self._revoke(body.decode(errors="replace"))
            elif head[:1] == b"r" and self.on_risk is not None:
                for keys, points, rule_id, t in orjson.loads(body)[:10_000]:
                    self.on_risk([str(k) for k in keys][:8], float(points), str(rule_id)[:64], float(t))
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            log.warning("bad decision message: %r", exc)

    async def stop(self) -> None:
        await self.flush()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
        await super().stop()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


def open_store(url: str, data_dir: Path | None, prefix: str, persist: bool, poll_interval: float,
               now: Any = None) -> DecisionStore:
    """The store for a URL: redis:// or memory:// (mirrored to data_dir/decisions.json if persist)."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, prefix=prefix, now=now)
    path = (data_dir / "decisions.json") if (persist and data_dir is not None) else None
    return MemoryStore(path, poll_interval=poll_interval, now=now)

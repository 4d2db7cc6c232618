"""Approximate mode: count locally, reconcile with the shared backend every `interval` seconds.

For hot limits where a round trip per request costs more than exactness is worth. Each instance
decides on `shared count at the last sync + what it counted since`, and pushes its local counts
at the next sync. Between two syncs, instances do not see each other's hits: with K instances a
burst can overshoot the limit by up to K x (hits per interval). Cooldowns started here are pushed
at the next sync; cooldowns started elsewhere are learnt at the next sync.
"""

from __future__ import annotations

import asyncio
import logging

from bastion.clock import Clock
from bastion.state.base import Algo, Op, Outcome, Storage, StorageError

log = logging.getLogger("bastion.state")


class _Slot:
    __slots__ = ("base", "op", "pending", "seen")

    def __init__(self, op: Op, now: float) -> None:
        self.op = op
        self.base = 0.0  # the shared count at the last sync
        self.pending = 0.0  # counted here since then
        self.seen = now


class ApproxStorage:
    """A local front for a shared Storage; `hit_sync` never waits on the network."""

    sync = True

    def __init__(self, shared: Storage, clock: Clock, interval: float = 0.1) -> None:
        self.shared = shared
        self.clock = clock
        self.interval = interval
        self.url = f"approx+{shared.url}"
        self._slots: dict[str, _Slot] = {}
        self._cool: dict[str, float] = {}  # block key -> end of cooldown
        self._task: asyncio.Task[None] | None = None
        self.syncs = 0
        self.failures = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        try:
            await self.sync_once(self.clock.now())
        except StorageError:
            pass

    async def hit(self, ops: list[Op], now: float) -> list[Outcome]:
        return self.hit_sync(ops, now)

    def hit_sync(self, ops: list[Op], now: float) -> list[Outcome]:
        out: list[Outcome] = []
        for op in ops:
            until = self._cool.get(op.block_key, 0.0) if op.block_key else 0.0
            if until > now:
                out.append(Outcome(True, op.limit, 0.0, until - now, until - now))
                continue
            if op.algo == Algo.COOLDOWN:
                out.append(Outcome(False, 0.0, op.limit))
                continue
            slot = self._slots.get(op.key)
            if slot is None:
                slot = self._slots[op.key] = _Slot(op, now)
            slot.seen = now
            used = slot.base + slot.pending
            exceeded = used + op.cost > op.limit
            if not exceeded or op.consume:
                slot.pending += op.cost
                used += op.cost
            o = Outcome(exceeded, used, max(0.0, op.limit - used), op.window if exceeded else 0.0)
            if exceeded and op.cooldown > 0 and op.block_key:
                self._cool[op.block_key] = now + op.cooldown
                o.cooling, o.newly, o.reset = op.cooldown, True, op.cooldown
            out.append(o)
        return out

    async def sync_once(self, now: float) -> None:
        """Push local counts, pull shared ones. On failure the local counts are kept for next time."""
        keys = [k for k, s in self._slots.items() if s.pending > 0 or now - s.seen < s.op.window]
        for k in [k for k in self._slots if now - self._slots[k].seen >= 2 * self._slots[k].op.window]:
            del self._slots[k]
        for b in [b for b, until in self._cool.items() if until <= now]:
            del self._cool[b]
        if not keys:
            return
        ops: list[Op] = []
        pushed: list[float] = []
        for k in keys:
            s = self._slots[k]
            t = s.op
            ops.append(Op(k, t.algo, t.limit, t.window, s.pending, t.member, t.block_key, t.cooldown, True))
            pushed.append(s.pending)
            s.pending = 0.0
        try:
            outs = await self.shared.hit(ops, now)
        except StorageError:
            self.failures += 1
            for k, p in zip(keys, pushed, strict=True):
                if k in self._slots:
                    self._slots[k].pending += p
            raise
        self.syncs += 1
        for k, o, op in zip(keys, outs, ops, strict=True):
            s2 = self._slots.get(k)
            if s2 is not None:
                s2.base = o.count
            if o.cooling > 0 and op.block_key:
                self._cool[op.block_key] = max(self._cool.get(op.block_key, 0.0), now + o.cooling)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sync_once(self.clock.now())
            except StorageError:
                pass  # the shared client logs once per interval; counts wait for the next sync
            except Exception as exc:  # never let the sync task die silently
                log.error("approximate counter sync failed: %r", exc)

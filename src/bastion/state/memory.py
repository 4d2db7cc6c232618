"""`memory://`: counters in this process (the default). Exact and fast, but per worker: with
`--workers N` or several gateways, each keeps its own counts (use `redis://` to share them).

Memory is bounded twice: every entry expires a little after its window (swept incrementally,
least recently used first), and the table never holds more than `max_keys` entries (the least
recently used entry is evicted to make room, so a flood of a million distinct keys costs a
bounded amount of memory; an evicted counter restarts from zero, which fails open for that key).
"""

from __future__ import annotations

from collections import OrderedDict
from urllib.parse import parse_qs, urlsplit

from bastion.state.base import Algo, Op, Outcome
from bastion.state.strategies import STRATEGIES, State, ttl_of

DEFAULT_MAX_KEYS = 250_000  # about 90 MB of counters (~350 bytes per key, measured)
_SWEEP_EVERY = 256  # ops between two incremental sweeps
_SWEEP_BATCH = 64  # expired entries dropped per sweep at most


class _Entry:
    __slots__ = ("expires", "state")

    def __init__(self, state: State, expires: float) -> None:
        self.state = state
        self.expires = expires


class MemoryStorage:
    """In-process counters. `url`: `memory://` or `memory://?max_keys=200000`."""

    sync = True

    def __init__(self, url: str = "memory://", max_keys: int | None = None) -> None:
        self.url = url
        opts = parse_qs(urlsplit(url).query)
        self.max_keys = max_keys or int(opts.get("max_keys", [str(DEFAULT_MAX_KEYS)])[0])
        if self.max_keys < 1:
            raise ValueError("memory:// max_keys must be at least 1")
        # Recency order: a touched entry is moved to the end, so the least recently used is first.
        # (An OrderedDict, not a dict: popping a plain dict's first key is O(n) after many deletes.)
        self._table: OrderedDict[str, _Entry] = OrderedDict()
        self._ops = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._table)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._table.clear()

    async def hit(self, ops: list[Op], now: float) -> list[Outcome]:
        return self.hit_sync(ops, now)

    def hit_sync(self, ops: list[Op], now: float) -> list[Outcome]:
        table = self._table
        out: list[Outcome] = []
        for op in ops:
            if op.block_key:
                cool = table.get(op.block_key)
                if cool is not None and cool.expires > now:
                    table.move_to_end(op.block_key)  # in use: a client hammering its ban keeps it
                    out.append(Outcome(True, op.limit, 0.0, cool.expires - now, cool.expires - now))
                    continue
            if op.algo == Algo.COOLDOWN:
                out.append(Outcome(False, 0.0, op.limit))
                continue
            key = op.key
            entry = table.get(key)
            if entry is None:
                state, outcome = STRATEGIES[op.algo](None, now, op)
                table[key] = _Entry(state, now + ttl_of(op))
            else:
                state, outcome = STRATEGIES[op.algo](entry.state if entry.expires > now else None, now, op)
                entry.state = state
                entry.expires = now + (2 * op.window if op.algo == Algo.SLIDING_WINDOW else op.window)
                table.move_to_end(key)
            if outcome.exceeded and op.cooldown > 0 and op.block_key:
                table[op.block_key] = _Entry(None, now + op.cooldown)
                table.move_to_end(op.block_key)
                outcome.cooling = op.cooldown
                outcome.reset = max(outcome.reset, op.cooldown)
                outcome.newly = True
            out.append(outcome)
        self._ops += len(ops)
        if self._ops >= _SWEEP_EVERY:
            self._ops = 0
            self._sweep(now)
        while len(table) > self.max_keys:
            table.popitem(last=False)
            self.evictions += 1
        return out

    def _sweep(self, now: float) -> None:
        """Drop expired entries from the least recently used end, a few at a time."""
        table = self._table
        dropped = 0
        for key in list(self._head(_SWEEP_BATCH * 2)):
            if table[key].expires <= now:
                del table[key]
                dropped += 1
                if dropped >= _SWEEP_BATCH:
                    break

    def _head(self, n: int) -> list[str]:
        out: list[str] = []
        for key in self._table:
            out.append(key)
            if len(out) >= n:
                break
        return out

"""Shared state for counters: algorithms (strategies) apart from where the counts live (storage).

The protocol (see base.py) is one call::

    outcomes = await storage.hit([Op(key, Algo.SLIDING_WINDOW, limit=20, window=10.0), ...], now)

Each `Op` is a check-and-count on one counter: add `cost` unless that would go over `limit`
(or always, with `consume=True`), optionally starting a cooldown (`block_key`, `cooldown`) when
the limit is exceeded. All ops of one call are applied atomically and answered in order by
`Outcome`s (exceeded, count, remaining, reset, cooling, newly). Algorithms: sliding-window
counter, token bucket, fixed window, distinct members, cooldown check (`Algo`).

Backends, chosen by URL with `open_storage(url)`:

- `memory://` (default): this process only; `storage.sync` is True and `hit_sync()` answers
  without a coroutine.
- `redis://host:port/db`: shared by every instance; one Lua script call per `hit()`, pipelined
  with concurrent callers on one connection; raises StorageError after `timeout` seconds.

`ApproxStorage(redis, interval)` counts locally and syncs with the shared backend every
`interval` seconds (approximate, for hot limits). Keys: build them with `make_key(prefix, name,
value)`, which hashes the value (secrets never stored in clear). Times are the caller's clock.
"""

from __future__ import annotations

from bastion.state.base import ALGO_NAMES, Algo, Op, Outcome, Storage, StorageError, hash_value, make_key
from bastion.state.settings import StateConfig


def open_storage(url: str = "memory://", *, timeout: float | None = None) -> Storage:
    """The backend for `url`. Raises ValueError for an unknown or malformed URL."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "memory":
        from bastion.state.memory import MemoryStorage

        return MemoryStorage(url)
    if scheme == "redis":
        from bastion.state.redis import RedisStorage

        return RedisStorage(url, timeout=timeout)
    raise ValueError(f"unknown state backend {url!r} (use memory:// or redis://host:port/db)")


__all__ = [
    "ALGO_NAMES",
    "Algo",
    "Op",
    "Outcome",
    "StateConfig",
    "Storage",
    "StorageError",
    "hash_value",
    "make_key",
    "open_storage",
]

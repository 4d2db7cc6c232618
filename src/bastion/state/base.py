"""The storage protocol shared by every counter backend: typed operations in, typed outcomes out.

A caller (a rule, a behaviour scenario) describes each counter it wants to touch as an `Op` and
hands the whole list to `Storage.hit(ops, now)` in ONE call. The backend applies every op
atomically with respect to other callers (memory: one event loop; Redis: one Lua script call)
and returns one `Outcome` per op, in order.

Every op is a check-and-count: "add `cost` to this counter unless that would exceed `limit`,
and tell me where the counter stands". Optionally an op carries a cooldown: a second key that,
once the limit is exceeded, stays set for `cooldown` seconds; while it is set the counter is
not touched and the outcome says `cooling` (a client being refused for a cooldown must not
extend or re-trigger its own ban by being refused).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Algo(enum.IntEnum):
    """Counter algorithms. The numbers are part of the Lua script's wire format."""

    SLIDING_WINDOW = 1  # two fixed windows, the previous one weighted by its overlap (Cloudflare-style)
    TOKEN_BUCKET = 2  # capacity `limit`, refilled at limit/window per second
    FIXED_WINDOW = 3  # windows aligned on multiples of `window` seconds since the epoch
    DISTINCT = 4  # distinct `member`s seen in the last `window` seconds (exact, capped at limit + 1)
    COOLDOWN = 5  # no counter: only report whether `block_key` is cooling


ALGO_NAMES: dict[str, Algo] = {
    "sliding_window": Algo.SLIDING_WINDOW,
    "token_bucket": Algo.TOKEN_BUCKET,
    "fixed_window": Algo.FIXED_WINDOW,
    "distinct": Algo.DISTINCT,
}


@dataclass(slots=True)
class Op:
    """One check-and-count on one counter.

    key       storage key, already namespaced and hashed (see `make_key`)
    limit     values above this are "exceeded" (a limit of 20 lets 20 hits through)
    window    seconds (token bucket: seconds to refill the whole bucket)
    cost      amount to add (1 for a count, a field's value for a sum; 0 to only look)
    member    DISTINCT only: the value counted once (hashed by the caller)
    block_key cooldown key ("" for none). Checked first; set for `cooldown` s when exceeded
    consume   count the hit even when it exceeds (counters that only score, never refuse)
    """

    key: str
    algo: Algo
    limit: float
    window: float
    cost: float = 1.0
    member: str = ""
    block_key: str = ""
    cooldown: float = 0.0
    consume: bool = False


@dataclass(slots=True)
class Outcome:
    """Where one counter stands after its op.

    exceeded  the hit went over the limit (or the key is cooling)
    count     the counter's value after the op (sliding window: the weighted estimate)
    remaining what is left before the limit (>= 0)
    reset     seconds until the hit would be allowed again when exceeded; otherwise until
              the counter is back to full quota
    cooling   seconds of cooldown left (> 0: the counter was not touched)
    newly     this op started the cooldown (fire one-shot actions such as risk or alerts once)
    """

    exceeded: bool
    count: float = 0.0
    remaining: float = 0.0
    reset: float = 0.0
    cooling: float = 0.0
    newly: bool = False


class StorageError(Exception):
    """The backend could not answer (down, timed out, protocol error). Callers apply fail-open/closed."""


@runtime_checkable
class Storage(Protocol):
    """A counter backend.

    `hit` is the whole protocol: apply `ops` atomically at time `now` (seconds since the epoch,
    from the caller's clock: tests and log replay pass a manual clock) and return one Outcome per
    op. It raises StorageError, never hangs longer than the backend's timeout.

    `sync` is True when `hit_sync` is available: an in-process backend answers without a
    coroutine, which keeps the per-request cost of the memory backend at a few microseconds.
    """

    url: str
    sync: bool

    async def hit(self, ops: list[Op], now: float) -> list[Outcome]: ...

    def hit_sync(self, ops: list[Op], now: float) -> list[Outcome]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def hash_value(value: str, salt: str = "") -> str:
    """A short, stable digest of a key value: secrets (API keys, session ids, tokens) never
    reach Redis or the memory table in clear, and key length stays bounded whatever the client sent."""
    return hashlib.blake2b((salt + "\x00" + value).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def make_key(prefix: str, name: str, value: str) -> str:
    """The storage key of counter `name` (a rule id) for one key value."""
    return f"{prefix}{name}:{hash_value(value, name)}"
